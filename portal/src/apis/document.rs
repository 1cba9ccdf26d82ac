//! A published API's OpenAPI 3.1 document. The skeleton (info, server, the API-key security
//! schemes, the gateway's own 401 and 429 responses and rate-limit headers, the plans as
//! `x-tollgate-plans`) and one operation per route are built with utoipa's builder; the
//! operator's uploaded document, when there is one, is then merged in: each of its operations
//! at every public path a route serves it on, its components and tags beside ours.
use super::mapping::{self, ANY_METHOD};
use super::{Api, KeyAuth};
use serde_json::{json, Map, Value};
use tollgate_gateway::admin::service_openapi::METHODS;
use tollgate_gateway::model::Route;
use tollgate_gateway::store::portal::Plan;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, Header, InfoBuilder, OpenApiBuilder, PathsBuilder, Ref,
    ResponseBuilder,
};

/// The rate-limit headers a limited response carries (Kong's names).
const LIMIT_HEADERS: &[(&str, &str)] = &[
    ("RateLimit-Limit", "Requests allowed in the current window"),
    ("RateLimit-Remaining", "Requests left in the current window"),
    ("RateLimit-Reset", "Seconds until the current window ends"),
];

/// What the document is for: the API, the plans that cover it, the proxy's URL, and
/// optionally one version (`v2`) to narrow the paths to.
pub struct Request<'a> {
    pub api: &'a Api,
    pub plans: &'a [Plan],
    pub server: &'a str,
    pub version: Option<&'a str>,
}

pub fn build(r: &Request) -> Value {
    let limited = !r.plans.is_empty();
    let mut doc = serde_json::to_value(skeleton(r, limited)).unwrap_or_else(|_| json!({}));
    let narrowed = r.version.map(|v| r.api.narrowed(v));
    let api = narrowed.as_ref().unwrap_or(r.api);
    let covered = match &api.uploaded {
        Some(uploaded) => merge_uploaded(&mut doc, uploaded, api, limited),
        None => Vec::new(),
    };
    for route in api.routes.iter().filter(|rt| !covered.contains(&rt.id)) {
        add_route_operations(&mut doc, route, api, limited);
    }
    doc
}

fn skeleton(r: &Request, limited: bool) -> utoipa::openapi::OpenApi {
    let uploaded_info = r.api.uploaded.as_ref().map(|u| &u["info"]);
    let version = r
        .api
        .listing
        .version
        .clone()
        .or_else(|| {
            uploaded_info
                .and_then(|i| i["version"].as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "1.0.0".into());
    let description = Some(r.api.listing.description.clone())
        .filter(|d| !d.is_empty())
        .or_else(|| {
            uploaded_info
                .and_then(|i| i["description"].as_str())
                .map(String::from)
        });
    let plans: Vec<Value> = r
        .plans
        .iter()
        .map(|p| json!({"name": p.name, "limits": p.limits}))
        .collect();
    let mut components = ComponentsBuilder::new()
        .schema(
            "GatewayError",
            ObjectBuilder::new()
                .property("message", ObjectBuilder::new().schema_type(Type::String))
                .required("message"),
        )
        .response(
            "Unauthorized",
            error_response("No API key, or a key the gateway does not know"),
        );
    if limited {
        components = components.response("TooManyRequests", too_many_requests());
        for (name, description) in LIMIT_HEADERS {
            components = components.header(*name, integer_header(description));
        }
    }
    for (name, scheme) in security_schemes(r.api.key_auth.as_ref()) {
        components = components.security_scheme(name, scheme);
    }
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(r.api.listing.title.clone())
                .version(version)
                .description(description)
                .build(),
        )
        .servers(Some([Server::new(r.server)]))
        .paths(PathsBuilder::new())
        .components(Some(components.build()))
        .build();
    doc.extensions = Some(
        ExtensionsBuilder::new()
            .add("x-tollgate-plans", plans)
            .build(),
    );
    doc
}

fn integer_header(description: &str) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
    h.description = Some(description.to_string());
    h
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("GatewayError")))
                .build(),
        )
        .build()
}

fn too_many_requests() -> utoipa::openapi::Response {
    let mut r = error_response("The plan's rate limit is used up: wait for the window to end");
    r.headers.insert(
        "Retry-After".into(),
        integer_header("Seconds until a request can succeed").into(),
    );
    r
}

