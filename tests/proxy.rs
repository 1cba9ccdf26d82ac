//! The proxy end to end: the real binary in front of a real backend.
mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// Creates service `pytbak` for `backend` and route `api` on `/api/` through the admin API,
/// the way the README shows it, and waits until the proxy serves it.
async fn seed_service(gw: &Gateway, backend_port: u16) {
    let r = send(
        "POST",
        &gw.admin_url("/services"),
        &[],
        form(&[
            ("name", "pytbak"),
            ("url", &format!("http://127.0.0.1:{backend_port}")),
        ]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(
        "POST",
        &gw.admin_url("/services/pytbak/routes"),
        &[],
        form(&[("name", "api"), ("paths[]", "/api/")]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.wait_for_status("/api/get/context", 200, Duration::from_secs(3))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_put_behind_the_proxy_through_the_admin_api_answers_with_kongs_headers() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;

    let r = send(
        "GET",
        &gw.proxy_url("/api/get/context?x=1"),
        &[
            ("x-request-id", "trace-42"),
            ("x-forwarded-for", "10.9.8.7"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["path"], "/get/context",
        "strip_path removes the matched prefix"
    );
    assert_eq!(r.json["query"], "x=1");
    let seen = &r.json["headers"];
    assert_eq!(seen["host"], format!("127.0.0.1:{}", backend.port));
    assert_eq!(seen["x-forwarded-for"], "10.9.8.7, 127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-port"], gw.proxy.to_string());
    assert_eq!(seen["x-forwarded-prefix"], "/api/");
    // The client's X-Request-Id is its own header: passed on, not the gateway's id.
    assert_eq!(seen["x-request-id"], "trace-42");
    let id = r.header("x-kong-request-id").unwrap();
    assert_eq!(seen["x-kong-request-id"], id);
    assert_eq!(
        r.header("via"),
        Some(concat!("1.1 tollgate/", env!("CARGO_PKG_VERSION")))
    );
    assert!(r
        .header("x-kong-upstream-latency")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert!(r
        .header("x-kong-proxy-latency")
        .unwrap()
        .parse::<u64>()
        .is_ok());

    // A generated request id, forwarded upstream too.
    let r = send(
        "POST",
        &gw.proxy_url("/api/post/context"),
        &[],
        json_body(json!({"name": "ctx"})),
    )
    .await;
    let id = r.header("x-kong-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r.json["headers"]["x-kong-request-id"], id.as_str());
    assert_eq!(r.json["method"], "POST");
    assert_eq!(
        r.json["body"], "{\"name\":\"ctx\"}",
        "the body is streamed through unchanged"
    );

    let r = send("GET", &gw.proxy_url("/nowhere"), &[], None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json["message"], "no Route matched with those values");
    assert_eq!(r.json["request_id"], r.header("x-kong-request-id").unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_cleartext_clients_are_served() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .get(gw.proxy_url("/api/h2").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-kong-proxy-latency"));
    assert_eq!(
        resp.headers()["via"],
        concat!("2 tollgate/", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_traversal_and_oversized_requests_are_refused_before_the_backend() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;
    let before = backend.hits();
    let big = "a".repeat(40 * 1024);
    let huge = "a".repeat(80 * 1024);
    let cases: Vec<(String, u16)> = vec![
        ("GET /api/../admin HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        (
            "GET /api/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "GET /api/%2E./admin HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        ("GET /api/%zz HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("GET /api/a%00b HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        (
            "GET /api/x HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n".into(),
            400,
        ),
        (
            "GET /api/x HTTP/1.1\r\nHost: x\r\nX-Bin: a\x01b\r\n\r\n".into(),
            400,
        ),
        (
            format!("GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
            400,
        ),
        // Past hyper's 64 KiB read buffer the connection layer answers 431 itself.
        (
            format!("GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n"),
            431,
        ),
        // A request target beyond 8 KiB, as Kong's nginx answers it.
        (
            format!(
                "GET /api/{} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(8 * 1024)
            ),
            414,
        ),
        (
            format!(
                "GET /api/x?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(8 * 1024)
            ),
            414,
        ),
    ];
    for (req, want) in &cases {
        let got = raw_status(gw.proxy, req.as_bytes()).await;
        assert_eq!(got, *want, "{}", &req[..req.len().min(60)]);
    }
    assert_eq!(
        backend.hits(),
        before,
        "no malformed request reached the backend"
    );
    // Just under the limit, a long target goes through whole.
    let long = "a".repeat(8 * 1024 - "/api/".len());
    let r = send("GET", &gw.proxy_url(&format!("/api/{long}")), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["path"], format!("/{long}"));
    // An encoded slash stays encoded: it can neither traverse nor match a different route.
    let r = send("GET", &gw.proxy_url("/api/a%2Fb"), &[], None).await;
    assert_eq!(r.json["path"], "/a%2Fb");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_and_slow_upstreams_answer_502_and_504() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let closed = free_port();
    let body = json_body(
        json!({"name": "down", "url": format!("http://127.0.0.1:{closed}"), "retries": 2}),
    );
    assert_eq!(
        send("POST", &gw.admin_url("/services"), &[], body)
            .await
            .status,
        201
    );
    let body = json_body(
        json!({"name": "slow", "url": format!("http://127.0.0.1:{}", backend.port), "read_timeout": 300}),
    );
    assert_eq!(
        send("POST", &gw.admin_url("/services"), &[], body)
            .await
            .status,
        201
    );
    for (svc, path) in [("down", "/down"), ("slow", "/slow")] {
        let r = send(
            "POST",
            &gw.admin_url(&format!("/services/{svc}/routes")),
            &[],
            json_body(json!({"paths": [path]})),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    // Both routes served (each write is applied on its own; /down answering says nothing of /slow).
    gw.settled().await;
    let r = gw
        .wait_for_status("/down", 502, Duration::from_secs(3))
        .await;
    assert_eq!(
        r.json["message"],
        "An invalid response was received from the upstream server"
    );
    let started = std::time::Instant::now();
    let r = send("GET", &gw.proxy_url("/slow/slowly"), &[], None).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json["message"], "The upstream server is timing out");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "read_timeout cut the wait: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    use tokio::io::AsyncReadExt;
    let backend = Backend::start().await;
    let mut gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;
    // A keep-alive connection that has been answered and now sits idle.
    let mut idle = proxy_connection(
        &gw,
        b"GET /api/get/context HTTP/1.1\r\nhost: gw.test\r\n\r\n",
    )
    .await;
    let head = read_until(&mut idle, b"\r\n\r\n").await;
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let url = gw.proxy_url("/api/slow");
    let in_flight = tokio::spawn(async move { send("GET", &url, &[], None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate();
        (s, gw)
    });
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "the request that was in flight completed");
    let (exit, gw) = status.await.unwrap();
    assert!(
        exit.success(),
        "clean exit after draining: {exit:?}\n{}",
        gw.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the idle connection did not hold up the exit (drain timeout 30 s): {:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_sending_side_after_the_request_still_gets_the_answer() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;
    let mut client =
        proxy_connection(&gw, b"GET /api/slow HTTP/1.1\r\nhost: gw.test\r\n\r\n").await;
    // As `nc -N` and some HTTP/1.0-era clients do: done sending, still reading.
    client.shutdown().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_until(&mut client, b"}"))
        .await
        .expect("an answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"path\":\"/slow\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_first_bytes_arrive_alone_is_served() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;
    // The server is chosen from a connection's first bytes: "G" rules HTTP/2 out at once,
    // "P" could still start its preface ("PRI * HTTP/2.0") and must wait for more.
    for (first, rest) in [("G", "ET"), ("P", "OST")] {
        let mut client = proxy_connection(&gw, first.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let request = format!(
            "{rest} /api/post/context HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 0\r\n\r\n"
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let head =
            tokio::time::timeout(Duration::from_secs(5), read_until(&mut client, b"\r\n\r\n"))
                .await
                .expect("an answer");
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{first}{rest}: {head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_and_pass_promtool() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    seed_service(&gw, backend.port).await;
    for _ in 0..5 {
        send("GET", &gw.proxy_url("/api/m"), &[], None).await;
    }
    send("GET", &gw.proxy_url("/none"), &[], None).await;
    let m = send(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", gw.status),
        &[],
        None,
    )
    .await;
    let line = m
        .body
        .lines()
        .find(|l| {
            l.starts_with(
                "tollgate_http_requests_total{service=\"pytbak\",route=\"api\",code=\"200\"}",
            )
        })
        .unwrap();
    // The seeding loop in seed_service made at least one 200 too.
    assert!(
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 6,
        "{line}"
    );
    assert!(
        m.body
            .contains("tollgate_http_requests_total{service=\"\",route=\"\",code=\"404\"}"),
        "unrouted requests are counted"
    );
    assert!(m.body.contains(
        "tollgate_request_latency_seconds_bucket{service=\"pytbak\",route=\"api\",le=\"+Inf\"}"
    ));
    // Kong's names and labels (kong/plugins/prometheus/exporter.lua), for its dashboard.
    for series in [
        "kong_http_requests_total{service=\"pytbak\",route=\"api\",code=\"200\",source=\"service\",workspace=\"default\",consumer=\"\"}",
        "kong_http_requests_total{service=\"\",route=\"\",code=\"404\",source=\"kong\",workspace=\"default\",consumer=\"\"}",
        "kong_request_latency_ms_bucket{service=\"pytbak\",route=\"api\",workspace=\"default\",le=\"25\"}",
        "kong_upstream_latency_ms_count{service=\"pytbak\",route=\"api\",workspace=\"default\"}",
        "kong_kong_latency_ms_bucket{service=\"pytbak\",route=\"api\",workspace=\"default\",le=\"6000\"}",
        "kong_bandwidth_bytes{service=\"pytbak\",route=\"api\",direction=\"egress\",workspace=\"default\",consumer=\"\"}",
        "kong_bandwidth_bytes{service=\"pytbak\",route=\"api\",direction=\"ingress\",workspace=\"default\",consumer=\"\"}",
        "kong_nginx_connections_total{node_id=",
        "kong_nginx_requests_total{node_id=",
        "kong_datastore_reachable 1",
        "kong_node_info{node_id=",
    ] {
        assert!(m.body.contains(series), "{series} missing:\n{}", m.body);
    }
    let kong_total = m
        .body
        .lines()
        .find(|l| l.starts_with("kong_nginx_requests_total{"))
        .unwrap();
    assert!(
        kong_total
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 7,
        "{kong_total}"
    );
    let status = gw.status().await;
    assert_eq!(status.json["ready"], true);
    assert_eq!(status.json["database"]["reachable"], true);
    if service_env("TOLLGATE_TEST_PROMTOOL").is_none() {
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 3 is lint only (1 would be a text that does not parse). Kong's own names break
    // three of promtool's naming rules (`_ms`, a counter without `_total`, gauges with it);
    // they are kept for Kong's dashboard. Everything else must be clean.
    let kong_naming = [
        "metric names should not contain abbreviated units",
        "counter metrics should have \"_total\" suffix",
        "non-counter metrics should not have \"_total\" suffix",
    ];
    let accepted = |l: &str| l.starts_with("kong_") && kong_naming.iter().any(|m| l.contains(m));
    assert!(
        out.status.success()
            || (out.status.code() == Some(3)
                && said.lines().filter(|l| !l.is_empty()).all(accepted)),
        "promtool ({:?}): {said}",
        out.status.code()
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[("TOLLGATE_WORKER_THREADS", "1")]).await;
    seed_service(&gw, backend.port).await;
    let mut peers = std::collections::HashSet::new();
    for i in 0..20 {
        // Bodies of every kind end the exchange: empty, small, and a HEAD's none.
        let method = if i % 2 == 0 { "GET" } else { "HEAD" };
        let r = send(method, &gw.proxy_url("/api/get/context"), &[], None).await;
        assert_eq!(r.status, 200);
        if let Some(peer) = r.json["peer"].as_str() {
            peers.insert(peer.to_string());
        }
    }
    assert_eq!(
        peers.len(),
        1,
        "one upstream connection serves them all: {peers:?}"
    );
}

#[tokio::test]
async fn gateway_errors_come_in_the_format_the_client_accepts() {
    let gw = Gateway::start(&[]).await;
    let url = gw.proxy_url("/nowhere");
    let json = send("GET", &url, &[], None).await;
    assert_eq!(json.status, 404);
    assert_eq!(json.json["message"], "no Route matched with those values");
    let html = send(
        "GET",
        &url,
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        None,
    )
    .await;
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(html
        .body
        .contains("<p>no Route matched with those values.</p>"));
    let text = send("GET", &url, &[("accept", "text/plain")], None).await;
    assert!(text
        .body
        .starts_with("no Route matched with those values\nrequest_id: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_reading_the_request_gets_a_504_after_write_timeout() {
    // A backend that accepts connections and never reads from them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let gw = gateway_with(json!({"name": "deaf", "url": format!("http://127.0.0.1:{port}"), "write_timeout": 300, "retries": 0}), "/deaf/").await;

    let started = std::time::Instant::now();
    let big = "x".repeat(64 * 1024 * 1024);
    let r = try_send(
        "POST",
        &gw.proxy_url("/deaf/upload"),
        &[],
        Some(("text/plain", big)),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    if let Ok(r) = r {
        assert_eq!(r.status, 504, "{}", r.body);
        assert_eq!(r.json["message"], "The upstream server is timing out");
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tollgate_upstream_errors_total{service=\"deaf\"} 1"),
        "{}",
        metrics
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_stalls_is_cut_after_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that answers with a head and part of the body, then goes quiet.
    let stalling = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = stalling.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = stalling.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\ncontent-type: text/plain\r\n\r\nfirst ten.";
            let _ = socket.write_all(head.as_bytes()).await;
            held.push(socket);
        }
    });
    let service =
        json!({"name": "stall", "url": format!("http://127.0.0.1:{port}"), "read_timeout": 300});
    let gw = gateway_with(service, "/stall/").await;

    let started = std::time::Instant::now();
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        try_send("GET", &gw.proxy_url("/stall/x"), &[], None),
    )
    .await;
    let r = sent.expect("the proxy must not wait for ever on a stalled body");
    assert!(
        r.is_err(),
        "the client sees the body cut short, not a complete answer: {r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_an_origin_form_request_line_and_the_host_header() {
    // A backend that answers with the head of the request it received.
    let port = raw_backend(|head| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
            head.len()
        )
    })
    .await;
    let service = json!({"name": "echo", "url": format!("http://127.0.0.1:{port}/base")});
    let gw = gateway_with(service, "/echo").await;
    let r = send("GET", &gw.proxy_url("/echo/pets?kind=cat"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let request_line = r.body.lines().next().unwrap_or_default().to_string();
    assert_eq!(request_line, "GET /base/pets?kind=cat HTTP/1.1");
    let host = format!("host: 127.0.0.1:{port}");
    assert!(r.body.to_lowercase().contains(&host), "{}", r.body);

    // A route with preserve_host passes the client's Host on instead.
    let kept = json!({ "paths": ["/kept"], "preserve_host": true });
    let r = send(
        "POST",
        &gw.admin_url("/services/echo/routes"),
        &[],
        json_body(kept),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.settled().await;
    let client_host = [("host", "api.example.test")];
    let r = send("GET", &gw.proxy_url("/kept/pets"), &client_host, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = r.body.to_lowercase();
    assert!(sent.contains("host: api.example.test\r\n"), "{}", r.body);
    assert!(!sent.contains(&host), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_upstream_is_answered_to_the_client_as_http_1_1_on_a_kept_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that speaks HTTP/1.0, as Python's http.server and some old services do.
    let port = raw_backend(|_| "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
    let service = json!({"name": "old", "url": format!("http://127.0.0.1:{port}")});
    let gw = gateway_with(service, "/old").await;
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", gw.proxy))
        .await
        .unwrap();
    for _ in 0..2 {
        client
            .write_all(b"GET /old/x HTTP/1.1\r\nhost: gw.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("an answer on the same connection")
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\nok"), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_requests_and_responses_stream_through_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that reads a chunked request to its last chunk, then answers with what it
    // received, in chunked coding, in two chunks a few milliseconds apart.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let received = read_until(&mut socket, b"0\r\n\r\n").await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for part in received.chunks(received.len() / 2 + 1) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut coded = format!("{:x}\r\n", part.len()).into_bytes();
                coded.extend_from_slice(part);
                coded.extend_from_slice(b"\r\n");
                let _ = socket.write_all(&coded).await;
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
    });
    let service = json!({"name": "chunky", "url": format!("http://127.0.0.1:{port}")});
    let gw = gateway_with(service, "/chunky").await;
    let mut client = proxy_connection(
        &gw,
        b"POST /chunky/up HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let mut answer = read_until(&mut client, b"\r\n\r\n").await;
    let head_len = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(answer[..head_len].to_vec()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let body = loop {
        if let Some(body) = dechunk(&answer[head_len..]) {
            break body;
        }
        let more = tokio::time::timeout(Duration::from_secs(10), client.read_buf(&mut answer));
        assert!(more.await.expect("the rest of the answer").unwrap() > 0);
    };
    // What the upstream got: its head says chunked, and its body decodes to the client's.
    let upstream_saw = String::from_utf8(body).unwrap();
    let (up_head, up_body) = upstream_saw.split_once("\r\n\r\n").unwrap();
    assert!(
        up_head.starts_with("POST /up HTTP/1.1\r\n"),
        "{upstream_saw}"
    );
    assert!(up_head.contains("transfer-encoding: chunked"), "{up_head}");
    assert_eq!(dechunk(up_body.as_bytes()).unwrap(), b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_the_upstream_drops_is_replaced_for_idempotent_requests() {
    use tokio::io::AsyncWriteExt;
    // A backend that answers the first request on each connection and closes the connection
    // without a word at the second, as servers with a short keep-alive timeout do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                read_until(&mut socket, b"\r\n\r\n").await;
                let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                let _ = socket.write_all(reply.as_bytes()).await;
                read_until(&mut socket, b"\r\n\r\n").await;
            });
        }
    });
    let service = json!({"name": "brief", "url": format!("http://127.0.0.1:{port}")});
    let gw = gateway_with(service, "/brief").await;
    for i in 0..6 {
        let r = send("GET", &gw.proxy_url("/brief/x"), &[], None).await;
        assert_eq!((i, r.status, r.body.as_str()), (i, 200, "ok"));
    }
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 6);
    // A POST is not sent twice: the upstream may have acted on it before it hung up.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let body = Some(("text/plain", "once".to_string()));
        statuses.push(
            send("POST", &gw.proxy_url("/brief/x"), &[], body)
                .await
                .status,
        );
    }
    assert!(statuses.contains(&502), "{statuses:?}");
}

/// A plain connection to the gateway's proxy that has sent `bytes`.
async fn proxy_connection(gw: &Gateway, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", gw.proxy))
        .await
        .unwrap();
    socket.write_all(bytes).await.unwrap();
    socket
}

/// Reads from `socket` until what it read holds `end` (or the peer closes).
async fn read_until(socket: &mut tokio::net::TcpStream, end: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(end.len()).any(|w| w == end) {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// The data of a chunked body (extensions and trailers ignored); `None` while incomplete.
fn dechunk(mut coded: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = coded.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&coded[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return Some(data);
        }
        let start = line_end + 2;
        data.extend_from_slice(coded.get(start..start + size)?);
        coded = coded.get(start + size + 2..)?;
    }
}

/// A backend on a plain socket that reads one request per connection and writes
/// `reply(request head)`; returns its port.
async fn raw_backend(reply: fn(&str) -> String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = socket.write_all(reply(&head).as_bytes()).await;
        }
    });
    port
}

/// A gateway with `service` and one route on `path` to it.
async fn gateway_with(service: serde_json::Value, path: &str) -> Gateway {
    let gw = Gateway::start(&[]).await;
    let name = service["name"].as_str().unwrap().to_string();
    let r = send("POST", &gw.admin_url("/services"), &[], json_body(service)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let route = json!({ "paths": [path] });
    let r = send(
        "POST",
        &gw.admin_url(&format!("/services/{name}/routes")),
        &[],
        json_body(route),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.settled().await;
    gw
}

/// Requests `url` from `clients` tasks in a loop until `stop`; each task's answers by status
/// (0: no answer at all).
fn load(
    url: String,
    clients: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<std::collections::BTreeMap<u16, usize>>> {
    (0..clients)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = std::collections::BTreeMap::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = match try_send("GET", &url, &[], None).await {
                        Ok(r) => r.status,
                        Err(_) => 0,
                    };
                    *answers.entry(status).or_insert(0) += 1;
                }
                answers
            })
        })
        .collect()
}

/// The answers of `load`'s tasks, by status, once they stop.
async fn tally(
    tasks: Vec<tokio::task::JoinHandle<std::collections::BTreeMap<u16, usize>>>,
) -> std::collections::BTreeMap<u16, usize> {
    let mut answers = std::collections::BTreeMap::new();
    for t in tasks {
        for (status, n) in t.await.unwrap() {
            *answers.entry(status).or_insert(0) += n;
        }
    }
    answers
}

/// Applies `change(i)` every 100 ms for three seconds while eight clients request `path`, then
/// checks that every request was answered 200 and, with `stored` (changes through the
/// database), that the proxy applied all 30 changes.
async fn churn_under_load<F, Fut>(gw: &Gateway, path: &str, stored: bool, change: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    gw.wait_for_status(path, 200, Duration::from_secs(5)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = load(gw.proxy_url(path), 8, stop.clone());
    let version = |s: &serde_json::Value| s["configuration_version"].as_i64().unwrap();
    let before = version(&send("GET", &gw.admin_url("/status"), &[], None).await.json);
    for i in 0..30 {
        change(i).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if stored {
        gw.settled().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let after = version(&send("GET", &gw.admin_url("/status"), &[], None).await.json);
    let answers = tally(clients).await;
    let total: usize = answers.values().sum();
    assert_eq!(
        answers.keys().collect::<Vec<_>>(),
        [&200],
        "answers by status: {answers:?}"
    );
    assert!(total >= 300, "{total} requests in 3 s");
    assert!(
        !stored || after - before >= 30,
        "configurations applied: {}",
        after - before
    );
}

/// Issue 29, zero downtime: the configuration changed every 100 ms through the admin API (a
/// plugin on the route added and removed, another route created and deleted) under load: no
/// request fails, none answers other than 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configuration_changed_every_100_ms_under_load_fails_no_request() {
    let (gw, _backend) = echo_gateway().await;
    let plugin = "00000000-0000-0000-0000-00000000c4a1";
    churn_under_load(&gw, "/echo/x", true, |i| {
        let gw = &gw;
        async move {
            let (method, path, body) = match i % 4 {
                0 => (
                    "POST",
                    "/routes/echo/plugins".to_string(),
                    json!({"id": plugin,
                    "name": "response-transformer", "config": {"add": {"headers": ["x-churn:1"]}}}),
                ),
                1 => (
                    "POST",
                    "/services/echo/routes".to_string(),
                    json!({"name": "churn", "paths": ["/churn"]}),
                ),
                2 => ("DELETE", format!("/plugins/{plugin}"), json!({})),
                _ => ("DELETE", "/routes/churn".to_string(), json!({})),
            };
            let body = (method == "POST").then(|| json_body(body)).flatten();
            let r = send(method, &gw.admin_url(&path), &[], body).await;
            assert!(
                r.status == 201 || r.status == 204,
                "{method} {path}: {}",
                r.body
            );
        }
    })
    .await;
}

/// The same with DB-less reloads: the whole declarative configuration posted to `/config`
/// every 100 ms, alternating between two that both keep the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declarative_reloads_every_100_ms_under_load_fail_no_request() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[("TOLLGATE_DATABASE", "off")]).await;
    let config = |extra: &str| {
        format!(
            "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://127.0.0.1:{}\n  \
             routes:\n  - name: echo\n    paths: [/echo]\n{extra}",
            backend.port
        )
    };
    let configs = [
        config(""),
        config("  - name: churn\n    paths: [/churn]\n    plugins:\n    - name: cors\n"),
    ];
    let url = gw.admin_url("/config");
    let first = send(
        "POST",
        &url,
        &[],
        Some(("application/yaml", configs[0].clone())),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    churn_under_load(&gw, "/echo/x", false, |i| {
        let (url, body) = (url.clone(), configs[i % 2].clone());
        async move {
            let r = send("POST", &url, &[], Some(("application/yaml", body))).await;
            assert_eq!(r.status, 201, "{}", r.body);
        }
    })
    .await;
}

/// A process started for a test and SIGKILLed by it (or when dropped).
async fn spawn_killable(program: &str, args: &[String], ready_port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", ready_port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{program} never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// Issue 29, chaos (the suite's short version): under load on two routes, Redis (the
/// rate-limiting counters of one route, `fault_tolerant`) and the other route's backend are
/// killed with SIGKILL, then started again. The first route answers 200 throughout (its limit
/// fails open, as fault_tolerant says); the second answers 200 or, while its backend is dead,
/// 502 (a request cut by the kill itself aside), never hangs, and serves again once the
/// backend is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_redis_and_a_backend_under_load_spares_what_does_not_need_them() {
    if service_env("TOLLGATE_TEST_REDIS_URL").is_none() {
        return; // ./scripts/test installs redis-server with the Redis it starts
    }
    let [redis_port, mortal_port] = free_ports::<2>();
    let redis_args = |port: u16| {
        [
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
    };
    let mortal_args = [
        "-m".to_string(),
        "http.server".into(),
        "--bind".into(),
        "127.0.0.1".into(),
        mortal_port.to_string(),
    ];
    let mut redis = spawn_killable("redis-server", &redis_args(redis_port), redis_port).await;
    let mut mortal = spawn_killable("python3", &mortal_args, mortal_port).await;
    let (gw, _backend) = echo_gateway().await;
    gw.create(
        "/routes/echo/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 1_000_000, "policy": "redis",
            "fault_tolerant": true, "redis": {"host": "127.0.0.1", "port": redis_port}}}),
    )
    .await;
    let url = format!("http://127.0.0.1:{mortal_port}");
    gw.create("/services", json!({"name": "mortal", "url": url}))
        .await;
    gw.create(
        "/services/mortal/routes",
        json!({"name": "mortal", "paths": ["/mortal"]}),
    )
    .await;
    gw.wait_for_status("/echo/x", 200, Duration::from_secs(5))
        .await;
    gw.wait_for_status("/mortal/", 200, Duration::from_secs(5))
        .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spared = load(gw.proxy_url("/echo/x"), 4, stop.clone());
    let hit = load(gw.proxy_url("/mortal/"), 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.start_kill().unwrap();
    mortal.start_kill().unwrap();
    let _ = (redis.wait().await, mortal.wait().await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _redis = spawn_killable("redis-server", &redis_args(redis_port), redis_port).await;
    let _mortal = spawn_killable("python3", &mortal_args, mortal_port).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let spared = tally(spared).await;
    assert_eq!(
        spared.keys().collect::<Vec<_>>(),
        [&200],
        "the spared route: {spared:?}"
    );
    // A request whose answer was on its way when the backend died is cut (status 0 here): at
    // most one per client.
    let hit = tally(hit).await;
    assert!(
        hit.keys().all(|s| [0, 200, 502].contains(s))
            && hit.contains_key(&502)
            && hit.get(&0).copied().unwrap_or(0) <= 4,
        "the route whose backend died: {hit:?}"
    );
    gw.wait_for_status("/mortal/", 200, Duration::from_secs(5))
        .await;
}
