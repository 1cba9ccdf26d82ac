//! Consumer groups (Kong Enterprise 3.4+, Tollgate's for free): groups and memberships through
//! Kong Enterprise's admin endpoints and decK files, and group-scoped rate limits placed in
//! Kong's twelve-level precedence (Consumer+Route+Service, Group+Route+Service, Consumer+Route,
//! Consumer+Service, Group+Route, Group+Service, Route+Service, Consumer, Group, Route,
//! Service, Global), a consumer in two groups getting the first group's by name.
mod common;

use common::*;
use serde_json::{json, Value};

async fn post(gw: &Gateway, path: &str, body: Value) -> Resp {
    send("POST", &gw.admin_url(path), &[], json_body(body)).await
}

/// The per-second limit the proxy applied to a request with `key`.
async fn limit(gw: &Gateway, key: &str) -> Option<String> {
    let r = send("GET", &gw.proxy_url("/api/x"), &[("apikey", key)], None).await;
    assert_eq!(r.status, 200, "{key}: {:?} {}", r.headers, r.body);
    r.header("x-ratelimit-limit-second").map(String::from)
}

#[tokio::test(flavor = "multi_thread")]
async fn group_scoped_limits_follow_kongs_precedence() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    gw.create(
        "/services/s/routes",
        json!({"name": "api", "paths": ["/api"]}),
    )
    .await;
    gw.create("/services/s/plugins", json!({"name": "key-auth"}))
        .await;
    let rate = |second: u32| json!({"name": "rate-limiting", "config": {"second": second}});
    gw.create("/services/s/plugins", rate(100)).await;
    for (user, key) in [("ann", "k-ann"), ("bob", "k-bob"), ("carol", "k-carol")] {
        gw.create("/consumers", json!({"username": user})).await;
        gw.create(&format!("/consumers/{user}/key-auth"), json!({"key": key}))
            .await;
    }
    for group in ["silver", "gold"] {
        gw.create("/consumer_groups", json!({"name": group})).await;
    }
    // Group-scoped plugins: gold 500/s, silver 200/s (limits no test reaches: the answers
    // name the instance that applied).
    gw.create("/consumer_groups/gold/plugins", rate(500)).await;
    gw.create("/consumer_groups/silver/plugins", rate(200))
        .await;
    // Memberships from either side; the answer names both sides.
    let r = post(
        &gw,
        "/consumer_groups/gold/consumers",
        json!({"consumer": ["ann"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["consumer_group"]["name"], "gold");
    assert_eq!(r.json["consumers"][0]["username"], "ann");
    let r = post(
        &gw,
        "/consumers/bob/consumer_groups",
        json!({"group": "silver"}),
    )
    .await;
    assert_eq!(
        (r.status, r.json["consumer"]["username"].as_str()),
        (201, Some("bob"))
    );
    let r = post(
        &gw,
        "/consumers/bob/consumer_groups",
        json!({"group": "silver"}),
    )
    .await;
    assert_eq!(r.status, 409, "already a member: {}", r.body);
    let r = post(&gw, "/consumers/bob/consumer_groups", json!({})).await;
    assert_eq!(
        (r.status, r.json["fields"].clone()),
        (400, json!({"group": "required field missing"}))
    );
    // One already a member: 409, and the other is not added either.
    let both = json!({"consumer": ["bob", "ann"]});
    let r = post(&gw, "/consumer_groups/gold/consumers", both).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = send(
        "GET",
        &gw.admin_url("/consumer_groups/gold/consumers"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.json["data"][0]["username"], "ann");
    assert_eq!(
        r.json["data"].as_array().unwrap().len(),
        1,
        "bob was not added"
    );
    let r = send(
        "GET",
        &gw.admin_url("/consumers/bob/consumer_groups"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.json["data"][0]["name"], "silver");
    gw.settled().await;
    // Group (level 9) beats Service (11); no group: the service's.
    assert_eq!(limit(&gw, "k-ann").await.as_deref(), Some("500"));
    assert_eq!(limit(&gw, "k-bob").await.as_deref(), Some("200"));
    assert_eq!(limit(&gw, "k-carol").await.as_deref(), Some("100"));
    // Two groups: the first by name (gold before silver), whatever the order of joining.
    post(
        &gw,
        "/consumers/ann/consumer_groups",
        json!({"group": "silver"}),
    )
    .await;
    gw.settled().await;
    assert_eq!(limit(&gw, "k-ann").await.as_deref(), Some("500"));
    // Consumer (8) beats Group (9); Group+Service (6) beats Consumer (8).
    gw.create("/consumers/carol/plugins", rate(700)).await;
    post(
        &gw,
        "/consumers/carol/consumer_groups",
        json!({"group": "silver"}),
    )
    .await;
    gw.settled().await;
    assert_eq!(limit(&gw, "k-carol").await.as_deref(), Some("700"));
    let mut scoped = rate(300);
    scoped["service"] = json!({"name": "s"});
    gw.create("/consumer_groups/silver/plugins", scoped).await;
    gw.settled().await;
    // The level decides before the group's name: silver+service outranks gold alone.
    assert_eq!(limit(&gw, "k-ann").await.as_deref(), Some("300"));
    assert_eq!(limit(&gw, "k-carol").await.as_deref(), Some("300"));
    assert_eq!(limit(&gw, "k-bob").await.as_deref(), Some("300"));
    // An authentication plugin cannot be scoped to a group; a consumer and a group both: no.
    let r = post(
        &gw,
        "/consumer_groups/gold/plugins",
        json!({"name": "key-auth"}),
    )
    .await;
    assert_eq!(
        (r.status, r.json["fields"]["consumer_group"].as_str()),
        (400, Some("value must be null"))
    );
    let both = json!({"name": "rate-limiting", "config": {"second": 900},
        "consumer": {"name": "ann"}, "consumer_group": {"name": "gold"}});
    assert_eq!(post(&gw, "/plugins", both).await.status, 400);
    // Leaving a group, and deleting one (its plugins and memberships go with it).
    let r = send(
        "DELETE",
        &gw.admin_url("/consumers/ann/consumer_groups/gold"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    gw.settled().await;
    assert_eq!(
        limit(&gw, "k-ann").await.as_deref(),
        Some("300"),
        "silver+service now"
    );
    assert_eq!(
        send(
            "DELETE",
            &gw.admin_url("/consumer_groups/silver"),
            &[],
            None
        )
        .await
        .status,
        204
    );
    gw.settled().await;
    assert_eq!(limit(&gw, "k-ann").await.as_deref(), Some("100"));
    assert_eq!(limit(&gw, "k-carol").await.as_deref(), Some("700"));
    let r = send("GET", &gw.admin_url("/plugins"), &[], None).await;
    let scoped: Vec<&Value> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["consumer_group"].is_null())
        .collect();
    assert_eq!(scoped.len(), 1, "only gold's plugin is left: {scoped:?}");
}

/// decK's `consumer_groups` list (with nested plugins) and a consumer's `groups`, in a DB-less
/// file; `config export` writes them back the same way.
#[tokio::test(flavor = "multi_thread")]
async fn deck_files_declare_groups_their_plugins_and_members() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    let deck = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{port}
  routes: [{{name: api, paths: [/api]}}]
  plugins:
  - name: key-auth
  - name: rate-limiting
    config: {{second: 1}}
consumer_groups:
- name: gold
  plugins:
  - name: rate-limiting
    config: {{second: 5}}
consumers:
- username: ann
  keyauth_credentials: [{{key: k-ann}}]
  groups: [{{name: gold}}]
- username: bob
  keyauth_credentials: [{{key: k-bob}}]
"#,
        port = backend.port
    );
    std::fs::write(&file, deck).unwrap();
    let f = file.to_str().unwrap();
    let dbless = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", f),
    ])
    .await;
    assert_eq!(limit(&dbless, "k-ann").await.as_deref(), Some("5"));
    assert_eq!(limit(&dbless, "k-bob").await.as_deref(), Some("1"));
    drop(dbless);
    let gw = Gateway::start(&[]).await;
    let admin = gw.admin_url("");
    let (ok, out, err) = tollgate(
        &["config", "apply", f],
        &[("TOLLGATE_ADMIN_URL", admin.as_str())],
        None,
    );
    assert!(ok, "{out}{err}");
    gw.settled().await;
    assert_eq!(limit(&gw, "k-ann").await.as_deref(), Some("5"));
    let data = gw.data_dir.to_str().unwrap();
    let (ok, exported, err) = tollgate(&["config", "export"], &[("TOLLGATE_DATA_DIR", data)], None);
    assert!(ok, "{err}");
    assert!(
        exported.contains("consumer_groups:") && exported.contains("groups:"),
        "{exported}"
    );
    let back = dir.path().join("exported.yaml");
    std::fs::write(&back, &exported).unwrap();
    let again = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", back.to_str().unwrap()),
    ])
    .await;
    assert_eq!(limit(&again, "k-ann").await.as_deref(), Some("5"));
    assert_eq!(limit(&again, "k-bob").await.as_deref(), Some("1"));
}
