//! proxy-cache through the real proxy, with Kong's spec cases
//! (spec/03-plugins/31-proxy-cache/02-access_spec.lua and 03-api_spec.lua): what a hit
//! saves the backend (it counts its requests), Cache-Control, the key's parts, the admin API's
//! lookups and purges, the memory store's size limit and the Redis strategy shared by nodes.
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const ROUTE_ID: &str = "4c2d6b9e-7f1a-4e0b-9a51-2d8f1e3c5a77";

/// A gateway and backend with route `/c` carrying proxy-cache as `config` (strategy memory
/// unless given), and the plugin's id.
async fn cached(env: &[(&str, &str)], config: Value) -> (Gateway, Backend, String) {
    let gw = Gateway::start(env).await;
    let backend = Backend::start().await;
    let id = add_cache(&gw, &backend, config).await;
    (gw, backend, id)
}

async fn add_cache(gw: &Gateway, backend: &Backend, mut config: Value) -> String {
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    let route = json!({"id": ROUTE_ID, "name": "c", "paths": ["/c"]});
    gw.create("/services/s/routes", route).await;
    if config.get("strategy").is_none() {
        config["strategy"] = json!("memory");
    }
    let plugin = json!({"name": "proxy-cache", "config": config});
    let r = gw.create("/routes/c/plugins", plugin).await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.settled().await;
    r.json["id"].as_str().unwrap().to_string()
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let r = send("GET", &gw.proxy_url(path), headers, None).await;
    assert!(r.status < 500, "{path}: {} {}", r.status, r.body);
    r
}

fn cache_status(r: &Resp) -> &str {
    r.header("x-cache-status").unwrap_or("(none)")
}

// 02-access_spec.lua:402 caches a simple request; :1202 Kong's latency headers on a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_served_without_the_backend() {
    let (gw, backend, _) = cached(&[], json!({})).await;
    let miss = get(&gw, "/c/get", &[]).await;
    assert_eq!(cache_status(&miss), "Miss");
    let key = miss.header("x-cache-key").unwrap().to_string();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(miss.header("age"), None);
    let hit = get(&gw, "/c/get", &[]).await;
    assert_eq!(cache_status(&hit), "Hit");
    assert_eq!(hit.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert!(hit.header("age").unwrap().parse::<u64>().unwrap() <= 1);
    assert!(hit.header("x-kong-proxy-latency").is_some());
    assert!(hit.header("x-kong-upstream-latency").is_some());
    assert_eq!(backend.hits(), 1, "the hit never reached the backend");
    // :1104 a method the config does not cache is passed on, marked Bypass.
    let post = send("POST", &gw.proxy_url("/c/get"), &[], None).await;
    assert_eq!(cache_status(&post), "Bypass");
    assert_eq!(backend.hits(), 2);
}

// 02-access_spec.lua:431, :451, :476: response_headers, and Kong-Debug showing them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_can_be_hidden_and_kong_debug_shows_them() {
    let off = json!({"age": false, "X-Cache-Status": false, "X-Cache-Key": false});
    let (gw, _backend, _) = cached(&[], json!({"response_headers": off})).await;
    for _ in 0..2 {
        let r = get(&gw, "/c/get", &[]).await;
        for h in ["x-cache-status", "x-cache-key", "age"] {
            assert_eq!(r.header(h), None, "{h}");
        }
    }
    let r = get(&gw, "/c/get", &[("kong-debug", "1")]).await;
    assert_eq!(cache_status(&r), "Hit");
    assert!(r.header("age").is_some() && r.header("x-cache-key").is_some());
}

// 02-access_spec.lua:501 respects cache ttl (a stale entry is refreshed from the backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_is_refreshed_after_cache_ttl() {
    let (gw, backend, _) = cached(&[], json!({"cache_ttl": 1, "storage_ttl": 60})).await;
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Miss");
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Hit");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Refresh");
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Hit");
    assert_eq!(backend.hits(), 2);
}

