//! A route: the rules that match a request and send it to a service.
use super::schema::{field, Field, FieldErrors, Ty};
use super::service::valid_host;
use super::{ref_id, tags_of, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs", "ws", "wss"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub snis: Option<Vec<String>>,
    /// Kong's stream-route fields, always null on HTTP routes (see `FIELDS`).
    #[serde(default)]
    pub sources: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub destinations: Option<Vec<serde_json::Value>>,
    #[serde(default = "yes")]
    pub strip_path: bool,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub regex_priority: i64,
    #[serde(default = "default_path_handling")]
    pub path_handling: String,
    #[serde(default = "default_redirect")]
    pub https_redirect_status_code: u16,
    #[serde(default = "yes")]
    pub request_buffering: bool,
    #[serde(default = "yes")]
    pub response_buffering: bool,
    pub service: Option<EntityRef>,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn default_protocols() -> Vec<String> {
    vec!["http".into(), "https".into()]
}
fn default_path_handling() -> String {
    "v0".into()
}
fn default_redirect() -> u16 {
    426
}
fn yes() -> bool {
    true
}

impl Route {
    /// Kong's `conditional_at_least_one_of` (routes_subschemas.lua): which attributes a route
    /// must set to match anything, by its protocols; `None` when it sets one.
    fn unmatchable(&self) -> Option<String> {
        let set = |name: &str| match name {
            "methods" => self.methods.as_ref().is_some_and(|v| !v.is_empty()),
            "hosts" => self.hosts.as_ref().is_some_and(|v| !v.is_empty()),
            "paths" => self.paths.as_ref().is_some_and(|v| !v.is_empty()),
            "snis" => self.snis.as_ref().is_some_and(|v| !v.is_empty()),
            _ => self.headers.as_ref().is_some_and(|h| !h.is_empty()),
        };
        let has = |p: &str| self.protocols.iter().any(|x| x == p);
        let grpc = has("grpc") || has("grpcs");
        let (needed, protocol): (&[&str], &str) = match (grpc, has("https") || has("grpcs")) {
            (false, true) => (&["methods", "hosts", "headers", "paths", "snis"], "https"),
            (false, false) => (&["methods", "hosts", "headers", "paths"], "http"),
            (true, true) => (&["hosts", "headers", "paths", "snis"], "grpcs"),
            (true, false) => (&["hosts", "headers", "paths"], "grpc"),
        };
        if needed.iter().any(|n| set(n)) {
            return None;
        }
        let names: Vec<String> = needed.iter().map(|n| format!("'{n}'")).collect();
        Some(format!(
            "must set one of {} when 'protocols' is '{protocol}'",
            names.join(", ")
        ))
    }
}

impl Entity for Route {
    const FIELDS: &'static [Field] = &[
        field("name", Ty::Name),
        field("protocols", Ty::StrSet),
        field("methods", Ty::StrSet),
        field("hosts", Ty::StrArray),
        field("paths", Ty::StrArray),
        field("headers", Ty::StrArrayMap),
        field("snis", Ty::StrSet),
        // routes_subschemas.lua: HTTP and gRPC routes take neither.
        field(
            "sources",
            Ty::NullOnly("cannot set 'sources' when 'protocols' is 'http' or 'https'"),
        ),
        field(
            "destinations",
            Ty::NullOnly("cannot set 'destinations' when 'protocols' is 'http' or 'https'"),
        ),
        field("strip_path", Ty::Bool),
        field("preserve_host", Ty::Bool),
        field(
            "regex_priority",
            Ty::Int {
                min: -(1 << 31),
                max: (1 << 31) - 1,
            },
        ),
        field("path_handling", Ty::Enum(&["v0", "v1"])),
        field("https_redirect_status_code", Ty::Int { min: 301, max: 426 }),
        field("request_buffering", Ty::Bool),
        field("response_buffering", Ty::Bool),
        field("service", Ty::Ref),
        field("tags", Ty::StrSet),
    ];

    fn validate(&mut self, errors: &mut FieldErrors) {
        if let Some(p) = self
            .protocols
            .iter()
            .find(|p| !PROTOCOLS.contains(&p.as_str()))
        {
            errors.add("protocols", format!("unknown protocol: {p}"));
        }
        if ![426, 301, 302, 307, 308].contains(&self.https_redirect_status_code) {
            errors.add(
                "https_redirect_status_code",
                "expected one of: 426, 301, 302, 307, 308",
            );
        }
        if let Some(message) = self.unmatchable() {
            errors.add("@entity", message);
        }
        for m in self.methods.iter().flatten() {
            if !m.chars().all(|c| c.is_ascii_uppercase()) {
                errors.add(
                    "methods",
                    format!("invalid value: {m} (methods are upper case)"),
                );
            }
        }
        for h in self.hosts.iter().flatten() {
            if let Err(e) = validate_host_pattern(h) {
                errors.add("hosts", e);
            }
        }
        for p in self.paths.iter().flatten() {
            if let Err(e) = validate_path(p) {
                errors.add("paths", e);
            }
        }
        for (name, values) in self.headers.iter().flatten() {
            if name.eq_ignore_ascii_case("host") {
                errors.add("headers", "cannot contain 'host' header, which must be specified in the 'hosts' attribute");
            }
            for v in values.iter().filter_map(|v| v.strip_prefix("~*")) {
                if let Err(e) = super::schema::check_regex(v) {
                    errors.add("headers", format!("invalid regex: '{v}' ({e})"));
                }
            }
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: self.name.clone(),
            service_id: ref_id(&self.service),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

/// A route host: a name with an optional port, and a `*` at one end at most.
fn validate_host_pattern(h: &str) -> Result<(), String> {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => (n, Some(p)),
        _ => (h, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("invalid port number in host: {h}"));
    }
    let bare = name
        .strip_prefix("*.")
        .or_else(|| name.strip_suffix(".*"))
        .unwrap_or(name);
    if bare.contains('*') {
        return Err(format!(
            "invalid wildcard: must be placed at leftmost or rightmost label: {h}"
        ));
    }
    if !valid_host(bare) {
        return Err(format!("invalid hostname: {h}"));
    }
    Ok(())
}

/// A route path: a prefix starting with `/`, or a regex starting with `~`.
fn validate_path(p: &str) -> Result<(), String> {
    if let Some(re) = p.strip_prefix('~') {
        super::schema::check_regex(re).map_err(|e| format!("invalid regex: '{re}' ({e})"))?;
        return Ok(());
    }
    if !p.starts_with('/') {
        return Err(format!(
            "should start with: / (fixed path) or ~/ (regex path): {p}"
        ));
    }
    if p.contains("//") {
        return Err(format!("must not have empty segments: {p}"));
    }
    if p.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("must not contain dot segments: {p}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{normalized_body, Kind};
    use serde_json::json;

    fn route(v: serde_json::Value) -> Result<serde_json::Value, String> {
        normalized_body(Kind::Route, v)
    }

    #[test]
    fn defaults_follow_kong() {
        let b = route(json!({"paths": ["/api/"]})).unwrap();
        assert_eq!(b["protocols"], json!(["http", "https"]));
        assert_eq!(b["strip_path"], true);
        assert_eq!(b["preserve_host"], false);
        assert_eq!(b["path_handling"], "v0");
        assert_eq!(b["https_redirect_status_code"], 426);
        assert_eq!(b["hosts"], json!(null));
    }

    #[test]
    fn a_route_must_match_something() {
        let e = route(json!({"name": "r"})).unwrap_err();
        assert!(e.contains("must set one of"), "{e}");
    }

    #[test]
    fn bad_paths_hosts_and_regexes_are_rejected() {
        assert!(route(json!({"paths": ["api"]}))
            .unwrap_err()
            .contains("should start with"));
        assert!(route(json!({"paths": ["~/api/(["]}))
            .unwrap_err()
            .contains("invalid regex"));
        assert!(route(json!({"paths": ["/a/../b"]}))
            .unwrap_err()
            .contains("dot segments"));
        assert!(route(json!({"hosts": ["a.*.com"]}))
            .unwrap_err()
            .contains("wildcard"));
        assert!(route(json!({"hosts": ["*.example.com", "example.*", "h:8000"]})).is_ok());
        assert!(route(json!({"methods": ["get"]}))
            .unwrap_err()
            .contains("upper case"));
    }
}
