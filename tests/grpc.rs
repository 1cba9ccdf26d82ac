//! gRPC through the gateway with grpcio (PyPI) on both sides (tests/data/grpc_client.py and
//! tests/data/grpc_backend.py, raw-bytes methods): unary and bidirectional streaming calls
//! over h2c and over TLS (client to gateway and gateway to backend), trailers relayed, and the
//! gateway's own refusals as gRPC statuses; the call's `grpc-status` in a real ClickHouse.
//! Kong's route checks are from kong/runloop/handler.lua (the `protocols.grpc` branch).
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0";

/// grpc_client.py against `port`: `method` (unary, chat, or a path), `n` messages, then
/// `extra` arguments (`--tls CA NAME`, metadata `key=value`).
fn call(port: u16, method: &str, n: usize, extra: &[&str]) -> Value {
    let target = format!("127.0.0.1:{port}");
    python_json("grpc_client.py", &[&target, method, &n.to_string()], extra)
}

fn ok(replies: Value, trailers: Value) -> Value {
    json!({"code": "OK", "replies": replies, "trailers": trailers})
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_and_streaming_calls_pass_over_h2c_and_tls_and_refusals_are_grpc_statuses() {
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(ch) = ClickHouseServer::start(&dir.path().join("ch")).await else {
        return;
    };
    let (backend_cert, backend_key) = openssl_cert(dir.path(), "backend.test", "ec");
    let (cert_file, key_file) = (dir.path().join("b.crt"), dir.path().join("b.key"));
    std::fs::write(&cert_file, &backend_cert).unwrap();
    std::fs::write(&key_file, &backend_key).unwrap();
    let h2c = PythonServer::start("grpc_backend.py", &[]).await;
    let tls_args = [cert_file.as_os_str(), key_file.as_os_str()];
    let tls = PythonServer::start("grpc_backend.py", &tls_args).await;
    let url = ch.url("");
    let gw = Gateway::start(&[
        ("TOLLGATE_ANALYTICS", "clickhouse"),
        ("TOLLGATE_CLICKHOUSE_URL", &url),
        ("TOLLGATE_CLICKHOUSE_DATABASE", "tollgate_grpc"),
        ("TOLLGATE_ANALYTICS_FLUSH_MS", "200"),
    ])
    .await;
    let (gw_cert, gw_key) = openssl_cert(dir.path(), "grpc.test", "ec");
    let ca_file = dir.path().join("gateway-ca.pem");
    std::fs::write(&ca_file, &gw_cert).unwrap();
    let certificate = json!({"cert": gw_cert, "key": gw_key, "snis": ["grpc.test"]});
    gw.create("/certificates", certificate).await;
    let h2c_url = format!("grpc://127.0.0.1:{}", h2c.port);
    gw.create("/services", json!({"name": "h2c", "url": h2c_url}))
        .await;
    let tls_url = format!("grpcs://127.0.0.1:{}", tls.port);
    let grpcs = json!({"name": "tls", "url": tls_url, "tls_verify": false});
    gw.create("/services", grpcs).await;
    for (service, route, protocols, host) in [
        ("h2c", "plain", json!(["grpc"]), "plain.test"),
        ("tls", "secure", json!(["grpcs"]), "grpc.test"),
        ("h2c", "keyed", json!(["grpc", "grpcs"]), "keyed.test"),
    ] {
        // strip_path is left at its default (true): a gRPC call keeps its path anyway, as
        // Kong's grpc_pass sends it.
        let body = json!({"name": route, "protocols": protocols, "hosts": [host],
                          "paths": ["/echo.Echo/"]});
        gw.create(&format!("/services/{service}/routes"), body)
            .await;
    }
    let limit = json!({"name": "rate-limiting", "config": {"minute": 2}});
    gw.create("/routes/plain/plugins", limit).await;
    gw.create("/routes/keyed/plugins", json!({"name": "key-auth"}))
        .await;
    gw.create("/consumers", json!({"username": "gus"})).await;
    gw.create("/consumers/gus/key-auth", json!({"key": KEY}))
        .await;
    gw.settled().await;
    // The three limited calls must share one minute window: start them early in a minute.
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into_minute >= 45 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }

    // h2c: a unary call with its trailer, a bidirectional stream in order; the third call
    // in the minute is over the limit.
    let (tls_flag, ca) = ("--tls", ca_file.to_str().unwrap());
    let over_h2c = |method: &str, n: usize, authority: &str| {
        call(gw.proxy, method, n, &["--authority", authority])
    };
    assert_eq!(
        over_h2c("unary", 1, "plain.test"),
        ok(json!(["echo:hello"]), json!({"x-echo-trailer": "kept"}))
    );
    let messages: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    assert_eq!(
        over_h2c("chat", 20, "plain.test"),
        ok(json!(messages), json!({}))
    );
    let limited = over_h2c("unary", 1, "plain.test");
    assert_eq!(
        limited,
        json!({"code": "RESOURCE_EXHAUSTED", "details": "API rate limit exceeded"})
    );

    // TLS from the client (SNI grpc.test, the certificate made for it) and to the backend.
    let over_tls = |method: &str, n: usize, name: &str, extra: &[&str]| {
        let mut args = vec![tls_flag, ca, name];
        args.extend_from_slice(extra);
        call(gw.tls, method, n, &args)
    };
    assert_eq!(
        over_tls("unary", 1, "grpc.test", &[]),
        ok(json!(["echo:hello"]), json!({"x-echo-trailer": "kept"}))
    );
    assert_eq!(
        over_tls("chat", 20, "grpc.test", &[]),
        ok(json!(messages), json!({}))
    );

    // Refusals the gateway writes: no key (16), no route (12), a grpcs-only route in
    // cleartext (status 1, handler.lua's "gRPC request matched gRPCs route").
    let unauthenticated = over_h2c("unary", 1, "keyed.test");
    assert_eq!(
        unauthenticated["code"], "UNAUTHENTICATED",
        "{unauthenticated}"
    );
    let apikey = format!("apikey={KEY}");
    let keyed = call(
        gw.proxy,
        "unary",
        1,
        &["--authority", "keyed.test", &apikey],
    );
    assert_eq!(keyed["code"], "OK", "{keyed}");
    let no_route = over_h2c("/other.Svc/Call", 1, "plain.test");
    assert_eq!(
        no_route,
        json!({"code": "UNIMPLEMENTED", "details": "no Route matched with those values"})
    );
    let cleartext = over_h2c("unary", 1, "grpc.test");
    assert_eq!(
        cleartext,
        json!({"code": "CANCELLED", "details": "gRPC request matched gRPCs route"})
    );

    // A gRPC route refuses what is not gRPC (415), and gRPC over HTTP/1.1 (426).
    let r = send(
        "POST",
        &gw.proxy_url("/echo.Echo/Unary"),
        &[("host", "plain.test")],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json["message"].clone()),
        (415, json!("Non-gRPC request matched gRPC route"))
    );
    let grpc_h1 = [("host", "plain.test"), ("content-type", "application/grpc")];
    let r = send("POST", &gw.proxy_url("/echo.Echo/Unary"), &grpc_h1, None).await;
    assert_eq!((r.status, r.header("upgrade")), (426, Some("HTTP/2")));

    // Analytics record each call's grpc-status: the upstream's (in its trailers) or the
    // gateway's own.
    let sql = "SELECT route, status, grpc_status, count() FROM tollgate_grpc.events \
               WHERE grpc_status >= 0 GROUP BY route, status, grpc_status \
               ORDER BY route, status, grpc_status FORMAT TSV";
    let expected = "\t404\t12\t1\nkeyed\t200\t0\t1\nkeyed\t401\t16\t1\nplain\t200\t0\t2\n\
                    plain\t429\t8\t1\nsecure\t200\t0\t2\nsecure\t200\t1\t1";
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rows = String::new();
    while rows.trim_end() != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rows = ch.query(sql).await;
    }
    assert_eq!(rows.trim_end(), expected);
}

