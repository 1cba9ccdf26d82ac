//! http-log, tcp-log and udp-log through the real proxy, against real servers the test runs
//! (an HTTP server, a TCP listener, a UDP socket): Kong's log entry arrives, batched as the
//! queue says (spec/03-plugins/03-http-log/01-log_spec.lua, 01-tcp-log, 02-udp-log), and a
//! log server that is down or never answers does not slow the proxy: its queue drops and
//! counts in /metrics. file-log carries correlation-id's id (11-correlation-id).
mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// A gateway with service `echo` (route `/echo`) and `plugin` on it.
async fn logged(plugin: Value) -> (Gateway, Backend) {
    let (gw, backend) = echo_gateway().await;
    let r = gw.create("/services/echo/plugins", plugin).await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.settled().await;
    (gw, backend)
}

/// What an HTTP log server received: each request's method, headers and JSON body.
type Received = Arc<Mutex<Vec<(String, axum::http::HeaderMap, Value)>>>;

async fn log_server() -> (u16, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let store = store.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            store
                .lock()
                .unwrap()
                .push((parts.method.to_string(), parts.headers, body));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

// 01-log_spec.lua: "logs to HTTP", "adds authorization if userinfo and/or header is present",
// custom headers, PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_log_sends_each_entry_with_the_configured_method_and_headers() {
    let (port, received) = log_server().await;
    let endpoint = format!("http://bob:s%20cret@127.0.0.1:{port}/logs");
    let config = json!({"http_endpoint": endpoint, "method": "PUT",
        "headers": {"X-Api-Key": "log-key"}});
    let (gw, _backend) = logged(json!({"name": "http-log", "config": config})).await;
    let r = send("GET", &gw.proxy_url("/echo/one?x=1"), &[], None).await;
    assert_eq!(r.status, 200);
    let (method, headers, body) =
        wait_for("an entry", || received.lock().unwrap().first().cloned()).await;
    assert_eq!(method, "PUT");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-api-key"], "log-key");
    // base64("bob:s cret")
    assert_eq!(headers["authorization"], "Basic Ym9iOnMgY3JldA==");
    assert_eq!(body["request"]["method"], "GET");
    assert_eq!(body["request"]["uri"], "/echo/one");
    assert_eq!(body["response"]["status"], 200);
    assert_eq!(body["service"]["name"], "echo");
    let series = format!(
        "tollgate_log_entries_total{{plugin=\"http-log\",\
         destination=\"http://127.0.0.1:{port}/logs\",outcome=\"sent\"}}"
    );
    assert_eq!(
        counted(&gw, &[&series], 1).await,
        1,
        "no password in the label"
    );
}

/// Polls /metrics until the `series` add up to `expected`; what they came to.
async fn counted(gw: &Gateway, series: &[&str], expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = gw.metrics().await;
        let n = series.iter().map(|s| metric(&text, s)).sum();
        if n == expected || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// 01-log_spec.lua: "logs to HTTP with a buffer": a batch is one JSON array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_log_batches_entries_into_arrays() {
    let (port, received) = log_server().await;
    let config = json!({"http_endpoint": format!("http://127.0.0.1:{port}/"),
        "queue": {"max_batch_size": 5, "max_coalescing_delay": 0.5}});
    let (gw, _backend) = logged(json!({"name": "http-log", "config": config})).await;
    for i in 0..5 {
        send("GET", &gw.proxy_url(&format!("/echo/{i}")), &[], None).await;
    }
    let batches = wait_for("five entries", || {
        let got = received.lock().unwrap();
        let n: usize = got
            .iter()
            .map(|(_, _, b)| b.as_array().map_or(0, Vec::len))
            .sum();
        (n == 5).then(|| got.clone())
    })
    .await;
    assert!(batches.iter().all(|(_, _, b)| b.is_array()));
    assert!(
        batches.len() <= 2,
        "{} requests for five entries",
        batches.len()
    );
}

