//! Ingress rules into Kong services and routes, as KIC's `subtranslator/ingress.go` makes them:
//! one service per Kubernetes Service and port (`<namespace>.<service>.<port>`), one route per
//! Ingress, host, Service and port (`<namespace>.<ingress>.<service>.<host>.<port>`) holding
//! every path of that combination, `strip_path` false and `preserve_host` true unless an
//! annotation says otherwise (KIC's `kongstate/route.go` overrides).
use super::annotations::{self as ann, Annotations};
use super::objects::{api_version, ObjectRef};
use super::Failures;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressServiceBackend};
use regex::Regex;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Kong's own timeout and retry defaults as KIC sets them on every service it makes.
const DEFAULT_TIMEOUT_MS: i64 = 60_000;
const DEFAULT_RETRIES: i64 = 5;
/// The path prefix that marks a regex in an Ingress (KIC's `ControllerPathRegexPrefix`).
const CONTROLLER_REGEX_PREFIX: &str = "/~";

/// How an Ingress names a Service's port (KIC's `PortDef`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortDef {
    Number(i32),
    Name(String),
    Implicit,
}

impl PortDef {
    fn of(backend: &IngressServiceBackend) -> PortDef {
        match &backend.port {
            Some(p) if p.number.is_some_and(|n| n != 0) => PortDef::Number(p.number.unwrap_or(0)),
            Some(p) if p.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                PortDef::Name(p.name.clone().unwrap_or_default())
            }
            _ => PortDef::Implicit,
        }
    }

    pub fn canonical(&self) -> String {
        match self {
            PortDef::Number(n) => n.to_string(),
            PortDef::Name(n) => n.clone(),
            PortDef::Implicit => "implicitPort".into(),
        }
    }
}

/// A Kong service in the making: its fields, its routes, and what it came from.
pub struct KongService {
    pub namespace: String,
    /// The Kubernetes Service it sends to, and by which port.
    pub backend: String,
    pub port: PortDef,
    pub fields: Map<String, Value>,
    pub routes: Vec<KongRoute>,
    /// The Ingress that first made it (failures about its backend are reported there).
    pub parent: ObjectRef,
}

pub struct KongRoute {
    pub name: String,
    pub fields: Map<String, Value>,
    pub ingress: ObjectRef,
    pub annotations: Annotations,
}

/// The Kong services the Ingresses make, by name.
pub fn services(ingresses: &[&Ingress], failures: &mut Failures) -> BTreeMap<String, KongService> {
    // (route name) → (ingress, host, backend, port, paths), in Ingress order.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut default_backends: Vec<&Ingress> = Vec::new();
    for ing in ingresses {
        let origin = ObjectRef::new("Ingress", api_version("Ingress"), &ing.metadata);
        let Some(spec) = &ing.spec else { continue };
        if spec.default_backend.is_some() {
            default_backends.push(ing);
        }
        for rule in spec.rules.iter().flatten() {
            let host = rule.host.clone().unwrap_or_default();
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let Some(svc) = &path.backend.service else {
                    failures.push(
                        &origin,
                        format!(
                            "failed to get backend for ingress path {:?}: only Service backends are supported",
                            path.path.as_deref().unwrap_or("")
                        ),
                    );
                    continue;
                };
                let port = PortDef::of(svc);
                let name = format!(
                    "{}.{}.{}.{}.{}",
                    origin.namespace.as_deref().unwrap_or_default(),
                    origin.name,
                    svc.name,
                    host.replace('*', "_"),
                    port.canonical()
                );
                let g = groups.entry(name).or_insert_with(|| Group {
                    ingress: ing,
                    origin: origin.clone(),
                    host: host.clone(),
                    backend: svc.name.clone(),
                    port,
                    paths: Vec::new(),
                });
                g.paths.push(path.clone());
            }
        }
    }
    let mut out: BTreeMap<String, KongService> = BTreeMap::new();
    for (route_name, g) in groups {
        let namespace = g.origin.namespace.clone().unwrap_or_default();
        let service_name = format!("{namespace}.{}.{}", g.backend, g.port.canonical());
        let route = g.route(route_name);
        out.entry(service_name.clone())
            .or_insert_with(|| new_service(&service_name, &g.backend, g.port.clone(), &g.origin))
            .routes
            .push(route);
    }
    if let Some(ing) = oldest(&default_backends) {
        add_default_backend(ing, &mut out);
    }
    for s in out.values_mut() {
        s.routes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

struct Group<'a> {
    ingress: &'a Ingress,
    origin: ObjectRef,
    host: String,
    backend: String,
    port: PortDef,
    paths: Vec<HTTPIngressPath>,
}

