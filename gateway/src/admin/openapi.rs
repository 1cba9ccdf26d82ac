//! The admin API's own OpenAPI 3.1 document: paths built with utoipa, the entities' schemas
//! generated from the field definitions that validate them (`Kind::request_schema`).
use crate::model::{Kind, Write};
use crate::store::portal;
use axum::Json;
use tollgate_analytics::query;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder,
};

/// The document, built once: the entities' defaults are read by putting a probe through
/// their validation, which hashes a basic-auth password.
pub async fn document() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(build).clone())
}

fn schema_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "Service",
        Kind::Route => "Route",
        Kind::Consumer => "Consumer",
        Kind::ConsumerGroup => "ConsumerGroup",
        Kind::ConsumerGroupMember => "ConsumerGroupMember",
        Kind::KeyAuth => "KeyAuthCredential",
        Kind::BasicAuth => "BasicAuthCredential",
        Kind::JwtSecret => "JwtSecret",
        Kind::HmacAuth => "HmacCredential",
        Kind::OAuth2Credential => "OAuth2Credential",
        Kind::Acl => "Acl",
        Kind::Plugin => "Plugin",
        Kind::Upstream => "Upstream",
        Kind::Target => "Target",
        Kind::CaCertificate => "CaCertificate",
        Kind::Certificate => "Certificate",
        Kind::Sni => "Sni",
    }
}

/// Builds the document: a collection and an item path for each kind, and the nested paths;
/// the entities' schemas come from the field definitions that validate them.
fn build() -> serde_json::Value {
    let mut doc = serde_json::to_value(build_paths()).expect("the document serializes");
    let schemas = &mut doc["components"]["schemas"];
    for kind in Kind::ALL {
        for (name, schema) in entity_schemas(kind) {
            schemas[name] = schema;
        }
    }
    doc
}

/// An entity kind's schemas, by the names `Bodies::of` gives them.
fn entity_schemas(kind: Kind) -> Vec<(String, serde_json::Value)> {
    let top = Bodies::of(kind, None);
    let mut reply = kind.request_schema(None, Write::Patch);
    reply["additionalProperties"] = true.into();
    let mut out = vec![
        (top.reply, reply),
        (top.create, kind.request_schema(None, Write::Create)),
        (top.put, kind.request_schema(None, Write::Put)),
        (top.patch, kind.request_schema(None, Write::Patch)),
    ];
    for (parent, _, _) in super::entities::NESTED
        .iter()
        .filter(|(_, _, child)| *child == kind)
    {
        let field = super::entities::parent_field(*parent);
        let nested = Bodies::of(kind, Some(field));
        out.push((
            nested.create,
            kind.request_schema(Some(field), Write::Create),
        ));
        out.push((nested.put, kind.request_schema(Some(field), Write::Put)));
        out.push((nested.patch, kind.request_schema(Some(field), Write::Patch)));
    }
    out
}

fn build_paths() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for kind in Kind::ALL {
        let c = kind.collection();
        let bodies = Bodies::of(kind, None);
        paths = paths
            .path(format!("/{c}"), collection(&bodies, c, None))
            .path(
                format!("/{c}/{{id}}"),
                item(&bodies, c, &[("id", "id or name")]),
            );
    }
    for (parent, child, kind) in super::entities::NESTED {
        let bodies = Bodies::of(kind, Some(super::entities::parent_field(parent)));
        let parent = parent.collection();
        let tag = format!("{parent}/{child}");
        paths = paths
            .path(
                format!("/{parent}/{{parent}}/{child}"),
                collection(&bodies, &tag, Some("parent")),
            )
            .path(
                format!("/{parent}/{{parent}}/{child}/{{id}}"),
                item(
                    &bodies,
                    &tag,
                    &[("parent", "id or name of the parent"), ("id", "id")],
                ),
            );
    }
    for (path, summary, schema, array) in [
        (
            "summary",
            "Requests, errors, 429s, auth failures, p50/p95/p99 and bytes",
            "Summary",
            false,
        ),
        (
            "timeseries",
            "The same over time, in buckets of `step` seconds",
            "Point",
            true,
        ),
        (
            "status-codes",
            "Requests by status code",
            "StatusCount",
            true,
        ),
        (
            "top",
            "Busiest routes or consumers (`by`)",
            "TopEntry",
            true,
        ),
        (
            "events",
            "The latest requests, newest first",
            "RecentEvent",
            true,
        ),
    ] {
        paths = paths.path(
            format!("/analytics/{path}"),
            analytics_path(summary, schema, array),
        );
    }
    paths = paths.path("/services/{id}/openapi", service_document());
    paths = portal_paths(paths);
    paths = upstream_paths(paths);
    paths = membership_paths(paths);
    paths = proxy_cache_paths(paths);
    let mut paths = paths.build();
    for (path, item) in paths.paths.iter_mut() {
        add_error_answers(path, item);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Tollgate admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .schema_from::<portal::Plan>()
                .schema_from::<portal::PlanLimits>()
                .schema_from::<portal::DeveloperView>()
                .schema_from::<portal::ApplicationView>()
                .schema_from::<portal::IdRef>()
                .schema_from::<query::Summary>()
                .schema_from::<query::Point>()
                .schema_from::<query::StatusCount>()
                .schema_from::<query::TopEntry>()
                .schema_from::<query::TopBy>()
                .schema_from::<query::RecentEvent>()
                .build(),
        ))
        .build()
}