/// A log server that accepts connections and never answers, and one that is not there:
/// requests are not slowed (each would wait 10 s otherwise), the queue drops what does not
/// fit, and the drops and failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_server_that_hangs_or_is_down_never_slows_the_proxy() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let config = json!({"http_endpoint": format!("http://127.0.0.1:{silent_port}/"),
        "timeout": 10000, "queue": {"max_entries": 5, "max_retry_time": 0}});
    let (gw, _backend) = logged(json!({"name": "http-log", "config": config})).await;
    let down = free_port();
    let tcp_down = json!({"name": "tcp-log", "config": {"host": "127.0.0.1", "port": down}});
    gw.create("/plugins", tcp_down).await;
    gw.settled().await;
    let started = Instant::now();
    for i in 0..60 {
        let r = send("GET", &gw.proxy_url(&format!("/echo/{i}")), &[], None).await;
        assert_eq!(r.status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "60 requests took {took:?}");
    let text = gw.metrics().await;
    let http = format!("plugin=\"http-log\",destination=\"http://127.0.0.1:{silent_port}/\"");
    let dropped = metric(
        &text,
        &format!("tollgate_log_entries_total{{{http},outcome=\"dropped\"}}"),
    );
    assert!(
        dropped >= 50,
        "{dropped} dropped of 60 with room for 5 (+1 in flight)"
    );
    let waiting = metric(&text, &format!("tollgate_log_queue_entries{{{http}}}"));
    assert!(waiting <= 5, "{waiting} waiting");
    let tcp = format!("plugin=\"tcp-log\",destination=\"127.0.0.1:{down}\"");
    let failed = format!("tollgate_log_entries_total{{{tcp},outcome=\"failed\"}}");
    let dropped = format!("tollgate_log_entries_total{{{tcp},outcome=\"dropped\"}}");
    assert_eq!(counted(&gw, &[&failed, &dropped], 60).await, 60);
}

// spec/03-plugins/01-tcp-log/01-tcp-log_spec.lua "logs to TCP": one JSON line per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_log_writes_a_json_line_per_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = lines.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(s).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    store
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(&line).unwrap());
                }
            });
        }
    });
    let config = json!({"host": "127.0.0.1", "port": port});
    let (gw, _backend) = logged(json!({"name": "tcp-log", "config": config})).await;
    for i in 0..3 {
        send("GET", &gw.proxy_url(&format!("/echo/{i}")), &[], None).await;
    }
    let got = wait_for("three lines", || {
        let l = lines.lock().unwrap();
        (l.len() == 3).then(|| l.clone())
    })
    .await;
    let uris: Vec<&str> = got
        .iter()
        .map(|l| l["request"]["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["/echo/0", "/echo/1", "/echo/2"]);
    assert_eq!(got[0]["response"]["status"], 200);
}

// spec/03-plugins/02-udp-log/01-udp-log_spec.lua "logs proper latencies": one datagram per
// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_log_sends_a_datagram_per_request() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let config = json!({"host": "127.0.0.1", "port": port});
    let (gw, _backend) = logged(json!({"name": "udp-log", "config": config})).await;
    send("GET", &gw.proxy_url("/echo/udp"), &[], None).await;
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .expect("a datagram")
        .unwrap();
    let entry: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(entry["request"]["uri"], "/echo/udp");
    assert!(entry["latencies"]["request"].is_u64());
    assert!(entry["latencies"]["kong"].is_u64());
}

// spec/03-plugins/11-correlation-id/01-access_spec.lua:465 "log serializer": file-log's entry
// carries the correlation id the client sent as `correlation_id` beside Kong's request id; an
// id the plugin made is logged as the upstream got it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correlation_id_is_in_the_log_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.log");
    let config = json!({"path": path.to_str().unwrap(), "reopen": true});
    let (gw, _backend) = logged(json!({"name": "file-log", "config": config})).await;
    let r = gw
        .create("/services/echo/plugins", json!({"name": "correlation-id"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.settled().await;
    let sent = send(
        "GET",
        &gw.proxy_url("/echo"),
        &[("Kong-Request-ID", "1234")],
        None,
    )
    .await;
    assert_eq!(sent.status, 200);
    let made = send("GET", &gw.proxy_url("/echo"), &[], None).await;
    let upstream_id = made.json["headers"]["kong-request-id"]
        .as_str()
        .unwrap()
        .to_string();
    let entries = wait_for("two log lines", || {
        let text = std::fs::read_to_string(&path).ok()?;
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (lines.len() == 2).then_some(lines)
    })
    .await;
    let request_id = entries[0]["request"]["id"].as_str().unwrap();
    assert!(request_id.len() == 32 && request_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(entries[0]["correlation_id"], "1234");
    assert_eq!(entries[1]["correlation_id"], upstream_id.as_str());
}