/// `curl` POSTing `body` to `url` with `content_type` (HTTP/1.1): the response body's bytes.
fn curl_post(url: &str, content_type: &str, body: &[u8], dir: &std::path::Path) -> Vec<u8> {
    let (req, resp) = (dir.join("request.bin"), dir.join("response.bin"));
    std::fs::write(&req, body).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-H"])
        .arg(format!("content-type: {content_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", req.display()))
        .arg("-o")
        .arg(&resp)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&resp).unwrap()
}

/// A gRPC message frame (PROTOCOL-HTTP2.md): flag, 4-byte length, the bytes.
fn frame(flag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// spec/03-plugins/32-grpc-web/01-proxy_spec.lua (the binary and base64 calls over HTTP, the
/// preflight), against grpcio's server instead of Kong's grpcbin: the call reaches the gRPC
/// server, and the answer is the reply frame and the trailers as a 0x80 frame.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_binary_and_text_calls_reach_the_grpc_server() {
    use base64::Engine;
    if !python_packages() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = PythonServer::start("grpc_backend.py", &[]).await;
    let gw = Gateway::start(&[]).await;
    let url = format!("grpc://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "grpc", "url": url}))
        .await;
    let route = json!({"name": "web", "protocols": ["http", "https"],
                       "paths": ["/echo.Echo/"], "strip_path": false});
    gw.create("/services/grpc/routes", route).await;
    let plugin = json!({"name": "grpc-web", "config": {"allow_origin_header": "https://app.test"}});
    gw.create("/routes/web/plugins", plugin).await;
    // 01-proxy_spec.lua:54-58,80-86 ("Pass stripped URI"): /prefix is stripped from the path.
    let prefixed = json!({"name": "prefixed", "paths": ["/prefix"]});
    gw.create("/services/grpc/routes", prefixed).await;
    let stripped = json!({"name": "grpc-web", "config": {"pass_stripped_path": true}});
    gw.create("/routes/prefixed/plugins", stripped).await;
    gw.settled().await;

    let call = gw.proxy_url("/echo.Echo/Unary");
    let reply = frame(0, b"echo:hello");
    let trailer = frame(
        0x80,
        b"grpc-status:0\r\ngrpc-message:\r\nx-echo-trailer:kept\r\n",
    );
    let binary = curl_post(
        &call,
        "application/grpc-web+proto",
        &frame(0, b"hello"),
        dir.path(),
    );
    assert_eq!(binary, [reply.clone(), trailer.clone()].concat());
    let prefixed = gw.proxy_url("/prefix/echo.Echo/Unary");
    let binary = curl_post(
        &prefixed,
        "application/grpc-web",
        &frame(0, b"hello"),
        dir.path(),
    );
    assert_eq!(binary, [reply.clone(), trailer.clone()].concat());

    // Text mode: the request base64, the answer base64 chunk by chunk (padded segments).
    let b64 = &base64::engine::general_purpose::STANDARD;
    let text_body = b64.encode(frame(0, b"hello"));
    let text = curl_post(
        &call,
        "application/grpc-web-text",
        text_body.as_bytes(),
        dir.path(),
    );
    let expected = [b64.encode(&reply), b64.encode(&trailer)].concat();
    assert_eq!(String::from_utf8(text).unwrap(), expected);

    // The answer's headers; a preflight; JSON needs transcoding, which needs a .proto.
    let text_type = [("content-type", "application/grpc-web-text")];
    let r = send(
        "POST",
        &call,
        &text_type,
        Some(("application/grpc-web-text", text_body)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/grpc-web-text"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    let r = send("OPTIONS", &call, &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
    let r = send("POST", &call, &[], Some(("application/json", "{}".into()))).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["message"],
        "transcoding requests require a .proto file defining the service"
    );
}