/// The answers every operation can give besides its own, where it does not describe them
/// itself: 400 (a parameter or body refused, with field errors in Kong's shape), 404 on a path
/// naming an entity (it, or its parent, does not exist) and 409 on a write (a unique key taken).
fn add_error_answers(path: &str, item: &mut PathItem) {
    let names_entity = path.contains('{');
    let ops = [
        (&mut item.get, false),
        (&mut item.delete, false),
        (&mut item.post, true),
        (&mut item.put, true),
        (&mut item.patch, true),
    ];
    for (op, writes) in ops {
        let Some(op) = op else { continue };
        let answers = &mut op.responses.responses;
        let mut add = |code: &str, description: &str| {
            answers
                .entry(code.to_string())
                .or_insert_with(|| reply(description, None).into());
        };
        add("400", "A parameter or the body refused, with field errors");
        if names_entity {
            add("404", "Not found");
        }
        if writes {
            add("409", "A unique key is taken");
        }
    }
}

/// Kong's upstream endpoints beyond CRUD: health, marks, the raw target list.
fn upstream_paths(paths: PathsBuilder) -> PathsBuilder {
    let upstream = path_param("upstream", "id or name of the upstream");
    let target = path_param("target", "id or host:port of the target");
    let tag = "upstreams";
    let get = |summary: &str, params: Vec<_>, ok: &str| {
        let op = OperationBuilder::new()
            .tag(tag)
            .summary(Some(summary.to_string()))
            .parameters(Some(params))
            .response("200", reply(ok, None))
            .response("404", reply("Not found", None));
        PathItem::new(HttpMethod::Get, op.build())
    };
    let mark = |state: &str| {
        let op = || {
            OperationBuilder::new()
                .tag(tag)
                .summary(Some(format!("Mark the target {state} on this node")))
                .parameters(Some(vec![upstream.clone(), target.clone()]))
                .response("204", reply("Marked", None))
                .response("404", reply("Not found", None))
                .build()
        };
        let mut item = PathItem::new(HttpMethod::Put, op());
        item.post = Some(op());
        item
    };
    paths
        .path(
            "/upstreams/{upstream}/health",
            get(
                "Targets with their health on this node (?balancer_health=1: the balancer's)",
                vec![upstream.clone()],
                "{data, next, node_id}",
            ),
        )
        .path(
            "/upstreams/{upstream}/targets/all",
            get(
                "Every target, weight 0 included (paged)",
                vec![upstream.clone()],
                "A page: {data, offset, next}",
            ),
        )
        .path(
            "/upstreams/{upstream}/targets/{target}/healthy",
            mark("healthy"),
        )
        .path(
            "/upstreams/{upstream}/targets/{target}/unhealthy",
            mark("unhealthy"),
        )
}

/// proxy-cache's stored responses (kong/plugins/proxy-cache/api.lua): looked up and purged
/// in every instance's store, or in one instance's.
fn proxy_cache_paths(paths: PathsBuilder) -> PathsBuilder {
    let key = path_param("key", "a cache key, as X-Cache-Key shows it");
    let plugin = path_param("plugin", "id of a proxy-cache plugin");
    let op = |method: &str, what: &str, params: &[_]| {
        let (code, answer) = match method {
            "get" => (
                "200",
                "The stored response: {status, headers, body, body_len, timestamp, ttl, version}",
            ),
            _ => ("204", "Purged"),
        };
        OperationBuilder::new()
            .tag("proxy-cache")
            .summary(Some(what.to_string()))
            .parameters(Some(params.to_vec()))
            .response(code, reply(answer, None))
            .response("404", reply("Not found", None))
            .build()
    };
    let item = |params: &[_], scope: &str| {
        let mut item = PathItem::new(
            HttpMethod::Get,
            op(
                "get",
                &format!("The response stored under a key {scope}"),
                params,
            ),
        );
        item.delete = Some(op("delete", &format!("Purge a key {scope}"), params));
        item
    };
    let all = OperationBuilder::new()
        .tag("proxy-cache")
        .summary(Some("Purge every proxy-cache store".to_string()))
        .response("204", reply("Purged", None))
        .build();
    paths
        .path("/proxy-cache", PathItem::new(HttpMethod::Delete, all))
        .path(
            "/proxy-cache/{key}",
            item(std::slice::from_ref(&key), "in any instance's store"),
        )
        .path(
            "/proxy-cache/{plugin}/caches/{key}",
            item(&[plugin, key.clone()], "in one instance's store"),
        )
}

