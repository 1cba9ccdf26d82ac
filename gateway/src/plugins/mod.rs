//! Plugins: what a plugin is, the registry of those this build runs, and their config schemas.
//!
//! A plugin is one module holding its config schema and its handler. The admin API checks a
//! plugin's `config` against the schema before anything is stored; the snapshot builder turns
//! each stored instance into a handler once; the proxy runs the handlers that apply to a
//! request, highest priority first (see `chain`). Adding a plugin touches its module and one
//! line of `registry()`.
pub mod acl;
pub mod auth;
pub mod basic_auth;
pub mod body;
pub mod chain;
pub mod context;
pub mod correlation_id;
pub mod cors;
pub mod file_log;
pub mod grpc_web;
pub mod hmac_auth;
pub mod http_log;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod log_entry;
pub mod log_queue;
pub mod multipart;
pub mod oauth2;
pub mod opentelemetry;
pub mod proxy_cache;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
pub mod tcp_log;
pub mod udp_log;

use crate::model::schema::{self, Field, FieldErrors};
pub use context::{Context, Flow, Reply, RequestBody, Shape, UpstreamHeaders};
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler's access phase returns: its decision, or a future for one that has to
/// wait (for the request body, for Redis). Most decide at once, without an allocation.
pub enum Access<'a> {
    Now(Flow),
    Later(Pin<Box<dyn Future<Output = Flow> + Send + 'a>>),
}

impl Access<'_> {
    /// The decision, waiting for it if need be.
    pub async fn decided(self) -> Flow {
        match self {
            Access::Now(flow) => flow,
            Access::Later(future) => future.await,
        }
    }
}

/// A configured plugin instance, as the proxy runs it: Kong's phases. Every instance that
/// applies to the request sees the response phases (when `on_response` says it acts in them),
/// also when a plugin answered the client and the rest skipped access; the phases run in
/// priority order.
pub trait Handler: Send + Sync {
    /// Runs before the request goes upstream: may identify the consumer, change the upstream
    /// request, add response headers, or answer the client itself. Plugins that act only on
    /// the response let it pass.
    fn access<'a>(&'a self, _ctx: &'a mut Context<'_>) -> Access<'a> {
        Access::Now(Flow::Continue)
    }

    /// Runs before any plugin's access phase, on routes whose plugins trace
    /// (opentelemetry): a trace starts before the plugins it times, and covers a request
    /// another plugin refuses.
    fn begin(&self, _ctx: &mut Context<'_>) {}

    /// Whether the phases below do anything for this instance; only those instances are kept
    /// for the response (most plugins act in access alone).
    fn on_response(&self) -> bool {
        false
    }

    /// Header filter: the response's status and headers, before they go to the client.
    fn header_filter(&self, _response: &mut http::response::Parts) {}

    /// Whether `body_filter` needs this response's body.
    fn wants_body(&self, _response: &http::response::Parts) -> bool {
        false
    }

    /// Body filter: the whole response body, read into memory (up to `MAX_BUFFERED_BODY`),
    /// in and out; the proxy fixes `Content-Length` afterwards.
    fn body_filter(&self, _response: &http::response::Parts, body: bytes::Bytes) -> bytes::Bytes {
        body
    }

    /// A rewrite of the response body as it streams, frame by frame (trailers included),
    /// for plugins that change how a protocol frames the body rather than what it says.
    fn body_stream(&self, _response: &http::response::Parts) -> Option<Box<dyn FrameMap>> {
        None
    }

    /// Log: the finished request, once its last byte went out, with the values plugins added
    /// to its log entry. Must not block or wait.
    fn log(&self, _event: &tollgate_analytics::RequestEvent, _serialized: &context::Serialized) {}
}

/// A streaming rewrite of a response body (see `Handler::body_stream`).
pub trait FrameMap: Send {
    /// What goes to the client for `frame` (a trailers frame may become data).
    fn frame(
        &mut self,
        frame: hyper::body::Frame<bytes::Bytes>,
    ) -> hyper::body::Frame<bytes::Bytes>;
    /// What goes after the last frame, if anything.
    fn end(&mut self) -> Option<hyper::body::Frame<bytes::Bytes>>;
}

/// What a handler is built with besides its config: state that outlives snapshots (counters,
/// connections) and node settings.
#[derive(Default)]
pub struct Shared {
    pub rate_limits: rate_limiting::Counters,
    pub redis: rate_limiting::Links,
    /// `TOLLGATE_REDIS_URL`: the Redis of `policy: redis` instances that name none.
    pub default_redis_url: Option<String>,
    /// file-log's writer threads, one per file.
    pub file_logs: file_log::Writers,
    /// basic-auth's password checks and the passwords they verified.
    pub passwords: Arc<basic_auth::Verifier>,
    /// oauth2's access tokens, and the store its endpoints write them to.
    pub oauth2: Arc<oauth2::tokens::Tokens>,
    /// Upstream targets' health, kept across snapshots.
    pub balancers: crate::balancer::health::Registry,
    /// The addresses of the names balancers use.
    pub dns: Arc<crate::balancer::dns::Resolver>,
    /// The log plugins' queues and what became of their entries.
    pub log_queues: log_queue::Queues,
    /// proxy-cache's stores, kept across snapshots.
    pub proxy_caches: proxy_cache::Stores,
}

