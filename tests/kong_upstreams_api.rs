//! Kong's upstream and target endpoints, ported from Kong's
//! `spec/02-integration/04-admin_api/07-upstreams_routes_spec.lua` and
//! `08-targets_routes_spec.lua` (Kong/kong@22246ef; line numbers cite those files). Kong runs
//! most cases with a form, a multipart and a JSON body; here with a form and JSON.
mod common;

use common::*;
use serde_json::{json, Value};

/// The body both ways Kong's `it_content_types` sends it: JSON, and a form of its flat
/// fields (numbers as text).
fn bodies(v: &Value) -> [Body; 2] {
    let pairs: Vec<(String, String)> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), String::from),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    [json_body(v.clone()), form(&refs)]
}

async fn post(gw: &Gateway, path: &str, body: Body) -> Resp {
    send("POST", &gw.admin_url(path), &[], body).await
}

async fn delete_all_upstreams(gw: &Gateway) {
    let list = send("GET", &gw.admin_url("/upstreams"), &[], None).await;
    for u in list.json["data"].as_array().unwrap() {
        let url = gw.admin_url(&format!("/upstreams/{}", u["id"].as_str().unwrap()));
        assert_eq!(send("DELETE", &url, &[], None).await.status, 204);
    }
}

/// 07-upstreams_routes_spec.lua:41-170: created with Kong's defaults, or with the values
/// given (hashing, cookie, 2^16 slots, host header).
#[tokio::test(flavor = "multi_thread")]
async fn upstreams_are_created_with_kongs_defaults_or_the_values_given() {
    let gw = Gateway::start(&[]).await;
    let cases = [
        // 07:45-65
        (
            json!({"name": "my.upstream"}),
            json!({"slots": 10000, "hash_on": "none",
            "hash_fallback": "none", "hash_on_header": null, "hash_fallback_header": null,
            "algorithm": "round-robin"}),
        ),
        // 07:66-95
        (
            json!({"name": "my.upstream", "slots": 10, "hash_on": "consumer", "hash_fallback": "ip",
            "hash_on_header": "HeaderName", "hash_fallback_header": "HeaderFallback"}),
            json!({"slots": 10, "hash_on": "consumer", "hash_fallback": "ip",
            "hash_on_header": "HeaderName", "hash_fallback_header": "HeaderFallback",
            "algorithm": "consistent-hashing"}),
        ),
        // 07:96-118
        (
            json!({"name": "my.upstream", "hash_on": "cookie", "hash_on_cookie": "CookieName1",
            "hash_on_cookie_path": "/foo"}),
            json!({"hash_on": "cookie", "hash_on_cookie": "CookieName1", "hash_on_cookie_path": "/foo"}),
        ),
        // 07:119-145
        (
            json!({"name": "my.upstream", "slots": 10, "hash_on": "header", "hash_fallback": "header",
            "hash_on_header": "HeaderName1", "hash_fallback_header": "HeaderName2"}),
            json!({"hash_on": "header", "hash_fallback": "header", "hash_on_header": "HeaderName1",
            "hash_fallback_header": "HeaderName2"}),
        ),
        // 07:146-162
        (
            json!({"name": "my.upstream", "slots": 65536}),
            json!({"slots": 65536}),
        ),
        // 07:163-181
        (
            json!({"name": "my.upstream", "host_header": "localhost"}),
            json!({"host_header": "localhost", "slots": 10000}),
        ),
    ];
    for (input, expected) in cases {
        for body in bodies(&input) {
            let r = post(&gw, "/upstreams", body).await;
            assert_eq!(r.status, 201, "{input}: {}", r.body);
            assert_eq!(r.json["name"], "my.upstream");
            assert!(r.json["id"].is_string() && r.json["created_at"].is_number());
            for (k, v) in expected.as_object().unwrap() {
                assert_eq!(&r.json[k], v, "{k} of {input}");
            }
            delete_all_upstreams(&gw).await;
        }
    }
}