/// Kong Enterprise's consumer-group memberships, seen from either side: list, add (one id or
/// name, or a list of them), remove.
fn membership_paths(mut paths: PathsBuilder) -> PathsBuilder {
    for (owner, others, given_as, what) in [
        ("consumer_groups", "consumers", "consumer", "consumer"),
        ("consumers", "consumer_groups", "group", "consumer group"),
    ] {
        let tag = format!("{owner}/{others}");
        let parent = path_param("parent", &format!("id or name of the {owner} entry"));
        let op = |summary: String| {
            OperationBuilder::new()
                .tag(tag.clone())
                .summary(Some(summary))
                .parameter(parent.clone())
                .response("404", reply("Not found", None))
        };
        let list = op(format!("List the {others} it is a member with"))
            .response("200", reply("{data, next}", None));
        let body = utoipa::openapi::schema::ObjectBuilder::new()
            .property(
                given_as,
                utoipa::openapi::schema::ObjectBuilder::new()
                    .description(Some(format!("id or name of a {what}, or a list of them"))),
            )
            .required(given_as)
            .build();
        let add = op(format!("Add memberships with one or more {others}"))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(body)).build(),
                    )
                    .build(),
            ))
            .response("201", reply("Added: the owner and the added entries", None))
            .response(
                "400",
                reply("Missing or unknown entries, with field errors", None),
            )
            .response("409", reply("Already a member", None));
        let remove = op(format!(
            "End the membership with one {what} (204 also when none)"
        ))
        .parameter(path_param("id", &format!("id or name of the {what}")))
        .response("204", reply("Removed", None));
        let mut collection = PathItem::new(HttpMethod::Get, list.build());
        collection.post = Some(add.build());
        paths = paths
            .path(format!("/{owner}/{{parent}}/{others}"), collection)
            .path(
                format!("/{owner}/{{parent}}/{others}/{{id}}"),
                PathItem::new(HttpMethod::Delete, remove.build()),
            );
    }
    paths
}

/// The developer portal's entities (served by the portal crate, merged into this API).
fn portal_paths(paths: PathsBuilder) -> PathsBuilder {
    let id = [("id", "id or name")];
    let (developer_view, application_view) = (
        Bodies::same("DeveloperView"),
        Bodies::same("ApplicationView"),
    );
    let mut developer = item(&developer_view, "developers", &[("id", "id or email")]);
    developer.put = None;
    developer.delete = None;
    let developers = collection(&developer_view, "developers", None);
    let mut applications = collection(&application_view, "applications", None);
    applications.post = None;
    let owned = collection(&application_view, "developers/applications", Some("parent"));
    let mut application = item(&application_view, "applications", &[("id", "id")]);
    application.put = None;
    let plan = Bodies::same("Plan");
    paths
        .path("/plans", collection(&plan, "plans", None))
        .path("/plans/{id}", item(&plan, "plans", &id))
        .path("/developers", developers)
        .path("/developers/{id}", developer)
        .path("/developers/{parent}/applications", owned)
        .path("/applications", applications)
        .path("/applications/{id}", application)
}

/// `/services/{id}/openapi`: the operator's OpenAPI document the developer portal merges.
fn service_document() -> PathItem {
    let param = || path_param("id", "id or name of the service");
    let op = |summary: &str| {
        OperationBuilder::new()
            .tag("services/openapi")
            .summary(Some(summary))
            .parameter(param())
    };
    let text = ContentBuilder::new().build();
    let put = op("Upload the service's OpenAPI 3.0 or 3.1 document (YAML or JSON)")
        .request_body(Some(
            RequestBodyBuilder::new()
                .content("application/yaml", text.clone())
                .content("application/json", text)
                .build(),
        ))
        .response("200", reply("Stored: counts of paths and operations", None))
        .response(
            "400",
            reply(
                "Not a document the portal can use: field errors with lines",
                None,
            ),
        )
        .response("404", reply("No such service", None));
    let get = op("The uploaded document").response("200", reply("The document, as JSON", None));
    let delete = op("Remove the uploaded document").response("204", reply("Removed", None));
    let mut item = PathItem::new(HttpMethod::Get, get.build());
    item.put = Some(put.build());
    item.delete = Some(delete.build());
    item
}

