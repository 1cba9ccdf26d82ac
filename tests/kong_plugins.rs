//! key-auth and rate-limiting details ported from Kong's
//! `spec/03-plugins/09-key-auth/02-access_spec.lua` and
//! `spec/03-plugins/23-rate-limiting/04-access_spec.lua` (Kong/kong@22246ef; line numbers
//! cite those files). The wider behaviour of both plugins is in tests/plugins.rs and
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
