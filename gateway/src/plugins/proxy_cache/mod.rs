//! proxy-cache: answers a request from a stored response when an earlier one like it was
//! cacheable, as Kong's plugin does (kong/plugins/proxy-cache): a request is cacheable by its
//! method (and, with `cache_control`, its `Cache-Control`), a response by its status, its
//! content type and (with `cache_control`) its own `Cache-Control`. The key tells consumers,
//! routes, paths, query parameters and chosen headers apart (`key`). `X-Cache-Status` says
//! Miss, Hit, Refresh (stale, fetched again) or Bypass (not cacheable), `X-Cache-Key` the key,
//! `Age` how old a hit is; `response_headers` turns each off, a `Kong-Debug` request header
//! turns them all on. Responses go to the memory strategy's store (size-limited, least
//! recently used out first) or, beyond Kong's open-source plugin, to Redis shared by nodes.
//!
//! A miss streams to the client as it comes while a copy is taken (`Fill`); the copy is
//! stored once the whole body passed, unless it grew beyond `MAX_BUFFERED_BODY`.
mod cached;
mod directives;
pub mod key;
mod memory;
pub mod store;
#[cfg(test)]
mod tests;

use super::context::MAX_BUFFERED_BODY;
use super::{get_bool, get_str, get_strings, get_u64, Access, Context, Flow, Handler, Reply};
use super::{FrameMap, PluginSpec, Shape};
use crate::model::schema::{field, Field, FieldErrors, Ty};
use bytes::{Bytes, BytesMut};
pub use cached::Cached;
use directives::{Directives, MediaType};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use key::Key;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};
pub use store::{Storage, Stores};

pub const SPEC: PluginSpec = PluginSpec {
    name: "proxy-cache",
    priority: 100,
    no_consumer: false,
    fields: &[
        field("response_code", Ty::IntArray { min: 100, max: 900 }),
        field("request_method", Ty::StrArray),
        field("content_type", Ty::StrArray),
        // Kong's `integer, gt = 0`: a number above 0 here, `validate` refuses fractions.
        field("cache_ttl", Ty::Above(0.0)),
        field("strategy", Ty::Enum(STRATEGIES)),
        field("cache_control", Ty::Bool),
        field("ignore_uri_case", Ty::Bool),
        field(
            "storage_ttl",
            Ty::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        field("memory", Ty::Record(MEMORY_FIELDS)),
        field("redis", Ty::Record(super::rate_limiting::REDIS_FIELDS)),
        field("vary_query_params", Ty::StrArray),
        field("vary_headers", Ty::StrArray),
        field("response_headers", Ty::Record(RESPONSE_HEADER_FIELDS)),
    ],
    defaults,
    validate,
    build,
};

const STRATEGIES: &[&str] = &["memory", "redis"];
const METHODS: &[&str] = &["HEAD", "GET", "POST", "PATCH", "PUT"];
const MEMORY_FIELDS: &[Field] = &[field("dictionary_name", Ty::Str)];
const RESPONSE_HEADER_FIELDS: &[Field] = &[
    field("age", Ty::Bool),
    field("X-Cache-Status", Ty::Bool),
    field("X-Cache-Key", Ty::Bool),
];

fn defaults() -> Map<String, Value> {
    let d = json!({
        "response_code": [200, 301, 404],
        "request_method": ["GET", "HEAD"],
        "content_type": ["text/plain", "application/json"],
        "cache_ttl": 300,
        "cache_control": false,
        "ignore_uri_case": false,
        "storage_ttl": null,
        "memory": {"dictionary_name": "kong_db_cache"},
        "vary_query_params": null,
        "vary_headers": null,
        "response_headers": {"age": true, "X-Cache-Status": true, "X-Cache-Key": true},
    });
    d.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    if c.get("strategy").is_none_or(Value::is_null) {
        errors.add("strategy", "required field missing");
    }
    if c.get("cache_ttl")
        .is_some_and(|t| t.as_f64().is_some() && t.as_u64().is_none())
    {
        errors.add("cache_ttl", "expected an integer");
    }
    if c.get("response_code")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        errors.add("response_code", "length must be at least 1");
    }
    let methods = get_strings(c, "request_method");
    let bad_method = |m: &String| (!METHODS.contains(&m.as_str())).then(|| one_of(METHODS));
    errors.elements("request_method", methods.iter().map(bad_method).collect());
    let fill = |c: &mut Map<String, Value>, record: &str| {
        if let (Some(Value::Object(given)), Some(Value::Object(all))) =
            (c.get_mut(record), defaults().remove(record))
        {
            for (k, v) in all {
                given.entry(k).or_insert(v);
            }
        }
    };
    fill(c, "memory");
    fill(c, "response_headers");
    if let Some(Value::Object(redis)) = c.get_mut("redis") {
        for (k, v) in super::rate_limiting::REDIS_DEFAULTS {
            redis.entry(k).or_insert(v.into());
        }
    }
    if get_str(c, "strategy") == Some("redis") && !c.contains_key("redis") {
        c.insert("redis".into(), json!({}));
    }
}