/// A `GET /analytics/...` operation: the filter parameters, and a JSON answer.
fn analytics_path(summary: &str, schema: &str, array: bool) -> PathItem {
    use utoipa::IntoParams;
    let item: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> = if array {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(Ref::from_schema_name(schema))
            .build()
            .into()
    } else {
        Ref::from_schema_name(schema).into()
    };
    let op = OperationBuilder::new()
        .tag("analytics")
        .summary(Some(summary))
        .parameters(Some(super::analytics::Params::into_params(|| {
            Some(ParameterIn::Query)
        })))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The answer")
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(item)).build(),
                )
                .build(),
        )
        .response("400", reply("A bad parameter, with field errors", None))
        .response(
            "503",
            reply("Analytics are off, or the store did not answer", None),
        );
    PathItem::new(HttpMethod::Get, op.build())
}

fn path_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(
            utoipa::openapi::schema::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String),
        ))
        .build()
}

/// An entity as a request body. Only JSON is described: the API also takes Kong's form bodies
/// (`consumer.id=...`), whose flattened keys a JSON Schema cannot describe.
fn json_body(schema: &str) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
        .build()
}

fn reply(description: &str, schema: Option<&str>) -> utoipa::openapi::Response {
    let mut b = ResponseBuilder::new().description(description);
    if let Some(s) = schema {
        b = b.content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(s)))
                .build(),
        );
    }
    b.build()
}

/// The schemas an entity's operations refer to: what they answer, and the body each write
/// takes (a create, a PUT that takes the name from the path, a PATCH of some fields).
struct Bodies {
    reply: String,
    create: String,
    put: String,
    patch: String,
}

impl Bodies {
    /// One schema for all (the portal's entities).
    fn same(schema: &str) -> Bodies {
        Bodies {
            reply: schema.into(),
            create: schema.into(),
            put: schema.into(),
            patch: schema.into(),
        }
    }

    /// An entity kind's, at the top level or under a parent whose path gives `parent`.
    fn of(kind: Kind, parent: Option<&str>) -> Bodies {
        let name = schema_name(kind);
        let under = parent.map(|p| format!("_{p}")).unwrap_or_default();
        Bodies {
            reply: name.into(),
            create: format!("{name}Create{under}"),
            put: format!("{name}Put{under}"),
            patch: format!("{name}Patch{under}"),
        }
    }
}

fn collection(bodies: &Bodies, tag: &str, parent: Option<&str>) -> PathItem {
    let params: Vec<_> = parent
        .iter()
        .map(|p| path_param(p, "id or name of the parent"))
        .collect();
    let list = OperationBuilder::new()
        .tag(tag)
        .summary(Some(format!(
            "List {tag} (paged: size, offset; filter: tags)"
        )))
        .parameters(Some(params.clone()))
        .response("200", reply("A page: {data, offset, next}", None));
    let create = OperationBuilder::new()
        .tag(tag)
        .summary(Some(format!("Create one of {tag}")))
        .parameters(Some(params))
        .request_body(Some(json_body(&bodies.create)))
        .response("201", reply("Created", Some(&bodies.reply)))
        .response("400", reply("Schema violation, with field errors", None))
        .response("409", reply("Unique constraint violation", None));
    let mut item = PathItem::new(HttpMethod::Get, list.build());
    item.post = Some(create.build());
    item
}

fn item(bodies: &Bodies, tag: &str, params: &[(&str, &str)]) -> PathItem {
    let params: Vec<_> = params.iter().map(|(n, d)| path_param(n, d)).collect();
    let op = |summary: &str| {
        OperationBuilder::new()
            .tag(tag)
            .summary(Some(summary.to_string()))
            .parameters(Some(params.clone()))
            .response("404", reply("Not found", None))
    };
    let mut item = PathItem::new(
        HttpMethod::Get,
        op("Fetch one")
            .response("200", reply("The entity", Some(&bodies.reply)))
            .build(),
    );
    item.patch = Some(
        op("Change some fields")
            .request_body(Some(json_body(&bodies.patch)))
            .response("200", reply("Updated", Some(&bodies.reply)))
            .build(),
    );
    item.put = Some(
        op("Create or replace")
            .request_body(Some(json_body(&bodies.put)))
            .response("200", reply("Stored", Some(&bodies.reply)))
            .build(),
    );
    item.delete = Some(op("Delete").response("204", reply("Deleted", None)).build());
    item
}
