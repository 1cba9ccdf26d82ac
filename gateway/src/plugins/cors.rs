//! cors: Kong's plugin (kong/plugins/cors/handler.lua). A preflight (`OPTIONS` with `Origin`
//! and `Access-Control-Request-Method`) is answered by the gateway, 200 with no body, unless
//! `preflight_continue` sends it upstream; every other response gets
//! `Access-Control-Allow-Origin` (and credentials, exposed headers) as Kong computes them: `*`
//! when any origin is allowed, a single flat origin as configured, else the request's origin
//! when an entry matches it (flat entries by scheme, host and port; regex entries, anchored,
//! on the host alone unless they name a port), with `Vary: Origin`; an upstream's own
//! `Access-Control-Allow-Origin` is removed when nothing matches.
use super::{get_bool, get_strings, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use regex::Regex;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const METHODS: &[&str] = &[
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

pub const SPEC: PluginSpec = PluginSpec {
    name: "cors",
    priority: 2000,
    no_consumer: true,
    fields: &[
        field("origins", Ty::StrArray),
        field("headers", Ty::StrArray),
        field("exposed_headers", Ty::StrArray),
        field("methods", Ty::StrArray),
        field(
            "max_age",
            Ty::Number {
                min: 0.0,
                max: f64::MAX,
            },
        ),
        field("credentials", Ty::Bool),
        field("private_network", Ty::Bool),
        field("preflight_continue", Ty::Bool),
        field("allow_origin_absent", Ty::Bool),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({
        "origins": null, "headers": null, "exposed_headers": null, "methods": METHODS,
        "max_age": null, "credentials": false, "private_network": false,
        "preflight_continue": false, "allow_origin_absent": true,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let origins = get_strings(c, "origins")
        .iter()
        .map(|o| {
            (o != "*" && crate::model::schema::check_regex(o).is_err())
                .then(|| format!("'{o}' is not a valid regex"))
        })
        .collect();
    errors.elements("origins", origins);
    let methods = get_strings(c, "methods")
        .iter()
        .map(|m| {
            (!METHODS.contains(&m.as_str()))
                .then(|| format!("expected one of: {}", METHODS.join(", ")))
        })
        .collect();
    errors.elements("methods", methods);
}

/// One entry of `origins`, ready to compare: a flat origin (normalized) or an anchored regex,
/// matched on the host alone when it names no port.
enum Allowed {
    Domain(String),
    Regex { re: Regex, by_host: bool },
}

/// Which origins may read the responses.
enum Origins {
    /// No list, or `*` alone (or a list holding `*`, once the request names an origin).
    Any,
    /// One flat origin: always that one, whatever the request's.
    Fixed(HeaderValue),
    List {
        entries: Vec<Allowed>,
        star: bool,
    },
}

struct Cors {
    origins: Origins,
    headers: Option<HeaderValue>,
    exposed_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let joined = |k: &str| -> Result<Option<HeaderValue>, String> {
        let list = get_strings(c, k);
        if list.is_empty() {
            return Ok(None);
        }
        HeaderValue::from_str(&list.join(","))
            .map(Some)
            .map_err(|e| format!("{k}: {e}"))
    };
    let methods = joined("methods")?.unwrap_or_else(|| {
        HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
    });
    let max_age = c.get("max_age").and_then(Value::as_f64).map(|n| {
        let text = if n.fract() == 0.0 {
            format!("{n:.0}")
        } else {
            n.to_string()
        };
        HeaderValue::from_str(&text).expect("a number is a header value")
    });
    Ok(Arc::new(Cors {
        origins: origins(&get_strings(c, "origins"))?,
        headers: joined("headers")?,
        exposed_headers: joined("exposed_headers")?,
        methods,
        max_age,
        credentials: get_bool(c, "credentials"),
        private_network: get_bool(c, "private_network"),
        preflight_continue: get_bool(c, "preflight_continue"),
        allow_origin_absent: get_bool(c, "allow_origin_absent"),
    }))
}

/// Kong's reading of `origins` (`configure_origin`): what looks like more than a plain origin
/// (a character outside `A-Za-z0-9.:/-`) is a regex, anchored as Kong anchors it.
fn origins(list: &[String]) -> Result<Origins, String> {
    let flat = |o: &str| {
        !o.is_empty()
            && o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:/-".contains(&b))
    };
    match list {
        [] => return Ok(Origins::Any),
        [only] if only == "*" => return Ok(Origins::Any),
        [only] if flat(only) => {
            let value = HeaderValue::from_str(only).map_err(|e| format!("origins: {e}"))?;
            return Ok(Origins::Fixed(value));
        }
        _ => {}
    }
    let mut entries = Vec::new();
    for o in list.iter().filter(|o| *o != "*") {
        let by_host = !o.contains(':');
        if flat(o) {
            entries.push(Allowed::Domain(normalize(o).0));
            continue;
        }
        let mut pattern = o.strip_prefix('^').unwrap_or(o).to_string();
        if !pattern.ends_with('$') {
            pattern.push('$');
        }
        let re = Regex::new(&format!("^(?:{pattern})")).map_err(|e| e.to_string())?;
        entries.push(Allowed::Regex { re, by_host });
    }
    Ok(Origins::List {
        entries,
        star: list.iter().any(|o| o == "*"),
    })
}

/// An origin as Kong normalizes it: `(scheme://host[:port], host)`, the scheme's default port
/// left out; without a scheme, the text itself for both.
fn normalize(origin: &str) -> (String, String) {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return (origin.to_string(), origin.to_string());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = port.filter(|p| !matches!((scheme, *p), ("http", "80") | ("https", "443")));
    let domain = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    (domain, host.to_string())
}

/// A header change for the response, in the order Kong makes them.
enum Op {
    Set(HeaderName, HeaderValue),
    /// `Vary: Origin` on a proxied response goes beside the upstream's own `Vary`.
    Add(HeaderName, HeaderValue),
    Remove(HeaderName),
}

fn apply(ops: &[Op], headers: &mut HeaderMap) {
    for op in ops {
        match op {
            Op::Set(n, v) => {
                headers.insert(n, v.clone());
            }
            Op::Add(n, v) => {
                headers.append(n, v.clone());
            }
            Op::Remove(n) => {
                headers.remove(n);
            }
        }
    }
}

impl Cors {
    /// `Access-Control-Allow-Origin` for a request from `origin` (Kong's `configure_origin`);
    /// whether every origin is allowed.
    fn allow_origin(&self, origin: Option<&str>, proxied: bool, ops: &mut Vec<Op>) -> bool {
        let any = || HeaderValue::from_static("*");
        let (entries, star) = match &self.origins {
            Origins::Any => {
                ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_ORIGIN, any()));
                return true;
            }
            Origins::Fixed(value) => {
                ops.push(vary(proxied));
                ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone()));
                return false;
            }
            Origins::List { entries, star } => (entries, *star),
        };
        ops.push(vary(proxied));
        if let Some(origin) = origin {
            if star {
                ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_ORIGIN, any()));
                return true;
            }
            let (domain, host) = normalize(origin);
            let matched = entries.iter().any(|e| match e {
                Allowed::Domain(d) => *d == domain,
                Allowed::Regex { re, by_host } => {
                    re.is_match(if *by_host { &host } else { &domain })
                }
            });
            if let (true, Ok(value)) = (matched, HeaderValue::from_str(&domain)) {
                ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_ORIGIN, value));
                return false;
            }
        }
        ops.push(Op::Remove(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        false
    }

    /// Kong's `configure_credentials`: with credentials, `*` becomes the request's origin.
    fn allow_credentials(&self, all: bool, origin: Option<&str>, proxied: bool, ops: &mut Vec<Op>) {
        if !self.credentials {
            return;
        }
        let yes = || HeaderValue::from_static("true");
        if !all {
            ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, yes()));
            return;
        }
        if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
            ops.push(vary(proxied));
            ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_ORIGIN, value));
            ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, yes()));
        }
    }

    /// The gateway's answer to a preflight.
    fn preflight(&self, request: &HeaderMap, origin: &str) -> Reply {
        let mut ops = Vec::new();
        let all = self.allow_origin(Some(origin), false, &mut ops);
        self.allow_credentials(all, Some(origin), false, &mut ops);
        let requested = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if let Some(h) = self.headers.as_ref().or(requested) {
            ops.push(Op::Set(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
        }
        ops.push(Op::Set(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods.clone(),
        ));
        if let Some(age) = &self.max_age {
            ops.push(Op::Set(header::ACCESS_CONTROL_MAX_AGE, age.clone()));
        }
        let private = request
            .get("access-control-request-private-network")
            .is_some_and(|v| v == "true");
        if self.private_network && private {
            let name = HeaderName::from_static("access-control-allow-private-network");
            ops.push(Op::Set(name, HeaderValue::from_static("true")));
        }
        let mut headers = HeaderMap::new();
        apply(&ops, &mut headers);
        Reply::bodyless(StatusCode::OK, headers)
    }

    /// What the response to an ordinary request gets (Kong's `header_filter`).
    fn response_ops(&self, origin: Option<&str>) -> Vec<Op> {
        let mut ops = Vec::new();
        if origin.is_none() && !self.allow_origin_absent {
            return ops;
        }
        let all = self.allow_origin(origin, true, &mut ops);
        self.allow_credentials(all, origin, true, &mut ops);
        if let Some(exposed) = &self.exposed_headers {
            ops.push(Op::Set(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                exposed.clone(),
            ));
        }
        ops
    }
}

fn vary(proxied: bool) -> Op {
    let origin = HeaderValue::from_static("Origin");
    match proxied {
        true => Op::Add(header::VARY, origin),
        false => Op::Set(header::VARY, origin),
    }
}

/// The header changes one request's response gets.
struct CorsResponse(Vec<Op>);

impl Handler for CorsResponse {
    fn on_response(&self) -> bool {
        true
    }

    fn header_filter(&self, response: &mut http::response::Parts) {
        apply(&self.0, &mut response.headers);
    }
}

impl Handler for Cors {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let headers = &ctx.parts.headers;
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .filter(|o| !o.is_empty());
        let preflight = ctx.parts.method == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        match (preflight, origin) {
            // Delegated to the upstream, which answers it with its own headers.
            (true, Some(_)) if self.preflight_continue => {}
            (true, Some(origin)) => {
                return Access::Now(Flow::Respond(self.preflight(headers, origin)));
            }
            _ => {
                let ops = self.response_ops(origin);
                if !ops.is_empty() {
                    ctx.response_plugins.push(Arc::new(CorsResponse(ops)));
                }
            }
        }
        Access::Now(Flow::Continue)
    }
}

#[cfg(test)]
mod tests;