/// Why a plugin config was refused.
#[derive(Debug)]
pub enum ConfigError {
    UnknownPlugin,
    Fields(FieldErrors),
}

/// Makes the handler for a checked config; the scope is the instance's route and service ids.
pub type BuildFn =
    fn(&Map<String, Value>, &chain::Scope, &Arc<Shared>) -> Result<Arc<dyn Handler>, String>;

/// One plugin this build can run.
pub struct PluginSpec {
    pub name: &'static str,
    /// Execution order, highest first (Kong's priorities).
    pub priority: u32,
    /// Authentication plugins run before the consumer is known, so they cannot be scoped to one.
    pub no_consumer: bool,
    pub fields: &'static [Field],
    pub defaults: fn() -> Map<String, Value>,
    pub validate: fn(&mut Map<String, Value>, &mut FieldErrors),
    /// Makes the handler for a checked config; `scope` is the instance's route and service ids.
    pub build: BuildFn,
}

/// Every plugin this build can run.
pub fn registry() -> &'static [PluginSpec] {
    static REGISTRY: [PluginSpec; 21] = [
        acl::SPEC,
        basic_auth::SPEC,
        correlation_id::SPEC,
        cors::SPEC,
        file_log::SPEC,
        grpc_web::SPEC,
        hmac_auth::SPEC,
        http_log::SPEC,
        ip_restriction::SPEC,
        jwt::SPEC,
        key_auth::SPEC,
        oauth2::SPEC,
        opentelemetry::SPEC,
        proxy_cache::SPEC,
        rate_limiting::SPEC,
        request_size_limiting::SPEC,
        request_termination::SPEC,
        request_transformer::SPEC,
        response_transformer::SPEC,
        tcp_log::SPEC,
        udp_log::SPEC,
    ];
    &REGISTRY
}

/// Kong's `/schemas/plugins/{name}` answer: the plugin entity's scope fields and its
/// `config` record, described from the fields and defaults that validate it.
pub fn schema(spec: &PluginSpec) -> Value {
    let config = schema::describe(spec.fields, &[], &(spec.defaults)());
    let mut config_field = serde_json::json!({"type": "record", "required": true});
    config_field["fields"] = config["fields"].clone();
    let consumer = if spec.no_consumer {
        serde_json::json!({"type": "foreign", "reference": "consumers", "eq": null})
    } else {
        serde_json::json!({"type": "foreign", "reference": "consumers"})
    };
    serde_json::json!({"fields": [
        {"consumer": consumer},
        {"route": {"type": "foreign", "reference": "routes"}},
        {"service": {"type": "foreign", "reference": "services"}},
        {"protocols": {"type": "set", "elements": {"type": "string"},
            "default": ["grpc", "grpcs", "http", "https"]}},
        {"config": config_field},
    ]})
}

pub fn spec(name: &str) -> Option<&'static PluginSpec> {
    registry().iter().find(|s| s.name == name)
}

/// Checks `config` for plugin `name` and fills in its defaults. Values given as strings (form
/// bodies) are coerced to the field's type.
pub fn normalize_config(name: &str, config: &mut Map<String, Value>) -> Result<(), ConfigError> {
    let spec = spec(name).ok_or(ConfigError::UnknownPlugin)?;
    let mut errors = schema::check(spec.fields, config, true);
    if errors.is_empty() {
        for (k, v) in (spec.defaults)() {
            match config.get(&k) {
                Some(Value::Null) | None => {
                    config.insert(k, v);
                }
                Some(_) => {}
            }
        }
        (spec.validate)(config, &mut errors);
    }
    errors.into_result().map_err(ConfigError::Fields)
}

/// `config` of plugin `name` as `normalize_config` leaves it, or its field errors as the admin
/// API shows them: for plugins' unit tests of Kong's schema specs.
#[cfg(test)]
pub(crate) fn checked_config(name: &str, config: Value) -> Result<Map<String, Value>, Value> {
    let mut c = config.as_object().cloned().unwrap_or_default();
    match normalize_config(name, &mut c) {
        Ok(()) => Ok(c),
        Err(ConfigError::Fields(e)) => Err(e.to_value()),
        Err(ConfigError::UnknownPlugin) => panic!("{name} is not registered"),
    }
}

/// A config value read back after `normalize_config` (so its type is known).
pub(crate) fn get_bool(c: &Map<String, Value>, k: &str) -> bool {
    c.get(k).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn get_str<'a>(c: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    c.get(k).and_then(Value::as_str)
}

pub(crate) fn get_u64(c: &Map<String, Value>, k: &str) -> Option<u64> {
    c.get(k).and_then(Value::as_u64)
}

pub(crate) fn get_strings(c: &Map<String, Value>, k: &str) -> Vec<String> {
    c.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
