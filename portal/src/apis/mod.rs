//! The API catalogue: the services published to the developer portal, and the facts their
//! OpenAPI documents are made from (routes, where the key goes, the operator's uploaded
//! document). Read from the config store when a portal page asks; never on the proxy's path.
pub mod document;
pub mod mapping;
pub mod reference;

use serde_json::{Map, Value};
use tollgate_gateway::model::api_version::{self, Deprecation, Served};
use tollgate_gateway::model::{Kind, Plugin, Route, Service};
use tollgate_gateway::store::{ListQuery, Store, StoreError};
use uuid::Uuid;

/// A service's `portal` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub title: String,
    pub description: String,
    /// Shown only to logged-in developers.
    pub private: bool,
    /// The version label of the API's document (`info.version`).
    pub version: Option<String>,
    /// The versions the operator marked deprecated.
    pub deprecations: Vec<Deprecation>,
}

impl Listing {
    fn of(block: &Map<String, Value>) -> Listing {
        let text = |k: &str| block.get(k).and_then(Value::as_str).map(str::to_string);
        Listing {
            title: text("title").unwrap_or_default(),
            description: text("description").unwrap_or_default(),
            private: text("visibility").as_deref() == Some("private"),
            version: text("version").filter(|v| !v.is_empty()),
            deprecations: Deprecation::of_listing(block),
        }
    }
}

/// Where consumers put their key (the key-auth plugin's config), when the API needs one.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyAuth {
    pub names: Vec<String>,
    pub in_header: bool,
    pub in_query: bool,
}

/// How an oauth2-guarded API hands out tokens.
#[derive(Debug, Clone)]
pub struct OAuth2 {
    /// The token endpoint's path on the gateway (a route's path + `/oauth2/token`).
    pub token_path: String,
    pub client_credentials: bool,
}

/// A published service and what its document is built from.
#[derive(Debug, Clone)]
pub struct Api {
    /// What the portal's URLs call it: the service's name, or its id.
    pub slug: String,
    pub service_id: Uuid,
    pub listing: Listing,
    pub routes: Vec<Route>,
    /// The service's own path, before which every upstream path goes.
    pub service_path: Option<String>,
    pub key_auth: Option<KeyAuth>,
    /// The oauth2 plugin that guards the service, if any: where its token endpoint is.
    pub oauth2: Option<OAuth2>,
    /// Whether the jwt plugin guards the service.
    pub jwt: bool,
    /// The operator's OpenAPI document, when one was uploaded.
    pub uploaded: Option<Value>,
}

/// One version of an API, as its routes serve it (`api_version::served`).
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub label: String,
    /// The request header that selects it, when routes select it by header (else its label
    /// is its paths' first segment).
    pub header: Option<String>,
    pub deprecation: Option<Deprecation>,
}

impl Version {
    /// How a request picks this version: `X-API-Version: 2` or `/v2/…`.
    pub fn selector(&self) -> String {
        match &self.header {
            Some(h) => format!("{h}: {}", self.label),
            None => format!("/{}/…", self.label),
        }
    }
}

