//! opentelemetry: traces of the requests a route serves, as Kong's plugin makes them
//! (kong/plugins/opentelemetry): a `kong` span for the request (its parent the caller's span
//! when the request carried a trace context), a `kong.access.plugin.<name>` span for each
//! plugin's access phase, and a `kong.balancer` span for the call upstream, whose id the
//! upstream gets as its parent (`propagation`). Sampled spans go, batched, to
//! `traces_endpoint` as OTLP/HTTP protobuf through a bounded queue (`log_queue`), never
//! holding a request up.
//!
//! Which formats are read and written follows `propagation` (`extract`, `inject` with
//! `preserve`, `clear`, `default_format`), or Kong's older `header_type` when `propagation`
//! names no extractors. A caller's sampling decision is kept; otherwise `sampling_rate`
//! (default 1: every request) decides, from the trace id, so every node decides alike.
mod export;
pub mod propagation;
mod wire;

use super::context::Phase;
use super::log_queue::{self, QUEUE_FIELDS};
use super::{get_str, Context, Handler, PluginSpec};
use crate::model::schema::{field, Field, FieldErrors, Ty};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use propagation::{Outgoing, Parent, FORMATS};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_analytics::ip_text::IpText;
use tollgate_analytics::RequestEvent;

pub const SPEC: PluginSpec = PluginSpec {
    name: "opentelemetry",
    priority: 14,
    no_consumer: false,
    fields: &[
        field("traces_endpoint", Ty::Str),
        field("endpoint", Ty::Str),
        field("logs_endpoint", Ty::NullOnly(NO_LOGS)),
        field("headers", Ty::Object),
        field("resource_attributes", Ty::Object),
        field("queue", Ty::Record(QUEUE_FIELDS)),
        field(
            "batch_span_count",
            Ty::Int {
                min: 1,
                max: 1_000_000,
            },
        ),
        field("batch_flush_delay", Ty::Int { min: 0, max: 3600 }),
        field("connect_timeout", TIMEOUT),
        field("send_timeout", TIMEOUT),
        field("read_timeout", TIMEOUT),
        field("http_response_header_for_traceid", Ty::Str),
        field("header_type", Ty::Enum(HEADER_TYPES)),
        field("sampling_rate", Ty::Number { min: 0.0, max: 1.0 }),
        field("propagation", Ty::Record(PROPAGATION_FIELDS)),
    ],
    defaults,
    validate,
    build,
};

const NO_LOGS: &str = "logs_endpoint: Tollgate exports traces only; its request logs go to http-log, tcp-log, udp-log or file-log";
const TIMEOUT: Ty = Ty::Int {
    min: 0,
    max: 2_147_483_646,
};
const HEADER_TYPES: &[&str] = &[
    "preserve",
    "ignore",
    "b3",
    "b3-single",
    "w3c",
    "jaeger",
    "ot",
    "aws",
    "gcp",
];
const PROPAGATION_FIELDS: &[Field] = &[
    field("extract", Ty::StrArray),
    field("clear", Ty::StrArray),
    field("inject", Ty::StrArray),
    field("default_format", Ty::Enum(FORMATS)),
];

