//! An upstream: a virtual host name that a service's `host` can name, balanced over targets.
//!
//! Kong's entity (kong/db/schema/entities/upstreams.lua): its fields, defaults, the
//! `healthchecks` record with every default filled in, and the entity checks on the hashing
//! fields with Kong's messages.
use super::schema::{field, Field, FieldErrors, Ty};
use super::service::valid_host;
use super::{tags_of, Entity, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const ALGORITHMS: &[&str] = &[
    "consistent-hashing",
    "least-connections",
    "round-robin",
    "latency",
];
pub const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];
const CHECK_TYPES: &[&str] = &["tcp", "http", "https", "grpc", "grpcs"];
const SECONDS: Ty = Ty::Number {
    min: 0.0,
    max: 65535.0,
};
const ONE_BYTE: Ty = Ty::Int { min: 0, max: 255 };
const STATUSES: Ty = Ty::IntArray { min: 100, max: 999 };

const ACTIVE_HEALTHY: &[Field] = &[
    field("interval", SECONDS),
    field("http_statuses", STATUSES),
    field("successes", ONE_BYTE),
];
const ACTIVE_UNHEALTHY: &[Field] = &[
    field("interval", SECONDS),
    field("http_statuses", STATUSES),
    field("tcp_failures", ONE_BYTE),
    field("timeouts", ONE_BYTE),
    field("http_failures", ONE_BYTE),
];
const PASSIVE_HEALTHY: &[Field] = &[
    field("http_statuses", STATUSES),
    field("successes", ONE_BYTE),
];
const PASSIVE_UNHEALTHY: &[Field] = &[
    field("http_statuses", STATUSES),
    field("tcp_failures", ONE_BYTE),
    field("timeouts", ONE_BYTE),
    field("http_failures", ONE_BYTE),
];
const ACTIVE: &[Field] = &[
    field("type", Ty::Enum(CHECK_TYPES)),
    field("timeout", SECONDS),
    field(
        "concurrency",
        Ty::Int {
            min: 1,
            max: 2_147_483_648,
        },
    ),
    field("http_path", Ty::Str),
    field("https_sni", Ty::Str),
    field("https_verify_certificate", Ty::Bool),
    field("headers", Ty::StrArrayMap),
    field("healthy", Ty::Record(ACTIVE_HEALTHY)),
    field("unhealthy", Ty::Record(ACTIVE_UNHEALTHY)),
];
const PASSIVE: &[Field] = &[
    field("type", Ty::Enum(CHECK_TYPES)),
    field("healthy", Ty::Record(PASSIVE_HEALTHY)),
    field("unhealthy", Ty::Record(PASSIVE_UNHEALTHY)),
];
const HEALTHCHECKS: &[Field] = &[
    field("active", Ty::Record(ACTIVE)),
    field("passive", Ty::Record(PASSIVE)),
    field(
        "threshold",
        Ty::Number {
            min: 0.0,
            max: 100.0,
        },
    ),
];
/// Tollgate's circuit breaker (not Kong's): see [`CircuitBreaker`].
const BREAKER: &[Field] = &[
    field("enabled", Ty::Bool),
    field("consecutive_failures", Ty::Int { min: 1, max: 1000 }),
    field(
        "error_ratio",
        Ty::Number {
            min: 0.01,
            max: 1.0,
        },
    ),
    field(
        "window",
        Ty::Number {
            min: 1.0,
            max: 3600.0,
        },
    ),
    field(
        "min_requests",
        Ty::Int {
            min: 1,
            max: 100_000,
        },
    ),
    field(
        "open_for",
        Ty::Number {
            min: 0.1,
            max: 3600.0,
        },
    ),
    field("half_open_probes", Ty::Int { min: 1, max: 100 }),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub id: Uuid,
    pub name: String,
    #[serde(default = "round_robin")]
    pub algorithm: String,
    #[serde(default = "none")]
    pub hash_on: String,
    #[serde(default = "none")]
    pub hash_fallback: String,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    #[serde(default = "root")]
    pub hash_on_cookie_path: String,
    pub hash_on_query_arg: Option<String>,
    pub hash_fallback_query_arg: Option<String>,
    pub hash_on_uri_capture: Option<String>,
    pub hash_fallback_uri_capture: Option<String>,
    #[serde(default = "default_slots")]
    pub slots: u32,
    #[serde(default)]
    pub healthchecks: Healthchecks,
    pub host_header: Option<String>,
    /// Kong's reference to a client certificate; certificates are not an entity yet.
    #[serde(default)]
    pub client_certificate: Option<Value>,
    #[serde(default)]
    pub use_srv_name: bool,
    /// Tollgate's circuit breaker per target; a Tollgate extension, shown with its defaults.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn round_robin() -> String {
    "round-robin".into()
}
fn none() -> String {
    "none".into()
}
fn root() -> String {
    "/".into()
}
fn default_slots() -> u32 {
    10_000
}
fn http() -> String {
    "http".into()
}
fn yes() -> bool {
    true
}