impl Api {
    /// The API's versions in label order: those its routes name by a version header, and the
    /// first path segments that read like one (`/v1/`, `/v2.1/`), with their deprecations.
    pub fn versions(&self) -> Vec<Version> {
        let mut out: Vec<Version> = Vec::new();
        for route in &self.routes {
            let header = api_version::served(route).header().map(str::to_string);
            for label in api_version::labels(route) {
                if !out.iter().any(|v| v.label == label) {
                    out.push(Version {
                        label: label.to_string(),
                        header: header.clone(),
                        deprecation: self.deprecation(label).cloned(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out
    }

    /// The operator's deprecation of version `label`, if any.
    pub fn deprecation(&self, label: &str) -> Option<&Deprecation> {
        self.listing.deprecations.iter().find(|d| d.label == label)
    }

    /// The API narrowed to version `label`: the routes that serve it, each with only the paths
    /// of that version when paths name it.
    pub fn narrowed(&self, label: &str) -> Api {
        let mut api = self.clone();
        api.routes
            .retain_mut(|route| match api_version::served(route) {
                Served::Header { label: l, .. } => l == label,
                Served::Paths => {
                    let paths = route.paths.iter_mut().flatten();
                    let mine: Vec<String> = paths
                        .filter(|p| api_version::of_path(p) == Some(label))
                        .map(std::mem::take)
                        .collect();
                    route.paths = Some(mine);
                    route.paths.as_ref().is_some_and(|p| !p.is_empty())
                }
            });
        api
    }
}

/// Every entity of a kind (under one parent when given), through all pages.
async fn all(
    store: &Store,
    kind: Kind,
    parent: Option<(&'static str, Uuid)>,
) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::new();
    let mut offset = None;
    loop {
        let page = store
            .list(
                kind,
                &ListQuery {
                    size: 1000,
                    offset,
                    parent,
                    ..ListQuery::default()
                },
            )
            .await?;
        out.extend(page.data);
        match page.next_offset {
            Some(next) => offset = Some(next),
            None => return Ok(out),
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The published services, with their listings, sorted by title. Private ones only when
/// `signed_in`.
pub async fn listings(
    store: &Store,
    signed_in: bool,
) -> Result<Vec<(Service, Listing)>, StoreError> {
    let mut out = Vec::new();
    for v in all(store, Kind::Service, None).await? {
        let service: Service = typed(v)?;
        let Some(listing) = service.portal.as_ref().map(Listing::of) else {
            continue;
        };
        if service.enabled && (signed_in || !listing.private) {
            out.push((service, listing));
        }
    }
    out.sort_by(|a, b| a.1.title.cmp(&b.1.title));
    Ok(out)
}

/// The published API at `slug` (a service's name or id), if the visitor may see it.
pub async fn load(store: &Store, slug: &str, signed_in: bool) -> Result<Option<Api>, StoreError> {
    let Some(v) = store.get(Kind::Service, slug).await? else {
        return Ok(None);
    };
    let service: Service = typed(v)?;
    let Some(listing) = service.portal.as_ref().map(Listing::of) else {
        return Ok(None);
    };
    if !service.enabled || (listing.private && !signed_in) {
        return Ok(None);
    }
    assemble(store, service, listing).await.map(Some)
}

/// A published service's routes, key-auth and uploaded document, read from the store.
pub async fn assemble(
    store: &Store,
    service: Service,
    listing: Listing,
) -> Result<Api, StoreError> {
    let mut routes = Vec::new();
    for v in all(store, Kind::Route, Some(("service_id", service.id))).await? {
        routes.push(typed::<Route>(v)?);
    }
    let route_ids: Vec<Uuid> = routes.iter().map(|r| r.id).collect();
    let guards = store.plugins_for_service(service.id).await?;
    let guard = |name: &str| guarding(&guards, name, service.id, &route_ids);
    let key_auth = guard("key-auth").map(key_auth).transpose()?;
    let jwt = guard("jwt").is_some();
    let oauth2 = guard("oauth2").map(|p| oauth2(&p, &routes)).transpose()?;
    let uploaded = match store.service_openapi(&service.id.to_string()).await? {
        Some(text) => {
            Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        }
        None => None,
    };
    Ok(Api {
        slug: service.name.unwrap_or_else(|| service.id.to_string()),
        service_id: service.id,
        listing,
        routes,
        service_path: service.path,
        key_auth,
        oauth2,
        jwt,
        uploaded,
    })
}

/// The enabled instance of plugin `name` that guards the service: on one of its routes, on the
/// service, or global (the most specific wins, as in the gateway's precedence).
fn guarding(plugins: &[Value], name: &str, service: Uuid, routes: &[Uuid]) -> Option<Value> {
    let mut best: Option<(u8, &Value)> = None;
    for v in plugins {
        let enabled = v["enabled"].as_bool().unwrap_or(true);
        if v["name"] != name || !enabled || !v["consumer"].is_null() {
            continue;
        }
        let id = |f: &str| v[f]["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        let rank = match (id("route"), id("service")) {
            (Some(r), _) if routes.contains(&r) => 3,
            (None, Some(s)) if s == service => 2,
            (None, None) => 1,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, v));
        }
    }
    best.map(|(_, v)| v.clone())
}

/// How a key-auth instance takes keys.
fn key_auth(v: Value) -> Result<KeyAuth, StoreError> {
    let p: Plugin = typed(v)?;
    let flag = |k: &str, default: bool| p.config.get(k).and_then(Value::as_bool).unwrap_or(default);
    let names = p
        .config
        .get("key_names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_else(|| vec!["apikey".to_string()]);
    Ok(KeyAuth {
        names,
        in_header: flag("key_in_header", true),
        in_query: flag("key_in_query", true),
    })
}

/// Where an oauth2 instance's token endpoint is: under the first plain path of the service's
/// routes (`/`, when they have none).
fn oauth2(v: &Value, routes: &[Route]) -> Result<OAuth2, StoreError> {
    let p: Plugin = typed(v.clone())?;
    let prefix = routes
        .iter()
        .flat_map(|r| r.paths.iter().flatten())
        .find(|p| !p.starts_with('~'))
        .map_or("", |p| p.trim_end_matches('/'));
    Ok(OAuth2 {
        token_path: format!("{prefix}/oauth2/token"),
        client_credentials: p
            .config
            .get("enable_client_credentials")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// A route as the store holds it, with Kong's defaults for what is not given (unit tests).
#[cfg(test)]
pub(crate) fn test_route(
    name: Option<&str>,
    paths: &[&str],
    strip: bool,
    methods: Option<&[&str]>,
) -> Route {
    use tollgate_gateway::model::{normalize, Source};
    let input =
        serde_json::json!({"name": name, "paths": paths, "strip_path": strip, "methods": methods});
    let fields = input.as_object().cloned().unwrap_or_default();
    let n = normalize(Kind::Route, fields, None, Source::Typed, 1).expect("a valid route");
    typed(n.record.body).expect("a route")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(routes: Vec<Route>, portal: Value) -> Api {
        Api {
            slug: "pets".into(),
            service_id: Uuid::nil(),
            listing: Listing::of(portal.as_object().unwrap()),
            routes,
            service_path: None,
            key_auth: None,
            oauth2: None,
            jwt: false,
            uploaded: None,
        }
    }

    #[test]
    fn versions_by_path_and_header_with_their_deprecations() {
        let mut by_header = test_route(Some("pets-3"), &["/pets"], true, None);
        by_header.headers = Some([("X-API-Version".to_string(), vec!["3".to_string()])].into());
        let routes = vec![
            test_route(Some("pets"), &["/v1/pets", "/v2/pets"], true, None),
            test_route(Some("plain"), &["/health"], true, None),
            by_header,
        ];
        let a = api(
            routes,
            serde_json::json!({"title": "Pets", "versions": {"v1": {"deprecated_at": "2026-01-01"}}}),
        );
        let versions = a.versions();
        let labels: Vec<&str> = versions.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(labels, ["3", "v1", "v2"]);
        assert_eq!(versions[0].selector(), "X-API-Version: 3");
        assert_eq!(versions[1].selector(), "/v1/…");
        assert!(versions[1].deprecation.is_some() && versions[2].deprecation.is_none());
        let v1 = a.narrowed("v1");
        assert_eq!(v1.routes.len(), 1);
        assert_eq!(v1.routes[0].paths, Some(vec!["/v1/pets".to_string()]));
        let three = a.narrowed("3");
        assert_eq!(three.routes[0].name.as_deref(), Some("pets-3"));
    }
}