// 02-access_spec.lua:589 cache ttl via Cache-Control, :668 max-age without public,
// :705-827 the client's min-fresh, max-age and only-if-cached, no-cache and no-store.
// The backend answers `/response-headers?name=value` with those headers (route /c strips
// its prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_is_honoured_both_ways() {
    let (gw, backend, _) = cached(&[], json!({"cache_control": true})).await;
    let plain = get(&gw, "/c/get", &[]).await;
    assert_eq!(cache_status(&plain), "Bypass", "no freshness given");
    let private = "/c/response-headers?cache-control=private,max-age%3D60";
    assert_eq!(cache_status(&get(&gw, private, &[]).await), "Bypass");
    let fresh = "/c/response-headers?cache-control=max-age%3D60";
    assert_eq!(cache_status(&get(&gw, fresh, &[]).await), "Miss");
    assert_eq!(cache_status(&get(&gw, fresh, &[]).await), "Hit");
    let before = backend.hits();
    for (asked, expected) in [
        ("no-cache", "Bypass"),
        ("no-store", "Bypass"),
        ("min-fresh=120", "Refresh"),
        ("max-age=60", "Hit"),
    ] {
        let r = get(&gw, fresh, &[("cache-control", asked)]).await;
        assert_eq!(cache_status(&r), expected, "Cache-Control: {asked}");
    }
    assert_eq!(backend.hits(), before + 3);
    let r = get(&gw, fresh, &[("authorization", "Basic Zm9vOmJhcg==")]).await;
    assert_eq!(cache_status(&r), "Bypass", "RFC 9111 §3.5");
    // :816 only-if-cached: a 504 rather than the backend when nothing is stored.
    let unseen = "/c/response-headers?cache-control=max-age%3D60&other=1";
    let only_if_cached = [("cache-control", "only-if-cached")];
    let r = send("GET", &gw.proxy_url(unseen), &only_if_cached, None).await;
    assert_eq!(r.status, 504);
    assert_eq!(backend.hits(), before + 4);
}

// 02-access_spec.lua:942 query parameters in the key (any order), :988 only those in
// vary_query_params, :1016 vary_headers, :1319/:1351 ignore_uri_case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_tells_queries_headers_and_paths_apart_as_configured() {
    let gw = Gateway::start(&[]).await;
    let backend = Backend::start().await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    for (name, config) in [
        ("all", json!({"strategy": "memory"})),
        (
            "foo",
            json!({"strategy": "memory", "vary_query_params": ["foo"]}),
        ),
        (
            "hdr",
            json!({"strategy": "memory", "vary_headers": ["Foo"]}),
        ),
        (
            "case",
            json!({"strategy": "memory", "ignore_uri_case": true}),
        ),
    ] {
        let route = json!({"name": name, "paths": [format!("/{name}")]});
        gw.create("/services/s/routes", route).await;
        let plugin = json!({"name": "proxy-cache", "config": config});
        gw.create(&format!("/routes/{name}/plugins"), plugin).await;
    }
    gw.settled().await;
    let status = |path: &'static str, headers: &'static [(&str, &str)]| {
        let gw = &gw;
        async move { cache_status(&get(gw, path, headers).await).to_string() }
    };
    assert_eq!(status("/all/get?a=b&b=c", &[]).await, "Miss");
    assert_eq!(status("/all/get?a=c", &[]).await, "Miss");
    assert_eq!(status("/all/get?b=c&a=b", &[]).await, "Hit");
    assert_eq!(status("/all/get?a&b", &[]).await, "Miss");
    assert_eq!(status("/all/get?a&b", &[]).await, "Hit");
    assert_eq!(status("/foo/get?foo=b&b=c", &[]).await, "Miss");
    assert_eq!(status("/foo/get?b=d&foo=b", &[]).await, "Hit");
    assert_eq!(status("/hdr/get", &[("foo", "bar")]).await, "Miss");
    assert_eq!(status("/hdr/get", &[("foo", "bar")]).await, "Hit");
    assert_eq!(status("/hdr/get", &[("foo", "baz")]).await, "Miss");
    assert_eq!(status("/case/Get", &[]).await, "Miss");
    assert_eq!(status("/case/get", &[]).await, "Hit");
    assert_eq!(status("/all/Get", &[]).await, "Miss");
}

// 02-access_spec.lua:1051 authenticated routes: nothing cached for a refused request, one
// cache per consumer; :1132 a content type the config does not list is not cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_consumer_has_its_own_cache_and_uncacheable_types_bypass() {
    let (gw, backend, _) = cached(&[], json!({})).await;
    gw.create("/routes/c/plugins", json!({"name": "key-auth"}))
        .await;
    for (user, key) in [("bob", "bob-key"), ("ann", "ann-key")] {
        gw.create("/consumers", json!({"username": user})).await;
        let path = format!("/consumers/{user}/key-auth");
        gw.create(&path, json!({"key": key})).await;
    }
    gw.settled().await;
    let refused = get(&gw, "/c/get", &[]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-cache-status"), None);
    let bob = get(&gw, "/c/get", &[("apikey", "bob-key")]).await;
    assert_eq!(cache_status(&bob), "Miss");
    let ann = get(&gw, "/c/get", &[("apikey", "ann-key")]).await;
    assert_eq!(cache_status(&ann), "Miss");
    assert_ne!(bob.header("x-cache-key"), ann.header("x-cache-key"));
    let bob_again = get(&gw, "/c/get", &[("apikey", "bob-key")]).await;
    assert_eq!(cache_status(&bob_again), "Hit");
    assert_eq!(bob_again.json["headers"]["x-consumer-username"], "bob");
    assert_eq!(backend.hits(), 2);
    let plain = "/c/response-headers?content-type=text/html";
    assert_eq!(
        cache_status(&get(&gw, plain, &[("apikey", "bob-key")]).await),
        "Bypass"
    );
}