fn one_of(options: &[&str]) -> String {
    format!("expected one of: {}", options.join(", "))
}

/// Which of the cache's headers the response gets (`Kong-Debug` turns them all on).
#[derive(Clone, Copy)]
struct Shown {
    age: bool,
    status: bool,
    key: bool,
}

/// An instance's settings, shared with the `Fill` of each miss.
struct Settings {
    response_codes: Vec<u16>,
    methods: Vec<Method>,
    content_types: Vec<MediaType>,
    cache_ttl: u64,
    cache_control: bool,
    ignore_uri_case: bool,
    storage_ttl: Option<u64>,
    vary_query_params: Vec<String>,
    vary_headers: Vec<String>,
    shown: Shown,
    storage: Storage,
    /// For the Redis failure log's pace.
    shared: Arc<super::Shared>,
}

struct ProxyCache(Arc<Settings>);

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    Ok(Arc::new(ProxyCache(Arc::new(settings(c, shared)?))))
}

fn settings(c: &Map<String, Value>, shared: &Arc<super::Shared>) -> Result<Settings, String> {
    let codes = c
        .get("response_code")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let flag = |record: &str, name: &str| {
        let value = c.get(record).and_then(|r| r.get(name));
        value.and_then(Value::as_bool).unwrap_or(true)
    };
    Ok(Settings {
        response_codes: codes.filter_map(|v| v.as_u64()).map(|n| n as u16).collect(),
        methods: get_strings(c, "request_method")
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect(),
        // One Kong cannot parse matches nothing (02-access_spec.lua:1303).
        content_types: get_strings(c, "content_type")
            .iter()
            .filter_map(|t| MediaType::parse(t))
            .collect(),
        cache_ttl: get_u64(c, "cache_ttl").unwrap_or(300),
        cache_control: get_bool(c, "cache_control"),
        ignore_uri_case: get_bool(c, "ignore_uri_case"),
        storage_ttl: get_u64(c, "storage_ttl"),
        vary_query_params: get_strings(c, "vary_query_params"),
        vary_headers: get_strings(c, "vary_headers"),
        shown: Shown {
            age: flag("response_headers", "age"),
            status: flag("response_headers", "X-Cache-Status"),
            key: flag("response_headers", "X-Cache-Key"),
        },
        storage: storage(c, shared)?,
        shared: shared.clone(),
    })
}

/// The store an instance's config names.
pub fn storage(c: &Map<String, Value>, shared: &super::Shared) -> Result<Storage, String> {
    let stores = &shared.proxy_caches;
    if get_str(c, "strategy") == Some("redis") {
        let default_url = shared.default_redis_url.as_deref();
        let target = super::rate_limiting::redis_target(c, default_url)
            .ok_or("strategy redis needs config.redis.host or TOLLGATE_REDIS_URL")?;
        return Ok(Storage::redis(stores, &target));
    }
    let dictionary = c
        .get("memory")
        .and_then(|m| m.get("dictionary_name"))
        .and_then(Value::as_str)
        .unwrap_or("kong_db_cache");
    Ok(Storage::Memory(stores.memory(dictionary)))
}

