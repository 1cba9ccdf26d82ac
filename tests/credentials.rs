//! Credentials as Kong's admin API and decK files carry them, and how the store keeps them:
//! basic-auth passwords, API keys, oauth2 client secrets, tokens and codes hashed, jwt and
//! hmac-auth secrets sealed under the keyring (`TOLLGATE_KEYRING_FILE`), so neither the SQLite
//! file nor PostgreSQL's tables and files hold any of them in clear.
mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

const PASSWORD: &str = "basic-password-in-clear-7f3a";
const API_KEY: &str = "api-key-in-clear-0c5d9e";
const JWT_SECRET: &str = "jwt-secret-in-clear-5b1e88";
const HMAC_SECRET: &str = "hmac-secret-in-clear-91aa2c";
const OAUTH2_SECRET: &str = "oauth2-secret-in-clear-3e7d10";
const CLEAR: [&str; 5] = [PASSWORD, API_KEY, JWT_SECRET, HMAC_SECRET, OAUTH2_SECRET];
/// The oauth2 endpoints believe this proxy's `X-Forwarded-Proto: https`.
const TRUSTED: (&str, &str) = ("TOLLGATE_TRUSTED_IPS", "127.0.0.1/32");

/// Consumer `ann` with one credential of each kind, through the nested endpoints.
async fn ann(gw: &Gateway) {
    gw.create("/consumers", json!({"username": "ann"})).await;
    for (path, body) in [
        (
            "basic-auth",
            json!({"username": "ann", "password": PASSWORD}),
        ),
        ("key-auth", json!({"key": API_KEY})),
        ("jwt", json!({"key": "ann-issuer", "secret": JWT_SECRET})),
        (
            "hmac-auth",
            json!({"username": "ann-hmac", "secret": HMAC_SECRET}),
        ),
        ("acls", json!({"group": "gold"})),
        (
            "oauth2",
            json!({"name": "ann-app", "client_id": "ann-app", "client_secret": OAUTH2_SECRET,
                "redirect_uris": ["http://ann.test/cb"]}),
        ),
    ] {
        gw.create(&format!("/consumers/ann/{path}"), body).await;
    }
}

/// What the oauth2 endpoints hand out for `ann-app`, in clear: a code left unredeemed, the
/// tokens another code gave, and a client-credentials token.
async fn oauth2_issued(gw: &Gateway, backend: &Backend) -> Vec<String> {
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "o", "url": url}))
        .await;
    let route = json!({"name": "o", "hosts": ["oauth2.test"]});
    gw.create("/services/o/routes", route).await;
    let config = json!({"enable_authorization_code": true, "enable_client_credentials": true,
        "provision_key": "provision123", "accept_http_if_already_terminated": true});
    gw.create(
        "/routes/o/plugins",
        json!({"name": "oauth2", "config": config}),
    )
    .await;
    gw.settled().await;
    let post = |path: &'static str, body: Value| async move {
        let headers = [("host", "oauth2.test"), ("x-forwarded-proto", "https")];
        let r = send("POST", &gw.proxy_url(path), &headers, json_body(body)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json
    };
    let authorize = json!({"provision_key": "provision123", "authenticated_userid": "ann",
        "client_id": "ann-app", "response_type": "code"});
    // `http://ann.test/cb?code=...`: the code ends the URI.
    let code = |r: Value| {
        r["redirect_uri"]
            .as_str()
            .unwrap()
            .split("code=")
            .nth(1)
            .unwrap()
            .to_string()
    };
    let kept = code(post("/oauth2/authorize", authorize.clone()).await);
    let redeemed = code(post("/oauth2/authorize", authorize).await);
    let tokens = post(
        "/oauth2/token",
        json!({"code": redeemed, "client_id": "ann-app", "client_secret": OAUTH2_SECRET,
            "grant_type": "authorization_code"}),
    )
    .await;
    let cc = post(
        "/oauth2/token",
        json!({"client_id": "ann-app", "client_secret": OAUTH2_SECRET,
            "grant_type": "client_credentials"}),
    )
    .await;
    let text = |v: &Value| v.as_str().unwrap().to_string();
    vec![
        kept,
        text(&tokens["access_token"]),
        text(&tokens["refresh_token"]),
        text(&cc["access_token"]),
    ]
}