/// 07-upstreams_routes_spec.lua:195-460 ("handles invalid input"): each refused with 400, a
/// schema violation naming the field in Kong's words; and out-of-range health-check values,
/// which Kong's schema bounds the same way. Nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_upstreams_are_refused_with_kongs_messages() {
    let gw = Gateway::start(&[]).await;
    let conditional = |f: &str| {
        json!([format!(
            "failed conditional validation given value of field '{f}'"
        )])
    };
    let cookie_chars = "contains one or more invalid characters. ASCII control characters (0-31;127), space, tab and the characters ()<>@,;:\\\"/?={}[] are not allowed.";
    let header_chars = "bad header name 'not a <> valid <> header name', allowed characters are A-Z, a-z, 0-9, '_', and '-'";
    let cases = [
        // 07:200-211
        (
            json!({"slots": 50}),
            json!({"name": "required field missing"}),
        ),
        // 07:213-224
        (
            json!({"name": "some invalid host name"}),
            json!({"name": "Invalid name ('some invalid host name'); must be a valid hostname"}),
        ),
        (
            json!({"name": "1.2.3.4"}),
            json!({"name": "Invalid name ('1.2.3.4'); no ip addresses allowed"}),
        ),
        (
            json!({"name": "host.test:80"}),
            json!({"name": "Invalid name ('host.test:80'); no port allowed"}),
        ),
        // 07:226-238
        (
            json!({"name": "my.upstream", "slots": 65537}),
            json!({"slots": "value should be between 10 and 65536"}),
        ),
        // 07:240-252
        (
            json!({"name": "my.upstream", "hash_on": "something that is invalid"}),
            json!({"hash_on": "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture"}),
        ),
        // 07:254-270
        (
            json!({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "something that is invalid"}),
            json!({"@entity": conditional("hash_on"),
            "hash_fallback": "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"}),
        ),
        // 07:272-287
        (
            json!({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "consumer"}),
            json!({"@entity": conditional("hash_on"),
            "hash_fallback": "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"}),
        ),
        // 07:289-304
        (
            json!({"name": "my.upstream", "hash_on": "header", "hash_fallback": "consumer",
            "hash_on_header": "not a <> valid <> header name"}),
            json!({"hash_on_header": header_chars}),
        ),
        // 07:306-321
        (
            json!({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "header",
            "hash_fallback_header": "not a <> valid <> header name"}),
            json!({"hash_fallback_header": header_chars}),
        ),
        // 07:323-338
        (
            json!({"name": "my.upstream", "hash_on": "header", "hash_fallback": "header",
            "hash_on_header": "headername", "hash_fallback_header": "headername"}),
            json!({"@entity": ["values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'"]}),
        ),
        // 07:340-357
        (
            json!({"name": "my.upstream", "hash_on": "cookie", "hash_on_cookie": "cookiename",
            "hash_fallback": "header", "hash_fallback_header": "Cool-Header"}),
            json!({"@entity": conditional("hash_on"), "hash_fallback": "expected one of: none"}),
        ),
        // 07:359-376
        (
            json!({"name": "my.upstream", "hash_on": "header", "hash_fallback": "header",
            "hash_fallback_header": "HeaderName"}),
            json!({"@entity": conditional("hash_on"), "hash_on_header": "required field missing"}),
        ),
        // 07:378-392
        (
            json!({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "header"}),
            json!({"@entity": conditional("hash_fallback"), "hash_fallback_header": "required field missing"}),
        ),
        // 07:394-407
        (
            json!({"name": "my.upstream", "hash_on": "cookie", "hash_on_cookie": "not a <> valid <> cookie name"}),
            json!({"hash_on_cookie": cookie_chars}),
        ),
        // 07:409-423
        (
            json!({"name": "my.upstream", "hash_on": "cookie", "hash_on_cookie": "hashme",
            "hash_on_cookie_path": "not a path"}),
            json!({"hash_on_cookie_path": "should start with: /"}),
        ),
        // 07:425-439
        (
            json!({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "cookie",
            "hash_on_cookie": "not a <> valid <> cookie name"}),
            json!({"hash_on_cookie": cookie_chars}),
        ),
        (
            json!({"name": "my.upstream", "algorithm": "fastest"}),
            json!({"algorithm": "expected one of: consistent-hashing, least-connections, round-robin, latency"}),
        ),
    ];
    for (input, fields) in cases {
        for body in bodies(&input) {
            let r = post(&gw, "/upstreams", body).await;
            assert_eq!(r.status, 400, "{input}: {}", r.body);
            assert_eq!(r.json["name"], "schema violation", "{input}");
            assert_eq!(r.json["fields"], fields, "{input}");
        }
    }
    let out_of_range = [
        (
            json!({"active": {"healthy": {"interval": 65536}}}),
            "active.healthy.interval",
            "value should be between 0 and 65535",
        ),
        (
            json!({"active": {"unhealthy": {"tcp_failures": 256}}}),
            "active.unhealthy.tcp_failures",
            "value should be between 0 and 255",
        ),
        (
            json!({"active": {"concurrency": 0}}),
            "active.concurrency",
            "value should be between 1 and 2147483648",
        ),
        (
            json!({"active": {"type": "ftp"}}),
            "active.type",
            "expected one of: tcp, http, https, grpc, grpcs",
        ),
        (
            json!({"passive": {"unhealthy": {"http_statuses": [99]}}}),
            // Kong answers an array's elements one by one.
            "passive.unhealthy.http_statuses.0",
            "value should be between 100 and 999",
        ),
        (
            json!({"passive": {"healthy": {"interval": 5}}}),
            "passive.healthy.interval",
            "unknown field",
        ),
        (
            json!({"threshold": 101}),
            "threshold",
            "value should be between 0 and 100",
        ),
    ];
    for (checks, path, message) in out_of_range {
        let body = json!({"name": "my.upstream", "healthchecks": checks});
        let r = post(&gw, "/upstreams", json_body(body)).await;
        assert_eq!(r.status, 400, "{checks}: {}", r.body);
        let mut at = &r.json["fields"]["healthchecks"];
        for part in path.split('.') {
            at = match part.parse::<usize>() {
                Ok(i) => &at[i],
                Err(_) => &at[part],
            };
        }
        assert_eq!(at, message, "{checks}: {}", r.body);
    }
    let stored = send("GET", &gw.admin_url("/upstreams"), &[], None).await;
    assert_eq!(stored.json["data"], json!([]), "nothing stored");
}

