//! rate-limiting: fixed windows per period, Kong's config, headers, and 429 body.
//!
//! Each configured period (`second` … `year`) has its own counter per identifier (consumer,
//! credential, IP, service, header or path, falling back to the client IP), in windows aligned
//! to the clock. A request is counted only when no window is full, so the number let through in
//! a window is exactly the limit. Counters live in this node (`local`) or in Redis (`redis`).
mod local;
pub(crate) mod redis;
pub mod windows;

pub use self::local::Counters;
use self::local::Window;
pub use self::redis::Links;
use self::windows::Period;
use super::context::AddedHeaders;
use super::{
    get_bool, get_str, get_u64, Access, Context, Flow, Handler, PluginSpec, Reply, Shared,
};
use crate::header_numbers;
use crate::model::schema::{self, field, Field, FieldErrors, Ty};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One item per configured period: at most six, so kept inline (no allocation per request).
pub type PerWindow<T> = smallvec::SmallVec<[T; 6]>;

const LIMIT: Ty = Ty::Int {
    min: 1,
    max: i64::MAX,
};
const LIMIT_BY: &[&str] = &["consumer", "credential", "ip", "service", "header", "path"];

pub const SPEC: PluginSpec = PluginSpec {
    name: "rate-limiting",
    priority: 910,
    no_consumer: false,
    fields: &[
        field("second", LIMIT),
        field("minute", LIMIT),
        field("hour", LIMIT),
        field("day", LIMIT),
        field("month", LIMIT),
        field("year", LIMIT),
        field("limit_by", Ty::Enum(LIMIT_BY)),
        field("header_name", Ty::Str),
        field("path", Ty::Str),
        field("policy", Ty::Enum(&["local", "cluster", "redis"])),
        field("fault_tolerant", Ty::Bool),
        field("hide_client_headers", Ty::Bool),
        field("error_code", Ty::Int { min: 100, max: 599 }),
        field("error_message", Ty::Str),
        field(
            "sync_rate",
            Ty::Int {
                min: -1,
                max: 86_400,
            },
        ),
        field("redis", Ty::Object),
        // Kong 2.x spelled the Redis settings flat; both are read.
        field("redis_host", Ty::Str),
        field("redis_port", PORT),
        field("redis_username", Ty::Str),
        field("redis_password", Ty::Str),
        field("redis_database", DATABASE),
        field("redis_timeout", TIMEOUT),
    ],
    defaults,
    validate,
    build,
};

const PORT: Ty = Ty::Int {
    min: 0,
    max: 65_535,
};
const DATABASE: Ty = Ty::Int {
    min: 0,
    max: 1_000_000,
};
const TIMEOUT: Ty = Ty::Int {
    min: 0,
    max: 2_147_483_646,
};
pub(crate) const REDIS_FIELDS: &[Field] = &[
    field("host", Ty::Str),
    field("port", PORT),
    field("username", Ty::Str),
    field("password", Ty::Str),
    field("database", DATABASE),
    field("timeout", TIMEOUT),
];

/// Kong's defaults for the `redis` record.
pub(crate) const REDIS_DEFAULTS: [(&str, u64); 3] =
    [("port", 6379), ("database", 0), ("timeout", 2000)];

fn redis_default(key: &str) -> u64 {
    REDIS_DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| *v)
}