/// One scheme per place the key may go: `ApiKeyHeader` and/or `ApiKeyQuery`.
fn security_schemes(key: Option<&KeyAuth>) -> Vec<(&'static str, SecurityScheme)> {
    let Some(k) = key else { return Vec::new() };
    let name = k.names.first().cloned().unwrap_or_else(|| "apikey".into());
    let mut out = Vec::new();
    if k.in_header {
        out.push((
            "ApiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(name.clone()))),
        ));
    }
    if k.in_query {
        out.push((
            "ApiKeyQuery",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new(name))),
        ));
    }
    out
}

/// The security requirements (any one of the schemes) an operation carries.
fn security(key: Option<&KeyAuth>) -> Value {
    Value::Array(
        security_schemes(key)
            .into_iter()
            .map(|(name, _)| json!({ name: [] }))
            .collect(),
    )
}

/// The gateway's responses added to every operation: 401 with key-auth, 429 with plans.
fn gateway_responses(responses: &mut Map<String, Value>, api: &Api, limited: bool) {
    if api.key_auth.is_some() {
        responses
            .entry("401")
            .or_insert_with(|| json!({"$ref": "#/components/responses/Unauthorized"}));
    }
    if limited {
        responses
            .entry("429")
            .or_insert_with(|| json!({"$ref": "#/components/responses/TooManyRequests"}));
        for (code, response) in responses.iter_mut() {
            if code.starts_with('2') && response.get("$ref").is_none() {
                let headers = response
                    .as_object_mut()
                    .map(|r| r.entry("headers").or_insert_with(|| json!({})));
                if let Some(Value::Object(h)) = headers {
                    for (name, _) in LIMIT_HEADERS {
                        h.entry(*name).or_insert_with(
                            || json!({"$ref": format!("#/components/headers/{name}")}),
                        );
                    }
                }
            }
        }
    }
}

/// An operation per method and plain prefix of a route that the uploaded document does not
/// describe.
fn add_route_operations(doc: &mut Value, route: &Route, api: &Api, limited: bool) {
    let label = route.name.clone().unwrap_or_else(|| route.id.to_string());
    let methods: Vec<String> = match &route.methods {
        Some(m) if !m.is_empty() => m.clone(),
        _ => ANY_METHOD.iter().map(|m| m.to_string()).collect(),
    };
    for prefix in mapping::prefixes(route) {
        for method in &methods {
            let Ok(http_method) =
                serde_json::from_value::<HttpMethod>(json!(method.to_lowercase()))
            else {
                continue;
            };
            let op = OperationBuilder::new()
                .operation_id(Some(format!(
                    "{label}-{}-{}",
                    method.to_lowercase(),
                    slug(prefix)
                )))
                .summary(Some(format!("{method} {prefix}")))
                .description(Some(format!(
                    "Served by route `{label}`{}.",
                    if prefix.ends_with('/') {
                        ", and every path under it"
                    } else {
                        ""
                    }
                )))
                .tag(api.listing.title.clone())
                .response(
                    "200",
                    ResponseBuilder::new().description("The upstream service's response"),
                );
            let item = serde_json::to_value(PathItem::new(http_method, op)).unwrap_or_default();
            insert_operations(doc, (prefix, route), item, api, limited);
        }
    }
}

/// `/api/get/` → `api-get`.
fn slug(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "root".into()
    } else {
        s
    }
}

/// Adds each operation of `item` at `path`, served by `route`, with the gateway's security and
/// responses, its version's header and its version's deprecation.
fn insert_operations(
    doc: &mut Value,
    (path, route): (&str, &Route),
    item: Value,
    api: &Api,
    limited: bool,
) {
    let Value::Object(item) = item else { return };
    let served = tollgate_gateway::model::api_version::served(route);
    let version = served.label(path).map(|label| (served.header(), label));
    let target = doc["paths"]
        .as_object_mut()
        .map(|p| p.entry(path.to_string()).or_insert_with(|| json!({})));
    let Some(Value::Object(target)) = target else {
        return;
    };
    for (key, mut op) in item {
        if METHODS.contains(&key.as_str()) {
            if let Some(o) = op.as_object_mut() {
                if api.key_auth.is_some() && !o.contains_key("security") {
                    o.insert("security".into(), security(api.key_auth.as_ref()));
                }
                let responses = o.entry("responses").or_insert_with(|| json!({}));
                if let Some(r) = responses.as_object_mut() {
                    gateway_responses(r, api, limited);
                }
                if let Some((header, label)) = version {
                    mark_version(o, header, label, api);
                }
            }
        }
        target.entry(key).or_insert(op);
    }
}