/// 07-upstreams_routes_spec.lua:461-487 (409 on a taken name), 491-505 (PUT creates by name),
/// 669-756 (an upstream is deleted with its targets).
#[tokio::test(flavor = "multi_thread")]
async fn upstream_names_are_unique_put_creates_and_delete_takes_targets() {
    let gw = Gateway::start(&[]).await;
    gw.create("/upstreams", json!({"name": "my.upstream"}))
        .await;
    let r = post(&gw, "/upstreams", json_body(json!({"name": "my.upstream"}))).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json["name"], "unique constraint violation");
    assert_eq!(r.json["fields"], json!({"name": "my.upstream"}));
    let r = send(
        "PUT",
        &gw.admin_url("/upstreams/my-upstream"),
        &[],
        json_body(json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["name"], "my-upstream");
    assert!(r.json["slots"].is_number());
    gw.create(
        "/upstreams/my-upstream/targets",
        json!({"target": "a.test:80"}),
    )
    .await;
    let all = send("GET", &gw.admin_url("/targets"), &[], None).await;
    assert_eq!(all.json["data"].as_array().unwrap().len(), 1);
    let url = gw.admin_url("/upstreams/my-upstream");
    assert_eq!(send("DELETE", &url, &[], None).await.status, 204);
    let all = send("GET", &gw.admin_url("/targets"), &[], None).await;
    assert_eq!(all.json["data"], json!([]), "its targets went with it");
}

