//! The seed's walkthrough end to end: consumers, API keys and per-consumer, per-route and
//! per-service rate limits set up through the admin API with the seed's own calls, then
//! driven through the real proxy and checked against Kong's statuses, bodies and headers.
mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SLOW_KEY: &str = "332d05445a560ee65a76aeaa372d8904";
const FAST_KEY: &str = "f457a1c4d5e6f7a8b9c0d1e2f3a4b5c6";
const ADMIN_KEY: &str = "0adm1n0adm1n0adm1n0adm1n0adm1n00";

async fn admin(gw: &Gateway, method: &str, path: &str, pairs: &[(&str, &str)]) -> Resp {
    send(method, &gw.admin_url(path), &[], form(pairs)).await
}

/// Creates an entity and waits until the proxy serves it.
async fn created(gw: &Gateway, path: &str, pairs: &[(&str, &str)]) -> Value {
    let r = admin(gw, "POST", path, pairs).await;
    assert_eq!(r.status, 201, "POST {path}: {}", r.body);
    gw.settled().await;
    r.json
}

/// GET through the proxy with an API key.
async fn get_keyed(gw: &Gateway, path: &str, key: &str) -> Resp {
    send("GET", &gw.proxy_url(path), &[("apikey", key)], None).await
}

/// A gateway-written reply: its status and Kong's `message`.
fn assert_reply(r: &Resp, status: u16, message: &str) {
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (status, Some(message)),
        "{}",
        r.body
    );
}

/// Service `s` on the backend, with a route per `(name, path)`.
async fn service_s(gw: &Gateway, backend: &Backend, routes: &[(&str, &str)]) {
    let url = format!("http://127.0.0.1:{}", backend.port);
    created(gw, "/services", &[("name", "s"), ("url", &url)]).await;
    for (name, path) in routes {
        created(
            gw,
            "/services/s/routes",
            &[("name", name), ("paths[]", path)],
        )
        .await;
    }
}

/// Sleeps until `offset_ms` into the next second (or the next minute with `minute`), so a
/// burst of requests falls into one rate-limit window.
async fn align(minute: bool, offset_ms: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let period = if minute { 60_000 } else { 1000 };
    let wait = period - now % period + offset_ms;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The seed's service and its five routes (paths kept, as the backend serves `/api/...`).
async fn seed_service(gw: &Gateway, backend: &Backend) -> Vec<(String, String)> {
    created(
        gw,
        "/services",
        &[
            ("name", "pytbak"),
            ("url", &format!("http://127.0.0.1:{}", backend.port)),
        ],
    )
    .await;
    let mut routes = Vec::new();
    for (name, path) in [
        ("api", "/api/"),
        ("get", "/api/get/"),
        ("post", "/api/post/"),
        ("put", "/api/put/"),
        ("delete", "/api/delete/"),
    ] {
        let r = created(
            gw,
            "/services/pytbak/routes",
            &[("name", name), ("paths[]", path), ("strip_path", "false")],
        )
        .await;
        routes.push((name.to_string(), r["id"].as_str().unwrap().to_string()));
    }
    routes
}

/// Sends `n` requests back to back within one second window.
async fn burst(gw: &Gateway, method: &str, path: &str, key: &str, n: usize) -> Vec<Resp> {
    align(false, 20).await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(method, &gw.proxy_url(path), &[("apikey", key)], None).await);
    }
    out
}