static X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
static X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");
static KONG_DEBUG: HeaderName = HeaderName::from_static("kong-debug");

impl Handler for ProxyCache {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let s = &self.0;
        let debug = ctx.parts.headers.contains_key(&KONG_DEBUG);
        let cc = if s.cache_control {
            Directives::parse(ctx.parts.headers.get_all(header::CACHE_CONTROL))
        } else {
            Directives::default()
        };
        if !s.cacheable_request(ctx, &cc) {
            if s.shown.status || debug {
                let bypass = HeaderValue::from_static("Bypass");
                ctx.response_headers.push((X_CACHE_STATUS.clone(), bypass));
            }
            return Access::Now(Flow::Continue);
        }
        let key = s.key(ctx);
        let lookup = Lookup { key, cc, debug };
        match &s.storage {
            Storage::Memory(m) => {
                let found = m.get(&key, ctx.now_ms);
                Access::Now(self.decide(ctx, found, lookup))
            }
            Storage::Redis(r) => Access::Later(Box::pin(async move {
                let found = r.fetch(&key, ctx.now_ms).await.unwrap_or_else(|e| {
                    if s.shared.proxy_caches.redis.should_log(ctx.now_ms as i64) {
                        tracing::warn!(error = %e, "proxy-cache: Redis lookup failed, a miss");
                    }
                    None
                });
                self.decide(ctx, found, lookup)
            })),
        }
    }
}

/// A cacheable request's key and what its headers asked for.
struct Lookup {
    key: Key,
    cc: Directives,
    debug: bool,
}

impl ProxyCache {
    /// Serves `found` when it is fresh enough; otherwise lets the request go upstream and
    /// its response be stored (`Fill`).
    fn decide(&self, ctx: &mut Context<'_>, found: Option<Arc<Cached>>, l: Lookup) -> Flow {
        let s = &self.0;
        let now = ctx.now_ms / 1000;
        let status = match found {
            Some(res) if !s.stale(&res, &l.cc, now) => {
                ctx.cache_hit = true;
                return Flow::Respond(s.hit(&res, &l, now));
            }
            Some(_) => "Refresh",
            // RFC 9111 §5.2.1.7: the client wants a stored response or none.
            None if s.cache_control && l.cc.only_if_cached => {
                return Flow::Respond(Reply::bodyless(
                    StatusCode::GATEWAY_TIMEOUT,
                    HeaderMap::new(),
                ))
            }
            None => "Miss",
        };
        ctx.response_plugins.push(Arc::new(Fill {
            slot: Slot {
                settings: self.0.clone(),
                key: l.key,
                now_ms: ctx.now_ms,
            },
            status,
            debug: l.debug,
            head: ctx.parts.method == Method::HEAD,
            ttl: OnceLock::new(),
        }));
        Flow::Continue
    }
}

impl Settings {
    /// Kong's `cacheable_request`: a configured method and, with `cache_control`, no
    /// `no-store` or `no-cache`, and no `Authorization` (RFC 9111 §3.5: a shared cache does
    /// not serve one user's authorized answer to another; Kong means to check it, but reads
    /// a variable nginx does not have).
    fn cacheable_request(&self, ctx: &Context<'_>, cc: &Directives) -> bool {
        self.methods.contains(&ctx.parts.method)
            && !(self.cache_control
                && (cc.no_store
                    || cc.no_cache
                    || ctx.parts.headers.contains_key(header::AUTHORIZATION)))
    }