impl Group<'_> {
    fn route(&self, name: String) -> KongRoute {
        let annotations = self
            .ingress
            .metadata
            .annotations
            .clone()
            .unwrap_or_default();
        let regex_prefix =
            ann::get(&annotations, "regex-prefix").unwrap_or(CONTROLLER_REGEX_PREFIX);
        let paths: Vec<String> = self
            .paths
            .iter()
            .flat_map(kong_paths)
            .map(|p| match p.strip_prefix(regex_prefix) {
                Some(rest) => format!("~{rest}"),
                None => p,
            })
            .collect();
        let mut fields = base_route(&name, &self.origin);
        if !self.host.is_empty() {
            fields.insert("hosts".into(), json!([self.host]));
        }
        fields.insert("paths".into(), json!(paths));
        let mut protocols = ann::list(&annotations, "protocols");
        protocols.sort();
        if !protocols.is_empty() {
            fields.insert("protocols".into(), json!(protocols));
        }
        override_route(&mut fields, &annotations);
        KongRoute {
            name,
            fields,
            ingress: self.origin.clone(),
            annotations,
        }
    }
}

/// A route's fields before the Ingress's annotations apply.
fn base_route(name: &str, origin: &ObjectRef) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("name".into(), json!(name));
    fields.insert("strip_path".into(), json!(false));
    fields.insert("preserve_host".into(), json!(true));
    fields.insert("regex_priority".into(), json!(0));
    fields.insert("request_buffering".into(), json!(true));
    fields.insert("response_buffering".into(), json!(true));
    fields.insert("tags".into(), json!(origin.tags()));
    fields
}

fn new_service(name: &str, backend: &str, port: PortDef, parent: &ObjectRef) -> KongService {
    let namespace = parent.namespace.clone().unwrap_or_default();
    let mut fields = Map::new();
    fields.insert("name".into(), json!(name));
    fields.insert(
        "host".into(),
        json!(format!("{backend}.{namespace}.{}.svc", port.canonical())),
    );
    fields.insert("port".into(), json!(80));
    fields.insert("protocol".into(), json!("http"));
    fields.insert("path".into(), json!("/"));
    for t in ["connect_timeout", "read_timeout", "write_timeout"] {
        fields.insert(t.into(), json!(DEFAULT_TIMEOUT_MS));
    }
    fields.insert("retries".into(), json!(DEFAULT_RETRIES));
    // The Ingress's until the Kubernetes Service is found (then the Service's, as in KIC).
    fields.insert("tags".into(), json!(parent.tags()));
    KongService {
        namespace,
        backend: backend.to_string(),
        port,
        fields,
        routes: Vec::new(),
        parent: parent.clone(),
    }
}

/// The oldest Ingress with a default backend serves it (KIC's `getDefaultBackendService`).
fn oldest<'a>(ingresses: &[&'a Ingress]) -> Option<&'a Ingress> {
    ingresses
        .iter()
        .min_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        })
        .copied()
}

/// The default backend: a catch-all `/` route named `<namespace>.<ingress>`.
fn add_default_backend(ing: &Ingress, out: &mut BTreeMap<String, KongService>) {
    let Some(svc) = ing
        .spec
        .as_ref()
        .and_then(|s| s.default_backend.as_ref())
        .and_then(|b| b.service.as_ref())
    else {
        return;
    };
    let origin = ObjectRef::new("Ingress", api_version("Ingress"), &ing.metadata);
    let namespace = origin.namespace.clone().unwrap_or_default();
    let port = PortDef::of(svc);
    let service_name = format!("{namespace}.{}.{}", svc.name, port.canonical());
    let route_name = format!("{namespace}.{}", origin.name);
    let annotations = ing.metadata.annotations.clone().unwrap_or_default();
    let mut fields = base_route(&route_name, &origin);
    fields.insert("paths".into(), json!(["/"]));
    override_route(&mut fields, &annotations);
    out.entry(service_name.clone())
        .or_insert_with(|| new_service(&service_name, &svc.name, port, &origin))
        .routes
        .push(KongRoute {
            name: route_name,
            fields,
            ingress: origin,
            annotations,
        });
}

/// An Ingress path as Kong paths (KIC's `PathsFromIngressPaths`): Prefix `/a` is `/a/` and the
/// regex `~/a$`; Exact `/a` is `~/a$`; ImplementationSpecific is the path as written.
fn kong_paths(p: &HTTPIngressPath) -> Vec<String> {
    let path = flatten_slashes(p.path.as_deref().unwrap_or(""));
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    match p.path_type.as_str() {
        "Prefix" => {
            let base = path.trim_matches('/');
            if base.is_empty() {
                vec!["/".into()]
            } else {
                vec![format!("/{base}/"), format!("~/{base}$")]
            }
        }
        "Exact" => vec![format!("~/{}$", path.trim_start_matches('/'))],
        _ => vec![path],
    }
}

fn flatten_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

static METHOD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Z]+$").expect("valid"));
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\*\.)?([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)+(\.([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*))*?(\.\*)?$",
    )
    .expect("valid")
});
static SNI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)+(\.([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*))*$")
        .expect("valid")
});
static PATH_HANDLING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^v[01]$").expect("valid"));
const REDIRECT_CODES: &[i64] = &[426, 301, 302, 307, 308];