/// Kong's `healthchecks` record, every field defaulted as Kong defaults it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Healthchecks {
    pub active: ActiveChecks,
    pub passive: PassiveChecks,
    /// The percentage of weight that must be available for the upstream to count as healthy.
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveChecks {
    #[serde(rename = "type")]
    pub kind: String,
    pub timeout: f64,
    pub concurrency: u32,
    pub http_path: String,
    pub https_sni: Option<String>,
    pub https_verify_certificate: bool,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub healthy: ActiveHealthy,
    pub unhealthy: ActiveUnhealthy,
}

impl Default for ActiveChecks {
    fn default() -> Self {
        ActiveChecks {
            kind: http(),
            timeout: 1.0,
            concurrency: 10,
            http_path: root(),
            https_sni: None,
            https_verify_certificate: yes(),
            headers: None,
            healthy: ActiveHealthy::default(),
            unhealthy: ActiveUnhealthy::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveChecks {
    #[serde(rename = "type")]
    pub kind: String,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

impl Default for PassiveChecks {
    fn default() -> Self {
        PassiveChecks {
            kind: http(),
            healthy: PassiveHealthy::default(),
            unhealthy: PassiveUnhealthy::default(),
        }
    }
}

/// When an unhealthy target is healthy again: `successes` in a row (0: never by this
/// check); active probes of healthy targets every `interval` seconds (0: none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveHealthy {
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub successes: u8,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy {
            interval: 0.0,
            http_statuses: vec![200, 302],
            successes: 0,
        }
    }
}

/// When a target is unhealthy: that many failures of a kind (0: never by that kind);
/// active probes of unhealthy targets every `interval` seconds (0: none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveUnhealthy {
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u8,
    pub timeouts: u8,
    pub http_failures: u8,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        ActiveUnhealthy {
            interval: 0.0,
            http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
            tcp_failures: 0,
            timeouts: 0,
            http_failures: 0,
        }
    }
}

/// Passive checks count the proxied responses: [`ActiveHealthy`] without probing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthy {
    pub http_statuses: Vec<u16>,
    pub successes: u8,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        PassiveHealthy {
            http_statuses: vec![
                200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                306, 307, 308,
            ],
            successes: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveUnhealthy {
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u8,
    pub timeouts: u8,
    pub http_failures: u8,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        PassiveUnhealthy {
            http_statuses: vec![429, 500, 503],
            tcp_failures: 0,
            timeouts: 0,
            http_failures: 0,
        }
    }
}

impl ActiveChecks {
    /// Whether this node probes targets at all.
    pub fn enabled(&self) -> bool {
        self.healthy.interval > 0.0 || self.unhealthy.interval > 0.0
    }
}

impl Healthchecks {
    /// Whether any check can change a target's health (Kong's HEALTHCHECKS_OFF otherwise).
    pub fn enabled(&self) -> bool {
        let a = &self.active;
        let active = a.enabled()
            && (a.healthy.successes > 0
                || a.unhealthy.tcp_failures > 0
                || a.unhealthy.timeouts > 0
                || a.unhealthy.http_failures > 0);
        active || self.passive_enabled()
    }

    /// Whether proxied traffic can change a target's health.
    pub fn passive_enabled(&self) -> bool {
        let p = &self.passive;
        p.healthy.successes > 0
            || p.unhealthy.tcp_failures > 0
            || p.unhealthy.timeouts > 0
            || p.unhealthy.http_failures > 0
    }
}

/// A circuit breaker per target, Tollgate's addition to Kong's health checks: it works with
/// no check configured. It opens after `consecutive_failures` failed attempts in a row, or
/// when at least `min_requests` attempts in the last `window` seconds failed at
/// `error_ratio` or more; while open the target gets no requests for `open_for` seconds; then
/// `half_open_probes` requests go through, and their success closes it (one failure opens it
/// again). A failure is a connection failure, a timeout, or a 5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub error_ratio: f64,
    pub window: f64,
    pub min_requests: u32,
    pub open_for: f64,
    pub half_open_probes: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            enabled: true,
            consecutive_failures: 5,
            error_ratio: 0.5,
            window: 10.0,
            min_requests: 20,
            open_for: 10.0,
            half_open_probes: 3,
        }
    }
}

