//! key-auth, rate-limiting and request-size-limiting details ported from Kong's
//! `spec/03-plugins/09-key-auth/02-access_spec.lua`,
//! `spec/03-plugins/23-rate-limiting/04-access_spec.lua` and
//! `spec/03-plugins/12-request-size-limiting/01-access_spec.lua` (Kong/kong@22246ef; line
//! numbers cite those files). The wider behaviour of both plugins is in tests/plugins.rs and
//! tests/rate_limits.rs.
mod common;

use common::*;
use serde_json::json;

/// A gateway with service `s` on `backend`, route `/` on it and `plugin` on the service.
async fn with_plugin(backend: &Backend, plugin: serde_json::Value) -> Gateway {
    let gw = Gateway::start(&[]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    gw.create("/services/s/routes", json!({"paths": ["/"]}))
        .await;
    gw.create("/services/s/plugins", plugin).await;
    gw.settled().await;
    gw
}

/// 02-access_spec.lua:220-308: a missing key, an empty key header and a query key without a
/// value are all "No API key found in request", with the realm's challenge.
#[tokio::test(flavor = "multi_thread")]
async fn key_auth_empty_keys_are_no_keys() {
    let backend = Backend::start().await;
    let plugin = json!({"name": "key-auth", "config": {"realm": "test-realm"}});
    let gw = with_plugin(&backend, plugin).await;
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("/status/200", &[]),
        ("/status/200", &[("apikey", "")]),
        ("/status/200?apikey", &[]),
    ];
    for (path, headers) in cases {
        let r = send("GET", &gw.proxy_url(path), headers, None).await;
        assert_eq!(r.status, 401, "{path} {headers:?}");
        assert_eq!(r.json["message"], "No API key found in request");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Key realm=\"test-realm\"")
        );
    }
    assert_eq!(backend.hits(), 0);
}

/// Kong reads the key header through nginx, where `_` in a name matches `-`
/// (kong.request.get_headers): key name `api_key` takes the `api-key` header.
#[tokio::test(flavor = "multi_thread")]
async fn key_auth_underscore_key_names_match_dashed_headers() {
    let backend = Backend::start().await;
    let plugin = json!({"name": "key-auth", "config": {"key_names": ["api_key"]}});
    let gw = with_plugin(&backend, plugin).await;
    gw.create("/consumers", json!({"username": "bob"})).await;
    gw.create("/consumers/bob/key-auth", json!({"key": "kong"}))
        .await;
    gw.settled().await;
    let r = send("GET", &gw.proxy_url("/x"), &[("api-key", "kong")], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["headers"]["x-consumer-username"], "bob");
    let r = send("GET", &gw.proxy_url("/x?api_key=kong"), &[], None).await;
    assert_eq!(r.status, 200, "the query keeps the name as written");
}

/// 04-access_spec.lua:624-679: with hide_client_headers neither the rate-limit headers nor
/// Retry-After are sent, also on the 429.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limiting_hide_client_headers_hides_retry_after_too() {
    let backend = Backend::start().await;
    let config = json!({"minute": 6, "limit_by": "ip", "hide_client_headers": true});
    let gw = with_plugin(&backend, json!({"name": "rate-limiting", "config": config})).await;
    let hidden = [
        "x-ratelimit-limit-minute",
        "x-ratelimit-remaining-minute",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ];
    // All seven requests in one minute's window.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 55 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - second)).await;
    }
    let mut last = 0;
    for _ in 0..7 {
        let r = send("GET", &gw.proxy_url("/test"), &[], None).await;
        for h in hidden {
            assert_eq!(r.header(h), None, "{h} on {}", r.status);
        }
        last = r.status;
    }
    assert_eq!(last, 429);
}

/// A request to `host` with `headers` and `body` as raw HTTP/1.1 (a chunked body is framed
/// by the caller); the final status code (after any `100 Continue`).
async fn raw(gw: &Gateway, host: &str, headers: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request =
        format!("POST /request HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(body);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.proxy))
        .await
        .unwrap();
    s.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let last = text
        .rsplit("HTTP/1.1 ")
        .find(|part| !part.starts_with("100"));
    last.and_then(|l| l.get(..3)?.parse().ok()).unwrap_or(0)
}

/// One chunk of `n` bytes and the last chunk.
fn chunked(n: usize) -> Vec<u8> {
    let mut body = format!("{n:x}\r\n").into_bytes();
    body.extend(std::iter::repeat_n(b'a', n));
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn request_size_limiting_refuses_bodies_over_the_limit() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let limit = |config: serde_json::Value| vec![("request-size-limiting", config)];
    routes_by_host(
        &gw,
        &backend,
        &[
            ("limit.test", limit(json!({"allowed_payload_size": 2}))),
            (
                "required.test",
                limit(json!({"allowed_payload_size": 2, "require_content_length": true})),
            ),
            (
                "limit_kilobytes.test",
                limit(json!({"allowed_payload_size": 2, "size_unit": "kilobytes"})),
            ),
            (
                "limit_bytes.test",
                limit(json!({"allowed_payload_size": 2, "size_unit": "bytes"})),
            ),
        ],
    )
    .await;
    gw.settled().await;
    const MB: usize = 1 << 20;
    let length = |n: usize| format!("Content-Length: {n}\r\n");
    let expect = |n: usize| format!("Content-Length: {n}\r\nExpect: 100-continue\r\n");
    // :83 / :112 / :129 with Content-Length: the header decides, the body is not read.
    assert_eq!(
        raw(&gw, "limit.test", &length(10), b"0123456789").await,
        200
    );
    assert_eq!(raw(&gw, "limit.test", &length(2 * MB + 1), b"").await, 413);
    assert_eq!(raw(&gw, "limit.test", &expect(2 * MB + 1), b"").await, 417);
    // :148 / :167 each unit.
    assert_eq!(
        raw(&gw, "limit_kilobytes.test", &length(2049), b"").await,
        413
    );
    assert_eq!(
        raw(&gw, "limit_kilobytes.test", &length(2048), &[b'a'; 2048]).await,
        200
    );
    assert_eq!(raw(&gw, "limit_bytes.test", &length(3), b"abc").await, 413);
    assert_eq!(raw(&gw, "limit_bytes.test", &length(2), b"ab").await, 200);
    // :183-:357 chunked bodies are measured as they arrive.
    let te = "Transfer-Encoding: chunked\r\n";
    assert_eq!(raw(&gw, "limit.test", te, &chunked(MB)).await, 200);
    assert_eq!(
        raw(&gw, "limit_kilobytes.test", te, &chunked(2048)).await,
        200
    );
    assert_eq!(
        raw(&gw, "limit_kilobytes.test", te, &chunked(2049)).await,
        413
    );
    let te_expect = "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n";
    assert_eq!(
        raw(&gw, "limit_bytes.test", te_expect, &chunked(3)).await,
        417
    );
    // :363 require_content_length: 411 without it, a chunked body still measured.
    let r = send(
        "GET",
        &gw.proxy_url("/request"),
        &[("host", "required.test")],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (411, Some("A valid Content-Length header is required"))
    );
    assert_eq!(raw(&gw, "required.test", te, &chunked(10)).await, 200);
    // The message is Kong's.
    let r = send(
        "POST",
        &gw.proxy_url("/request"),
        &[("host", "limit_bytes.test")],
        Some(("text/plain", "abc".into())),
    )
    .await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (413, Some("Request size limit exceeded"))
    );
}