/// KIC's `Route.Override`: the Ingress's annotations over the route's defaults. An invalid
/// value leaves the field as it was.
fn override_route(f: &mut Map<String, Value>, a: &Annotations) {
    if let Some(v) = ann::boolean(a, "strip-path") {
        f.insert("strip_path".into(), json!(v));
    }
    if a.get("ingress.kubernetes.io/force-ssl-redirect")
        .map(String::as_str)
        == Some("true")
    {
        f.insert("https_redirect_status_code".into(), json!(302));
        let tls = tls_protocols(f.get("protocols"));
        f.insert("protocols".into(), json!(tls));
    }
    if let Some(code) =
        ann::integer(a, "https-redirect-status-code").filter(|c| REDIRECT_CODES.contains(c))
    {
        f.insert("https_redirect_status_code".into(), json!(code));
    }
    if let Some(v) = ann::boolean(a, "preserve-host") {
        f.insert("preserve_host".into(), json!(v));
    }
    for (key, field) in [
        ("request-buffering", "request_buffering"),
        ("response-buffering", "response_buffering"),
    ] {
        if let Some(v) = ann::boolean(a, key) {
            f.insert(field.into(), json!(v));
        }
    }
    let protocols = ann::list(a, "protocols");
    if !protocols.is_empty()
        && protocols
            .iter()
            .all(|p| ann::PROTOCOLS.contains(&p.as_str()))
    {
        f.insert("protocols".into(), json!(protocols));
    }
    if let Some(p) = ann::integer(a, "regex-priority") {
        f.insert("regex_priority".into(), json!(p));
    }
    let methods: Vec<String> = ann::list(a, "methods")
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    if !methods.is_empty() && methods.iter().all(|m| METHOD.is_match(m)) {
        f.insert("methods".into(), json!(methods));
    }
    if let Some(v) = ann::get(a, "snis") {
        let snis = ann::split(v);
        if snis.iter().all(|s| SNI.is_match(s)) {
            f.insert("snis".into(), json!(snis));
        }
    }
    let aliases = ann::list(a, "host-aliases");
    if !aliases.is_empty() && aliases.iter().all(|h| HOST.is_match(h)) {
        let mut hosts: Vec<Value> = f
            .get("hosts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for h in aliases {
            if !hosts.iter().any(|x| x == &h) {
                hosts.push(json!(h));
            }
        }
        f.insert("hosts".into(), Value::Array(hosts));
    }
    let headers = ann::headers(a);
    if !headers.is_empty() {
        f.insert("headers".into(), json!(headers));
    }
    if let Some(v) = ann::get(a, "path-handling").filter(|v| PATH_HANDLING.is_match(v)) {
        f.insert("path_handling".into(), json!(v));
    }
    normalize_protocols(f);
}

/// KIC's `useSSLProtocol`: only the TLS forms of the route's protocols.
fn tls_protocols(protocols: Option<&Value>) -> Vec<&'static str> {
    let list = strings(protocols);
    let grpc = list.iter().any(|p| p.contains("grpc"));
    let http = list.iter().any(|p| p.contains("http"));
    let mut out = Vec::new();
    if grpc {
        out.push("grpcs");
    }
    if http || !grpc {
        out.push("https");
    }
    out
}

/// A list of strings' items (none when it is no list).
fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// KIC's `normalizeProtocols`: gRPC mixed with HTTP becomes HTTP(S); a gRPC route has no
/// `strip_path`.
fn normalize_protocols(f: &mut Map<String, Value>) {
    let list: Vec<String> = strings(f.get("protocols"))
        .into_iter()
        .map(String::from)
        .collect();
    let grpc = list.iter().any(|p| p.contains("grpc"));
    let http = list
        .iter()
        .any(|p| p.contains("http") || !ann::PROTOCOLS.contains(&p.as_str()));
    if grpc && http {
        f.insert("protocols".into(), json!(["http", "https"]));
    }
    if grpc {
        f.remove("strip_path");
    }
}

#[cfg(test)]
#[path = "ingress_kic_tests.rs"]
mod kic_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_override_route_defaults_and_bad_values_are_ignored() {
        let a: Annotations = [
            ("konghq.com/strip-path", "true"),
            ("konghq.com/methods", "GET,post"),
            ("konghq.com/regex-priority", "10"),
            ("konghq.com/host-aliases", "b.example,a.example"),
            ("konghq.com/https-redirect-status-code", "303"),
            ("konghq.com/protocols", "https"),
            ("konghq.com/path-handling", "v1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let origin = ObjectRef::new("Ingress", "networking.k8s.io/v1", &Default::default());
        let mut f = base_route("r", &origin);
        f.insert("hosts".into(), json!(["a.example"]));
        override_route(&mut f, &a);
        assert_eq!(f["strip_path"], true);
        assert_eq!(f["methods"], json!(["GET", "POST"]));
        assert_eq!(f["regex_priority"], 10);
        assert_eq!(f["hosts"], json!(["a.example", "b.example"]));
        assert!(
            f.get("https_redirect_status_code").is_none(),
            "303 is not a redirect code Kong takes"
        );
        assert_eq!(f["protocols"], json!(["https"]));
        assert_eq!(f["path_handling"], "v1");
        assert_eq!(f["preserve_host"], true);
    }
}
