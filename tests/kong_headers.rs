//! The headers the gateway adds and removes, ported from Kong's
//! `spec/02-integration/05-proxy/14-server_tokens_spec.lua`, `33-request-id-header_spec.lua`,
//! `35-via_spec.lua`, `03-upstream_headers_spec.lua` and `06-ssl_spec.lua` (Kong/kong@22246ef;
//! line numbers cite those files).
mod common;

use common::*;
use serde_json::json;

const VIA: &str = concat!("1.1 tollgate/", env!("CARGO_PKG_VERSION"));
const SERVER: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

/// A gateway with `env`, service `s` on `backend` and route `/` on it, a service `dead` on a
/// closed port behind `/dead`, and a route without a service on `/noservice`.
async fn gateway(backend: &Backend, env: &[(&str, &str)]) -> Gateway {
    let gw = Gateway::start(env).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    let route = json!({"paths": ["/"], "strip_path": false});
    gw.create("/services/s/routes", route).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    gw.create(
        "/services",
        json!({"name": "dead", "url": dead, "retries": 0}),
    )
    .await;
    gw.create("/services/dead/routes", json!({"paths": ["/dead"]}))
        .await;
    gw.create("/routes", json!({"paths": ["/noservice"]})).await;
    gw.create(
        "/routes",
        json!({"name": "tls", "hosts": ["tls.test"], "protocols": ["https"]}),
    )
    .await;
    gw.settled().await;
    gw
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    send("GET", &gw.proxy_url(path), headers, None).await
}

/// Which of Kong's headers an answer carries, by name.
fn present(r: &Resp) -> Vec<&'static str> {
    [
        "via",
        "server",
        "x-kong-proxy-latency",
        "x-kong-upstream-latency",
        "x-kong-response-latency",
        "x-kong-request-id",
    ]
    .into_iter()
    .filter(|h| r.header(h).is_some())
    .collect()
}

/// 14-server_tokens_spec.lua:81-127 and 372-452 (default configuration): a proxied answer
/// gets `Via` and the proxy and upstream latencies and keeps the upstream's `Server`; an
/// answer the gateway writes (no route 404, no service 503) gets `Server` and the response
/// latency only; a 502 from a dead upstream counts as proxied.
#[tokio::test(flavor = "multi_thread")]
async fn default_headers_split_proxied_from_gateway_answers() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[]).await;
    let r = get(&gw, "/get", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("via"), Some(VIA));
    let proxied = [
        "via",
        "x-kong-proxy-latency",
        "x-kong-upstream-latency",
        "x-kong-request-id",
    ];
    assert_eq!(present(&r), proxied);
    let r = get(&gw, "/x", &[("host", "nothing.test")]).await;
    assert_eq!(r.status, 200, "the catch-all takes any host");
    let r = get(&gw, "/noservice", &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("server"), Some(SERVER));
    let own = ["server", "x-kong-response-latency", "x-kong-request-id"];
    assert_eq!(present(&r), own);
    let r = get(&gw, "/dead", &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(present(&r), proxied);
    let r = get(&gw, "/x", &[("host", "tls.test")]).await;
    assert_eq!(r.status, 426);
    assert_eq!(present(&r), own);
}

/// 14-server_tokens_spec.lua:131-281: `headers = Via`, `Server`, `off`, and one latency.
#[tokio::test(flavor = "multi_thread")]
async fn the_headers_setting_chooses_them_one_by_one() {
    let backend = Backend::start().await;
    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("Via", &["via"], &[]),
        ("Server", &[], &["server"]),
        ("off", &[], &[]),
        ("X-Kong-Upstream-Latency", &["x-kong-upstream-latency"], &[]),
    ];
    for (setting, proxied, own) in cases {
        let gw = gateway(&backend, &[("TOLLGATE_HEADERS", setting)]).await;
        let r = get(&gw, "/get", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(present(&r), proxied, "headers = {setting}, proxied");
        let r = get(&gw, "/noservice", &[]).await;
        assert_eq!(present(&r), own, "headers = {setting}, gateway's own");
    }
}

/// 33-request-id-header_spec.lua:47-155 (downstream) and 157-270 (upstream): the gateway's
/// id, hex, on every answer and on the upstream request, never the client's; `off` on either
/// side leaves it out there.
#[tokio::test(flavor = "multi_thread")]
async fn kong_request_id_both_ways() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[]).await;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let r = get(&gw, "/get", &[("x-kong-request-id", "client-value")]).await;
    let id = r.header("x-kong-request-id").unwrap();
    assert!(hex(id), "{id}");
    assert_eq!(r.json["headers"]["x-kong-request-id"], id);
    let r = get(&gw, "/noservice", &[]).await;
    assert!(hex(r.header("x-kong-request-id").unwrap()));
    assert_eq!(r.json["request_id"], r.header("x-kong-request-id").unwrap());
    drop(gw);
    let env = [
        ("TOLLGATE_HEADERS", "off"),
        ("TOLLGATE_HEADERS_UPSTREAM", "off"),
    ];
    let gw = gateway(&backend, &env).await;
    let r = get(&gw, "/get", &[]).await;
    assert_eq!(r.header("x-kong-request-id"), None);
    assert_eq!(
        r.json["headers"]["x-kong-request-id"],
        serde_json::Value::Null
    );
}