/// An operation of version `label`: the header that selects it as a required parameter, and
/// `deprecated` when the operator deprecated the version.
fn mark_version(op: &mut Map<String, Value>, header: Option<&str>, label: &str, api: &Api) {
    if let Some(name) = header {
        let params = op.entry("parameters").or_insert_with(|| json!([]));
        if let Some(list) = params.as_array_mut() {
            list.push(json!({
                "name": name,
                "in": "header",
                "required": true,
                "description": format!("Selects version {label} of the API."),
                "schema": {"type": "string", "enum": [label]},
            }));
        }
    }
    if api.deprecation(label).is_some() {
        op.insert("deprecated".into(), Value::Bool(true));
    }
}

/// Merges the operator's document in; answers the routes that serve at least one of its
/// operations (their generic operations are left out). The operations no route reaches are
/// listed as `x-tollgate-not-exposed` (method, path, summary), for the reference page to say so.
fn merge_uploaded(doc: &mut Value, uploaded: &Value, api: &Api, limited: bool) -> Vec<uuid::Uuid> {
    let mut covered = Vec::new();
    let mut seen_ids: Vec<String> = Vec::new();
    let mut not_exposed = Vec::new();
    let empty = Map::new();
    // Operation paths hang off the first server's path (the backend gets both).
    let base = mapping::base_path(uploaded["servers"][0]["url"].as_str().unwrap_or(""));
    let service_path = api.service_path.as_deref();
    for (path, item) in uploaded["paths"].as_object().unwrap_or(&empty) {
        let upstream = mapping::join(base, path);
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let served = mapping::served(&api.routes, service_path, method, &upstream);
            if served.is_empty() {
                not_exposed.push(serde_json::json!({
                    "method": method.to_uppercase(),
                    "path": upstream,
                    "summary": op["summary"],
                }));
            }
            for served in served {
                if !covered.contains(&served.route.id) {
                    covered.push(served.route.id);
                }
                let mut op = op.clone();
                unique_operation_id(&mut op, &served.path, &mut seen_ids);
                let mut one = Map::new();
                one.insert((*method).to_string(), op);
                if let Some(params) = item.get("parameters") {
                    one.insert("parameters".into(), params.clone());
                }
                let at = (served.path.as_str(), served.route);
                insert_operations(doc, at, Value::Object(one), api, limited);
            }
        }
    }
    if !not_exposed.is_empty() {
        doc["x-tollgate-not-exposed"] = Value::Array(not_exposed);
    }
    merge_components(doc, uploaded);
    if let Some(tags) = uploaded.get("tags") {
        doc["tags"] = tags.clone();
    }
    covered
}

/// An operation served at several paths (one per version prefix) gets `_v2`-style suffixes
/// so every `operationId` stays unique, as OpenAPI requires.
fn unique_operation_id(op: &mut Value, path: &str, seen: &mut Vec<String>) {
    let Some(id) = op["operationId"].as_str().map(String::from) else {
        return;
    };
    let mut candidate = id.clone();
    if seen.contains(&candidate) {
        candidate = format!("{id}_{}", slug(path));
    }
    seen.push(candidate.clone());
    op["operationId"] = Value::String(candidate);
}

