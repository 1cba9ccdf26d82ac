//! hmac-auth: identifies the consumer by an HMAC signature over chosen request headers, as
//! Kong's plugin does (kong/plugins/hmac-auth/access.lua): the `Authorization` (or
//! `Proxy-Authorization`) header names the credential, the algorithm, the signed headers and
//! the signature; `Date` or `X-Date` must be within `clock_skew` of now; with
//! `validate_request_body` the `Digest` header must be the body's SHA-256.
use super::auth::{identify, owner, Fallback, Owner};
use super::{get_bool, get_strings, Access, Context, Flow, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use base64::Engine;
use http::HeaderName;
use ring::hmac;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, LazyLock};

pub const SPEC: PluginSpec = PluginSpec {
    name: "hmac-auth",
    priority: 1030,
    no_consumer: true,
    fields: &[
        field("hide_credentials", Ty::Bool),
        field("clock_skew", Ty::Above(0.0)),
        field("anonymous", Ty::Str),
        field("validate_request_body", Ty::Bool),
        field("enforce_headers", Ty::StrArray),
        field("algorithms", Ty::StrArray),
        field("realm", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

const ALGORITHMS: [&str; 4] = ["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"];

fn defaults() -> Map<String, Value> {
    let v = json!({
        "hide_credentials": false, "clock_skew": 300, "anonymous": null,
        "validate_request_body": false, "enforce_headers": [], "algorithms": ALGORITHMS,
        "realm": null,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let bad = get_strings(c, "algorithms")
        .iter()
        .map(|a| {
            (!ALGORITHMS.contains(&a.as_str()))
                .then(|| format!("expected one of: {}", ALGORITHMS.join(", ")))
        })
        .collect();
    errors.elements("algorithms", bad);
}

const CANNOT_VERIFY: &str = "HMAC signature cannot be verified";
const NO_DATE: &str = "HMAC signature cannot be verified, a valid date or x-date header is \
                       required for HMAC Authentication";
const MISMATCH: &str = "HMAC signature does not match";

struct HmacAuth {
    hide_credentials: bool,
    clock_skew: f64,
    validate_request_body: bool,
    enforce_headers: Vec<String>,
    algorithms: Vec<String>,
    fallback: Fallback,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    Ok(Arc::new(HmacAuth {
        hide_credentials: get_bool(c, "hide_credentials"),
        clock_skew: c.get("clock_skew").and_then(Value::as_f64).unwrap_or(300.0),
        validate_request_body: get_bool(c, "validate_request_body"),
        enforce_headers: get_strings(c, "enforce_headers"),
        algorithms: get_strings(c, "algorithms"),
        fallback: Fallback::of(c, "hmac")?,
    }))
}

/// The fields of an `hmac username="..", algorithm="..", headers="..", signature=".."` value.
struct Params {
    username: String,
    algorithm: String,
    headers: Vec<String>,
    signature: String,
}

/// Kong's pattern for the header, matched with the same leftmost-first, greedy semantics.
static PARAMS: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r#"\s*[Hh]mac\s*username="(.+)",\s*algorithm="(.+)",\s*headers="(.+)",\s*signature="(.+)""#,
    )
    .expect("the pattern compiles")
});

fn params(value: Option<&http::HeaderValue>) -> Option<Params> {
    let text = value?.to_str().ok()?;
    let m = PARAMS.captures(text)?;
    Some(Params {
        username: m[1].to_string(),
        algorithm: m[2].to_string(),
        headers: m[3].split(' ').map(String::from).collect(),
        signature: m[4].to_string(),
    })
}

impl Handler for HmacAuth {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        if self.fallback.already_authenticated(ctx) {
            return Access::Now(Flow::Continue);
        }
        let signed = match self.check_signature(ctx) {
            Ok(owner) => owner,
            Err(message) => return Access::Now(self.fallback.unauthorized(ctx, message)),
        };
        if !self.validate_request_body {
            identify(ctx, signed);
            return Access::Now(Flow::Continue);
        }
        Access::Later(Box::pin(async move {
            let digest = ctx.parts.headers.get("digest").cloned();
            match ctx.body().await {
                Ok(body) if body_matches(digest.as_ref(), body) => {
                    identify(ctx, signed);
                    Flow::Continue
                }
                Ok(_) => self.fallback.unauthorized(ctx, MISMATCH),
                Err(reply) => Flow::Respond(reply),
            }
        }))
    }
}

impl HmacAuth {
    /// The credential whose signature the request carries, or Kong's message for why not.
    fn check_signature(&self, ctx: &mut Context<'_>) -> Result<Owner, &'static str> {
        let headers = &ctx.parts.headers;
        let (plain, proxy) = (
            headers.get(http::header::AUTHORIZATION),
            headers.get(http::header::PROXY_AUTHORIZATION),
        );
        if plain.is_none() && proxy.is_none() {
            return Err("Unauthorized");
        }
        let now = ctx.now_ms as f64 / 1000.0;
        if !["x-date", "date"]
            .iter()
            .any(|h| within_skew(headers.get(*h), now, self.clock_skew))
        {
            return Err(NO_DATE);
        }
        let (found, header) = match params(proxy) {
            Some(p) => (Some(p), http::header::PROXY_AUTHORIZATION),
            None => (params(plain), http::header::AUTHORIZATION),
        };
        if self.hide_credentials && found.is_some() {
            ctx.set_upstream_header(header, None);
        }
        let p = found.ok_or(CANNOT_VERIFY)?;
        if !self.acceptable(&p) {
            return Err(CANNOT_VERIFY);
        }
        let credential = ctx
            .snapshot
            .consumers
            .hmac(&p.username)
            .ok_or(CANNOT_VERIFY)?;
        let text = signing_string(ctx.parts, &p.headers);
        let algorithm = match p.algorithm.as_str() {
            "hmac-sha1" => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            "hmac-sha256" => hmac::HMAC_SHA256,
            "hmac-sha384" => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA512,
        };
        let key = hmac::Key::new(algorithm, credential.secret.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&p.signature)
            .map_err(|_| MISMATCH)?;
        hmac::verify(&key, text.as_bytes(), &signature).map_err(|_| MISMATCH)?;
        Ok(owner(&credential.credential))
    }

    /// Kong's `validate_params`: every enforced header signed, an algorithm this instance takes.
    fn acceptable(&self, p: &Params) -> bool {
        self.enforce_headers.iter().all(|h| p.headers.contains(h))
            && self.algorithms.contains(&p.algorithm)
    }
}

/// Whether the date in `value` is within `skew` seconds of `now`.
fn within_skew(value: Option<&http::HeaderValue>, now: f64, skew: f64) -> bool {
    let Some(date) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    let at = date
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64);
    (now - at).abs() <= skew
}

/// The text the client signed: each named header as `name: value`, `@request-target` as the
/// lowercase method and target, `request-line` as the request line; one per line.
fn signing_string(parts: &http::request::Parts, names: &[String]) -> String {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let lines: Vec<String> = names
        .iter()
        .map(|name| {
            let value = HeaderName::try_from(name.as_str())
                .ok()
                .and_then(|h| parts.headers.get(h))
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            match (value, name.as_str()) {
                (Some(v), _) => format!("{name}: {v}"),
                (None, "@request-target") => {
                    format!("{name}: {} {target}", parts.method.as_str().to_lowercase())
                }
                (None, "request-line") => {
                    format!("{} {target} {}", parts.method, version(parts.version))
                }
                (None, _) => format!("{name}:"),
            }
        })
        .collect();
    lines.join("\n")
}

/// The HTTP version as Kong formats it in a request line (`HTTP/1.1`, `HTTP/2.0`).
fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// Kong's body check: `Digest: SHA-256=<base64 of the body's SHA-256>`, or an empty body
/// when no digest was sent.
fn body_matches(digest: Option<&http::HeaderValue>, body: &[u8]) -> bool {
    match digest {
        None => body.is_empty(),
        Some(d) => {
            let made = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
            d.as_bytes() == format!("SHA-256={made}").as_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::checked_config;
    use serde_json::json;

    // spec/03-plugins/19-hmac-auth/01-schema_spec.lua, every case.
    #[test]
    fn the_schema_takes_and_refuses_what_kongs_does() {
        assert!(
            checked_config("hmac-auth", json!({})).is_ok(),
            ":5 empty config"
        );
        assert!(
            checked_config("hmac-auth", json!({"clock_skew": 10})).is_ok(),
            ":10"
        );
        let err = checked_config("hmac-auth", json!({"clock_skew": -10})).unwrap_err();
        assert_eq!(err["clock_skew"], "value must be greater than 0", ":15");
        let err = checked_config("hmac-auth", json!({"algorithms": ["sha1024"]})).unwrap_err();
        assert_eq!(
            err["algorithms"],
            json!(["expected one of: hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512"]),
            ":20"
        );
    }
}