// 03-api_spec.lua:210-330: purge one key by plugin, by key alone, everything; 404s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_looks_up_and_purges_entries() {
    let (gw, backend, plugin) = cached(&[], json!({})).await;
    let key = get(&gw, "/c/get", &[])
        .await
        .header("x-cache-key")
        .unwrap()
        .to_string();
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Hit");
    let entry = send(
        "GET",
        &gw.admin_url(&format!("/proxy-cache/{key}")),
        &[],
        None,
    )
    .await;
    assert_eq!(entry.status, 200);
    assert_eq!(entry.json["status"], 200);
    assert_eq!(entry.json["version"], 1);
    assert_eq!(entry.json["ttl"], 300);
    let body: Value = serde_json::from_str(entry.json["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["path"], "/get");
    let by_plugin = format!("/proxy-cache/{plugin}/caches/{key}");
    let r = send("GET", &gw.admin_url(&by_plugin), &[], None).await;
    assert_eq!(r.status, 200);
    let r = send("DELETE", &gw.admin_url(&by_plugin), &[], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Miss");
    let r = send(
        "DELETE",
        &gw.admin_url(&format!("/proxy-cache/{key}")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Miss");
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Hit");
    let r = send("DELETE", &gw.admin_url("/proxy-cache"), &[], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(cache_status(&get(&gw, "/c/get", &[]).await), "Miss");
    assert_eq!(backend.hits(), 4);
    for missing in [
        format!("/proxy-cache/{plugin}/caches/123"),
        format!("/proxy-cache/{plugin}/caches/{}", "0".repeat(64)),
        format!(
            "/proxy-cache/{}/caches/{key}",
            "6b7d3e1c-0000-4000-8000-000000000000"
        ),
        format!("/proxy-cache/{}", "0".repeat(64)),
    ] {
        let r = send("DELETE", &gw.admin_url(&missing), &[], None).await;
        assert_eq!(r.status, 404, "{missing}");
        let r = send("GET", &gw.admin_url(&missing), &[], None).await;
        assert_eq!(r.status, 404, "{missing}");
    }
    // 03-api_spec.lua:58-200: bad configs are refused in Kong's words.
    for (config, field, message) in [
        (
            json!({"response_code": []}),
            "response_code",
            json!("length must be at least 1"),
        ),
        (
            json!({"response_code": [true, "alo", 123]}),
            "response_code",
            json!(["expected an integer", "expected an integer"]),
        ),
        (
            json!({"response_code": [90]}),
            "response_code",
            json!(["value should be between 100 and 900"]),
        ),
        (
            json!({"cache_ttl": "soon"}),
            "cache_ttl",
            json!("expected a number"),
        ),
        (
            json!({"memory": {"dictionary": "x"}}),
            "memory",
            json!({"dictionary": "unknown field"}),
        ),
    ] {
        let mut config = config;
        config["strategy"] = json!("memory");
        let body = json!({"name": "proxy-cache", "config": config});
        let r = send("POST", &gw.admin_url("/plugins"), &[], json_body(body)).await;
        assert_eq!(r.status, 400, "{config}");
        assert_eq!(r.json["fields"]["config"][field], message, "{config}");
    }
}

/// The memory store keeps to TOLLGATE_PROXY_CACHE_MEMORY: with room for about two of the
/// backend's answers, the least recently used one goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_to_its_size_evicting_the_least_recently_used() {
    // Each answer echoes its 1,500-byte query: about 2 KB stored, so 5 KB hold two.
    let (gw, _backend, _) = cached(&[("TOLLGATE_PROXY_CACHE_MEMORY", "5000")], json!({})).await;
    let padding = "p".repeat(1500);
    let path = |name: &str| format!("/c/{name}?pad={padding}");
    let status = |name: &'static str| {
        let (gw, path) = (&gw, path(name));
        async move {
            let r = get(gw, &path, &[]).await;
            let key = r.header("x-cache-key").unwrap_or_default().to_string();
            let url = gw.admin_url(&format!("/proxy-cache/{key}"));
            let stored = send("GET", &url, &[], None).await.json["body_len"].as_u64();
            let stored = stored.unwrap_or(0);
            assert!(
                stored == 0 || (1500..2200).contains(&stored),
                "{stored} bytes"
            );
            cache_status(&r).to_string()
        }
    };
    assert_eq!(status("one").await, "Miss");
    assert_eq!(status("two").await, "Miss");
    assert_eq!(status("one").await, "Hit");
    assert_eq!(status("three").await, "Miss");
    assert_eq!(status("one").await, "Hit");
    assert_eq!(status("two").await, "Miss", "evicted");
}

/// The redis strategy: what one node stored, another serves; a purge on either empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_responses_through_redis() {
    let Some(url) = service_env("TOLLGATE_TEST_REDIS_URL") else {
        return;
    };
    let backend = Backend::start().await;
    let env = [("TOLLGATE_REDIS_URL", url.as_str())];
    let (a, b) = (Gateway::start(&env).await, Gateway::start(&env).await);
    let config = json!({"strategy": "redis", "vary_headers": ["x-test-run"]});
    for gw in [&a, &b] {
        add_cache(gw, &backend, config.clone()).await;
    }
    let r = send("DELETE", &a.admin_url("/proxy-cache"), &[], None).await;
    assert_eq!(r.status, 204);
    let run = [("x-test-run", "shared")];
    assert_eq!(cache_status(&get(&a, "/c/get", &run).await), "Miss");
    let mut hit = get(&b, "/c/get", &run).await;
    for _ in 0..50 {
        if cache_status(&hit) == "Hit" {
            break;
        }
        // The store is written in a task of its own after the response.
        tokio::time::sleep(Duration::from_millis(20)).await;
        hit = get(&b, "/c/get", &run).await;
    }
    assert_eq!(cache_status(&hit), "Hit");
    let key = hit.header("x-cache-key").unwrap().to_string();
    let entry = send(
        "GET",
        &b.admin_url(&format!("/proxy-cache/{key}")),
        &[],
        None,
    )
    .await;
    assert_eq!(entry.status, 200);
    let r = send(
        "DELETE",
        &b.admin_url(&format!("/proxy-cache/{key}")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(cache_status(&get(&a, "/c/get", &run).await), "Miss");
}

/// Hits are marked in the analytics events (the `cache_hit` column in ClickHouse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_marked_in_analytics_events() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ch) = ClickHouseServer::start(&dir.path().join("ch")).await else {
        return;
    };
    let url = ch.url("");
    let env = [
        ("TOLLGATE_ANALYTICS", "clickhouse"),
        ("TOLLGATE_CLICKHOUSE_URL", url.as_str()),
        ("TOLLGATE_CLICKHOUSE_DATABASE", "tollgate_cache"),
        ("TOLLGATE_ANALYTICS_FLUSH_MS", "200"),
    ];
    let (gw, backend, _) = cached(&env, json!({})).await;
    for _ in 0..4 {
        get(&gw, "/c/get", &[]).await;
    }
    assert_eq!(backend.hits(), 1);
    let sql = "SELECT cache_hit, count(), max(upstream_latency_us > 0) \
               FROM tollgate_cache.events WHERE path = '/c/get' \
               GROUP BY cache_hit ORDER BY cache_hit FORMAT TSV";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let table = "SELECT count() FROM system.tables \
                 WHERE database = 'tollgate_cache' AND name = 'events'";
    let mut rows = String::new();
    while !rows.contains("1\t3") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if ch.query(table).await.trim() == "1" {
            rows = ch.query(sql).await;
        }
    }
    assert_eq!(rows.trim(), "0\t1\t1\n1\t3\t0");
    assert_hits_summarized(&gw, 4, 3).await;
}

/// The embedded store (the default) counts hits in its rollups, which the console's summary
/// (its "Cache hits" card) and the admin API read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_counts_hits() {
    let env = [("TOLLGATE_ANALYTICS_FLUSH_MS", "100")];
    let (gw, _backend, _) = cached(&env, json!({})).await;
    for _ in 0..5 {
        get(&gw, "/c/get", &[]).await;
    }
    assert_hits_summarized(&gw, 5, 4).await;
}

/// `/analytics/summary` comes to `requests` with `hits` of them from the cache.
async fn assert_hits_summarized(gw: &Gateway, requests: u64, hits: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = send("GET", &gw.admin_url("/analytics/summary"), &[], None).await;
        let counted = (s.json["requests"].as_u64(), s.json["cache_hits"].as_u64());
        if counted == (Some(requests), Some(hits)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{}", s.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
