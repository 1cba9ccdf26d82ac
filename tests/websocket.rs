//! WebSocket through the gateway with real clients and backends: the `websockets` package's
//! client and echo server (tests/data/ws_client.py, tests/data/ws_backend.py) and a real
//! ClickHouse for the connection's analytics event.
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";

/// ws_client.py against `path` of the proxy: `n` messages, `headers` as `name=value`.
fn ws_client(gw: &Gateway, path: &str, n: usize, headers: &[&str]) -> Value {
    let url = format!("ws://127.0.0.1:{}{path}", gw.proxy);
    python_json("ws_client.py", &[&url, &n.to_string()], headers)
}

/// A gateway with key-auth in front of the echo backend on `/ws` (a route of Kong 3's `ws`
/// protocol), an `http` route `/plain` with a limit of 3 a minute, and `/idle` on a service
/// whose read timeout (the tunnel's idle timeout) is one second.
async fn gateway(backend: &PythonServer, extra_env: &[(&str, &str)]) -> Gateway {
    let gw = Gateway::start(extra_env).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "echo", "url": url}))
        .await;
    let idle = json!({"name": "idle", "url": url, "read_timeout": 1000});
    gw.create("/services", idle).await;
    let ws = json!({"name": "ws", "paths": ["/ws"], "protocols": ["ws", "wss"]});
    gw.create("/services/echo/routes", ws).await;
    let plain = json!({"name": "plain", "paths": ["/plain"]});
    gw.create("/services/echo/routes", plain).await;
    gw.create("/services/idle/routes", json!({"paths": ["/idle"]}))
        .await;
    gw.create("/routes/ws/plugins", json!({"name": "key-auth"}))
        .await;
    let limit = json!({"name": "rate-limiting", "config": {"minute": 3}});
    gw.create("/routes/plain/plugins", limit).await;
    gw.create("/consumers", json!({"username": "wendy"})).await;
    gw.create("/consumers/wendy/key-auth", json!({"key": KEY}))
        .await;
    gw.settled().await;
    gw
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_echoed_in_order_behind_key_auth_and_the_close_is_one_event() {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(ch) = ClickHouseServer::start(&dir.path().join("ch")).await else {
        return;
    };
    let backend = PythonServer::start("ws_backend.py", &[]).await;
    let url = ch.url("");
    let gw = gateway(
        &backend,
        &[
            ("TOLLGATE_ANALYTICS", "clickhouse"),
            ("TOLLGATE_CLICKHOUSE_URL", &url),
            ("TOLLGATE_CLICKHOUSE_DATABASE", "tollgate_ws"),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "200"),
        ],
    )
    .await;

    // The handshake is a request like any other: key-auth refuses it without a key.
    assert_eq!(ws_client(&gw, "/ws/echo", 1, &[]), json!({"status": 401}));
    let apikey = format!("apikey={KEY}");
    let echoed = ws_client(&gw, "/ws/echo", 1000, &[&apikey]);
    assert_eq!(echoed, json!({"echoed": 1000, "in_order": true}));

    // One event for the connection, written when it closed: status 101, the client's close
    // code, the consumer, and the bytes each way. Upstream to client: 1,000 unmasked echoes
    // ("message 0".."message 999", 10,890 payload bytes, 2 header bytes each) and the
    // backend's Close frame (4 bytes); client to upstream: the same masked (6 header bytes
    // each), its Close (8 bytes), and the handshake's head.
    let sql = "SELECT status, ws_close_code, consumer, bytes_out, bytes_in > 16898, \
               grpc_status FROM tollgate_ws.events WHERE path = '/ws/echo' AND status = 101 \
               FORMAT TSV";
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rows = String::new();
    while rows.trim().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rows = ch.query(sql).await;
    }
    assert_eq!(rows.trim(), "101\t1000\twendy\t12894\t1\t-1");
    let refused = ch
        .query("SELECT count() FROM tollgate_ws.events WHERE path = '/ws/echo' AND status = 401")
        .await;
    assert_eq!(refused.trim(), "1");

    // A tunnel with nothing passing is closed after the service's read timeout, and its
    // event says no Close frame passed (1006).
    let (elapsed, head) = silent_tunnel(&gw, "/idle").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}"
    );
    let sql = "SELECT ws_close_code FROM tollgate_ws.events WHERE path = '/idle' FORMAT TSV";
    let mut code = String::new();
    while code.trim().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        code = ch.query(sql).await;
    }
    assert_eq!(code.trim(), "1006");
}

/// Opens a WebSocket on `path` by hand and sends nothing: the 101's head, and how long the
/// gateway kept the tunnel open.
async fn silent_tunnel(gw: &Gateway, path: &str) -> (Duration, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.proxy))
        .await
        .unwrap();
    let handshake = format!(
        "GET {path} HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "the head ended early");
        head.push(byte[0]);
    }
    let opened = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the idle tunnel is closed")
        .unwrap();
    (
        opened.elapsed(),
        String::from_utf8_lossy(&head).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_apply_at_the_upgrade_and_ws_routes_take_only_websockets() {
    if !python_packages() {
        return;
    }
    let backend = PythonServer::start("ws_backend.py", &[]).await;
    let gw = gateway(&backend, &[]).await;
    // An http route carries upgrades too; each handshake counts against the limit.
    for _ in 0..3 {
        let echoed = ws_client(&gw, "/plain", 2, &[]);
        assert_eq!(echoed, json!({"echoed": 2, "in_order": true}));
    }
    assert_eq!(ws_client(&gw, "/plain", 1, &[]), json!({"status": 429}));
    // A plain request on a ws-only route is told to upgrade (what Kong Enterprise answers).
    let apikey = [("apikey", KEY)];
    let r = send("GET", &gw.proxy_url("/ws/x"), &apikey, None).await;
    assert_eq!(r.status, 426, "{}", r.body);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(r.json["message"], "Please use WebSocket protocol");
}
