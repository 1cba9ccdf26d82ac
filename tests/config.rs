//! Configuration as code: DB-less files, export/validate/apply, and PostgreSQL shared by nodes.
mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn deck(backend: u16, extra_route: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: pytbak
    url: http://127.0.0.1:{backend}
    routes:
      - name: api
        paths:
          - /api/
{extra_route}consumers:
  - username: slow_user
    keyauth_credentials:
      - key: 332d05445a560ee65a76aeaa372d8904
"#
    )
}

const V2_ROUTE: &str = "      - name: v2\n        paths: [/v2/]\n";

#[tokio::test(flavor = "multi_thread")]
async fn db_less_serves_a_file_reloads_it_and_keeps_running_on_a_bad_one() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    std::fs::write(&file, deck(backend.port, "")).unwrap();
    let f = file.to_str().unwrap();
    let gw = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", f),
    ])
    .await;

    let r = gw
        .wait_for_status("/api/get/context", 200, Duration::from_secs(3))
        .await;
    assert_eq!(r.json["path"], "/get/context");
    assert!(r.header("via").unwrap().starts_with("1.1 tollgate/"));
    let r = send(
        "POST",
        &gw.admin_url("/services"),
        &[],
        form(&[("name", "x"), ("host", "h")]),
    )
    .await;
    assert_eq!(
        r.status, 405,
        "the admin API is read-only without a database"
    );
    assert_eq!(
        send("GET", &gw.admin_url("/services/pytbak"), &[], None)
            .await
            .status,
        200
    );

    // A changed file applies by itself.
    std::fs::write(&file, deck(backend.port, V2_ROUTE)).unwrap();
    gw.wait_for_status("/v2/x", 200, Duration::from_secs(4))
        .await;

    // A broken file is refused with its line, and the running config stays.
    std::fs::write(
        &file,
        deck(backend.port, "      - name: bad\n        paths: [nope]\n"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while !gw.log_text().contains("keeping the running configuration") {
        assert!(
            std::time::Instant::now() < deadline,
            "no error logged:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log_text()
            .contains("line 10: services[0].routes[1].paths: should start with"),
        "{}",
        gw.log_text()
    );
    assert_eq!(
        send("GET", &gw.proxy_url("/v2/x"), &[], None).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_reports_problems_by_line_and_changes_nothing() {
    let (ok, out, _) = tollgate(
        &["config", "validate", "-"],
        &[],
        Some(&deck(5000, V2_ROUTE)),
    );
    assert!(ok);
    assert!(
        out.contains(
            "valid (1 services, 2 routes, 1 consumers, 1 key-auth credentials, 0 plugins, 0 plans)"
        ),
        "{out}"
    );
    let bad = "_format_version: \"3.0\"\nservices:\n  - name: s\n    host: h\n    port: 99999\n";
    let (ok, _, err) = tollgate(&["config", "validate", "-"], &[], Some(bad));
    assert!(!ok);
    assert!(
        err.contains("line 5: services[0].port: value should be between 0 and 65535"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_round_trips_and_apply_syncs_a_running_gateway() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deck.yaml");
    std::fs::write(&file, deck(backend.port, "")).unwrap();
    let admin = gw.admin_url("");
    let env = [("TOLLGATE_ADMIN_URL", admin.as_str())];
    let f = file.to_str().unwrap();

    let (ok, out, err) = tollgate(&["config", "apply", f], &env, None);
    assert!(ok, "{err}");
    assert!(
        out.contains("create services pytbak")
            && out.contains("create routes api")
            && out.contains("Summary: 4 created, 0 updated, 0 deleted"),
        "{out}"
    );
    let r = gw
        .wait_for_status("/api/x", 200, Duration::from_secs(3))
        .await;
    assert_eq!(r.json["path"], "/x");

    // Unchanged file: nothing to do.
    let (ok, out, _) = tollgate(&["config", "apply", "--dry-run", f], &env, None);
    assert!(ok);
    assert!(
        !out.lines()
            .any(|l| l.starts_with("create") || l.starts_with("update") || l.starts_with("delete")),
        "{out}"
    );
    assert!(
        out.contains("Summary: 0 would be created, 0 would be updated, 0 would be deleted"),
        "{out}"
    );

    // Export from the store, and validate what it wrote.
    let data = gw.data_dir.to_str().unwrap();
    let (ok, exported, err) = tollgate(&["config", "export"], &[("TOLLGATE_DATA_DIR", data)], None);
    assert!(ok, "{err}");
    assert!(
        exported.contains("key_hash: \"sha256:") || exported.contains("key_hash: sha256:"),
        "{exported}"
    );
    assert!(!exported.contains("332d05445a560ee65a76aeaa372d8904"));
    let (ok, out, err) = tollgate(&["config", "validate", "-"], &[], Some(&exported));
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "valid (1 services, 1 routes, 1 consumers, 1 key-auth credentials, 0 plugins, 0 plans)"
        ),
        "{out}"
    );
    // The exported file applied back changes nothing either.
    let exported_file = dir.path().join("exported.yaml");
    std::fs::write(&exported_file, &exported).unwrap();
    let (_, out, _) = tollgate(
        &[
            "config",
            "apply",
            "--dry-run",
            exported_file.to_str().unwrap(),
        ],
        &env,
        None,
    );
    assert!(
        out.contains("Summary: 0 would be created, 0 would be updated, 0 would be deleted"),
        "{out}"
    );

    // A changed file: a dry run prints and changes nothing; the real run changes the gateway.
    std::fs::write(&file, deck(backend.port, V2_ROUTE).replace("consumers:\n  - username: slow_user\n    keyauth_credentials:\n      - key: 332d05445a560ee65a76aeaa372d8904\n", "")).unwrap();
    let (_, out, _) = tollgate(&["config", "apply", "--dry-run", f], &env, None);
    assert!(
        out.contains("create routes v2")
            && out.contains("delete consumers slow_user")
            && out.contains("delete key-auths"),
        "{out}"
    );
    assert_eq!(
        send("GET", &gw.proxy_url("/v2/x"), &[], None).await.status,
        404
    );
    let (ok, out, err) = tollgate(&["config", "apply", f], &env, None);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Summary: 1 created, 0 updated, 2 deleted"),
        "{out}"
    );
    gw.wait_for_status("/v2/x", 200, Duration::from_secs(3))
        .await;
    assert_eq!(
        send("GET", &gw.admin_url("/consumers/slow_user"), &[], None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_one_postgres_see_each_others_changes_within_two_seconds() {
    let Some(url) = service_env("TOLLGATE_TEST_POSTGRES_URL") else {
        return;
    };
    let backend = Backend::start().await;
    let env = [
        ("TOLLGATE_DATABASE", "postgres"),
        ("TOLLGATE_DATABASE_URL", url.as_str()),
    ];
    let a = Gateway::start(&env).await;
    let b = Gateway::start(&env).await;
    let name = format!("svc-{}", a.proxy);
    let path = format!("/pg{}/", a.proxy);
    let r = send(
        "POST",
        &a.admin_url("/services"),
        &[],
        json_body(json!({"name": name, "url": format!("http://127.0.0.1:{}", backend.port)})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(
        "POST",
        &a.admin_url(&format!("/services/{name}/routes")),
        &[],
        json_body(json!({"paths": [path]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let started = std::time::Instant::now();
    let r = b
        .wait_for_status(&format!("{path}hello"), 200, Duration::from_secs(2))
        .await;
    assert_eq!(r.json["path"], "/hello");
    eprintln!(
        "node B served node A's new route after {:?}",
        started.elapsed()
    );
    // And back: a delete on B reaches A.
    let route_id = send(
        "GET",
        &b.admin_url(&format!("/services/{name}/routes")),
        &[],
        None,
    )
    .await
    .json["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        send(
            "DELETE",
            &b.admin_url(&format!("/routes/{route_id}")),
            &[],
            None
        )
        .await
        .status,
        204
    );
    a.wait_for_status(&format!("{path}hello"), 404, Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_store_keeps_the_proxy_serving_and_refuses_admin_writes() {
    let Some(db) = PgDatabase::create("tollgate_lost").await else {
        return;
    };
    let backend = Backend::start().await;
    let gw = Gateway::start(&[
        ("TOLLGATE_DATABASE", "postgres"),
        ("TOLLGATE_DATABASE_URL", &db.url),
    ])
    .await;
    let service = json!({"name": "s", "url": format!("http://127.0.0.1:{}", backend.port)});
    assert_eq!(
        send("POST", &gw.admin_url("/services"), &[], json_body(service))
            .await
            .status,
        201
    );
    let route = json!({"paths": ["/kept/"]});
    assert_eq!(
        send(
            "POST",
            &gw.admin_url("/services/s/routes"),
            &[],
            json_body(route)
        )
        .await
        .status,
        201
    );
    gw.wait_for_status("/kept/x", 200, Duration::from_secs(3))
        .await;

    // The database goes away under the running gateway.
    db.drop_now().await;
    let status_url = format!("http://127.0.0.1:{}/status", gw.status);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        let s = send("GET", &status_url, &[], None).await;
        if s.json["database"]["reachable"] == false || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status.json["database"]["reachable"], false,
        "{}",
        status.body
    );
    assert_eq!(
        send("GET", &gw.proxy_url("/kept/x"), &[], None)
            .await
            .status,
        200,
        "the last configuration keeps serving"
    );
    let write = send(
        "POST",
        &gw.admin_url("/consumers"),
        &[],
        form(&[("username", "late")]),
    )
    .await;
    assert_eq!(write.status, 503, "{}", write.body);
}

/// Issue 23, item 7: the portal's plans as code, a Tollgate extension of decK's format: a
/// `plans` list applied to a running gateway, exported back, loaded by DB-less mode, and
/// checked with lines like every other entity.
#[tokio::test(flavor = "multi_thread")]
async fn plans_are_configuration_as_code_too() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deck.yaml");
    let plans = "plans:\n  - name: Free\n    limits: {second: 2, day: 1000}\n    services: [pytbak]\n  - name: Open\n";
    std::fs::write(&file, format!("{}{plans}", deck(backend.port, ""))).unwrap();
    let f = file.to_str().unwrap();
    let admin = gw.admin_url("");
    let env = [("TOLLGATE_ADMIN_URL", admin.as_str())];
    let (ok, out, err) = tollgate(&["config", "validate", f], &[], None);
    assert!(ok && out.contains("0 plugins, 2 plans)"), "{out}{err}");
    let (ok, out, err) = tollgate(&["config", "apply", f], &env, None);
    assert!(ok, "{err}");
    assert!(
        out.contains("create plan Free") && out.contains("create plan Open"),
        "{out}"
    );
    let r = send("GET", &gw.admin_url("/plans/Free"), &[], None).await;
    let pytbak = send("GET", &gw.admin_url("/services/pytbak"), &[], None).await;
    assert_eq!(r.json["limits"]["day"], 1000);
    assert_eq!(r.json["services"], json!([pytbak.json["id"]]));
    // Exported with the services by name; applied back, nothing changes.
    let data = gw.data_dir.to_str().unwrap();
    let (ok, exported, err) = tollgate(&["config", "export"], &[("TOLLGATE_DATA_DIR", data)], None);
    assert!(ok, "{err}");
    assert!(
        exported.contains("plans:") && exported.contains("- pytbak"),
        "{exported}"
    );
    let back = dir.path().join("exported.yaml");
    std::fs::write(&back, &exported).unwrap();
    let (_, out, _) = tollgate(
        &["config", "apply", "--dry-run", back.to_str().unwrap()],
        &env,
        None,
    );
    assert!(
        out.contains("Summary: 0 would be created, 0 would be updated, 0 would be deleted"),
        "{out}"
    );
    // A plan changed and one removed.
    let changed = format!(
        "{}plans:\n  - name: Free\n    limits: {{second: 5}}\n",
        deck(backend.port, "")
    );
    std::fs::write(&file, changed).unwrap();
    let (_, out, _) = tollgate(&["config", "apply", f], &env, None);
    assert!(
        out.contains("update plan Free") && out.contains("delete plan Open"),
        "{out}"
    );
    let r = send("GET", &gw.admin_url("/plans/Free"), &[], None).await;
    assert_eq!(
        (
            r.json["limits"]["second"].clone(),
            r.json["limits"]["day"].clone()
        ),
        (json!(5), json!(null))
    );
    // A plan naming a service the file lacks: refused with its line.
    let bad = format!(
        "{}plans:\n  - name: X\n    services: [nowhere]\n",
        deck(backend.port, "")
    );
    let (ok, _, err) = tollgate(&["config", "validate", "-"], &[], Some(&bad));
    assert!(
        !ok && err.contains("plans[0].services[0]: no services named 'nowhere'"),
        "{err}"
    );
    assert!(err.contains("line 1"), "{err}");
    // DB-less: the file's plans are the gateway's.
    std::fs::write(&file, format!("{}{plans}", deck(backend.port, ""))).unwrap();
    let dbless = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", f),
    ])
    .await;
    let r = send("GET", &dbless.admin_url("/plans"), &[], None).await;
    let names: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Free", "Open"]);
}

/// API versions as code: a DB-less file whose service deprecates `v1` in its `portal` block;
/// the proxy answers `/v1/` with `Deprecation` and `Sunset`, `/v2/` without.
#[tokio::test(flavor = "multi_thread")]
async fn a_deprecated_version_in_a_declarative_file_gets_its_headers() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    let text = format!(
        r#"_format_version: "3.0"
services:
  - name: pets
    url: http://127.0.0.1:{}
    portal:
      title: Pets
      versions:
        v1: {{deprecated_at: "2026-11-01", sunset_at: "2027-06-30T12:00:00Z"}}
    routes:
      - {{name: pets-v1, paths: [/v1/]}}
      - {{name: pets-v2, paths: [/v2/]}}
"#,
        backend.port
    );
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    let gw = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", f),
    ])
    .await;
    let v1 = gw
        .wait_for_status("/v1/pets", 200, Duration::from_secs(3))
        .await;
    assert_eq!(v1.header("deprecation"), Some("@1793491200"));
    assert_eq!(v1.header("sunset"), Some("Wed, 30 Jun 2027 12:00:00 GMT"));
    let v2 = send("GET", &gw.proxy_url("/v2/pets"), &[], None).await;
    assert_eq!((v2.status, v2.header("deprecation")), (200, None));
}
