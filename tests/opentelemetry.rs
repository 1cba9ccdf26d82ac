//! opentelemetry through the real proxy, its spans decoded by a real OTLP/HTTP receiver
//! (tests/data/otlp_receiver.py, with PyPI's opentelemetry-proto): parent and child links,
//! attributes, the trace id kept upstream, the propagation formats, sampling
//! (spec/03-plugins/37-opentelemetry/01-otlp_spec.lua, 03-propagation_spec.lua,
//! 04-exporter_spec.lua).
mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";

/// A gateway whose route `/echo` has key-auth (consumer `ann`, key `ann-key`) and
/// opentelemetry with `config` sending to a receiver writing to `spans`.
async fn traced(config: Value, spans: &Path) -> (Gateway, Backend, PythonServer) {
    let receiver = PythonServer::start("otlp_receiver.py", &[spans.as_os_str()]).await;
    let (gw, backend) = echo_gateway().await;
    gw.create("/routes/echo/plugins", json!({"name": "key-auth"}))
        .await;
    gw.create("/consumers", json!({"username": "ann"})).await;
    gw.create("/consumers/ann/key-auth", json!({"key": "ann-key"}))
        .await;
    let mut config = config;
    config["traces_endpoint"] = json!(format!("http://127.0.0.1:{}/v1/traces", receiver.port));
    let r = gw
        .create(
            "/routes/echo/plugins",
            json!({"name": "opentelemetry", "config": config}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.settled().await;
    (gw, backend, receiver)
}

/// The spans received so far, once there are `n` of trace `trace`.
async fn spans_of(file: &Path, trace: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let spans: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|s: &Value| s["trace_id"] == trace)
            .collect();
        if spans.len() >= n || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {spans:#?}"))
}

/// The upstream's traceparent: trace id and parent span id.
fn upstream_traceparent(r: &Resp) -> (String, String) {
    let tp = r.json["headers"]["traceparent"]
        .as_str()
        .expect("traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[3]), ("00", "01"), "{tp}");
    (parts[1].to_string(), parts[2].to_string())
}

// 01-otlp_spec.lua / 03-propagation_spec.lua: a request with a traceparent keeps its trace
// upstream and in the spans; the request span's parent is the caller's, the plugins' and
// the balancer's parent is the request span, and the upstream's parent is the balancer span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_link_up_and_the_trace_id_reaches_the_upstream() {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let config = json!({"headers": {"Authorization": "Bearer apm-token"},
        "resource_attributes": {"service.name": "edge", "deployment.environment": "test"},
        "http_response_header_for_traceid": "x-trace-id",
        "queue": {"max_coalescing_delay": 0.1}});
    let (gw, _backend, _receiver) = traced(config, &file).await;
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let r = send(
        "GET",
        &gw.proxy_url("/echo/items?x=1"),
        &[("traceparent", &traceparent), ("apikey", "ann-key")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-trace-id"), Some(TRACE));
    let (trace, upstream_parent) = upstream_traceparent(&r);
    assert_eq!(trace, TRACE);
    let spans = spans_of(&file, TRACE, 4).await;
    let root = named(&spans, "kong");
    assert_eq!(root["parent_span_id"], CALLER);
    assert_eq!(root["kind"], 2, "SERVER");
    assert_eq!(root["attributes"]["http.method"], "GET");
    assert_eq!(root["attributes"]["http.status_code"], 200);
    assert_eq!(root["attributes"]["kong.route.name"], "echo");
    assert_eq!(root["attributes"]["kong.consumer.name"], "ann");
    assert_eq!(root["resource"]["service.name"], "edge");
    assert_eq!(root["resource"]["deployment.environment"], "test");
    assert_eq!(root["content_type"], "application/x-protobuf");
    assert_eq!(root["authorization"], "Bearer apm-token");
    let balancer = named(&spans, "kong.balancer");
    assert_eq!(balancer["parent_span_id"], root["span_id"]);
    assert_eq!(balancer["span_id"], upstream_parent.as_str());
    assert_eq!(balancer["kind"], 3, "CLIENT");
    let auth = named(&spans, "kong.access.plugin.key-auth");
    assert_eq!(auth["parent_span_id"], root["span_id"]);
    for child in [balancer, auth] {
        let (s, e) = (
            child["start"].as_u64().unwrap(),
            child["end"].as_u64().unwrap(),
        );
        assert!(root["start"].as_u64().unwrap() <= s && s <= e, "{child}");
        assert!(
            e <= root["end"].as_u64().unwrap() + 1_000_000,
            "{child} ends within the request"
        );
    }
    assert!(
        auth["end"].as_u64() <= balancer["start"].as_u64(),
        "access before the upstream call"
    );

    // Without a trace context: a new trace, sent upstream as W3C (the default format).
    let r = send(
        "GET",
        &gw.proxy_url("/echo/new"),
        &[("apikey", "ann-key")],
        None,
    )
    .await;
    let (trace, _) = upstream_traceparent(&r);
    assert_ne!(trace, TRACE);
    assert_eq!(r.header("x-trace-id"), Some(trace.as_str()));
    let spans = spans_of(&file, &trace, 4).await;
    assert_eq!(named(&spans, "kong")["parent_span_id"], "");
    // A refused request is traced too, without a balancer span.
    let r = send(
        "GET",
        &gw.proxy_url("/echo/refused"),
        &[("traceparent", &format!("00-{}-{CALLER}-01", "1".repeat(32)))],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    let spans = spans_of(&file, &"1".repeat(32), 2).await;
    assert_eq!(named(&spans, "kong")["attributes"]["http.status_code"], 401);
    assert!(spans.iter().all(|s| s["name"] != "kong.balancer"));
}

// 03-propagation_spec.lua: preserve writes back the format that came in; `inject` names
// others; `clear` takes a header off; an unsampled caller is propagated, not exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_formats_and_sampling() {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let config = json!({"propagation": {"extract": ["b3", "w3c"], "inject": ["preserve", "aws"],
        "clear": ["x-b3-flags"]}, "queue": {"max_coalescing_delay": 0.1}});
    let (gw, _backend, _receiver) = traced(config, &file).await;
    let b3 = [
        ("x-b3-traceid", "80f198ee56343ba8"),
        ("x-b3-spanid", CALLER),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
        ("apikey", "ann-key"),
    ];
    let r = send("GET", &gw.proxy_url("/echo/b3"), &b3, None).await;
    let h = &r.json["headers"];
    let trace = "000000000000000080f198ee56343ba8";
    assert_eq!(h["x-b3-traceid"], trace);
    assert_eq!(h["x-b3-sampled"], "1");
    assert!(h.get("x-b3-flags").is_none(), "cleared: {h}");
    let aws = h["x-amzn-trace-id"].as_str().unwrap();
    assert!(
        aws.starts_with("Root=1-00000000-0000000080f198ee56343ba8;Parent="),
        "{aws}"
    );
    assert!(h.get("traceparent").is_none(), "preserve keeps B3");
    let spans = spans_of(&file, trace, 4).await;
    assert_eq!(named(&spans, "kong.balancer")["span_id"], h["x-b3-spanid"]);
    // Not sampled by the caller: the context still goes upstream, no span is sent.
    let unsampled = format!("00-{}-{CALLER}-00", "2".repeat(32));
    let r = send(
        "GET",
        &gw.proxy_url("/echo/quiet"),
        &[("traceparent", &unsampled), ("apikey", "ann-key")],
        None,
    )
    .await;
    let tp = r.json["headers"]["traceparent"].as_str().unwrap();
    assert!(tp.ends_with("-00"), "{tp}");
    // A sampled request after it flushes the queue; the unsampled one never arrives.
    let after = format!("00-{}-{CALLER}-01", "3".repeat(32));
    send(
        "GET",
        &gw.proxy_url("/echo/after"),
        &[("traceparent", &after), ("apikey", "ann-key")],
        None,
    )
    .await;
    assert_eq!(spans_of(&file, &"3".repeat(32), 4).await.len(), 4);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&"2".repeat(32)),
        "an unsampled trace was exported"
    );
}
