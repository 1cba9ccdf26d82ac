//! Synthetic traffic for tests and benchmarks: varied statuses, routes, consumers and
//! latencies, spread evenly over a time span.
use crate::RequestEvent;

/// `n` events spread over `[end_us - span_us, end_us)`.
pub fn synthetic(n: u64, end_us: u64, span_us: u64) -> Vec<RequestEvent> {
    (0..n)
        .map(|i| event(i, end_us - span_us + i * (span_us / n.max(1))))
        .collect()
}

/// The `i`th synthetic event, at `timestamp_us`.
pub fn event(i: u64, timestamp_us: u64) -> RequestEvent {
    let status = [200, 200, 200, 201, 304, 401, 429, 500][(i % 8) as usize];
    RequestEvent {
        timestamp_us,
        request_id: format!("r{i}").into(),
        service: Some("pytbak".into()),
        route: Some(["get", "post", "put"][(i % 3) as usize].into()),
        consumer_id: None,
        consumer: Some(["ann", "bob"][(i % 2) as usize].into()),
        credential_id: None,
        method: "GET".into(),
        host: "h".into(),
        path: format!("/api/{i}").into(),
        route_path: Some("/api/".into()),
        status,
        total_latency_us: 200 + (i * 7919) % 50_000,
        upstream_latency_us: 100,
        gateway_latency_us: 100,
        bytes_in: 100,
        bytes_out: 1000 + i,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        user_agent: None,
        rate_limited: status == 429,
        auth_failed: status == 401,
        upstream_failed: false,
        upstream_addr: None,
        grpc_status: None,
        ws_close_code: None,
        cache_hit: false,
        node: "n1".into(),
    }
}