fn defaults() -> Map<String, Value> {
    let redis: Map<String, Value> = REDIS_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let v = json!({
        "limit_by": "consumer", "policy": "local", "fault_tolerant": true,
        "hide_client_headers": false, "error_code": 429,
        "error_message": "API rate limit exceeded", "sync_rate": -1,
        "redis": redis,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    if let Some(Value::Object(redis)) = c.get_mut("redis") {
        errors.nest("redis", schema::check(REDIS_FIELDS, redis, true));
        for (k, v) in REDIS_DEFAULTS {
            redis.entry(k).or_insert(v.into());
        }
    }
    let limits: Vec<(Period, u64)> = configured(c);
    if limits.is_empty() {
        errors.add(
            "@entity",
            "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'",
        );
    }
    for pair in limits.windows(2) {
        let ((lower, low), (upper, up)) = (pair[0], pair[1]);
        if up < low {
            errors.add(
                upper.name(),
                format!(
                    "The limit for {}({up}) cannot be lower than the limit for {}({low})",
                    upper.name(),
                    lower.name()
                ),
            );
        }
    }
    for (mode, field) in [("header", "header_name"), ("path", "path")] {
        if get_str(c, "limit_by") == Some(mode) && get_str(c, field).is_none() {
            errors.add(
                field,
                format!("required field missing (limit_by is '{mode}')"),
            );
        }
    }
    if get_str(c, "policy") == Some("cluster") {
        errors.add(
            "policy",
            "the 'cluster' policy (counters in the config database) is not supported; use 'local' or 'redis'",
        );
    }
}

/// The periods with a limit, shortest first.
fn configured(c: &Map<String, Value>) -> Vec<(Period, u64)> {
    Period::ALL
        .iter()
        .filter_map(|p| get_u64(c, p.name()).map(|l| (*p, l)))
        .collect()
}

enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header(HeaderName),
    Path(String),
}

enum Policy {
    Local,
    /// `None` when neither the config nor `TOLLGATE_REDIS_URL` names a server.
    Redis(Option<(Arc<redis::Link>, Duration)>),
}

struct RateLimiting {
    limits: Vec<(Period, u64)>,
    /// Each limit as a header value, made once.
    limit_values: Vec<HeaderValue>,
    limit_by: LimitBy,
    policy: Policy,
    /// `route:service` of the instance, as Kong prefixes its counters.
    scope: String,
    fault_tolerant: bool,
    hide_client_headers: bool,
    error_code: StatusCode,
    error_message: String,
    shared: Arc<Shared>,
}

fn build(
    c: &Map<String, Value>,
    scope: &super::chain::Scope,
    shared: &Arc<Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let nil = uuid::Uuid::nil();
    let limit_by = match get_str(c, "limit_by").unwrap_or("consumer") {
        "credential" => LimitBy::Credential,
        "ip" => LimitBy::Ip,
        "service" => LimitBy::Service,
        "header" => LimitBy::Header(
            HeaderName::try_from(get_str(c, "header_name").unwrap_or_default())
                .map_err(|e| format!("header_name: {e}"))?,
        ),
        "path" => LimitBy::Path(get_str(c, "path").unwrap_or_default().to_string()),
        _ => LimitBy::Consumer,
    };
    let policy = match get_str(c, "policy") {
        Some("redis") => Policy::Redis(
            redis_target(c, shared.default_redis_url.as_deref())
                .map(|t| (shared.redis.get(&t), t.timeout)),
        ),
        _ => Policy::Local,
    };
    let limits = configured(c);
    Ok(Arc::new(RateLimiting {
        limit_values: limit_values(&limits),
        limits,
        limit_by,
        policy,
        scope: format!(
            "{}:{}",
            scope.route.unwrap_or(nil),
            scope.service.unwrap_or(nil)
        ),
        fault_tolerant: get_bool(c, "fault_tolerant"),
        hide_client_headers: get_bool(c, "hide_client_headers"),
        error_code: get_u64(c, "error_code")
            .and_then(|n| StatusCode::from_u16(n as u16).ok())
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
        error_message: get_str(c, "error_message")
            .unwrap_or("API rate limit exceeded")
            .into(),
        shared: shared.clone(),
    }))
}

/// The Redis server from `config.redis` or Kong 2.x's `redis_*` (which win when given: they
/// are never defaulted), else the node's default.
pub(crate) fn redis_target(
    c: &Map<String, Value>,
    default_url: Option<&str>,
) -> Option<redis::Target> {
    let empty = Map::new();
    let r = c.get("redis").and_then(Value::as_object).unwrap_or(&empty);
    let given = |v: &&Value| !v.is_null();
    let pick = |k: &str| {
        c.get(&format!("redis_{k}"))
            .filter(given)
            .or_else(|| r.get(k).filter(given))
    };
    let text = |k: &str| pick(k).and_then(Value::as_str);
    let number = |k: &str| {
        pick(k)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| redis_default(k))
    };
    let timeout = Duration::from_millis(number("timeout"));
    let Some(host) = text("host") else {
        let url = default_url?;
        return Some(redis::Target {
            url: url.into(),
            name: "TOLLGATE_REDIS_URL".into(),
            timeout,
        });
    };
    let (port, db) = (number("port"), number("database"));
    let auth = match (text("username"), text("password")) {
        (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
        (None, Some(p)) => format!(":{}@", enc(p)),
        _ => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(redis::Target {
        url: format!("redis://{auth}{host}:{port}/{db}"),
        name: format!("{host}:{port}/{db}"),
        timeout,
    })
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Handler for RateLimiting {
    /// Counts the request; the local policy decides at once, Redis' after a round trip.
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let now = (ctx.now_ms / 1000) as i64;
        let identifier = self.identifier(ctx);
        let windows = windows_at(&self.limits, now);
        let link = match &self.policy {
            Policy::Local => {
                let counted = self.shared.rate_limits.check_and_count(
                    &self.scope,
                    &identifier,
                    &windows,
                    now,
                );
                return Access::Now(self.decide(ctx, &windows, counted, now));
            }
            Policy::Redis(link) => link,
        };
        let subject = local::subject_name(&self.scope, &identifier);
        Access::Later(Box::pin(async move {
            let counted = match link {
                Some((link, timeout)) => {
                    link.check_and_count(&subject, &windows, *timeout, ctx.now_ms as i64).await
                }
                None => Err("policy is redis but no Redis is configured (config.redis.host or TOLLGATE_REDIS_URL)".into()),
            };
            match counted {
                Ok(counted) => self.decide(ctx, &windows, counted, now),
                Err(e) => self.redis_failed(&e, ctx.now_ms as i64),
            }
        }))
    }
}

impl RateLimiting {
    /// Lets the request pass with Kong's headers, or refuses it, given each window's usage
    /// before it and whether it was counted.
    fn decide(
        &self,
        ctx: &mut Context<'_>,
        windows: &[Window],
        (usage, allowed): (PerWindow<u64>, bool),
        now: i64,
    ) -> Flow {
        let mut refused = AddedHeaders::new();
        let out = match (self.hide_client_headers, allowed) {
            (true, _) => None,
            (false, true) => Some(&mut ctx.response_headers),
            (false, false) => Some(&mut refused),
        };
        let reset = rate_headers(windows, &self.limit_values, &usage, allowed, now, out);
        if allowed {
            return Flow::Continue;
        }
        let mut headers = HeaderMap::with_capacity(refused.len() + 1);
        super::context::apply(refused, &mut headers);
        // Kong's handler sends Retry-After only when client headers are not hidden.
        if !self.hide_client_headers {
            headers.insert(http::header::RETRY_AFTER, header_numbers::value(reset));
        }
        let mut reply = Reply::new(self.error_code, self.error_message.clone());
        reply.headers = headers;
        Flow::Respond(reply)
    }

    /// Kong's identifier for `limit_by`, falling back to the client's IP when it is missing.
    fn identifier<'a>(&'a self, ctx: &'a Context<'_>) -> Cow<'a, str> {
        let credential = || ctx.credential.as_ref().map(|c| Cow::from(&*c.text));
        let found = match &self.limit_by {
            LimitBy::Consumer => ctx
                .consumer
                .as_ref()
                .map(|c| Cow::from(&*c.id_text))
                .or_else(credential),
            LimitBy::Credential => credential(),
            LimitBy::Service => ctx.service_id.map(|id| Cow::from(id.to_string())),
            LimitBy::Header(name) => ctx
                .header(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            LimitBy::Path(path) => (ctx.parts.uri.path() == path).then_some(Cow::from(path)),
            LimitBy::Ip => None,
        };
        found.unwrap_or_else(|| Cow::from(ctx.client_ip.to_string()))
    }

    fn redis_failed(&self, error: &str, now_ms: i64) -> Flow {
        self.shared.redis.errors.fetch_add(1, Ordering::Relaxed);
        if self.shared.redis.should_log(now_ms) {
            tracing::error!(
                error,
                fault_tolerant = self.fault_tolerant,
                "rate-limiting: Redis failed"
            );
        }
        if self.fault_tolerant {
            Flow::Continue
        } else {
            Flow::Respond(Reply::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error occurred",
            ))
        }
    }
}