fn defaults() -> Map<String, Value> {
    let d = json!({
        "traces_endpoint": null, "logs_endpoint": null, "headers": null,
        "resource_attributes": null, "batch_span_count": null, "batch_flush_delay": null,
        "connect_timeout": 1000, "send_timeout": 5000, "read_timeout": 5000,
        "http_response_header_for_traceid": null, "header_type": "preserve",
        "sampling_rate": null,
    });
    d.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    // Kong 3.1's `endpoint`, now `traces_endpoint`.
    if let Some(old) = c.remove("endpoint").filter(|v| !v.is_null()) {
        if c.get("traces_endpoint").is_none_or(Value::is_null) {
            c.insert("traces_endpoint".into(), old);
        }
    }
    let legacy = [
        ("batch_span_count", "max_batch_size"),
        ("batch_flush_delay", "max_coalescing_delay"),
    ];
    let queue = c
        .entry("queue")
        .or_insert_with(|| json!({"max_batch_size": 200}));
    if let Value::Object(q) = queue {
        q.entry("max_batch_size").or_insert(json!(200));
    }
    for (old, new) in legacy {
        if let Some(v) = c.get(old).filter(|v| !v.is_null()).cloned() {
            if let Some(Value::Object(q)) = c.get_mut("queue") {
                q.insert(new.into(), v);
            }
        }
    }
    log_queue::validate_queue(c, errors);
    match get_str(c, "traces_endpoint") {
        None => errors.add(
            "@entity",
            "at least one of these fields must be non-empty: 'config.traces_endpoint', 'config.logs_endpoint'",
        ),
        Some(url) if endpoint(url).is_none() => errors.add(
            "traces_endpoint",
            "not a valid URL: give http:// or https:// and a host",
        ),
        Some(_) => {}
    }
    check_maps(c, errors);
    check_propagation(c, errors);
}

fn endpoint(text: &str) -> Option<http::Uri> {
    let parsed = url::Url::parse(text).ok()?;
    let ok = matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some();
    ok.then(|| parsed.as_str().parse().ok()).flatten()
}

/// `headers`: header names to strings; `resource_attributes`: names to strings, numbers
/// or booleans (Kong's custom validator).
fn check_maps(c: &Map<String, Value>, errors: &mut FieldErrors) {
    if let Some(Value::Object(h)) = c.get("headers") {
        for (name, value) in h {
            if HeaderName::try_from(name.as_str()).is_err() {
                errors.add("headers", format!("bad header name '{name}'"));
            } else if value
                .as_str()
                .is_none_or(|v| HeaderValue::from_str(v).is_err())
            {
                errors.add("headers", "expected a string");
            }
        }
    }
    if let Some(Value::Object(attrs)) = c.get("resource_attributes") {
        for value in attrs.values() {
            match value {
                Value::String(s) if s.is_empty() => {
                    errors.add("resource_attributes", "required field missing")
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                other => errors.add(
                    "resource_attributes",
                    format!("invalid type of value: {}", json_type(other)),
                ),
            }
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) | Value::Object(_) => "table",
        Value::Null => "nil",
        _ => "value",
    }
}

/// Kong's propagation record: extractors and injectors are formats (`preserve` too for
/// `inject`), `clear` names headers, `default_format` is required.
fn check_propagation(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let record = c.entry("propagation").or_insert_with(|| json!({}));
    let Value::Object(p) = record else { return };
    p.entry("default_format").or_insert(json!("w3c"));
    let mut inner = FieldErrors::default();
    let strings = |k: &str| super::get_strings(p, k);
    let extractors: Vec<&str> = FORMATS
        .iter()
        .copied()
        .filter(|f| *f != "b3-single")
        .collect();
    let check = |values: Vec<String>, allowed: &[&str]| -> Vec<Option<String>> {
        values
            .iter()
            .map(|v| {
                (!allowed.contains(&v.as_str()))
                    .then(|| format!("expected one of: {}", allowed.join(", ")))
            })
            .collect()
    };
    inner.elements("extract", check(strings("extract"), &extractors));
    let mut injectors = vec!["preserve"];
    injectors.extend_from_slice(FORMATS);
    inner.elements("inject", check(strings("inject"), &injectors));
    let bad_name = |n: &String| {
        HeaderName::try_from(n.as_str())
            .err()
            .map(|_| format!("bad header name '{n}'"))
    };
    inner.elements("clear", strings("clear").iter().map(bad_name).collect());
    errors.nest("propagation", inner);
}

/// An instance's settings, shared with each sampled request's `Trace`.
struct Settings {
    extract: Vec<&'static str>,
    /// Formats written upstream; `preserve` stands for the one the request came in.
    inject: Vec<&'static str>,
    default_format: &'static str,
    clear: Vec<HeaderName>,
    sampling_rate: f64,
    trace_id_header: Option<HeaderName>,
    queue: Arc<log_queue::Queue<Record>>,
}

struct OpenTelemetry(Arc<Settings>);

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let url = get_str(c, "traces_endpoint").ok_or("traces_endpoint is required")?;
    let uri = endpoint(url).ok_or("traces_endpoint is not a URL")?;
    let policy = log_queue::policy(c);
    let exporter = || {
        let headers = export_headers(c)?;
        let millis =
            |k: &str, d: u64| Duration::from_millis(c.get(k).and_then(Value::as_u64).unwrap_or(d));
        let whole = millis("send_timeout", 5000) + millis("read_timeout", 5000);
        let timeouts = (millis("connect_timeout", 1000), whole);
        let exporter = export::Exporter::new(uri.clone(), headers, resource(c), timeouts);
        Ok(Box::new(exporter) as Box<dyn log_queue::Deliver<Record>>)
    };
    let name = format!("opentelemetry {}", Value::Object(c.clone()));
    let queue =
        shared
            .log_queues
            .get(name, ("opentelemetry", url.to_string()), &policy, exporter)?;
    let (extract, inject) = formats(c);
    let p = c.get("propagation");
    let default_format = format_named(
        p.and_then(|p| p.get("default_format"))
            .and_then(Value::as_str)
            .unwrap_or("w3c"),
    );
    let clear = p
        .and_then(|p| p.get("clear"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| HeaderName::try_from(v.as_str()?).ok())
        .collect();
    let trace_id_header = get_str(c, "http_response_header_for_traceid")
        .map(HeaderName::try_from)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(OpenTelemetry(Arc::new(Settings {
        extract,
        inject,
        default_format,
        clear,
        sampling_rate: c
            .get("sampling_rate")
            .and_then(Value::as_f64)
            .unwrap_or(1.0),
        trace_id_header,
        queue,
    }))))
}