    fn key(&self, ctx: &Context<'_>) -> Key {
        let path = ctx.parts.uri.path();
        let lower;
        let path = if self.ignore_uri_case {
            lower = path.to_lowercase();
            lower.as_str()
        } else {
            path
        };
        let route = ctx.route_id.to_string();
        let query = ctx.query().unwrap_or("");
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((n, v)) => (decode(n), Some(decode(v))),
                None => (decode(pair), None),
            })
            .collect();
        let parts = key::Parts {
            consumer: ctx.consumer.as_ref().map(|c| &*c.id_text),
            route: Some(&route),
            method: ctx.parts.method.as_str(),
            path,
            params,
            headers: &ctx.parts.headers,
        };
        key::build(&parts, &self.vary_query_params, &self.vary_headers)
    }

    /// Whether a stored response is too old to serve: by the client's `max-age`,
    /// `max-stale` and `min-fresh` with `cache_control`, else older than `cache_ttl` (it may
    /// be kept longer: `storage_ttl`).
    fn stale(&self, res: &Cached, cc: &Directives, now: u64) -> bool {
        let age = now.saturating_sub(res.timestamp) as i64;
        let ttl = res.ttl as i64;
        if !self.cache_control {
            return age > self.cache_ttl as i64;
        }
        cc.max_age.is_some_and(|max| age > max)
            || matches!(cc.max_stale, Some(Some(max)) if age - ttl > max)
            || cc.min_fresh.is_some_and(|min| ttl - age < min)
    }

    /// The stored response, less headers that belong to its first delivery, with the cache's.
    fn hit(&self, res: &Cached, l: &Lookup, now: u64) -> Reply {
        let mut headers = res.headers.clone();
        if self.shown.age || l.debug {
            let age = now.saturating_sub(res.timestamp);
            headers.insert(header::AGE, crate::header_numbers::value(age));
        }
        if self.shown.status || l.debug {
            headers.insert(X_CACHE_STATUS.clone(), HeaderValue::from_static("Hit"));
        }
        if self.shown.key || l.debug {
            headers.insert(X_CACHE_KEY.clone(), key_header(&l.key));
        }
        let mut reply = Reply::bodyless(res.status, headers);
        reply.shape = Shape::Body(res.body.clone());
        reply
    }

    /// Kong's `cacheable_response`: how long this response may be served (`None`: not at all).
    fn cacheable_response(&self, parts: &http::response::Parts, now: u64) -> Option<u64> {
        if !self.response_codes.contains(&parts.status.as_u16()) {
            return None;
        }
        // Several Content-Types say nothing certain (Kong: a table, not cached).
        let mut types = parts.headers.get_all(header::CONTENT_TYPE).iter();
        let (content_type, None) = (types.next()?.to_str().ok()?, types.next()) else {
            return None;
        };
        let actual = MediaType::parse(content_type)?;
        if !self.content_types.iter().any(|t| t.accepts(&actual)) {
            return None;
        }
        if !self.cache_control {
            return Some(self.cache_ttl);
        }
        let cc = Directives::parse(parts.headers.get_all(header::CACHE_CONTROL));
        if cc.private || cc.no_store || cc.no_cache {
            return None;
        }
        let ttl = cc.resource_ttl(parts.headers.get(header::EXPIRES), now);
        (ttl > 0).then_some(ttl)
    }
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

fn key_header(key: &Key) -> HeaderValue {
    HeaderValue::from_str(&key.hex()).expect("hex is a header value")
}

/// A miss (or refresh) on its way back: marks the response and, when it is cacheable,
/// copies its body as it streams and stores it at the end.
struct Fill {
    slot: Slot,
    status: &'static str,
    debug: bool,
    head: bool,
    /// How long the response is fresh, once the header filter decided it is cacheable.
    ttl: OnceLock<Option<u64>>,
}

impl Handler for Fill {
    fn on_response(&self) -> bool {
        true
    }

