//! Kong's Prometheus plugin spec (spec/03-plugins/26-prometheus/02-access_spec.lua) against
//! `/metrics`, which always carries Kong's series (Tollgate has no prometheus plugin to
//! enable). Left out: gRPC and TCP stream counts (Tollgate proxies no TCP streams), Lua VM and
//! shared-dict memory, `kong_nginx_metric_errors_total`, per-consumer labels and the AI
//! metrics.
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Kong's fixture: service `mock-service`, GET route `http-route` on `/`.
async fn mock_service() -> (Gateway, Backend) {
    let gw = Gateway::start(&[]).await;
    let backend = Backend::start().await;
    let svc = json!({"name": "mock-service", "url": format!("http://127.0.0.1:{}", backend.port)});
    gw.create("/services", svc).await;
    let route =
        json!({"name": "http-route", "paths": ["/"], "methods": ["GET"], "protocols": ["http"]});
    gw.create("/services/mock-service/routes", route).await;
    gw.settled().await;
    (gw, backend)
}

/// Waits until `/metrics` carries `series` (the counters are read from the analytics
/// pipeline's in-memory totals, as Kong's `wait_until` waits for its shared dict).
async fn wait_for_series(gw: &Gateway, series: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = gw.metrics().await;
        if body.lines().any(|l| l == series) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never appeared:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn requests(code: u16, source: &str, count: u64) -> String {
    format!(
        "kong_http_requests_total{{service=\"mock-service\",route=\"http-route\",code=\"{code}\",source=\"{source}\",workspace=\"default\",consumer=\"\"}} {count}"
    )
}

// 02-access_spec.lua:108 "increments the count for proxied requests".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_requests_are_counted_by_status() {
    let (gw, _backend) = mock_service().await;
    let r = send("GET", &gw.proxy_url("/status/200"), &[], None).await;
    assert_eq!(r.status, 200);
    wait_for_series(&gw, &requests(200, "service", 1)).await;
    let r = send("GET", &gw.proxy_url("/status/400"), &[], None).await;
    assert_eq!(r.status, 400);
    let body = wait_for_series(&gw, &requests(400, "service", 1)).await;
    assert!(body.lines().any(|l| l == requests(200, "service", 1)));
}

// 02-access_spec.lua:225 "does not log error if no service was matched", :239 "does not log
// error during a scrape", :255 "scrape response has metrics and comments only" (Kong's lines
// all begin with `#` or `kong`; Tollgate's own series begin with `tollgate_`), :269 "exposes
// db reachability metrics", :309 "does not expose per consumer metrics by default".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_has_only_metrics_and_comments_and_no_errors_are_logged() {
    let (gw, _backend) = mock_service().await;
    let r = send("POST", &gw.proxy_url("/no-route-match-in-kong"), &[], None).await;
    assert_eq!(r.status, 404);
    let body = gw.metrics().await;
    for line in body.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with('#') || line.starts_with("kong_") || line.starts_with("tollgate_"),
            "{line}"
        );
    }
    assert!(body.lines().any(|l| l == "kong_datastore_reachable 1"));
    assert!(!body.contains("http_consumer_status"));
    let log = gw.log_text();
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "errors logged:\n{log}"
    );
}

// 02-access_spec.lua:491 "behave correctly if consumer is not found": key-auth refuses a
// request without a key, counted with source `kong`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_an_auth_plugin_refuses_is_counted_as_kongs() {
    let (gw, _backend) = mock_service().await;
    gw.create("/consumers", json!({"username": "alice"})).await;
    gw.create("/consumers/alice/key-auth", json!({"key": "alice-key"}))
        .await;
    let plugin = json!({"name": "key-auth"});
    gw.create("/routes/http-route/plugins", plugin).await;
    gw.settled().await;
    let ok = send(
        "GET",
        &gw.proxy_url("/status/200"),
        &[("apikey", "alice-key")],
        None,
    )
    .await;
    assert_eq!(ok.status, 200);
    let refused = send("GET", &gw.proxy_url("/status/200"), &[], None).await;
    assert_eq!(refused.status, 401);
    wait_for_series(&gw, &requests(200, "service", 1)).await;
    wait_for_series(&gw, &requests(401, "kong", 1)).await;
}