impl Entity for Upstream {
    const FIELDS: &'static [Field] = &[
        field("name", Ty::Str),
        field("algorithm", Ty::Enum(ALGORITHMS)),
        field("hash_on", Ty::Enum(HASH_ON)),
        field("hash_fallback", Ty::Enum(HASH_ON)),
        field("hash_on_header", Ty::Str),
        field("hash_fallback_header", Ty::Str),
        field("hash_on_cookie", Ty::Str),
        field("hash_on_cookie_path", Ty::Str),
        field("hash_on_query_arg", Ty::Str),
        field("hash_fallback_query_arg", Ty::Str),
        field("hash_on_uri_capture", Ty::Str),
        field("hash_fallback_uri_capture", Ty::Str),
        field(
            "slots",
            Ty::Int {
                min: 10,
                max: 65536,
            },
        ),
        field("healthchecks", Ty::Record(HEALTHCHECKS)),
        field("tags", Ty::StrSet),
        field("host_header", Ty::Str),
        field(
            "client_certificate",
            Ty::NullOnly("not supported yet: certificates are not an entity of Tollgate's yet"),
        ),
        field("use_srv_name", Ty::Bool),
        field("circuit_breaker", Ty::Record(BREAKER)),
    ];
    const REQUIRED: &'static [&'static str] = &["name"];

    /// Kong's shorthands: `least-connections` and `latency` hash on nothing; hashing on
    /// something makes the algorithm `consistent-hashing`, hashing on `none` `round-robin`.
    fn prepare(input: &mut Map<String, Value>, _existing: Option<&Value>) -> Option<String> {
        let algorithm = input.get("algorithm").and_then(Value::as_str);
        if matches!(algorithm, Some("least-connections" | "latency")) {
            input.insert("hash_on".into(), "none".into());
        } else if let Some(on) = input.get("hash_on").and_then(Value::as_str) {
            let implied = if on == "none" {
                "round-robin"
            } else {
                "consistent-hashing"
            };
            input.insert("algorithm".into(), implied.into());
        }
        None
    }

    fn check_merged(body: &Map<String, Value>, errors: &mut FieldErrors) {
        hash_checks(body, errors);
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        if let Err(why) = valid_name(&self.name) {
            errors.add("name", format!("Invalid name ('{}'); {why}", self.name));
        }
        for (f, v) in [
            ("hash_on_header", &self.hash_on_header),
            ("hash_fallback_header", &self.hash_fallback_header),
        ] {
            if let Some(h) = v.as_deref().filter(|h| !valid_header_name(h)) {
                errors.add(
                    f,
                    format!(
                        "bad header name '{h}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
                    ),
                );
            }
        }
        if self
            .hash_on_cookie
            .as_deref()
            .is_some_and(|c| !valid_cookie_name(c))
        {
            errors.add("hash_on_cookie", "contains one or more invalid characters. ASCII control characters (0-31;127), space, tab and the characters ()<>@,;:\\\"/?={}[] are not allowed.");
        }
        if !self.hash_on_cookie_path.starts_with('/') {
            errors.add("hash_on_cookie_path", "should start with: /");
        }
        if let Some(h) = &self.host_header {
            if !valid_host_with_port(h) {
                errors.add("host_header", "invalid hostname");
            }
        }
        if !self.healthchecks.active.http_path.starts_with('/') {
            let mut active = FieldErrors::default();
            active.add("http_path", "should start with: /");
            let mut checks = FieldErrors::default();
            checks.nest("active", active);
            errors.nest("healthchecks", checks);
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: Some(self.name.clone()),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

/// An upstream's name is a host name: not an address, no port (Kong's `validate_name`).
fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("no ip addresses allowed");
    }
    if let Some((host, port)) = name.rsplit_once(':') {
        if valid_host(host) && port.parse::<u16>().is_ok() {
            return Err("no port allowed");
        }
    }
    if valid_host(name) {
        Ok(())
    } else {
        Err("must be a valid hostname")
    }
}