    fn header_filter(&self, parts: &mut http::response::Parts) {
        let s = &self.slot.settings;
        let ttl = s.cacheable_response(parts, self.slot.now_ms / 1000);
        let _ = self.ttl.set(ttl);
        if s.shown.status || self.debug {
            let status = if ttl.is_some() { self.status } else { "Bypass" };
            let value = HeaderValue::from_static(status);
            parts.headers.insert(X_CACHE_STATUS.clone(), value);
        }
        if s.shown.key || self.debug {
            parts
                .headers
                .insert(X_CACHE_KEY.clone(), key_header(&self.slot.key));
        }
        if let (Some(ttl), true) = (ttl, self.head) {
            // A HEAD response has no body to wait for.
            self.slot.store(parts, Bytes::new(), ttl);
        }
    }

    fn body_stream(&self, parts: &http::response::Parts) -> Option<Box<dyn FrameMap>> {
        let ttl = (*self.ttl.get()?)?;
        if self.head {
            return None;
        }
        let expected = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if expected.is_some_and(|n| n > MAX_BUFFERED_BODY) {
            return None;
        }
        Some(Box::new(Copy {
            slot: Some(self.slot.clone()),
            ttl,
            parts: Some(stored_head(parts)),
            expected,
            body: BytesMut::with_capacity(expected.unwrap_or(0)),
        }))
    }
}

/// Where and when a response is stored: the plugin's store, the request's key and time.
#[derive(Clone)]
struct Slot {
    settings: Arc<Settings>,
    key: Key,
    now_ms: u64,
}

impl Slot {
    fn store(&self, parts: &http::response::Parts, body: Bytes, ttl: u64) {
        let s = &self.settings;
        let cached = Cached {
            status: parts.status,
            headers: stored_headers(&parts.headers),
            body,
            timestamp: self.now_ms / 1000,
            ttl,
        };
        let storage_ttl = s
            .storage_ttl
            .unwrap_or(if s.cache_control { ttl } else { s.cache_ttl });
        s.storage.store(self.key, cached, storage_ttl, self.now_ms);
    }
}

/// The status and headers to keep, taken when the body starts.
fn stored_head(parts: &http::response::Parts) -> http::response::Parts {
    let mut head = http::Response::new(()).into_parts().0;
    head.status = parts.status;
    head.headers = stored_headers(&parts.headers);
    head
}

/// Kong's `overwritable_header`: hop-by-hop headers, `Content-Length` and rate-limit
/// counters are not replayed; nor are the cache's own headers.
fn stored_headers(headers: &HeaderMap) -> HeaderMap {
    const DROPPED: [&str; 12] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "age",
        "x-cache-status",
        "x-cache-key",
    ];
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if !DROPPED.contains(&n) && !n.contains("ratelimit-remaining") {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// A response body's copy, stored once it is whole: when the declared length has passed,
/// or at the end of a body without one; dropped when it grows beyond `MAX_BUFFERED_BODY`.
struct Copy {
    /// Where it is stored; taken when stored or given up.
    slot: Option<Slot>,
    /// How long it is fresh.
    ttl: u64,
    parts: Option<http::response::Parts>,
    expected: Option<usize>,
    body: BytesMut,
}

impl Copy {
    fn finish(&mut self) {
        if let (Some(slot), Some(parts)) = (self.slot.take(), self.parts.take()) {
            let body = std::mem::take(&mut self.body).freeze();
            slot.store(&parts, body, self.ttl);
        }
    }
}

impl FrameMap for Copy {
    fn frame(&mut self, frame: hyper::body::Frame<Bytes>) -> hyper::body::Frame<Bytes> {
        if let (Some(data), Some(_)) = (frame.data_ref(), &self.slot) {
            if self.body.len() + data.len() > MAX_BUFFERED_BODY {
                self.slot = None;
                self.body = BytesMut::new();
            } else {
                self.body.extend_from_slice(data);
                if self.expected == Some(self.body.len()) {
                    self.finish();
                }
            }
        }
        frame
    }

    fn end(&mut self) -> Option<hyper::body::Frame<Bytes>> {
        if self.expected.is_none_or(|n| n == self.body.len()) {
            self.finish();
        }
        None
    }
}
