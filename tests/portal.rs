//! The developer portal end to end, over HTTP as a browser without JavaScript uses it, with
//! the operator's side in the console and calls through the real proxy: published APIs and
//! their documents (validated by openapi-spec-validator), sign-up, applications, keys under a
//! plan, usage, and the portal's guards (ownership, sessions, CSRF, redirects, throttling).
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const OPERATOR_PASSWORD: &str = "operator password 1";
const PASSWORD: &str = "developer password 1";
const PETSTORE: &str = include_str!("data/petstore-3.0.yaml");

struct Portal {
    gw: Gateway,
    backend: Backend,
    portal: Site,
    console: Site,
    /// The operator's console session.
    operator: String,
}

impl Portal {
    async fn start(extra: &[(&str, &str)]) -> Portal {
        let mut env = vec![
            ("TOLLGATE_CONSOLE_ADMIN_PASSWORD", OPERATOR_PASSWORD),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "100"),
        ];
        env.extend_from_slice(extra);
        let listeners = ["TOLLGATE_PORTAL_LISTEN", "TOLLGATE_CONSOLE_LISTEN"];
        let gw = Gateway::start_listening(&env, &listeners).await;
        let [portal_port, console_port] = [gw.listeners[0], gw.listeners[1]];
        let backend = Backend::start().await;
        let console = Site { port: console_port };
        let operator = console.operator_session(OPERATOR_PASSWORD).await;
        let p = Portal {
            gw,
            backend,
            portal: Site { port: portal_port },
            console,
            operator,
        };
        p.publish_petstore().await;
        p
    }

    /// Service `pets` (published, with the petstore document) on routes `/v1` and `/v2`,
    /// behind key-auth; service `internal` published privately with one GET route. The
    /// service's path is the document's server path (`/api/v3`), as for the real backend.
    async fn publish_petstore(&self) {
        let admin = |p: &str| self.gw.admin_url(p);
        let url = format!("http://127.0.0.1:{}/api/v3", self.backend.port);
        let pets = json!({"name": "pets", "url": url,
            "portal": {"title": "Pet store", "description": "Pets, *orders* and users.", "version": "1.0.27"}});
        self.gw.create("/services", pets).await;
        for v in ["v1", "v2"] {
            let route = json!({"name": format!("pets-{v}"), "paths": [format!("/{v}")]});
            self.gw.create("/services/pets/routes", route).await;
        }
        self.gw
            .create("/services/pets/plugins", json!({"name": "key-auth"}))
            .await;
        let r = send(
            "PUT",
            &admin("/services/pets/openapi"),
            &[],
            Some(("application/yaml", PETSTORE.to_string())),
        )
        .await;
        assert_eq!(
            (r.status, r.json["operations"].as_u64()),
            (200, Some(19)),
            "{}",
            r.body
        );
        let internal = json!({"name": "internal", "url": format!("http://127.0.0.1:{}", self.backend.port),
            "portal": {"title": "Internal reports", "visibility": "private"}});
        self.gw.create("/services", internal).await;
        let route = json!({"name": "reports", "paths": ["/reports/"], "methods": ["GET"]});
        self.gw.create("/services/internal/routes", route).await;
        self.gw.settled().await;
    }

    /// A plan through the console's form; its id as the portal's form offers it.
    async fn plan(&self, name: &str, per_second: &str) {
        let r = self
            .console
            .post(
                "/plans",
                Some(&self.operator),
                &[("name", name), ("second", per_second)],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }

    /// Signs a developer up and logs them in; their session cookie. Sign-up answers alike for
    /// a new email and a known one (issue 22, item 6), so it starts no session itself.
    async fn sign_up(&self, email: &str) -> String {
        let r = self
            .portal
            .post("/signup", None, &[("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("it has one now"), "{}", r.body);
        let r = self
            .portal
            .post("/login", None, &[("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/apps")),
            "{}",
            r.body
        );
        session_cookie(&r)
    }

    /// Creates an application on the first plan offered; (its id, its key).
    async fn create_app(&self, cookie: &str, name: &str) -> (String, String) {
        let page = self.portal.get("/apps", Some(cookie)).await;
        let plan = between(&page.body, "<option value=\"", "\"").expect("a plan is offered");
        let r = self
            .portal
            .post("/apps", Some(cookie), &[("name", name), ("plan", &plan)])
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let key = between(&r.body, "data-new-key=\"", "\"").expect("the key is shown");
        let id = between(&r.body, "action=\"/apps/", "/").expect("the app's forms");
        (id, key)
    }

    /// Sets a developer's status through the console's form; the console answers 303.
    async fn set_status(&self, developer: &str, status: &str) {
        let path = format!("/developers/{developer}/status");
        let r = self
            .console
            .post(&path, Some(&self.operator), &[("status", status)])
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }

    /// Saves the only plan through the console's edit form; its id.
    async fn edit_plan(&self, fields: &[(&str, &str)]) -> String {
        let plans = self.console.get("/plans", Some(&self.operator)).await;
        let plan_id = between(&plans.body, "href=\"/plans/", "/edit").unwrap();
        let path = format!("/plans/{plan_id}/edit");
        let r = self.console.post(&path, Some(&self.operator), fields).await;
        assert_eq!(r.status, 303, "{}", r.body);
        self.gw.settled().await;
        plan_id
    }

    /// The id of the first key listed on the application's page.
    async fn first_key_id(&self, cookie: &str, app: &str) -> String {
        let page = self.portal.get(&format!("/apps/{app}"), Some(cookie)).await;
        between(
            &page.body,
            &format!("action=\"/apps/{app}/keys/"),
            "/revoke",
        )
        .unwrap()
    }

    async fn call(&self, path: &str, key: &str) -> Resp {
        send("GET", &self.gw.proxy_url(path), &[("apikey", key)], None).await
    }

    /// Waits (≤ 2 s, the promise to developers) until `key` gets `status` on `path`.
    async fn wait_for_key(&self, path: &str, key: &str, status: u16) -> Duration {
        let started = Instant::now();
        loop {
            let r = self.call(path, key).await;
            if r.status == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path} with the key: {} {}",
                r.status,
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The text between `start` and the next `end`.
fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_apis_are_documented_and_every_document_validates() {
    let p = Portal::start(&[]).await;
    p.plan("Free", "5").await;

    let front = p.portal.get("/", None).await;
    assert_eq!(front.status, 200);
    assert!(
        front.body.contains("href=\"/apis/pets\"") && front.body.contains("<em>orders</em>"),
        "{}",
        front.body
    );
    assert!(
        front.body.contains("href=\"/apis/pets?version=v2\""),
        "each version is listed"
    );
    assert!(
        !front.body.contains("Internal reports"),
        "private APIs are for developers only"
    );
    assert!(front.body.contains("href=\"/signup\"") && front.body.contains("href=\"/login\""));
    assert_eq!(p.portal.get("/apis/internal", None).await.status, 404);

    // Every operation of the uploaded document, under both version prefixes.
    let page = p.portal.get("/apis/pets", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body.matches("<section class=\"operation\"").count(),
        38
    );
    for id in [
        "updatePet",
        "findPetsByStatus",
        "uploadFile",
        "getInventory",
        "deleteOrder",
        "createUsersWithListInput",
        "logoutUser",
        "deleteUser",
    ] {
        assert!(
            page.body.contains(&format!("id=\"{id}\"")),
            "{id} is rendered"
        );
    }
    assert!(page.body.contains("curl -i -X GET"), "curl samples");
    assert!(
        page.body.contains(&format!(
            "http://127.0.0.1:{}/v1/pet/findByStatus",
            p.gw.proxy
        )),
        "samples call the proxy"
    );
    let v2 = p.portal.get("/apis/pets?version=v2", None).await;
    assert_eq!(v2.body.matches("<section class=\"operation\"").count(), 19);
    assert_eq!(
        p.portal.get("/apis/pets?version=v9", None).await.status,
        404
    );

    let doc = p.portal.get("/apis/pets/openapi.json", None).await;
    assert_eq!(doc.json["openapi"], "3.1.0");
    assert_eq!(
        doc.json["components"]["securitySchemes"]["ApiKeyHeader"]["name"],
        "apikey"
    );
    assert_eq!(doc.json["x-tollgate-plans"][0]["limits"]["second"], 5);
    let op = &doc.json["paths"]["/v2/pet/{petId}"]["get"];
    assert_eq!(
        op["responses"]["429"]["$ref"],
        "#/components/responses/TooManyRequests"
    );
    assert_eq!(
        op["responses"]["401"]["$ref"],
        "#/components/responses/Unauthorized"
    );
    let yaml = p.portal.get("/apis/pets/openapi.yaml", None).await;
    assert_eq!(yaml.header("content-type"), Some("application/yaml"));
    validate_openapi(&doc.body, "json");
    validate_openapi(&yaml.body, "yaml");

    // The private API, for a logged-in developer: generated from its route alone.
    let dev = p.sign_up("reader@example.com").await;
    let internal = p
        .portal
        .get("/apis/internal/openapi.json", Some(&dev))
        .await;
    assert_eq!(internal.status, 200);
    assert!(
        internal.json["paths"]["/reports/"]["get"].is_object(),
        "{}",
        internal.body
    );
    validate_openapi(&internal.body, "json");
    assert!(p
        .portal
        .get("/", Some(&dev))
        .await
        .body
        .contains("Internal reports"));

    let found = p.portal.get("/search?q=findByTags", None).await;
    assert!(
        found.body.contains("href=\"/apis/pets#findPetsByTags\""),
        "{}",
        found.body
    );
    assert!(
        !p.portal
            .get("/search?q=reports", None)
            .await
            .body
            .contains("/apis/internal"),
        "search hides private APIs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_document_is_refused_with_its_field_and_line_and_changes_nothing() {
    let p = Portal::start(&[]).await;
    let bad =
        "openapi: 3.0.4\ninfo:\n  title: Broken\n  version: '1'\npaths:\n  pets:\n    get: {}\n";
    let r = send(
        "PUT",
        &p.gw.admin_url("/services/pets/openapi"),
        &[],
        Some(("application/yaml", bad.to_string())),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json["fields"]["paths.pets"],
        "a path starts with / (line 6)"
    );
    let kept = send("GET", &p.gw.admin_url("/services/pets/openapi"), &[], None).await;
    assert_eq!(
        kept.json["info"]["title"], "Swagger Petstore - OpenAPI 3.0",
        "the earlier document stays"
    );
    let r = send(
        "PUT",
        &p.gw.admin_url("/services/nope/openapi"),
        &[],
        Some(("application/yaml", PETSTORE.to_string())),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_signs_up_gets_a_key_and_their_plan_limits_it() {
    let p = Portal::start(&[]).await;
    p.plan("Starter", "3").await;
    let dev = p.sign_up("builder@example.com").await;
    let (app, key) = p.create_app(&dev, "my shop").await;
    assert_eq!(key.len(), 32, "a generated 128-bit key");
    let waited = p.wait_for_key("/v1/pet/1", &key, 200).await;
    println!("the new key worked through the proxy after {waited:?}");
    // A key-auth service that is not published is not in any plan.
    let secret = json!({"name": "secret", "url": format!("http://127.0.0.1:{}", p.backend.port)});
    p.gw.create("/services", secret).await;
    let route = json!({"paths": ["/secret"]});
    p.gw.create("/services/secret/routes", route).await;
    p.gw.create("/services/secret/plugins", json!({"name": "key-auth"}))
        .await;
    p.gw.settled().await;
    assert_eq!(p.call("/secret/x", &key).await.status, 403);

    // The plan: 3 a second, then 429 with Kong's headers.
    let statuses = burst_on(&p.gw, "/v1/pet/1", &key, 6).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let limited = p.call("/v1/pet/1", &key).await;
    if limited.status == 429 {
        assert_eq!(limited.header("ratelimit-limit"), Some("3"));
    }

    // Usage: the owner sees the requests and the 429s.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let usage = p
        .portal
        .get(&format!("/apps/{app}/usage?range=15m"), Some(&dev))
        .await;
    assert_eq!(usage.status, 200);
    let cards = usage.body.replace("><", ">\n<");
    let value_after = |label: &str| {
        let at = cards
            .find(&format!(">{label}<"))
            .unwrap_or_else(|| panic!("{label} card: {cards}"));
        between(&cards[at..], "class=\"value\">", "<").unwrap()
    };
    let requests: u64 = value_after("Requests").parse().unwrap();
    let refused: u64 = value_after("429s").parse().unwrap();
    assert!(
        requests >= 7 && refused >= 3,
        "requests {requests}, 429s {refused}"
    );

    // Rotation with a grace period: both keys work; without one the old key stops at once.
    let rotated = p
        .portal
        .post(
            &format!("/apps/{app}/keys"),
            Some(&dev),
            &[("grace", "3600")],
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let second = between(&rotated.body, "data-new-key=\"", "\"").unwrap();
    p.wait_for_key("/v1/pet/1", &second, 200).await;
    assert!(
        rotated.body.contains("expires "),
        "the old key shows its expiry"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        p.call("/v1/pet/1", &key).await.status,
        200,
        "the old key lives through its grace"
    );
    let rotated = p
        .portal
        .post(&format!("/apps/{app}/keys"), Some(&dev), &[("grace", "0")])
        .await;
    let third = between(&rotated.body, "data-new-key=\"", "\"").unwrap();
    p.wait_for_key("/v1/pet/1", &key, 401).await;
    p.wait_for_key("/v1/pet/1", &second, 401).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(p.call("/v1/pet/1", &third).await.status, 200);

    // Revocation.
    let key_id = p.first_key_id(&dev, &app).await;
    let r = p
        .portal
        .post(
            &format!("/apps/{app}/keys/{key_id}/revoke"),
            Some(&dev),
            &[],
        )
        .await;
    assert_eq!(r.status, 303);
    p.wait_for_key("/v1/pet/1", &third, 401).await;

    // The key is never stored or logged in clear.
    assert!(!p.gw.log_text().contains(&key), "a key in the log");
    let stored = std::fs::read(p.gw.data_dir.join("tollgate.db")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&stored).contains(&key),
        "a key in the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developers_reach_only_their_own_applications() {
    let p = Portal::start(&[]).await;
    p.plan("Free", "50").await;
    let alice = p.sign_up("alice@example.com").await;
    let mallory = p.sign_up("mallory@example.com").await;
    let (app, key) = p.create_app(&alice, "alice app").await;
    p.wait_for_key("/v1/pet/1", &key, 200).await;
    let key_id = p.first_key_id(&alice, &app).await;

    for path in [format!("/apps/{app}"), format!("/apps/{app}/usage")] {
        assert_eq!(
            p.portal.get(&path, Some(&mallory)).await.status,
            404,
            "{path}"
        );
    }
    for (path, pairs) in [
        (format!("/apps/{app}/keys"), vec![("grace", "0")]),
        (format!("/apps/{app}/keys/{key_id}/revoke"), vec![]),
        (format!("/apps/{app}/delete"), vec![]),
    ] {
        assert_eq!(
            p.portal.post(&path, Some(&mallory), &pairs).await.status,
            404,
            "{path}"
        );
    }
    // A key id of someone else's, through one's own application.
    let (own, _) = p.create_app(&mallory, "mallory app").await;
    let r = p
        .portal
        .post(
            &format!("/apps/{own}/keys/{key_id}/revoke"),
            Some(&mallory),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(!p
        .portal
        .get("/apps", Some(&mallory))
        .await
        .body
        .contains("alice app"));
    assert_eq!(
        p.call("/v1/pet/1", &key).await.status,
        200,
        "alice's key still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_forms_and_redirects_are_guarded() {
    let p = Portal::start(&[]).await;
    p.plan("Free", "50").await;
    let alice = p.sign_up("alice@example.com").await;
    // A developer's pages need a session, and the log-in form brings them back.
    let r = p.portal.get("/apps", None).await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login?next=%2Fapps"))
    );

    // Session fixation: a session id held before logging in is replaced, and dies.
    let planted = alice.clone();
    let r = p
        .portal
        .post(
            "/login",
            Some(&planted),
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 303);
    let fresh = session_cookie(&r);
    assert_ne!(fresh, planted);
    assert_eq!(
        p.portal.get("/apps", Some(&planted)).await.status,
        303,
        "the old id is worth nothing"
    );
    assert_eq!(p.portal.get("/apps", Some(&fresh)).await.status, 200);

    // Cross-site form posts are refused, logged in or not.
    let plan_page = p.portal.get("/apps", Some(&fresh)).await;
    let plan = between(&plan_page.body, "<option value=\"", "\"").unwrap();
    for origin in [Some("https://evil.example"), None] {
        let mut headers = vec![("cookie", fresh.as_str())];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let r = send(
            "POST",
            &p.portal.url("/apps"),
            &headers,
            form(&[("name", "x"), ("plan", &plan)]),
        )
        .await;
        assert_eq!(r.status, 403, "origin {origin:?}");
    }
    assert!(
        !p.portal
            .get("/apps", Some(&fresh))
            .await
            .body
            .contains(">x<"),
        "nothing was created"
    );

    // After logging in, only paths on the portal are followed.
    for (next, to) in [
        ("/apps?x=1", "/apps?x=1"),
        ("https://evil.example/", "/apps"),
        ("//evil.example", "/apps"),
        ("/\\evil.example", "/apps"),
    ] {
        let r = p
            .portal
            .post(
                "/login",
                None,
                &[
                    ("email", "alice@example.com"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some(to)),
            "next={next}"
        );
    }

    // Log-in: five wrong passwords lock the email for a minute.
    for _ in 0..5 {
        let r = p
            .portal
            .post(
                "/login",
                None,
                &[
                    ("email", "alice@example.com"),
                    ("password", "wrong password"),
                ],
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = p
        .portal
        .post(
            "/login",
            None,
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 429);

    // Sign-up: ten per address an hour.
    for i in 2..=10 {
        p.sign_up(&format!("dev{i}@example.com")).await;
    }
    let r = p
        .portal
        .post(
            "/signup",
            None,
            &[("email", "dev11@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 429);

    // Password change: the old password stops working.
    let r = p
        .portal
        .post(
            "/account",
            Some(&fresh),
            &[("current", PASSWORD), ("new", "a brand new password")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Your password is changed."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_manual_approval_a_developer_waits_for_the_operator() {
    let p = Portal::start(&[("TOLLGATE_PORTAL_APPROVAL", "manual")]).await;
    let r = p
        .portal
        .post(
            "/signup",
            None,
            &[("email", "new@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("awaits an operator"), "{}", r.body);
    let login = || {
        p.portal.post(
            "/login",
            None,
            &[("email", "new@example.com"), ("password", PASSWORD)],
        )
    };
    assert_eq!(login().await.status, 403);

    let list = p.console.get("/developers", Some(&p.operator)).await;
    assert!(
        list.body.contains("new@example.com") && list.body.contains("Approve"),
        "{}",
        list.body
    );
    let id = between(&list.body, "action=\"/developers/", "/status").unwrap();
    p.set_status(&id, "active").await;
    let r = login().await;
    assert_eq!(r.status, 303);
    let session = session_cookie(&r);
    assert_eq!(p.portal.get("/apps", Some(&session)).await.status, 200);
    p.plan("Free", "50").await;
    let (_, key) = p.create_app(&session, "approved app").await;
    p.wait_for_key("/v1/pet/1", &key, 200).await;

    // Suspended: the session ends at the next request, and the keys stop.
    p.set_status(&id, "suspended").await;
    assert_eq!(p.portal.get("/apps", Some(&session)).await.status, 303);
    assert_eq!(login().await.status, 403);
    p.wait_for_key("/v1/pet/1", &key, 403).await;
    let refused = p.call("/v1/pet/1", &key).await;
    assert_eq!(
        refused.json["message"],
        "This application's developer account is suspended"
    );
    // A plan change does not bring the keys back; reactivation does.
    p.edit_plan(&[("name", "Free"), ("second", "40")]).await;
    assert_eq!(p.call("/v1/pet/1", &key).await.status, 403);
    p.set_status(&id, "active").await;
    p.wait_for_key("/v1/pet/1", &key, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_publishes_an_api_and_changes_a_plan_from_the_console() {
    let p = Portal::start(&[]).await;
    // Publishing from the console: a service the portal did not list yet.
    let svc = json!({"name": "orders", "url": format!("http://127.0.0.1:{}", p.backend.port)});
    p.gw.create("/services", svc).await;
    let route = json!({"paths": ["/orders"], "methods": ["GET", "POST"]});
    p.gw.create("/services/orders/routes", route).await;
    assert_eq!(p.portal.get("/apis/orders", None).await.status, 404);
    p.gw.create("/services/orders/plugins", json!({"name": "key-auth"}))
        .await;
    // An application whose plan covers every published API: not this one yet.
    p.plan("Metered", "50").await;
    let dev = p.sign_up("ops@example.com").await;
    let (_, key) = p.create_app(&dev, "app").await;
    p.wait_for_key("/v1/pet/1", &key, 200).await;
    let refused = p.call("/orders", &key).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.json["message"],
        "Your plan does not include this API"
    );
    let r = p
        .console
        .post(
            "/apis/orders/listing",
            Some(&p.operator),
            &[
                ("action", "publish"),
                ("title", ""),
                ("visibility", "public"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "a title is required");
    assert!(
        r.body.contains("portal.title: length must be at least 1"),
        "{}",
        r.body
    );
    let r = p
        .console
        .post(
            "/apis/orders/listing",
            Some(&p.operator),
            &[
                ("action", "publish"),
                ("title", "Orders"),
                ("visibility", "public"),
                ("description", "Place orders."),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.wait_for_key("/orders", &key, 200).await;
    let page = p.portal.get("/apis/orders", None).await;
    assert_eq!(
        page.body.matches("<section class=\"operation\"").count(),
        2,
        "GET and POST /orders"
    );
    let r = p
        .console
        .post(
            "/apis/orders/openapi",
            Some(&p.operator),
            &[("document", "openapi: 2.0")],
        )
        .await;
    assert_eq!(r.status, 400);

    // A plan change reaches the applications already on it.
    let plan_id = p.edit_plan(&[("name", "Metered"), ("second", "1")]).await;
    let statuses = burst_on(&p.gw, "/v1/pet/1", &key, 3).await;
    assert_eq!(statuses, [200, 429, 429]);
    let r = p
        .console
        .post(&format!("/plans/{plan_id}/delete"), Some(&p.operator), &[])
        .await;
    assert_eq!(r.status, 409, "a plan in use stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_keeps_its_developers_plans_and_applications_in_postgresql() {
    let Some(db) = PgDatabase::create("tollgate_portal").await else {
        return;
    };
    let p = Portal::start(&[
        ("TOLLGATE_DATABASE", "postgres"),
        ("TOLLGATE_DATABASE_URL", &db.url),
    ])
    .await;
    p.plan("Free", "5").await;
    let taken = p
        .console
        .post(
            "/plans",
            Some(&p.operator),
            &[("name", "Free"), ("second", "9")],
        )
        .await;
    assert_eq!(taken.status, 409, "plan names are unique");
    let dev = p.sign_up("pg@example.com").await;
    let again = p
        .portal
        .post(
            "/signup",
            None,
            &[
                ("email", "PG@example.com"),
                ("password", "another password 2"),
            ],
        )
        .await;
    // A known email is answered as a new one is (no account oracle), and no second account
    // is made: the first password still logs in, the second does not.
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.body.contains("it has one now"), "{}", again.body);
    let second = p
        .portal
        .post(
            "/login",
            None,
            &[
                ("email", "pg@example.com"),
                ("password", "another password 2"),
            ],
        )
        .await;
    assert_eq!(second.status, 401, "one account per email");
    let (app, key) = p.create_app(&dev, "pg app").await;
    let twin = p.portal.get("/apps", Some(&dev)).await;
    let plan = between(&twin.body, "<option value=\"", "\"").unwrap();
    let r = p
        .portal
        .post("/apps", Some(&dev), &[("name", "pg app"), ("plan", &plan)])
        .await;
    assert_eq!(r.status, 409, "one application per name");
    p.wait_for_key("/v1/pet/1", &key, 200).await;
    let other = p.sign_up("other@example.com").await;
    assert_eq!(
        p.portal
            .get(&format!("/apps/{app}"), Some(&other))
            .await
            .status,
        404
    );
    assert_eq!(
        p.portal
            .get(&format!("/apps/{app}"), Some(&dev))
            .await
            .status,
        200
    );
    drop(p);
    db.drop_now().await;
}

/// Issue 23, item 8: an uploaded document's operations hang off its `servers` path, mapped
/// through the service path and the routes as the proxy maps them; an operation no route
/// reaches is listed as not exposed, not linked under a wrong path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_documents_server_path_is_mapped_and_unreached_operations_are_not_exposed() {
    let p = Portal::start(&[]).await;
    let url = format!("http://127.0.0.1:{}", p.backend.port);
    let ctx = json!({"name": "ctx", "url": url, "portal": {"title": "Context API"}});
    p.gw.create("/services", ctx).await;
    let route = json!({"paths": ["/api/get/"], "strip_path": false});
    p.gw.create("/services/ctx/routes", route).await;
    // The seed's backend document, with its paths under a `servers` path of `/api`.
    let document = include_str!("data/pytbak-openapi.yaml")
        .replace("url: http://pytbak:5000", "url: http://pytbak:5000/api")
        .replace("  /api/", "  /");
    let r = send(
        "PUT",
        &p.gw.admin_url("/services/ctx/openapi"),
        &[],
        Some(("application/yaml", document)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.gw.settled().await;
    let doc = p.portal.get("/apis/ctx/openapi.json", None).await;
    let paths: Vec<&String> = doc.json["paths"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        ["/api/get/context", "/api/get/context/{id}"],
        "{}",
        doc.body
    );
    let hidden: Vec<String> = doc.json["x-tollgate-not-exposed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["method"].as_str().unwrap(),
                o["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        hidden,
        [
            "DELETE /api/delete/context/{id}",
            "POST /api/post/context",
            "PUT /api/put/context/{id}"
        ]
    );
    let page = p.portal.get("/apis/ctx", None).await;
    assert!(
        page.body.contains("Not exposed through the gateway"),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<section class=\"operation\"").count(), 2);
    // The documented path answers through the proxy.
    let r = send("GET", &p.gw.proxy_url("/api/get/context"), &[], None).await;
    assert_eq!(
        (r.status, r.json["path"].clone()),
        (200, json!("/api/get/context"))
    );
}

/// Issue 23, item 7: plans, developers and applications through the admin API, in Kong's
/// shapes, with the same effect as the console: a plan made and changed as code limits the
/// applications on it; suspending a developer stops their keys; an application moves plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_developers_and_applications_are_managed_through_the_admin_api() {
    let p = Portal::start(&[]).await;
    let admin = |path: &str| p.gw.admin_url(path);
    let plan = json!({"name": "Free", "limits": {"second": 1}, "services": ["pets"]});
    let r = send("POST", &admin("/plans"), &[], json_body(plan)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let free_id = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.json["limits"],
        json!({"second": 1, "minute": null, "hour": null, "day": null})
    );
    let pets = send("GET", &admin("/services/pets"), &[], None).await;
    assert_eq!(
        r.json["services"],
        json!([pets.json["id"]]),
        "services by name become ids"
    );
    // Kong's shapes: a taken name, a schema violation, a form body, an unknown service.
    let r = send(
        "POST",
        &admin("/plans"),
        &[],
        json_body(json!({"name": "Free"})),
    )
    .await;
    assert_eq!((r.status, r.json["code"].clone()), (409, json!(5)));
    let bad = json!({"name": "x", "limits": {"second": 0}, "bogus": 1});
    let r = send("POST", &admin("/plans"), &[], json_body(bad)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["fields"]["bogus"], "unknown field");
    assert_eq!(
        r.json["fields"]["limits"]["second"],
        "value should be between 1 and 9223372036854775807"
    );
    let r = send(
        "POST",
        &admin("/plans"),
        &[],
        form(&[("name", "Gold"), ("limits.minute", "600")]),
    )
    .await;
    assert_eq!(
        (r.status, r.json["limits"]["minute"].clone()),
        (201, json!(600)),
        "{}",
        r.body
    );
    let r = send(
        "POST",
        &admin("/plans"),
        &[],
        json_body(json!({"name": "y", "services": ["nope"]})),
    )
    .await;
    assert_eq!(r.json["fields"]["services"], "no service named 'nope'");
    let list = send("GET", &admin("/plans"), &[], None).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(list.json["next"], serde_json::Value::Null);

    // A developer and an application on Free, through the portal as developers do.
    let cookie = p.sign_up("dev@example.com").await;
    let (app, key) = p.create_app(&cookie, "mobile").await;
    p.wait_for_key("/v1/pet/1", &key, 200).await;
    let r = send("GET", &admin("/developers/dev@example.com"), &[], None).await;
    assert_eq!(r.json["status"], "active");
    assert_eq!(r.json.get("password_hash"), None);
    let r = send(
        "GET",
        &admin("/developers/dev@example.com/applications"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.json["data"][0]["id"], app.as_str());
    assert_eq!(r.json["data"][0]["plan"]["id"], free_id.as_str());

    // The plan's limit, changed as code, applies to the application's key.
    let r = send(
        "PATCH",
        &admin("/plans/Free"),
        &[],
        json_body(json!({"limits": {"second": null, "day": 1}})),
    )
    .await;
    assert_eq!(
        (r.status, r.json["limits"]["day"].clone()),
        (200, json!(1)),
        "{}",
        r.body
    );
    p.wait_for_key("/v1/pet/1", &key, 429).await;
    // Another plan, then a suspension, then back.
    let r = send(
        "PATCH",
        &admin(&format!("/applications/{app}")),
        &[],
        json_body(json!({"plan": "Gold"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.wait_for_key("/v1/pet/1", &key, 200).await;
    let r = send(
        "PATCH",
        &admin("/developers/dev@example.com"),
        &[],
        json_body(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(r.json["status"], "suspended");
    p.wait_for_key("/v1/pet/1", &key, 403).await;
    let r = send(
        "PATCH",
        &admin("/developers/dev@example.com"),
        &[],
        json_body(json!({"status": "gone"})),
    )
    .await;
    assert_eq!(r.status, 400);
    // A developer and an application made as code; the application's first key works.
    let new_dev = json!({"email": "Ops@Example.com", "password": "a long enough password"});
    let r = send(
        "POST",
        &admin("/developers"),
        &[],
        json_body(new_dev.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.json["email"].clone()),
        (201, json!("ops@example.com")),
        "{}",
        r.body
    );
    let r = send("POST", &admin("/developers"), &[], json_body(new_dev)).await;
    assert_eq!(r.status, 409);
    let short = json!({"email": "x@example.com", "password": "short"});
    let r = send("POST", &admin("/developers"), &[], json_body(short)).await;
    assert_eq!(r.status, 400);
    assert!(r.json["fields"]["password"].is_string());
    let app_body = json!({"name": "cli", "plan": "Gold"});
    let r = send(
        "POST",
        &admin("/developers/ops@example.com/applications"),
        &[],
        json_body(app_body.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ops_key = r.json["key"].as_str().unwrap().to_string();
    p.wait_for_key("/v1/pet/1", &ops_key, 200).await;
    let r = send(
        "POST",
        &admin("/developers/ops@example.com/applications"),
        &[],
        json_body(app_body),
    )
    .await;
    assert_eq!(r.status, 409, "one name per developer");
    // A plan in use is not deleted; an unused one is.
    let r = send("DELETE", &admin("/plans/Gold"), &[], None).await;
    assert_eq!(
        (r.status, r.json["name"].clone()),
        (400, json!("foreign key violation"))
    );
    assert_eq!(
        send("DELETE", &admin("/plans/Free"), &[], None)
            .await
            .status,
        204
    );
    assert_eq!(
        send("DELETE", &admin(&format!("/applications/{app}")), &[], None)
            .await
            .status,
        204
    );
    assert_eq!(
        send("GET", &admin(&format!("/applications/{app}")), &[], None)
            .await
            .status,
        404
    );
    assert_eq!(
        send("GET", &admin(&format!("/consumers/{app}")), &[], None)
            .await
            .status,
        404
    );
    let r = send("OPTIONS", &admin("/plans"), &[], None).await;
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
}

/// Issue 27: an application picks a credential its plan allows. OAuth2 client credentials:
/// the id and secret shown once, the token endpoint on the API's page, a token that calls the
/// API, a new secret that retires the old one. JWT: a public key the developer uploads (made
/// and used by PyJWT + cryptography), tokens signed with its private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_pick_the_oauth2_or_jwt_credential_their_plan_allows() {
    if !python_packages() {
        return;
    }
    let p = Portal::start(&[("TOLLGATE_TRUSTED_IPS", "127.0.0.1/32")]).await;
    let url = format!("http://127.0.0.1:{}", p.backend.port);
    let oauth2 = json!({"name": "oauth2", "config": {"enable_client_credentials": true,
        "accept_http_if_already_terminated": true}});
    for (name, path, plugin) in [
        ("tokens", "/tok", oauth2),
        ("signed", "/signed", json!({"name": "jwt"})),
    ] {
        let service = json!({"name": name, "url": url, "portal": {"title": name}});
        p.gw.create("/services", service).await;
        let route = json!({"paths": [path]});
        p.gw.create(&format!("/services/{name}/routes"), route)
            .await;
        p.gw.create(&format!("/services/{name}/plugins"), plugin)
            .await;
    }
    p.gw.settled().await;
    let r = p
        .console
        .post(
            "/plans",
            Some(&p.operator),
            &[
                ("name", "Partners"),
                ("second", "50"),
                ("credential", "oauth2"),
                ("credential", "jwt"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let dev = p.sign_up("partner@example.com").await;
    let page = p.portal.get("/apps", Some(&dev)).await;
    let plan = between(&page.body, "<option value=\"", "\"").unwrap();
    let create = |fields: Vec<(&'static str, String)>| {
        let p = &p;
        let dev = dev.clone();
        let plan = plan.clone();
        async move {
            let mut pairs: Vec<(&str, &str)> = vec![("plan", plan.as_str())];
            for (k, v) in &fields {
                pairs.push((k, v.as_str()));
            }
            p.portal.post("/apps", Some(&dev), &pairs).await
        }
    };
    // The plan does not offer API keys.
    let r = create(vec![
        ("name", "keyed".into()),
        ("credential", "key-auth".into()),
    ])
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains(
            "the Partners plan allows OAuth2 client credentials, JWT signed with your key"
        ),
        "{}",
        r.body
    );

    // OAuth2 client credentials.
    let r = create(vec![
        ("name", "backend job".into()),
        ("credential", "oauth2".into()),
    ])
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let client_id = between(&r.body, "id=\"client-id\">", "<").unwrap();
    let secret = between(&r.body, "id=\"client-secret\" class=\"key\">", "<")
        .unwrap_or_else(|| panic!("{}", r.body));
    let app = between(&r.body, "action=\"/apps/", "/").unwrap();
    let shown_again = p.portal.get(&format!("/apps/{app}"), Some(&dev)).await;
    assert!(shown_again.body.contains(&client_id) && !shown_again.body.contains(&secret));
    let reference = p.portal.get("/apis/tokens", Some(&dev)).await;
    let endpoint = between(&reference.body, "id=\"token-endpoint\">", "<").unwrap();
    assert!(endpoint.ends_with("/tok/oauth2/token"), "{endpoint}");
    let token_for = |secret: String| {
        let client_id = client_id.clone();
        let url = p.gw.proxy_url("/tok/oauth2/token");
        async move {
            let body = json!({"grant_type": "client_credentials", "client_id": client_id,
                "client_secret": secret});
            send(
                "POST",
                &url,
                &[("x-forwarded-proto", "https")],
                json_body(body),
            )
            .await
        }
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let token = loop {
        let r = token_for(secret.clone()).await;
        if r.status == 200 {
            break r.json["access_token"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bearer = format!("Bearer {token}");
    let r = send(
        "GET",
        &p.gw.proxy_url("/tok/x"),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["headers"]["x-credential-identifier"],
        client_id.as_str()
    );
    let r = p
        .portal
        .post(&format!("/apps/{app}/secret"), Some(&dev), &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let new_secret = between(&r.body, "id=\"client-secret\" class=\"key\">", "<").unwrap();
    assert_ne!(new_secret, secret);
    p.gw.settled().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while token_for(secret.clone()).await.status != 400 {
        assert!(Instant::now() < deadline, "the old secret still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(token_for(new_secret).await.status, 200);

    // JWT with an uploaded public key; a key that does not parse is refused, nothing made.
    let r = create(vec![
        ("name", "bad key".into()),
        ("credential", "jwt".into()),
        (
            "public_key",
            "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into(),
        ),
    ])
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("not a PEM RSA or EC (P-256) public key"),
        "{}",
        r.body
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("private.pem");
    let key_file = key_file.to_str().unwrap();
    let public = python_json("portal_jwt.py", &["keygen", key_file], &[]);
    let r = create(vec![
        ("name", "signer".into()),
        ("credential", "jwt".into()),
        ("public_key", public["public"].as_str().unwrap().to_string()),
    ])
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let iss = between(&r.body, "id=\"jwt-key\" class=\"key\">", "<").unwrap();
    let now = tollgate_now().to_string();
    let signed = python_json("portal_jwt.py", &["sign", key_file, &iss, &now], &[]);
    let bearer = format!("Bearer {}", signed["token"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = send(
            "GET",
            &p.gw.proxy_url("/signed/x"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let apps = p.portal.get("/apps", Some(&dev)).await;
    assert!(
        !apps.body.contains("bad key"),
        "a refused application leaves nothing"
    );
}

fn tollgate_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Issue 28, versioning: the petstore's `/v1` and `/v2` routes and a route selecting version
/// `3` by `X-API-Version` are listed side by side; `v1` and `3` marked deprecated in the
/// service's `portal.versions` answer with `Deprecation` (RFC 9745 §2, `@` unix seconds),
/// `Sunset` (RFC 8594 §3, an HTTP date) and `Link; rel="deprecation"` (RFC 9745 §3), on proxied
/// and gateway-written answers alike; the portal shows the notices and marks their operations
/// deprecated. Bad entries are refused field by field and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_versions_carry_deprecation_and_sunset_and_the_portal_says_so() {
    let p = Portal::start(&[]).await;
    let admin = |path: &str| p.gw.admin_url(path);
    let route = json!({"name": "pets-3", "paths": ["/pets"], "headers": {"X-API-Version": ["3"]}});
    p.gw.create("/services/pets/routes", route).await;
    p.gw.create("/consumers", json!({"username": "versioned"}))
        .await;
    let key = json!({"key": "versioned-key-1"});
    p.gw.create("/consumers/versioned/key-auth", key).await;
    let listing = |versions: serde_json::Value| json!({"portal": {"title": "Pet store", "version": "1.0.27", "versions": versions}});

    let bad = listing(json!({
        "v1": {"deprecated_at": "soon", "sunset_at": "2020-01-01", "link": "javascript:alert(1)"},
        "v2": {"sunset_at": "2027-01-01", "reason": "x"},
    }));
    let r = send("PATCH", &admin("/services/pets"), &[], json_body(bad)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let errors = &r.json["fields"]["portal"]["versions"];
    assert_eq!(
        errors["v1"]["deprecated_at"],
        "expected a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)"
    );
    assert_eq!(errors["v1"]["link"], "expected an http or https URL");
    assert_eq!(errors["v2"]["deprecated_at"], "required field missing");
    assert_eq!(errors["v2"]["reason"], "unknown field");
    let unchanged = send("GET", &admin("/services/pets"), &[], None).await;
    assert!(unchanged.json["portal"].get("versions").is_none());

    let good = listing(json!({
        "v1": {"deprecated_at": "2026-11-01", "sunset_at": "2027-06-30",
               "link": "https://developer.example.com/migrate-to-v2",
               "notice": "Move to v2 <b>before</b> summer."},
        "3": {"deprecated_at": "2026-11-01T00:00:00Z"},
    }));
    let r = send("PATCH", &admin("/services/pets"), &[], json_body(good)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.gw.settled().await;

    let call = |path: &str, version: Option<&'static str>| {
        let url = p.gw.proxy_url(path);
        let mut headers = vec![("apikey", "versioned-key-1")];
        headers.extend(version.map(|v| ("X-API-Version", v)));
        async move { send("GET", &url, &headers, None).await }
    };
    let link_next = "</pets?page=2>; rel=\"next\"";
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Link", link_next)
        .finish();
    let v1 = call(&format!("/v1/response-headers?{query}"), None).await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert_eq!(v1.header("deprecation"), Some("@1793491200"));
    assert_eq!(v1.header("sunset"), Some("Wed, 30 Jun 2027 00:00:00 GMT"));
    let links: Vec<&str> = v1
        .headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            link_next,
            "<https://developer.example.com/migrate-to-v2>; rel=\"deprecation\"; type=\"text/html\""
        ],
        "the upstream's Link is kept beside the deprecation link"
    );
    let refused = send("GET", &p.gw.proxy_url("/v1/pet/1"), &[], None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("deprecation"), Some("@1793491200"));
    let v2 = call("/v2/pet/1", None).await;
    assert_eq!((v2.status, v2.header("deprecation")), (200, None));
    let three = call("/pets/1", Some("3")).await;
    assert_eq!(three.status, 200, "{}", three.body);
    assert_eq!(three.header("deprecation"), Some("@1793491200"));
    assert_eq!(three.header("sunset"), None, "no sunset date given");

    let front = p.portal.get("/", None).await;
    assert!(front.body.contains("v1 (deprecated)"), "{}", front.body);
    let page = p.portal.get("/apis/pets", None).await;
    assert_eq!(page.status, 200);
    let table = between(&page.body, "<table class=\"versions-table\">", "</table>").unwrap();
    for cell in [
        "X-API-Version: 3",
        "/v1/…",
        "/v2/…",
        "Deprecated since 2026-11-01; stops on 2027-06-30",
        "Current",
    ] {
        assert!(table.contains(cell), "{cell} in {table}");
    }
    assert!(page.body.contains("Version v1 is deprecated"));
    assert!(
        page.body
            .contains("Move to v2 &lt;b&gt;before&lt;/b&gt; summer."),
        "the notice is escaped: {}",
        page.body
    );
    assert!(page
        .body
        .contains("href=\"https://developer.example.com/migrate-to-v2\""));
    let current = p.portal.get("/apis/pets?version=v2", None).await;
    assert!(!current.body.contains("class=\"notice deprecation\""));

    let doc = p
        .portal
        .get("/apis/pets/openapi.json?version=v1", None)
        .await;
    assert_eq!(
        doc.json["paths"]["/v1/pet/{petId}"]["get"]["deprecated"],
        true
    );
    validate_openapi(&doc.body, "json");
    let doc3 = p
        .portal
        .get("/apis/pets/openapi.json?version=3", None)
        .await;
    // The stripping route `/pets` serves the document's `/pet/{petId}` at `/pets/pet/{petId}`.
    let op = &doc3.json["paths"]["/pets/pet/{petId}"]["get"];
    assert_eq!(op["deprecated"], true, "{}", doc3.body);
    let header = op["parameters"].as_array().unwrap().last().unwrap();
    assert_eq!(header["name"], "X-API-Version");
    assert_eq!(header["schema"]["enum"], json!(["3"]));
    validate_openapi(&doc3.body, "json");

    // The console shows the deprecations and keeps them when the operator saves the listing.
    let console_page = p.console.get("/apis/pets", Some(&p.operator)).await;
    let shown = between(&console_page.body, "id=\"deprecated-versions\"", "</p>")
        .unwrap_or_else(|| panic!("{}: {}", console_page.status, console_page.body));
    assert!(
        shown.contains("v1 since 2026-11-01, until 2027-06-30"),
        "{shown}"
    );
    let fields = [
        ("action", "publish"),
        ("title", "Pets"),
        ("visibility", "public"),
    ];
    let r = p
        .console
        .post("/apis/pets/listing", Some(&p.operator), &fields)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kept = send("GET", &admin("/services/pets"), &[], None).await;
    assert_eq!(kept.json["portal"]["title"], "Pets");
    assert_eq!(
        kept.json["portal"]["versions"]["v1"]["sunset_at"],
        "2027-06-30"
    );
}