fn valid_host_with_port(h: &str) -> bool {
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            valid_host(host) && port.parse::<u16>().is_ok()
        }
        _ => valid_host(h),
    }
}

/// Kong's `typedefs.header_name`.
pub fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Kong's `typedefs.cookie_name` (RFC 6265 token characters).
fn valid_cookie_name(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b > 32 && b < 127 && !b"()<>@,;:\\\"/?={}[]".contains(&b))
}

/// Kong's entity checks on the hashing fields (the `conditional` and `distinct` checks of
/// upstreams.lua), on the merged body: a failed one names the field with its own message,
/// replacing the field's type error, as Kong answers.
fn hash_checks(body: &Map<String, Value>, errors: &mut FieldErrors) {
    let get = |f: &str| body.get(f).and_then(Value::as_str);
    let on = get("hash_on").unwrap_or("none");
    let fallback = get("hash_fallback").unwrap_or("none");
    let mut fail = |given: &str, field: &str, message: String| {
        errors.add(
            "@entity",
            format!("failed conditional validation given value of field '{given}'"),
        );
        errors.set(field, message);
    };
    let required = |f: &str| get(f).is_none();
    for (given, value) in [("hash_on", on), ("hash_fallback", fallback)] {
        let needs = match value {
            "header" if given == "hash_on" => Some("hash_on_header"),
            "header" => Some("hash_fallback_header"),
            "cookie" => Some("hash_on_cookie"),
            "query_arg" if given == "hash_on" => Some("hash_on_query_arg"),
            "query_arg" => Some("hash_fallback_query_arg"),
            "uri_capture" if given == "hash_on" => Some("hash_on_uri_capture"),
            "uri_capture" => Some("hash_fallback_uri_capture"),
            _ => None,
        };
        if let Some(f) = needs.filter(|f| required(f)) {
            fail(given, f, "required field missing".into());
        }
    }
    let allowed: Option<Vec<&str>> = match on {
        "none" | "cookie" => Some(vec!["none"]),
        "consumer" | "ip" | "path" => Some(HASH_ON.iter().copied().filter(|h| *h != on).collect()),
        _ => None,
    };
    if let Some(allowed) = allowed.filter(|a| !a.contains(&fallback)) {
        fail(
            "hash_on",
            "hash_fallback",
            format!("expected one of: {}", allowed.join(", ")),
        );
    }
    for (a, b) in [
        ("hash_on_header", "hash_fallback_header"),
        ("hash_on_query_arg", "hash_fallback_query_arg"),
        ("hash_on_uri_capture", "hash_fallback_uri_capture"),
    ] {
        if get(a).is_some() && get(a) == get(b) {
            errors.add(
                "@entity",
                format!("values of these fields must be distinct: '{a}', '{b}'"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{normalized_body, Kind};
    use serde_json::json;

    fn up(v: serde_json::Value) -> Result<serde_json::Value, String> {
        normalized_body(Kind::Upstream, v)
    }

    #[test]
    fn defaults_are_kongs() {
        let b = up(json!({"name": "my.upstream"})).unwrap();
        assert_eq!(b["slots"], 10000);
        assert_eq!(b["algorithm"], "round-robin");
        assert_eq!(b["hash_on"], "none");
        assert_eq!(b["hash_on_cookie_path"], "/");
        let hc = &b["healthchecks"];
        assert_eq!(hc["active"]["healthy"]["http_statuses"], json!([200, 302]));
        assert_eq!(hc["active"]["timeout"], 1.0);
        assert_eq!(
            hc["passive"]["unhealthy"]["http_statuses"],
            json!([429, 500, 503])
        );
        assert!(hc["passive"]["healthy"].get("interval").is_none());
        assert_eq!(hc["passive"]["type"], "http");
        assert_eq!(hc["threshold"], 0.0);
    }

    #[test]
    fn hashing_implies_the_algorithm() {
        let b = up(json!({"name": "u", "hash_on": "ip"})).unwrap();
        assert_eq!(b["algorithm"], "consistent-hashing");
        let b = up(json!({"name": "u", "algorithm": "least-connections"})).unwrap();
        assert_eq!(b["hash_on"], "none");
    }

    #[test]
    fn nested_health_check_errors_name_their_path() {
        let e = up(json!({"name": "u", "healthchecks": {"active": {"healthy": {"interval": -1}}}}))
            .unwrap_err();
        assert_eq!(
            e,
            "schema violation (healthchecks.active.healthy.interval: value should be between 0 and 65535)"
        );
    }
}