/// Each limit as a header value, for `rate_headers`.
fn limit_values(limits: &[(Period, u64)]) -> Vec<HeaderValue> {
    limits
        .iter()
        .map(|&(_, l)| header_numbers::value(l))
        .collect()
}

/// Each limit's window containing `now` (Unix seconds).
fn windows_at(limits: &[(Period, u64)], now: i64) -> PerWindow<Window> {
    limits
        .iter()
        .map(|&(period, limit)| {
            let (start, end) = period.window(now);
            Window {
                period,
                limit,
                start,
                end,
            }
        })
        .collect()
}

/// Kong's headers, written to `out` when given: limit (`limit_values`, one per window) and
/// remaining per period, and `RateLimit-*` for the window with the fewest requests left (the
/// longer one on a tie). Returns that window's reset, in seconds.
fn rate_headers(
    windows: &[Window],
    limit_values: &[HeaderValue],
    usage: &[u64],
    allowed: bool,
    now: i64,
    mut out: Option<&mut AddedHeaders>,
) -> u64 {
    if let Some(h) = out.as_deref_mut() {
        h.reserve(2 * windows.len() + 3);
    }
    let stop = (!allowed)
        .then(|| windows.iter().zip(usage).position(|(w, u)| *u >= w.limit))
        .flatten();
    // (window, remaining, length, reset)
    let mut best: Option<(usize, u64, i64, i64)> = None;
    for (i, (w, used)) in windows.iter().zip(usage).enumerate() {
        let mut remaining = w.limit.saturating_sub(*used);
        if allowed || stop == Some(i) {
            remaining = remaining.saturating_sub(1);
        }
        if let Some(h) = out.as_deref_mut() {
            let (limit_name, remaining_name) = w.period.header_names();
            h.push((limit_name.clone(), limit_values[i].clone()));
            h.push((remaining_name.clone(), header_numbers::value(remaining)));
        }
        let len = w.end - w.start;
        if best.is_none_or(|(_, r, l, _)| remaining < r || (remaining == r && len > l)) {
            best = Some((i, remaining, len, (w.end - now).max(1)));
        }
    }
    let Some((i, remaining, _, reset)) = best else {
        return 1;
    };
    let reset = reset as u64;
    if let Some(h) = out {
        h.push((RATELIMIT_LIMIT, limit_values[i].clone()));
        h.push((RATELIMIT_REMAINING, header_numbers::value(remaining)));
        h.push((RATELIMIT_RESET, header_numbers::value(reset)));
    }
    reset
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        h.get(name).unwrap().to_str().unwrap()
    }

    /// `rate_headers` for `limits` at `now`, with each window's usage.
    fn headers(
        limits: &[(Period, u64)],
        usage: &[u64],
        allowed: bool,
        now: i64,
    ) -> (HeaderMap, u64) {
        let w = windows_at(limits, now);
        let mut added = AddedHeaders::new();
        let values = limit_values(limits);
        let reset = rate_headers(&w, &values, usage, allowed, now, Some(&mut added));
        (added.into_iter().collect(), reset)
    }

    #[test]
    fn headers_name_the_window_with_fewest_requests_left() {
        let now = 7200 + 1800; // half an hour into an hour
        let (h, reset) = headers(
            &[(Period::Second, 4), (Period::Hour, 1200)],
            &[3, 3],
            true,
            now,
        );
        assert_eq!(get(&h, "x-ratelimit-limit-hour"), "1200");
        assert_eq!(get(&h, "x-ratelimit-remaining-second"), "0");
        assert_eq!(get(&h, "x-ratelimit-remaining-hour"), "1196");
        assert_eq!(
            (get(&h, "ratelimit-limit"), get(&h, "ratelimit-remaining")),
            ("4", "0")
        );
        assert_eq!((get(&h, "ratelimit-reset"), reset), ("1", 1));
    }

    #[test]
    fn on_a_tie_the_longer_window_is_named() {
        let now = 7200 + 1800;
        let (h, reset) = headers(
            &[(Period::Second, 10), (Period::Hour, 10)],
            &[0, 0],
            true,
            now,
        );
        assert_eq!(get(&h, "ratelimit-remaining"), "9");
        assert_eq!(reset, 1800);
    }

    #[test]
    fn a_refused_request_names_the_full_window_and_leaves_the_others() {
        let now = 7200 + 1800;
        let (h, reset) = headers(
            &[(Period::Second, 4), (Period::Hour, 1200)],
            &[4, 4],
            false,
            now,
        );
        assert_eq!(get(&h, "x-ratelimit-remaining-second"), "0");
        assert_eq!(get(&h, "x-ratelimit-remaining-hour"), "1196");
        assert_eq!(reset, 1);
    }

    #[test]
    fn redis_settings_come_from_the_record_the_flat_fields_or_the_node() {
        let c = |v: Value| v.as_object().cloned().unwrap();
        let t = redis_target(
            &c(json!({"redis": {"host": "r1", "port": 7000, "password": "p@ss"}})),
            None,
        )
        .unwrap();
        assert_eq!(t.url, "redis://:p%40ss@r1:7000/0");
        assert!(!t.name.contains("p@ss"));
        let flat = json!({"redis": {"port": 6379}, "redis_host": "r2", "redis_port": 7001, "redis_database": 3});
        let t = redis_target(&c(flat), None).unwrap();
        assert_eq!(t.url, "redis://r2:7001/3");
        let t = redis_target(&c(json!({})), Some("redis://node:6379/1")).unwrap();
        assert_eq!(t.url, "redis://node:6379/1");
        assert!(redis_target(&c(json!({})), None).is_none());
    }
}