/// 08-targets_routes_spec.lua:79-239: a target gets port 8000 when it has none, weight 100
/// by default, weight 0 is kept; bad input is refused in Kong's words; a target is in an
/// upstream once (409); the collection takes no PUT, PATCH or DELETE (405).
#[tokio::test(flavor = "multi_thread")]
async fn targets_are_created_as_kong_creates_them() {
    let gw = Gateway::start(&[]).await;
    gw.create("/upstreams", json!({"name": "u.test", "slots": 10}))
        .await;
    for body in bodies(&json!({"target": "konghq.test"})) {
        let r = post(&gw, "/upstreams/u.test/targets/", body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.json["target"], "konghq.test:8000");
        assert_eq!(r.json["weight"], 100);
        let url = gw.admin_url("/upstreams/u.test/targets/konghq.test:8000");
        assert_eq!(send("DELETE", &url, &[], None).await.status, 204);
    }
    let r = post(
        &gw,
        "/upstreams/u.test/targets",
        json_body(json!({"target": "konghq.test:123", "weight": 1})),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.json["target"].as_str(),
            r.json["weight"].as_u64()
        ),
        (201, Some("konghq.test:123"), Some(1))
    );
    let zero = gw
        .create(
            "/upstreams/u.test/targets",
            json!({"target": "zero.weight.test:8080", "weight": 0}),
        )
        .await;
    let got = send(
        "GET",
        &gw.admin_url("/upstreams/u.test/targets/zero.weight.test:8080"),
        &[],
        None,
    )
    .await;
    assert_eq!(got.json, zero.json, "08:115-138");
    let cases = [
        (
            json!({"weight": 0}),
            json!({"target": "required field missing"}),
        ),
        (
            json!({"target": "some invalid host name"}),
            json!({"target": "Invalid target; not a valid hostname or ip address"}),
        ),
        (
            json!({"target": "konghq.test", "weight": 65536}),
            json!({"weight": "value should be between 0 and 65535"}),
        ),
        (
            json!({"target": "konghq.test:99999"}),
            json!({"target": "Invalid target; not a valid hostname or ip address"}),
        ),
    ];
    for (input, fields) in cases {
        for body in bodies(&input) {
            let r = post(&gw, "/upstreams/u.test/targets/", body).await;
            assert_eq!(r.status, 400, "{input}: {}", r.body);
            assert_eq!(r.json["fields"], fields, "{input}");
        }
    }
    for method in ["PUT", "PATCH", "DELETE"] {
        let url = gw.admin_url("/upstreams/u.test/targets/");
        let r = send(
            method,
            &url,
            &[],
            json_body(json!({"target": "konghq.test"})),
        )
        .await;
        assert_eq!(r.status, 405, "{method}");
    }
    let dup = json!({"target": "single-target.test:8080", "weight": 1});
    gw.create("/upstreams/u.test/targets/", dup.clone()).await;
    let r = post(
        &gw,
        "/upstreams/u.test/targets/",
        json_body(json!({"target": "single-target.test:8080", "weight": 100})),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let listed = send("GET", &gw.admin_url("/upstreams/u.test/targets"), &[], None).await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 3);
}