fn statuses(rs: &[Resp]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

fn expected(limit: usize, n: usize) -> Vec<u16> {
    (0..n).map(|i| if i < limit { 200 } else { 429 }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_walkthrough_gives_each_tier_its_limit() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let routes = seed_service(&gw, &backend).await;
    let route_id = |name: &str| routes.iter().find(|r| r.0 == name).unwrap().1.clone();
    created(&gw, "/services/pytbak/plugins", &[("name", "key-auth")]).await;

    // The seed's calls, as written (only host and port changed).
    let slow = created(&gw, "/consumers/", &[("username", "slow_user")]).await;
    assert!(slow["custom_id"].is_null() && slow["tags"].is_null());
    let slow_id = slow["id"].as_str().unwrap().to_string();
    let key = created(&gw, "/consumers/slow_user/key-auth/", &[("key", SLOW_KEY)]).await;
    assert_eq!(key["key"], SLOW_KEY, "the key is shown once, on creation");
    let api_id = route_id("api");
    let plugin = created(
        &gw,
        "/plugins/",
        &[
            ("name", "rate-limiting"),
            ("config.second", "4"),
            ("config.hour", "1200"),
            ("config.policy", "local"),
            ("consumer.id", &slow_id),
            ("route.id", &api_id),
        ],
    )
    .await;
    assert_eq!(plugin["config"]["second"], 4);
    assert_eq!(plugin["config"]["limit_by"], "consumer");

    // The rest of the tiers table, through the nested endpoints and by name.
    created(&gw, "/consumers", &[("username", "fast_user")]).await;
    created(&gw, "/consumers/fast_user/key-auth", &[("key", FAST_KEY)]).await;
    created(&gw, "/consumers", &[("username", "admin")]).await;
    created(&gw, "/consumers/admin/key-auth", &[("key", ADMIN_KEY)]).await;
    created(
        &gw,
        "/routes/api/plugins",
        &[
            ("name", "rate-limiting"),
            ("config.second", "8"),
            ("consumer.id", "fast_user"),
        ],
    )
    .await;
    for (route, slow_limit) in [("get", "2"), ("post", "1"), ("put", "1"), ("delete", "1")] {
        let fast_limit = (slow_limit.parse::<u32>().unwrap() * 2).to_string();
        for (user, limit) in [
            ("slow_user", slow_limit),
            ("fast_user", fast_limit.as_str()),
        ] {
            created(
                &gw,
                &format!("/consumers/{user}/plugins"),
                &[
                    ("name", "rate-limiting"),
                    ("config.second", limit),
                    ("route.id", route),
                ],
            )
            .await;
        }
    }
    created(
        &gw,
        "/services/pytbak/plugins",
        &[("name", "rate-limiting"), ("config.second", "9")],
    )
    .await;

    // slow_user on /api/: 4 per second, with the hour limit counted alongside.
    let b = burst(&gw, "GET", "/api/", SLOW_KEY, 6).await;
    assert_eq!(statuses(&b), expected(4, 6));
    let remaining: Vec<_> = b
        .iter()
        .map(|r| r.header("x-ratelimit-remaining-second").unwrap())
        .collect();
    assert_eq!(remaining, ["3", "2", "1", "0", "0", "0"]);
    let (first, last) = (&b[0], &b[5]);
    assert_eq!(first.header("x-ratelimit-limit-second"), Some("4"));
    assert_eq!(first.header("ratelimit-limit"), Some("4"));
    assert_eq!(first.header("ratelimit-remaining"), Some("3"));
    assert_eq!(first.header("ratelimit-reset"), Some("1"));
    assert_eq!(first.header("x-ratelimit-limit-hour"), Some("1200"));
    assert_eq!(first.header("x-ratelimit-remaining-hour"), Some("1199"));
    assert!(first.header("x-kong-upstream-latency").is_some());
    assert_eq!(first.json["headers"]["x-consumer-username"], "slow_user");
    assert_eq!(last.status, 429);
    assert_eq!(last.json["message"], "API rate limit exceeded");
    assert_eq!(last.header("retry-after"), Some("1"));
    assert_eq!(last.header("ratelimit-remaining"), Some("0"));
    assert_eq!(last.header("x-ratelimit-remaining-hour"), Some("1196"));

    // The rest of the table: each consumer gets exactly its own limit on each route.
    let cases = [
        ("GET", "/api/", FAST_KEY, 8),
        ("GET", "/api/get/context", SLOW_KEY, 2),
        ("GET", "/api/get/context", FAST_KEY, 4),
        ("POST", "/api/post/context", SLOW_KEY, 1),
        ("POST", "/api/post/context", FAST_KEY, 2),
        ("PUT", "/api/put/context/7", SLOW_KEY, 1),
        ("PUT", "/api/put/context/7", FAST_KEY, 2),
        ("DELETE", "/api/delete/context/7", SLOW_KEY, 1),
        ("DELETE", "/api/delete/context/7", FAST_KEY, 2),
        ("GET", "/api/get/context", ADMIN_KEY, 9),
        ("DELETE", "/api/delete/context/7", ADMIN_KEY, 9),
    ];
    for (method, path, key, limit) in cases {
        let b = burst(&gw, method, path, key, limit + 2).await;
        let (first, last) = (&b[0], &b[limit + 1]);
        assert_eq!(
            statuses(&b),
            expected(limit, limit + 2),
            "{method} {path} with {key}"
        );
        assert_eq!(
            first.header("x-ratelimit-limit-second"),
            Some(limit.to_string().as_str())
        );
        assert_eq!(first.json["method"], method);
        assert_eq!(last.header("retry-after"), Some("1"));
    }

    // The next second starts a new window.
    let again = burst(&gw, "GET", "/api/", SLOW_KEY, 4).await;
    assert_eq!(statuses(&again), expected(4, 4));

    // A missing key and a wrong key, with Kong's messages.
    let r = send("GET", &gw.proxy_url("/api/get/context"), &[], None).await;
    assert_reply(&r, 401, "No API key found in request");
    assert_eq!(r.header("www-authenticate"), Some("Key"));
    let r = get_keyed(&gw, "/api/get/context", "nope").await;
    assert_reply(&r, 401, "Unauthorized");
}

#[tokio::test]
async fn a_six_per_minute_limit_counts_down_as_kongs_spec_says() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    service_s(&gw, &backend, &[("r", "/m")]).await;
    created(
        &gw,
        "/routes/r/plugins",
        &[("name", "rate-limiting"), ("config.minute", "6")],
    )
    .await;
    if SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60
        > 50
    {
        align(true, 100).await;
    }
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for _ in 0..7 {
        let r = send("GET", &gw.proxy_url("/m"), &[], None).await;
        statuses.push(r.status);
        remaining.push(
            r.header("x-ratelimit-remaining-minute")
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);
    assert_eq!(remaining, ["5", "4", "3", "2", "1", "0", "0"]);
}

#[tokio::test]
async fn key_auth_finds_hides_and_expires_keys_and_names_the_consumer() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    service_s(&gw, &backend, &[("open", "/open"), ("hidden", "/hidden")]).await;
    created(
        &gw,
        "/routes/open/plugins",
        &[
            ("name", "key-auth"),
            ("config.key_names[]", "x-api-key"),
            ("config.anonymous", "guest"),
        ],
    )
    .await;
    created(
        &gw,
        "/routes/hidden/plugins",
        &[
            ("name", "key-auth"),
            ("config.hide_credentials", "true"),
            ("config.realm", "tollgate"),
        ],
    )
    .await;
    created(&gw, "/consumers", &[("username", "guest")]).await;
    created(
        &gw,
        "/consumers",
        &[("username", "ann"), ("custom_id", "c-1")],
    )
    .await;
    let generated = created(&gw, "/consumers/ann/key-auth", &[]).await;
    let key = generated["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32, "a generated key has 128 random bits");
    let short = created(
        &gw,
        "/consumers/ann/key-auth",
        &[("key", "short-lived"), ("ttl", "2")],
    )
    .await;

    // The stored credential never shows the key again.
    let listed = admin(&gw, "GET", "/consumers/ann/key-auth", &[]).await;
    assert!(!listed.body.contains(&key), "{}", listed.body);

    // In the query, hidden from the upstream; the consumer named upstream, not spoofable.
    let r = send(
        "GET",
        &gw.proxy_url(&format!("/hidden/x?apikey={key}&keep=1")),
        &[("x-consumer-username", "mallory")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["query"], "keep=1");
    let h = &r.json["headers"];
    assert_eq!(h["x-consumer-username"], "ann");
    assert_eq!(h["x-consumer-custom-id"], "c-1");
    assert_eq!(h["x-credential-identifier"], generated["id"]);
    assert!(h.get("x-anonymous-consumer").is_none());
    // In a header, hidden too.
    let r = get_keyed(&gw, "/hidden/x", &key).await;
    assert!(r.json["headers"].get("apikey").is_none());
    // The realm is in the challenge; a key sent twice is refused.
    let r = send("GET", &gw.proxy_url("/hidden/x"), &[], None).await;
    assert_eq!(r.header("www-authenticate"), Some("Key realm=\"tollgate\""));
    let r = send(
        "GET",
        &gw.proxy_url(&format!("/hidden/x?apikey={key}&apikey={key}")),
        &[],
        None,
    )
    .await;
    assert_reply(&r, 401, "Duplicate API key found");

    // Custom key names; no key means the anonymous consumer.
    let r = send(
        "GET",
        &gw.proxy_url("/open/x"),
        &[("x-api-key", &key)],
        None,
    )
    .await;
    assert_eq!(r.json["headers"]["x-consumer-username"], "ann");
    assert_eq!(
        r.json["headers"]["x-api-key"],
        key.as_str(),
        "kept without hide_credentials"
    );
    let r = send("GET", &gw.proxy_url("/open/x"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["headers"]["x-consumer-username"], "guest");
    assert_eq!(r.json["headers"]["x-anonymous-consumer"], "true");

    // A key with a ttl works, then expires.
    let r = get_keyed(&gw, "/hidden/x", "short-lived").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["headers"]["x-credential-identifier"], short["id"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get_keyed(&gw, "/hidden/x", "short-lived").await;
    assert_reply(&r, 401, "Unauthorized");

    // Clear keys appear nowhere in the log.
    let log = gw.log_text();
    assert!(!log.contains(&key) && !log.contains("short-lived"));
}

#[tokio::test]
async fn the_admin_api_refuses_bad_plugin_configs_with_field_errors() {
    let gw = Gateway::start(&[]).await;
    created(&gw, "/consumers", &[("username", "u")]).await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 6] = [
        (
            &[("name", "rate-limiting")],
            "/fields/config/@entity/0",
            "at least one of these fields must be non-empty",
        ),
        (
            &[
                ("name", "rate-limiting"),
                ("config.second", "10"),
                ("config.minute", "5"),
            ],
            "/fields/config/minute",
            "cannot be lower than the limit for second",
        ),
        (
            &[
                ("name", "rate-limiting"),
                ("config.second", "1"),
                ("config.limit_by", "header"),
            ],
            "/fields/config/header_name",
            "required field missing",
        ),
        (
            &[("name", "rate-limiting"), ("config.second", "x")],
            "/fields/config/second",
            "expected an integer",
        ),
        (
            &[("name", "no-such-plugin")],
            "/fields/name",
            "plugin 'no-such-plugin' not enabled",
        ),
        (
            &[("name", "key-auth"), ("consumer.id", "u")],
            "/fields/consumer",
            "value must be null",
        ),
    ];
    for (pairs, pointer, message) in cases {
        let r = admin(&gw, "POST", "/plugins", pairs).await;
        assert_eq!(r.status, 400, "{pairs:?}: {}", r.body);
        assert_eq!(r.json["name"], "schema violation");
        let got = r
            .json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            got.contains(message),
            "{pairs:?}: {} has no {pointer} with {message}",
            r.body
        );
    }
    let r = admin(&gw, "GET", "/plugins", &[]).await;
    assert_eq!(
        r.json["data"].as_array().unwrap().len(),
        0,
        "nothing was written"
    );
}

/// Sends `total` requests over `connections` concurrent connections per node; returns 200s.
async fn hammer(
    nodes: &[&Gateway],
    path: &str,
    total: usize,
    connections: usize,
) -> (usize, Vec<u16>) {
    let per_task = total / (connections * nodes.len());
    let mut tasks = Vec::new();
    for gw in nodes {
        for _ in 0..connections {
            let url = gw.proxy_url(path);
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..per_task {
                    statuses.push(
                        send("GET", &url, &[("apikey", SLOW_KEY)], None)
                            .await
                            .status,
                    );
                }
                statuses
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.iter().filter(|s| **s == 200).count(), all)
}

fn declarative(backend: &Backend, policy: &str, redis: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: pytbak
    url: http://127.0.0.1:{port}
    routes:
      - name: api
        paths: [/api/]
        strip_path: false
    plugins:
      - name: key-auth
consumers:
  - username: slow_user_{run}
    keyauth_credentials:
      - key: {SLOW_KEY}
    plugins:
      - name: rate-limiting
        config:
          hour: 100
          policy: {policy}
          fault_tolerant: {fault_tolerant}
          redis:
            host: 127.0.0.1
            port: {redis}
"#,
        port = backend.port,
        // Counters in a shared Redis outlive a test run; a fresh consumer starts from zero.
        run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        fault_tolerant = policy != "redis-strict",
        policy = if policy == "redis-strict" {
            "redis"
        } else {
            policy
        },
    )
}

async fn dbless(config: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    std::fs::write(&file, config).unwrap();
    let path = file.to_str().unwrap().to_string();
    Gateway::start_in(
        &[
            ("TOLLGATE_DATABASE", "off"),
            ("TOLLGATE_DECLARATIVE_CONFIG", &path),
        ],
        dir.path().to_path_buf(),
        Some(dir),
    )
    .await
}

/// Waits for the next hour when this one ends within a minute, so a test's requests all fall
/// into one hourly window.
async fn align_within_hour() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 3600 > 3540 {
        tokio::time::sleep(Duration::from_secs(3600 - now % 3600) + Duration::from_millis(100))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_64_connections_the_local_policy_lets_exactly_the_limit_through() {
    let backend = Backend::start().await;
    let gw = dbless(&declarative(&backend, "local", "6379")).await;
    align_within_hour().await;
    let (ok, all) = hammer(&[&gw], "/api/x", 640, 64).await;
    assert_eq!(ok, 100, "200s in one window under 64 connections");
    assert!(all.iter().all(|s| *s == 200 || *s == 429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_limit_through_redis() {
    let Some(url) = service_env("TOLLGATE_TEST_REDIS_URL") else {
        return;
    };
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let backend = Backend::start().await;
    let config = declarative(&backend, "redis", &port);
    let (a, b) = (dbless(&config).await, dbless(&config).await);
    align_within_hour().await;
    let (ok, _) = hammer(&[&a, &b], "/api/x", 640, 32).await;
    // The check and the count are one atomic script on the server: no overshoot at all.
    assert_eq!(ok, 100, "requests passed a limit of 100 across two nodes");
    let r = send("GET", &a.proxy_url("/api/x"), &[("apikey", SLOW_KEY)], None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-remaining-hour"), Some("0"));
}

#[tokio::test]
async fn when_redis_is_down_fault_tolerance_decides() {
    let backend = Backend::start().await;
    let dead = free_port().to_string();
    let tolerant = dbless(&declarative(&backend, "redis", &dead)).await;
    for _ in 0..3 {
        let r = send(
            "GET",
            &tolerant.proxy_url("/api/x"),
            &[("apikey", SLOW_KEY)],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.header("x-ratelimit-limit-hour").is_none());
    }
    let metrics = tolerant.metrics().await;
    assert!(
        metrics.contains("tollgate_rate_limit_redis_errors_total 3"),
        "{}",
        metrics
    );

    let strict = dbless(&declarative(&backend, "redis-strict", &dead)).await;
    let r = send(
        "GET",
        &strict.proxy_url("/api/x"),
        &[("apikey", SLOW_KEY)],
        None,
    )
    .await;
    assert_reply(&r, 500, "An unexpected error occurred");
    assert!(strict.log_text().contains("rate-limiting: Redis failed"));
}

#[tokio::test]
async fn limit_by_ip_believes_the_real_ip_header_only_from_trusted_proxies() {
    let backend = Backend::start().await;
    let behind_cdn = [
        ("TOLLGATE_TRUSTED_IPS", "127.0.0.0/8"),
        ("TOLLGATE_REAL_IP_HEADER", "CF-Connecting-IP"),
    ];
    let untrusting = [
        ("TOLLGATE_TRUSTED_IPS", "10.0.0.0/8"),
        ("TOLLGATE_REAL_IP_HEADER", "CF-Connecting-IP"),
    ];
    for (env, trusted) in [(&behind_cdn[..], true), (&untrusting[..], false)] {
        let gw = Gateway::start(env).await;
        service_s(&gw, &backend, &[("r", "/ip")]).await;
        let limit = [
            ("name", "rate-limiting"),
            ("config.hour", "1"),
            ("config.limit_by", "ip"),
        ];
        created(&gw, "/routes/r/plugins", &limit).await;
        align_within_hour().await;
        let from = |ip: &'static str| {
            let url = gw.proxy_url("/ip");
            async move { send("GET", &url, &[("cf-connecting-ip", ip)], None).await }
        };
        let first = from("198.51.100.1").await;
        assert_eq!(first.status, 200);
        let expected_ip = if trusted { "198.51.100.1" } else { "127.0.0.1" };
        assert_eq!(first.json["headers"]["x-real-ip"], expected_ip);
        assert_eq!(from("198.51.100.1").await.status, 429);
        // Another client behind the CDN has its own counter; a direct client cannot pose as one.
        let other = if trusted { 200 } else { 429 };
        assert_eq!(
            from("198.51.100.2").await.status,
            other,
            "trusted: {trusted}"
        );
    }
}

#[tokio::test]
async fn key_auth_reads_keys_from_form_and_json_bodies() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    service_s(&gw, &backend, &[("hide", "/hide"), ("keep", "/keep")]).await;
    for (route, hide) in [("hide", "true"), ("keep", "false")] {
        let config = [
            ("name", "key-auth"),
            ("config.key_in_body", "true"),
            ("config.hide_credentials", hide),
        ];
        created(&gw, &format!("/routes/{route}/plugins"), &config).await;
    }
    created(&gw, "/consumers", &[("username", "ann")]).await;
    created(&gw, "/consumers/ann/key-auth", &[("key", SLOW_KEY)]).await;

    let post = |path: &'static str, body: Body| {
        let url = gw.proxy_url(path);
        async move { send("POST", &url, &[], body).await }
    };
    let r = post("/hide", form(&[("apikey", SLOW_KEY), ("x", "1")])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["body"], "x=1");
    assert_eq!(r.json["headers"]["content-length"], "3");
    assert_eq!(r.json["headers"]["x-consumer-username"], "ann");
    let r = post(
        "/hide",
        json_body(serde_json::json!({"apikey": SLOW_KEY, "a": 1})),
    )
    .await;
    assert_eq!(r.json["body"], r#"{"a":1}"#);
    let sent = serde_json::json!({"apikey": SLOW_KEY, "a": [1, 2]}).to_string();
    let r = post("/keep", Some(("application/json", sent.clone()))).await;
    assert_eq!(r.json["body"], sent.as_str(), "kept byte for byte");

    let r = post(
        "/keep",
        json_body(serde_json::json!({"apikey": ["a", "b"]})),
    )
    .await;
    assert_reply(&r, 401, "Duplicate API key found");
    let r = post("/keep", Some(("text/plain", format!("apikey={SLOW_KEY}")))).await;
    assert_reply(&r, 401, "No API key found in request");
    let huge = "x".repeat(9 * 1024 * 1024);
    let r = post("/keep", Some(("application/x-www-form-urlencoded", huge))).await;
    assert_reply(&r, 413, "Request body too large");
}