/// The secrets that must stay readable are shown back by the admin API (as Kong's are).
async fn readable_secrets_read_back(gw: &Gateway) {
    let r = send("GET", &gw.admin_url("/jwts/ann-issuer"), &[], None).await;
    assert_eq!(r.json["secret"], JWT_SECRET);
    let r = send("GET", &gw.admin_url("/hmac-auths/ann-hmac"), &[], None).await;
    assert_eq!(r.json["secret"], HMAC_SECRET);
    let r = send("GET", &gw.admin_url("/basic-auths/ann"), &[], None).await;
    assert!(r.json["password"]
        .as_str()
        .unwrap()
        .starts_with("$argon2id$"));
}

/// Which of `CLEAR` and `issued` occur in `bytes`.
fn found_in(bytes: &[u8], issued: &[String]) -> Vec<String> {
    CLEAR
        .into_iter()
        .map(String::from)
        .chain(issued.iter().cloned())
        .filter(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        .collect()
}

/// Every file under `dir`, read.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_key_or_secret_is_in_clear_in_the_sqlite_file() {
    let keyring_dir = tempfile::tempdir().unwrap();
    let keyring = keyring_dir.path().join("keyring");
    let gw = Gateway::start(&[
        ("TOLLGATE_KEYRING_FILE", keyring.to_str().unwrap()),
        TRUSTED,
    ])
    .await;
    ann(&gw).await;
    readable_secrets_read_back(&gw).await;
    let backend = Backend::start().await;
    let issued = oauth2_issued(&gw, &backend).await;
    // The database file and its journal (`tollgate.db`, `-wal`, `-shm`).
    let files: Vec<_> = files_under(&gw.data_dir)
        .into_iter()
        .filter(|(name, _)| name.contains("tollgate.db"))
        .collect();
    assert!(files
        .iter()
        .any(|(n, b)| n.ends_with("tollgate.db") && !b.is_empty()));
    for (name, bytes) in &files {
        assert_eq!(found_in(bytes, &issued), Vec::<String>::new(), "{name}");
    }
    // The secrets are sealed, not merely encoded: the stored bodies carry the sealed form.
    let db = format!("sqlite://{}", gw.data_dir.join("tollgate.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let bodies: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM entities WHERE kind IN ('jwts', 'hmac-auths')")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(bodies.len(), 2);
    for (body,) in bodies {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["secret"]
                .as_str()
                .unwrap()
                .starts_with("$tollgate-aes256gcm$"),
            "{body}"
        );
    }
    // Another keyring cannot open them: the gateway refuses to start on the wrong key.
    drop(pool);
    let mut gw = gw;
    gw.terminate();
    std::fs::write(
        &keyring,
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let (ok, out, err) = tollgate(
        &["config", "export"],
        &[
            ("TOLLGATE_DATA_DIR", gw.data_dir.to_str().unwrap()),
            ("TOLLGATE_KEYRING_FILE", keyring.to_str().unwrap()),
        ],
        None,
    );
    assert!(!ok && !out.contains(JWT_SECRET), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_key_or_secret_is_in_clear_in_postgresql() {
    let Some(db) = PgDatabase::create("tollgate_secrets").await else {
        return;
    };
    let gw = Gateway::start(&[
        ("TOLLGATE_DATABASE", "postgres"),
        ("TOLLGATE_DATABASE_URL", &db.url),
        TRUSTED,
    ])
    .await;
    ann(&gw).await;
    readable_secrets_read_back(&gw).await;
    let backend = Backend::start().await;
    let issued = oauth2_issued(&gw, &backend).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // Every row of every table, as text.
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.iter().any(|(t,)| t == "entities"));
    for (table,) in &tables {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&pool)
            .await
            .unwrap();
        let text: String = rows.into_iter().map(|(r,)| r).collect();
        assert_eq!(
            found_in(text.as_bytes(), &issued),
            Vec::<String>::new(),
            "table {table}"
        );
    }
    // And the server's files: the table's heap and the write-ahead log, once checkpointed
    // (when the server is on this machine, as the suite's is).
    sqlx::query("CHECKPOINT").execute(&pool).await.unwrap();
    let (data_dir,): (String,) = sqlx::query_as("SHOW data_directory")
        .fetch_one(&pool)
        .await
        .unwrap();
    let data_dir = Path::new(&data_dir);
    for table in ["entities", "oauth2_tokens", "oauth2_authorization_codes"] {
        let (heap,): (String,) = sqlx::query_as("SELECT pg_relation_filepath($1)")
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
        if let Ok(bytes) = std::fs::read(data_dir.join(&heap)) {
            assert!(!bytes.is_empty(), "{table}");
            assert_eq!(found_in(&bytes, &issued), Vec::<String>::new(), "{heap}");
        }
    }
    if data_dir.exists() {
        for (name, bytes) in files_under(&data_dir.join("pg_wal")) {
            assert_eq!(found_in(&bytes, &issued), Vec::<String>::new(), "{name}");
        }
    }
    pool.close().await;
    drop(gw);
    db.drop_now().await;
}

/// Kong's nested and top-level credential endpoints (each kind's 02-api_spec.lua): listed
/// under the consumer and on their own, found by their endpoint key, PUT by name, deleted
/// with the consumer.
#[tokio::test(flavor = "multi_thread")]
async fn credential_endpoints_answer_nested_and_top_level() {
    let gw = Gateway::start(&[]).await;
    ann(&gw).await;
    gw.create("/consumers", json!({"username": "bob"})).await;
    let get = |path: &str| {
        let url = gw.admin_url(path);
        async move { send("GET", &url, &[], None).await }
    };
    for (nested, top, name) in [
        ("basic-auth", "basic-auths", "ann"),
        ("jwt", "jwts", "ann-issuer"),
        ("hmac-auth", "hmac-auths", "ann-hmac"),
        ("acls", "acls", "gold"),
    ] {
        let list = get(&format!("/consumers/ann/{nested}")).await;
        assert_eq!(list.json["data"].as_array().unwrap().len(), 1, "{nested}");
        let id = list.json["data"][0]["id"].as_str().unwrap().to_string();
        let all = get(&format!("/{top}")).await;
        assert_eq!(all.json["data"][0]["id"], id.as_str(), "{top}");
        // Found by id at the top level, by name nested; not under another consumer.
        assert_eq!(get(&format!("/{top}/{id}")).await.status, 200, "{top}");
        assert_eq!(
            get(&format!("/consumers/ann/{nested}/{name}")).await.json["id"],
            id.as_str()
        );
        assert_eq!(
            get(&format!("/consumers/bob/{nested}/{id}")).await.status,
            404,
            "{nested}"
        );
        // `/{top}/{id}/consumer`: the owner.
        let owner = get(&format!("/{top}/{id}/consumer")).await;
        assert_eq!(owner.json["username"], "ann", "{top}");
    }
    // Unique names: a second `ann` basic-auth credential is a 409 naming it.
    let r = send(
        "POST",
        &gw.admin_url("/consumers/bob/basic-auth"),
        &[],
        json_body(json!({"username": "ann", "password": "x"})),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json["fields"], json!({"username": "ann"}));
    // PUT by group creates bob's membership (18-acl/01-api_spec.lua).
    let r = send(
        "PUT",
        &gw.admin_url("/consumers/bob/acls/silver"),
        &[],
        json_body(json!({})),
    )
    .await;
    assert_eq!(
        (r.status, r.json["group"].as_str()),
        (200, Some("silver")),
        "{}",
        r.body
    );
    // Wrong types and missing fields in Kong's shape; nothing stored.
    let r = send(
        "POST",
        &gw.admin_url("/consumers/bob/basic-auth"),
        &[],
        json_body(json!({"username": 1})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["fields"],
        json!({"username": "expected a string", "password": "required field missing"})
    );
    assert_eq!(
        get("/consumers/bob/basic-auth").await.json["data"],
        json!([])
    );
    // Deleting the consumer deletes its credentials.
    assert_eq!(
        send("DELETE", &gw.admin_url("/consumers/ann"), &[], None)
            .await
            .status,
        204
    );
    for top in ["basic-auths", "jwts", "hmac-auths", "key-auths"] {
        assert_eq!(
            get(&format!("/{top}")).await.json["data"],
            json!([]),
            "{top}"
        );
    }
    assert_eq!(get("/acls").await.json["data"].as_array().unwrap().len(), 1);
}

/// decK's nested credential lists: a DB-less file with them in clear serves every plugin;
/// `config export` writes them back (the password as its argon2id hash), and the export
/// loads and authenticates the same way.
#[tokio::test(flavor = "multi_thread")]
async fn deck_files_carry_every_credential_kind_and_export_round_trips() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    let deck = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{port}
  routes:
  - name: basic
    paths: [/basic]
    plugins:
    - name: basic-auth
    - name: acl
      config: {{allow: [gold]}}
  - name: jwt
    paths: [/jwt]
    plugins:
    - name: jwt
  - name: oauth2
    paths: [/oauth2-api]
    plugins:
    - name: oauth2
      config:
        enable_client_credentials: true
        provision_key: provision123
        accept_http_if_already_terminated: true
consumers:
- username: ann
  basicauth_credentials:
  - username: ann
    password: {PASSWORD}
  jwt_secrets:
  - key: ann-issuer
    secret: {JWT_SECRET}
  hmacauth_credentials:
  - username: ann-hmac
    secret: {HMAC_SECRET}
  acls:
  - group: gold
  oauth2_credentials:
  - name: ann-app
    client_id: ann-app
    client_secret: {OAUTH2_SECRET}
    redirect_uris: [http://ann.test/cb]
"#,
        port = backend.port
    );
    std::fs::write(&file, deck).unwrap();
    let f = file.to_str().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ann:{PASSWORD}"))
    );
    let check = |gw: Gateway| {
        let basic = basic.clone();
        async move {
            let r = send(
                "GET",
                &gw.proxy_url("/basic"),
                &[("authorization", &basic)],
                None,
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json["headers"]["x-consumer-groups"], "gold");
            let r = send("GET", &gw.admin_url("/jwts/ann-issuer"), &[], None).await;
            assert_eq!(r.json["secret"], JWT_SECRET);
            let body = json!({"client_id": "ann-app", "client_secret": OAUTH2_SECRET,
                "grant_type": "client_credentials"});
            let r = send(
                "POST",
                &gw.proxy_url("/oauth2-api/oauth2/token"),
                &[("x-forwarded-proto", "https")],
                json_body(body),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            gw
        }
    };
    let dbless = check(
        Gateway::start(&[
            ("TOLLGATE_DATABASE", "off"),
            ("TOLLGATE_DECLARATIVE_CONFIG", f),
            TRUSTED,
        ])
        .await,
    )
    .await;
    drop(dbless);
    // Into a store, then out again.
    let gw = Gateway::start(&[TRUSTED]).await;
    let admin = gw.admin_url("");
    let (ok, out, err) = tollgate(
        &["config", "apply", f],
        &[("TOLLGATE_ADMIN_URL", admin.as_str())],
        None,
    );
    assert!(ok, "{out}{err}");
    gw.settled().await;
    let gw = check(gw).await;
    let data = gw.data_dir.to_str().unwrap();
    let (ok, exported, err) = tollgate(&["config", "export"], &[("TOLLGATE_DATA_DIR", data)], None);
    assert!(ok, "{err}");
    for list in [
        "basicauth_credentials:",
        "jwt_secrets:",
        "hmacauth_credentials:",
        "oauth2_credentials:",
        "acls:",
    ] {
        assert!(exported.contains(list), "{list}: {exported}");
    }
    assert!(
        exported.contains("$argon2id$")
            && !exported.contains(PASSWORD)
            && !exported.contains(OAUTH2_SECRET),
        "{exported}"
    );
    let back = dir.path().join("exported.yaml");
    std::fs::write(&back, &exported).unwrap();
    check(
        Gateway::start(&[
            ("TOLLGATE_DATABASE", "off"),
            ("TOLLGATE_DECLARATIVE_CONFIG", back.to_str().unwrap()),
            TRUSTED,
        ])
        .await,
    )
    .await;
}