fn format_named(name: &str) -> &'static str {
    FORMATS
        .iter()
        .copied()
        .find(|f| *f == name)
        .unwrap_or("w3c")
}

/// The formats read and written: `propagation`'s when it names extractors, else those
/// Kong's `header_type` implies (`preserve`: read any, write back the same; `ignore`: read
/// none; a format: read any, write that one).
fn formats(c: &Map<String, Value>) -> (Vec<&'static str>, Vec<&'static str>) {
    let p = c.get("propagation");
    let list = |k: &str| -> Option<Vec<&'static str>> {
        let given = p?.get(k)?.as_array()?;
        Some(
            given
                .iter()
                .filter_map(|v| v.as_str())
                .map(|n| {
                    if n == "preserve" {
                        "preserve"
                    } else {
                        format_named(n)
                    }
                })
                .collect(),
        )
    };
    if let Some(extract) = list("extract") {
        return (extract, list("inject").unwrap_or_default());
    }
    let all: Vec<&'static str> = FORMATS
        .iter()
        .copied()
        .filter(|f| *f != "b3-single")
        .collect();
    match get_str(c, "header_type").unwrap_or("preserve") {
        "ignore" => (Vec::new(), vec!["preserve"]),
        "preserve" => (all, vec!["preserve"]),
        other => (all, vec![format_named(other)]),
    }
}

/// The headers every export request carries (the operator's, for an APM's token).
fn export_headers(c: &Map<String, Value>) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    if let Some(Value::Object(given)) = c.get("headers") {
        for (name, value) in given {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?;
            let value =
                HeaderValue::from_str(value.as_str().unwrap_or("")).map_err(|e| e.to_string())?;
            h.insert(name, value);
        }
    }
    Ok(h)
}