/// The uploaded document's components beside ours; ours win a name both use.
fn merge_components(doc: &mut Value, uploaded: &Value) {
    let Some(theirs) = uploaded["components"].as_object() else {
        return;
    };
    let ours = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})));
    let Some(Value::Object(ours)) = ours else {
        return;
    };
    for (section, entries) in theirs {
        let Value::Object(entries) = entries else {
            continue;
        };
        let target = ours.entry(section.clone()).or_insert_with(|| json!({}));
        if let Value::Object(target) = target {
            for (name, v) in entries {
                target.entry(name.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::Listing;
    use tollgate_gateway::store::portal::PlanLimits;

    fn route(name: &str, paths: &[&str], methods: Option<&[&str]>) -> Route {
        crate::apis::test_route(Some(name), paths, true, methods)
    }

    fn api(routes: Vec<Route>, uploaded: Option<Value>) -> Api {
        Api {
            slug: "pets".into(),
            service_id: uuid::Uuid::new_v4(),
            listing: Listing {
                title: "Pets".into(),
                description: "All about pets".into(),
                private: false,
                version: None,
                deprecations: Vec::new(),
            },
            routes,
            service_path: None,
            oauth2: None,
            jwt: false,
            key_auth: Some(KeyAuth {
                names: vec!["apikey".into()],
                in_header: true,
                in_query: false,
            }),
            uploaded,
        }
    }

    fn plan() -> Plan {
        Plan {
            id: "p".into(),
            name: "Free".into(),
            limits: PlanLimits {
                second: Some(2),
                ..PlanLimits::default()
            },
            services: vec![],
            credentials: tollgate_gateway::store::portal::default_credentials(),
            created_at: 1,
        }
    }

    fn petstore() -> Value {
        let text = include_str!("../../../tests/data/petstore-3.0.yaml");
        tollgate_gateway::admin::service_openapi::parse(text).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(*m).is_some() {
                    out.push((m.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn routes_alone_give_one_operation_per_method_and_prefix() {
        let a = api(vec![route("ctx", &["/api/get/"], Some(&["GET"]))], None);
        let plans = [plan()];
        let doc = build(&Request {
            api: &a,
            plans: &plans,
            server: "http://gw:8000",
            version: None,
        });
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://gw:8000");
        let op = &doc["paths"]["/api/get/"]["get"];
        assert_eq!(op["security"], json!([{"ApiKeyHeader": []}]));
        assert_eq!(
            op["responses"]["401"]["$ref"],
            "#/components/responses/Unauthorized"
        );
        assert_eq!(
            op["responses"]["429"]["$ref"],
            "#/components/responses/TooManyRequests"
        );
        assert_eq!(
            op["responses"]["200"]["headers"]["RateLimit-Remaining"]["$ref"],
            "#/components/headers/RateLimit-Remaining"
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["ApiKeyHeader"],
            json!({"type": "apiKey", "in": "header", "name": "apikey"})
        );
        assert_eq!(
            doc["x-tollgate-plans"][0],
            json!({"name": "Free", "limits": {"second": 2, "minute": null, "hour": null, "day": null}})
        );
        assert_eq!(operations(&doc).len(), 1);
    }

    #[test]
    fn the_uploaded_petstore_is_served_under_each_version_prefix() {
        let mut a = api(
            vec![route("v1", &["/v1"], None), route("v2", &["/v2/"], None)],
            Some(petstore()),
        );
        // The service's URL is the document's server, https://petstore3.swagger.io/api/v3.
        a.service_path = Some("/api/v3".into());
        let doc = build(&Request {
            api: &a,
            plans: &[],
            server: "http://gw",
            version: None,
        });
        let ops = operations(&doc);
        assert_eq!(ops.len(), 38, "19 operations under two prefixes");
        assert_eq!(doc.get("x-tollgate-not-exposed"), None);
        assert!(ops.contains(&("get".into(), "/v2/pet/{petId}".into())));
        let ids: std::collections::HashSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|i| {
                METHODS
                    .iter()
                    .filter_map(|m| i.get(*m)?["operationId"].as_str())
            })
            .collect();
        assert_eq!(ids.len(), 38, "operation ids stay unique");
        assert!(
            doc["components"]["schemas"]["Pet"].is_object(),
            "the document's schemas come along"
        );
        assert!(
            doc["paths"]["/v1/pet"]["put"]["responses"]["429"].is_null(),
            "no plans, no 429"
        );
        let v2 = build(&Request {
            api: &a,
            plans: &[],
            server: "http://gw",
            version: Some("v2"),
        });
        assert_eq!(operations(&v2).len(), 19);
    }

    #[test]
    fn a_header_version_is_a_required_parameter_and_a_deprecated_one_is_marked() {
        let mut three = route("pets-3", &["/pets"], Some(&["GET"]));
        three.headers = Some([("X-API-Version".to_string(), vec!["3".to_string()])].into());
        let mut a = api(
            vec![route("v1", &["/v1/pets"], Some(&["GET"])), three],
            None,
        );
        a.listing.deprecations = tollgate_gateway::model::api_version::Deprecation::of_listing(
            json!({"versions": {"v1": {"deprecated_at": "2026-01-01"}}})
                .as_object()
                .unwrap(),
        );
        let doc = |version| {
            build(&Request {
                api: &a,
                plans: &[],
                server: "http://gw",
                version,
            })
        };
        let v1 = doc(Some("v1"));
        assert_eq!(
            operations(&v1),
            [("get".to_string(), "/v1/pets".to_string())]
        );
        assert_eq!(v1["paths"]["/v1/pets"]["get"]["deprecated"], true);
        let v3 = doc(Some("3"));
        let op = &v3["paths"]["/pets"]["get"];
        assert_eq!(op.get("deprecated"), None);
        assert_eq!(
            op["parameters"][0],
            json!({"name": "X-API-Version", "in": "header", "required": true,
                   "description": "Selects version 3 of the API.",
                   "schema": {"type": "string", "enum": ["3"]}})
        );
        assert_eq!(operations(&doc(None)).len(), 2);
    }
}