/// 35-via_spec.lua:140-160: the client's `Via` grows by the gateway's entry upstream, the
/// upstream's `Via` grows by it on the answer, and the upstream's `Server` is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn via_is_appended_both_ways() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[]).await;
    let r = get(&gw, "/via", &[("via", "1.1 dev")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["headers"]["via"], format!("1.1 dev, {VIA}"));
    let want = format!("2 nginx, HTTP/1.1 http_mock, {VIA}");
    assert_eq!(r.header("via"), Some(want.as_str()));
    assert_eq!(r.header("server"), Some("http-mock"));
}

/// 03-upstream_headers_spec.lua:127-160 (hop-by-hop headers removed from the request, with
/// `Proxy-Authorization`, `Proxy-Authenticate` and `TE: trailers` kept), 428-473
/// (`X-Forwarded-Path` set, `X-Forwarded-Prefix` only when something other than `/` was
/// stripped, both replacing the client's).
#[tokio::test(flavor = "multi_thread")]
async fn upstream_request_headers_as_kong_writes_them() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[]).await;
    let sent = [
        ("connection", "X-Foo, X-Bar"),
        ("keep-alive", "timeout=5, max=1000"),
        ("proxy", "Remove-Me"),
        ("proxy-connection", "close"),
        ("proxy-authenticate", "Basic"),
        ("proxy-authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
        ("te", "trailers, deflate;q=0.5"),
        ("upgrade", "example/1, foo/2"),
        ("x-foo", "Remove-Me"),
        ("x-bar", "Remove-Me"),
        ("x-foo-bar", "Keep-Me"),
        ("close", "Keep-Me"),
        ("x-forwarded-path", "/replaced"),
        ("x-forwarded-prefix", "/replaced"),
    ];
    let r = get(&gw, "/", &sent).await;
    let h = &r.json["headers"];
    for gone in [
        "keep-alive",
        "proxy",
        "proxy-connection",
        "upgrade",
        "x-foo",
        "x-bar",
    ] {
        assert_eq!(h[gone], serde_json::Value::Null, "{gone}: {h}");
    }
    assert_eq!(h["proxy-authenticate"], "Basic");
    assert_eq!(h["proxy-authorization"], "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["x-foo-bar"], "Keep-Me");
    assert_eq!(h["close"], "Keep-Me");
    assert_eq!(h["x-forwarded-path"], "/");
    assert_eq!(
        h["x-forwarded-prefix"],
        serde_json::Value::Null,
        "/ stripped"
    );
    let r = get(&gw, "/dead", &[]).await;
    assert_eq!(r.status, 502);
    gw.create("/services/s/routes", json!({"paths": ["/foo"]}))
        .await;
    gw.settled().await;
    let r = get(
        &gw,
        "/foo/status/200",
        &[("x-forwarded-prefix", "/replaced")],
    )
    .await;
    assert_eq!(r.json["path"], "/status/200");
    assert_eq!(r.json["headers"]["x-forwarded-prefix"], "/foo");
    assert_eq!(r.json["headers"]["x-forwarded-path"], "/foo/status/200");
}

/// 06-ssl_spec.lua:361-392: a cleartext request on an https-only route is 426 with
/// `Upgrade: TLS/1.2, HTTP/1.1` and `Connection: Upgrade`; with https_redirect_status_code
/// 301 it is a redirect to the same URL over HTTPS.
#[tokio::test(flavor = "multi_thread")]
async fn https_only_routes_answer_426_or_redirect() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[]).await;
    let r = get(&gw, "/", &[("host", "tls.test")]).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.json["message"], "Please use HTTPS protocol");
    assert_eq!(r.header("upgrade"), Some("TLS/1.2, HTTP/1.1"));
    assert!(r.header("connection").unwrap().contains("Upgrade"));
    let patch = json!({"https_redirect_status_code": 301});
    let r = send("PATCH", &gw.admin_url("/routes/tls"), &[], json_body(patch)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.settled().await;
    let r = get(&gw, "/a/b?c=d", &[("host", "tls.test")]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://tls.test/a/b?c=d"));
}