/// Kong's resource: `service.name` kong, the version, this node's id; then the operator's.
fn resource(c: &Map<String, Value>) -> Vec<KeyValue> {
    let mut attrs: Vec<(String, Value)> = vec![
        ("service.name".into(), json!("kong")),
        ("service.version".into(), json!(env!("CARGO_PKG_VERSION"))),
        (
            "service.instance.id".into(),
            json!(crate::admin::node_id().to_string()),
        ),
    ];
    if let Some(Value::Object(given)) = c.get("resource_attributes") {
        for (k, v) in given {
            attrs.retain(|(name, _)| name != k);
            attrs.push((k.clone(), v.clone()));
        }
    }
    attrs
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => export::text(&k, s),
            Value::Number(n) if n.is_i64() => export::int(&k, n.as_i64().unwrap_or(0)),
            other => export::text(&k, other.to_string()),
        })
        .collect()
}

impl Handler for OpenTelemetry {
    /// Reads the caller's context, decides on sampling, writes the context upstream and,
    /// when sampled, keeps the request for its spans; before other plugins run, so that a
    /// request one of them refuses is traced too.
    fn begin(&self, ctx: &mut Context<'_>) {
        let s = &self.0;
        let parent = propagation::extract(&ctx.parts.headers, &s.extract);
        let ids = Ids::new(parent.as_ref());
        let sampled = parent
            .as_ref()
            .and_then(|p| p.sampled)
            .unwrap_or_else(|| ids.sampled_at(s.sampling_rate));
        for name in &s.clear {
            ctx.set_upstream_header(name.clone(), None);
        }
        let out = Outgoing {
            trace_id: ids.trace,
            span_id: ids.balancer,
            sampled,
        };
        let from = parent.as_ref().map_or(s.default_format, |p| p.format);
        for format in &s.inject {
            let format = if *format == "preserve" { from } else { format };
            for (name, value) in propagation::inject(format, &out) {
                ctx.set_upstream_header(name, Some(value));
            }
        }
        if let Some(h) = &s.trace_id_header {
            let value = HeaderValue::from_str(&propagation::hex(&ids.trace)).expect("hex");
            ctx.response_headers.push((h.clone(), value));
        }
        if sampled {
            ctx.response_plugins.push(Arc::new(Trace {
                settings: self.0.clone(),
                ids,
                parent_span: parent.and_then(|p| p.span_id),
                phases: ctx.phases.clone(),
                started: ctx.started,
            }));
        }
    }
}

/// A request's trace and span ids.
#[derive(Clone, Copy)]
struct Ids {
    trace: [u8; 16],
    root: [u8; 8],
    balancer: [u8; 8],
}

impl Ids {
    /// The caller's trace, or a new one; new spans.
    fn new(parent: Option<&Parent>) -> Ids {
        let random: [u8; 32] = random_bytes();
        let mut trace = [0u8; 16];
        trace.copy_from_slice(&random[..16]);
        let mut root = [0u8; 8];
        root.copy_from_slice(&random[16..24]);
        let mut balancer = [0u8; 8];
        balancer.copy_from_slice(&random[24..]);
        Ids {
            trace: parent.map_or(trace, |p| p.trace_id),
            root,
            balancer,
        }
    }

    /// Whether a trace is kept at `rate`, read from its id's low 8 bytes (random, or the
    /// caller's), so nodes agree.
    fn sampled_at(&self, rate: f64) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.trace[8..]);
        (u64::from_be_bytes(low) as f64) < rate * u64::MAX as f64 || rate >= 1.0
    }
}

thread_local! {
    /// Ids must be unique and random-looking (W3C Trace Context), not secret: a fast
    /// generator per thread, seeded from the system's, instead of the thread's ChaCha.
    static ID_SOURCE: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_rng(&mut rand::rng()));
}

/// `N` random bytes for trace and span ids.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ID_SOURCE.with(|g| rand::RngCore::fill_bytes(&mut *g.borrow_mut(), &mut bytes));
    bytes
}