/// 08-targets_routes_spec.lua:316-420 and 505-620: `/upstreams/{u}/health` lists the targets
/// newest first with this node's id, HEALTHCHECKS_OFF without checks and for weight 0,
/// HEALTHY once checks are on; and 625-735: `/targets/all` pages with its own `next`.
#[tokio::test(flavor = "multi_thread")]
async fn health_lists_targets_newest_first_with_the_node_id() {
    let gw = Gateway::start(&[]).await;
    gw.create("/upstreams", json!({"name": "h.test"})).await;
    let mut ids = Vec::new();
    for i in 1..=4 {
        let t = gw
            .create(
                "/upstreams/h.test/targets",
                json!({"target": format!("127.0.0.{i}:80"), "weight": 10}),
            )
            .await;
        ids.push(t.json["id"].as_str().unwrap().to_string());
        // Creation order is by second, then id: space them so "newest" is unambiguous.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    gw.settled().await;
    let node = send("GET", &gw.admin_url("/"), &[], None).await.json["node_id"].clone();
    assert!(node.is_string());
    for suffix in ["", "/"] {
        let h = send(
            "GET",
            &gw.admin_url(&format!("/upstreams/h.test/health{suffix}")),
            &[],
            None,
        )
        .await;
        assert_eq!(h.status, 200);
        assert_eq!(h.json["node_id"], node);
        let data = h.json["data"].as_array().unwrap();
        assert_eq!(data.len(), 4);
        assert_eq!(data[0]["id"], ids[3]);
        assert_eq!(data[1]["target"], "127.0.0.3:80");
        for t in data {
            assert_eq!(t["health"], "HEALTHCHECKS_OFF");
            assert_eq!(t["data"]["addresses"][0]["health"], "HEALTHCHECKS_OFF");
        }
    }
    let checks = json!({"healthchecks": {"passive": {"healthy": {"successes": 1},
        "unhealthy": {"tcp_failures": 1, "http_failures": 1, "timeouts": 1}}}});
    let r = send(
        "PATCH",
        &gw.admin_url("/upstreams/h.test"),
        &[],
        json_body(checks),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["healthchecks"]["active"]["healthy"]["http_statuses"],
        json!([200, 302]),
        "the rest kept"
    );
    gw.create(
        "/upstreams/h.test/targets",
        json!({"target": "127.0.0.9:80", "weight": 0}),
    )
    .await;
    gw.settled().await;
    let h = send("GET", &gw.admin_url("/upstreams/h.test/health"), &[], None).await;
    for t in h.json["data"].as_array().unwrap() {
        let expected = if t["weight"] == 0 {
            "HEALTHCHECKS_OFF"
        } else {
            "HEALTHY"
        };
        assert_eq!(t["health"], expected, "{t}");
    }
    let b = send(
        "GET",
        &gw.admin_url("/upstreams/h.test/health?balancer_health=1"),
        &[],
        None,
    )
    .await;
    assert_eq!(b.json["data"]["health"], "HEALTHY");
    let page = send(
        "GET",
        &gw.admin_url("/upstreams/h.test/targets/all?size=3"),
        &[],
        None,
    )
    .await;
    assert_eq!(page.json["data"].as_array().unwrap().len(), 3);
    let next = page.json["next"].as_str().unwrap();
    assert!(next.starts_with("/upstreams/h.test/targets/all?"), "{next}");
    let rest = send("GET", &gw.admin_url(next), &[], None).await;
    assert_eq!(rest.json["data"].as_array().unwrap().len(), 2);
}

/// 08-targets_routes_spec.lua:736-870: `/healthy` and `/unhealthy` answer 204 only for a
/// target of that upstream (by id or `host:port`, the upstream by id or name) and 404
/// otherwise; a mark flips the target's health on `/health`.
#[tokio::test(flavor = "multi_thread")]
async fn targets_are_marked_healthy_and_unhealthy() {
    let gw = Gateway::start(&[]).await;
    let checks = json!({"passive": {"healthy": {"successes": 1},
        "unhealthy": {"tcp_failures": 1, "http_failures": 1, "timeouts": 1}}});
    let up = gw
        .create(
            "/upstreams",
            json!({"name": "m.test", "healthchecks": checks}),
        )
        .await;
    let other = gw.create("/upstreams", json!({"name": "other.test"})).await;
    let wrong = gw
        .create(
            "/upstreams/other.test/targets",
            json!({"target": "127.0.0.1:8192", "weight": 10}),
        )
        .await;
    let target = gw
        .create(
            "/upstreams/m.test/targets",
            json!({"target": "127.0.0.1:8192", "weight": 10}),
        )
        .await;
    gw.settled().await;
    let up_id = up.json["id"].as_str().unwrap();
    let random = "7e2d8f3e-0000-4000-8000-000000000000";
    assert_ne!(other.json["id"], up.json["id"]);
    let upstreams = [random, "invalid", "m.test", up_id];
    let targets = [
        random,
        "invalid:1234",
        wrong.json["id"].as_str().unwrap(),
        "127.0.0.1:8192",
        target.json["id"].as_str().unwrap(),
    ];
    for (i, u) in upstreams.iter().enumerate() {
        for (j, t) in targets.iter().enumerate() {
            for mark in ["healthy", "unhealthy"] {
                let path = format!("/upstreams/{u}/targets/{t}/{mark}");
                let expected = if i >= 2 && j >= 3 { 204 } else { 404 };
                let r = send("PUT", &gw.admin_url(&path), &[], None).await;
                assert_eq!(r.status, expected, "{path}");
            }
        }
    }
    let target_path = format!("/upstreams/{up_id}/targets/127.0.0.1:8192");
    for (mark, shown) in [
        ("unhealthy", "UNHEALTHY"),
        ("healthy", "HEALTHY"),
        ("unhealthy", "UNHEALTHY"),
    ] {
        let r = send(
            "PUT",
            &gw.admin_url(&format!("{target_path}/{mark}")),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 204);
        let h = send(
            "GET",
            &gw.admin_url(&format!("/upstreams/{up_id}/health")),
            &[],
            None,
        )
        .await;
        assert_eq!(h.json["data"][0]["target"], "127.0.0.1:8192");
        assert_eq!(h.json["data"][0]["health"], shown);
    }
}

/// decK files declare upstreams with nested targets; `config export` writes them back so
/// the file applies again to the same configuration.
#[tokio::test(flavor = "multi_thread")]
async fn declarative_files_carry_upstreams_with_their_targets() {
    let backend = Backend::start().await;
    let file = format!(
        "_format_version: \"3.0\"\n\
         services:\n- name: api\n  host: api.upstream\n  routes:\n  - name: r\n    paths: [/api]\n\
         upstreams:\n- name: api.upstream\n  algorithm: least-connections\n  healthchecks:\n    active:\n      healthy:\n        interval: 5\n  targets:\n  - target: 127.0.0.1:{}\n    weight: 50\n",
        backend.port
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong.yaml");
    std::fs::write(&path, &file).unwrap();
    let gw = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", path.to_str().unwrap()),
    ])
    .await;
    let r = send("GET", &gw.proxy_url("/api"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["headers"]["host"],
        format!("127.0.0.1:{}", backend.port)
    );
    let u = send("GET", &gw.admin_url("/upstreams/api.upstream"), &[], None).await;
    assert_eq!(u.json["healthchecks"]["active"]["healthy"]["interval"], 5.0);
    let targets = send(
        "GET",
        &gw.admin_url("/upstreams/api.upstream/targets"),
        &[],
        None,
    )
    .await;
    assert_eq!(targets.json["data"][0]["weight"], 50);
    let exported = send("GET", &gw.admin_url("/config"), &[], None).await;
    assert_eq!(exported.status, 200, "{}", exported.body);
    let text = exported.json["config"].as_str().unwrap().to_string();
    assert!(
        text.contains("upstreams:") && text.contains("targets:"),
        "{text}"
    );
    let again = send(
        "POST",
        &gw.admin_url("/config"),
        &[],
        json_body(json!({"config": text})),
    )
    .await;
    assert_eq!(
        again.status, 201,
        "the export applies again: {}",
        again.body
    );
    gw.settled().await;
    let r = send("GET", &gw.proxy_url("/api"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