/// A sampled request, waiting for its log phase to turn into spans.
struct Trace {
    settings: Arc<Settings>,
    ids: Ids,
    parent_span: Option<[u8; 8]>,
    phases: Option<Arc<super::context::Phases>>,
    started: Instant,
}

impl Handler for Trace {
    fn on_response(&self) -> bool {
        true
    }

    /// Queues what the spans are made of; the exporter's task makes and encodes them.
    fn log(&self, event: &RequestEvent, _: &super::context::Serialized) {
        self.settings.queue.offer(Record {
            ids: self.ids,
            parent_span: self.parent_span,
            phases: self.phases.as_ref().map(|p| p.taken()).unwrap_or_default(),
            started: self.started,
            event: event.clone(),
        });
    }
}

/// A finished traced request, queued for export: its ids, its phases and its event.
pub struct Record {
    ids: Ids,
    parent_span: Option<[u8; 8]>,
    phases: Vec<Phase>,
    started: Instant,
    event: RequestEvent,
}

impl log_queue::Entry for Record {
    /// About what its spans take encoded.
    fn size(&self) -> usize {
        512 + 128 * self.phases.len()
    }
}

impl Record {
    /// Writes the request's spans (the request, each timed phase, the call upstream) as
    /// `ScopeSpans.spans` fields.
    fn write(&self, out: &mut Vec<u8>) {
        let e = &self.event;
        let arrived_ns = e.timestamp_us * 1000;
        let at =
            |t: Instant| arrived_ns + t.saturating_duration_since(self.started).as_nanos() as u64;
        let ip = IpText::new(e.client_ip);
        let ip = std::str::from_utf8(ip.as_bytes()).unwrap_or_default();
        wire::Span {
            trace_id: &self.ids.trace,
            span_id: &self.ids.root,
            parent_span_id: self.parent_span.as_ref(),
            name: ["kong", ""],
            kind: wire::Kind::Server,
            start_unix_nano: arrived_ns,
            end_unix_nano: arrived_ns + e.total_latency_us * 1000,
            attributes: &request_attributes(e, ip),
            error: e.status >= 500,
        }
        .write(SPANS, out);
        let upstream = upstream_attributes(e);
        for &Phase { name, start, end } in &self.phases {
            let plugin_id: [u8; 8];
            let (name, kind, id, attributes) = if name == super::context::UPSTREAM_PHASE {
                let name = ["kong.balancer", ""];
                (name, wire::Kind::Client, &self.ids.balancer, &upstream[..])
            } else {
                plugin_id = random_bytes();
                let name = ["kong.access.plugin.", name];
                (name, wire::Kind::Internal, &plugin_id, &[][..])
            };
            wire::Span {
                trace_id: &self.ids.trace,
                span_id: id,
                parent_span_id: Some(&self.ids.root),
                name,
                kind,
                start_unix_nano: at(start),
                end_unix_nano: at(end),
                attributes,
                error: false,
            }
            .write(SPANS, out);
        }
    }
}

/// `ScopeSpans.spans`.
const SPANS: u32 = 2;

type Attributes<'a> = smallvec::SmallVec<[(&'static str, wire::Value<'a>); 10]>;

/// The request span's attributes (OpenTelemetry's HTTP semantic conventions, as Kong names them).
fn request_attributes<'a>(e: &'a RequestEvent, ip: &'a str) -> Attributes<'a> {
    use wire::Value::{Int, Joined, Text};
    let mut a: Attributes<'a> = smallvec::smallvec![
        ("http.method", Text(&e.method)),
        ("http.url", Joined(["http://", &e.host, &e.path])),
        ("http.host", Text(&e.host)),
        ("http.scheme", Text("http")),
        ("http.status_code", Int(i64::from(e.status))),
        ("net.peer.ip", Text(ip)),
        ("kong.request.id", Text(&e.request_id)),
    ];
    let named = [
        ("kong.route.name", &e.route),
        ("kong.service.name", &e.service),
        ("kong.consumer.name", &e.consumer),
    ];
    for (key, value) in named {
        if let Some(v) = value {
            a.push((key, Text(v)));
        }
    }
    a
}

fn upstream_attributes(e: &RequestEvent) -> Attributes<'_> {
    use wire::Value::{Int, Text};
    let mut a: Attributes<'_> = smallvec::smallvec![("http.status_code", Int(i64::from(e.status)))];
    if let Some((host, port)) = e.upstream_addr.as_deref().and_then(|t| t.rsplit_once(':')) {
        a.push(("net.peer.ip", Text(host.trim_matches(['[', ']']))));
        a.push(("net.peer.port", Int(port.parse().unwrap_or(0))));
    }
    a
}

#[cfg(test)]
mod tests {
    use crate::plugins::checked_config;
    use serde_json::json;

    // spec/03-plugins/37-opentelemetry/02-schema_spec.lua and schema.lua's rules.
    #[test]
    fn schema_follows_kong() {
        let c = checked_config(
            "opentelemetry",
            json!({"traces_endpoint": "http://otel.test:4318/v1/traces"}),
        )
        .unwrap();
        assert_eq!(c["queue"]["max_batch_size"], 200);
        assert_eq!(c["propagation"]["default_format"], "w3c");
        assert_eq!(c["header_type"], "preserve");
        let c = checked_config(
            "opentelemetry",
            json!({"endpoint": "http://otel.test/v1/traces", "batch_span_count": 50}),
        )
        .unwrap();
        assert_eq!(
            (
                c["traces_endpoint"].as_str(),
                c["queue"]["max_batch_size"].as_u64()
            ),
            (Some("http://otel.test/v1/traces"), Some(50))
        );
        let err = |c| checked_config("opentelemetry", c).unwrap_err();
        assert_eq!(err(json!({}))["@entity"][0], "at least one of these fields must be non-empty: 'config.traces_endpoint', 'config.logs_endpoint'");
        let e = err(
            json!({"traces_endpoint": "http://x.test", "resource_attributes": {"foo": ["bar"]}}),
        );
        assert_eq!(e["resource_attributes"], "invalid type of value: table");
        let e =
            err(json!({"traces_endpoint": "http://x.test", "resource_attributes": {"foo": ""}}));
        assert_eq!(e["resource_attributes"], "required field missing");
        let e = err(json!({"traces_endpoint": "http://x.test", "sampling_rate": 1.5}));
        assert_eq!(e["sampling_rate"], "value should be between 0 and 1");
        let e = err(
            json!({"traces_endpoint": "http://x.test", "propagation": {"extract": ["w3c", "zipkin"], "inject": ["preserve", "b3-single"]}}),
        );
        assert_eq!(
            e["propagation"]["extract"],
            json!([null, "expected one of: w3c, b3, jaeger, ot, aws, gcp"])
        );
        assert!(e["propagation"].get("inject").is_none());
        let e = err(
            json!({"traces_endpoint": "http://x.test", "logs_endpoint": "http://x.test/v1/logs"}),
        );
        assert!(e["logs_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("logs_endpoint"));
    }

    #[test]
    fn header_type_stands_in_for_propagation() {
        let formats = |c: serde_json::Value| {
            let c = checked_config("opentelemetry", c).unwrap();
            super::formats(&c)
        };
        let base = json!({"traces_endpoint": "http://x.test"});
        let (extract, inject) = formats(base.clone());
        assert_eq!((extract.len(), inject), (6, vec!["preserve"]));
        let mut b3 = base.clone();
        b3["header_type"] = json!("b3-single");
        assert_eq!(formats(b3).1, ["b3-single"]);
        let mut given = base;
        given["propagation"] = json!({"extract": ["jaeger"], "inject": ["w3c", "aws"]});
        assert_eq!(formats(given), (vec!["jaeger"], vec!["w3c", "aws"]));
    }
}
