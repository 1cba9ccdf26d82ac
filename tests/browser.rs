//! The console in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini). With JavaScript on, a person logs in, sets up the seed's
//! walkthrough through the forms (service, route, key-auth, consumer, key, rate limit), and after
//! traffic sees the requests and 429s on the dashboard; with JavaScript off the forms and the
//! dashboard work the same. Screenshots go to `TOLLGATE_TEST_ARTIFACTS` (default
//! target/test-artifacts).
mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "browser test password";

struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Option<Driver> {
    let bin = service_env("TOLLGATE_TEST_CHROMEDRIVER")?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = format!("http://127.0.0.1:{port}/status");
    while try_send("GET", &status, &[], None).await.map(|r| r.status) != Ok(200) {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(driver)
}

async fn browser(driver: &Driver, javascript: bool, profile: &std::path::Path) -> Client {
    browser_with(driver, javascript, profile, &[]).await
}

/// A browser session with `extra` command-line flags.
async fn browser_with(
    driver: &Driver,
    javascript: bool,
    profile: &std::path::Path,
    extra: &[&str],
) -> Client {
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--window-size=1280,1000".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if !javascript {
        args.push("--blink-settings=scriptEnabled=false".into());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

fn artifacts() -> std::path::PathBuf {
    let dir = std::env::var("TOLLGATE_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-artifacts").into());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the dashboard card labelled `label`.
async fn card(page: &Client, label: &str) -> String {
    let xpath =
        format!("//div[@class='card'][span[@class='label']='{label}']/span[@class='value']");
    page.find(Locator::XPath(&xpath))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Fills the named inputs (text, textarea, or select by value) of the page's entity form and
/// submits it.
async fn submit(page: &Client, fields: &[(&str, &str)]) {
    fill_and_submit(page, "form.entity", fields).await;
}

/// The text of the element `css` matches, once it is on the page.
async fn waited_text(page: &Client, css: &str) -> String {
    let element = page.wait().for_element(Locator::Css(css)).await.unwrap();
    element.text().await.unwrap()
}

async fn click(page: &Client, locator: Locator<'_>) {
    page.find(locator).await.unwrap().click().await.unwrap();
}

async fn log_in(page: &Client, listen: &str) {
    page.goto(&format!("http://{listen}/services"))
        .await
        .unwrap();
    assert!(
        page.current_url().await.unwrap().path().ends_with("/login"),
        "sent to the login form"
    );
    page.find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    page.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(page, Locator::Css("button[type=submit]")).await;
    page.wait()
        .for_element(Locator::Css("section.totals, p.empty"))
        .await
        .unwrap();
}

/// A gateway with the console on a fresh port (analytics flushed every 100 ms); the console's
/// address.
async fn console_gateway() -> (Gateway, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&[
        ("TOLLGATE_CONSOLE_LISTEN", &listen),
        ("TOLLGATE_CONSOLE_ADMIN_PASSWORD", PASSWORD),
        ("TOLLGATE_ANALYTICS_FLUSH_MS", "100"),
    ])
    .await;
    (gw, listen)
}

async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// Sets up the seed's walkthrough through the console's forms; returns slow_user's new key.
async fn walkthrough(page: &Client, listen: &str, backend: &Backend) -> String {
    let url = format!("http://127.0.0.1:{}", backend.port);
    let steps: [(&str, Vec<(&str, &str)>); 4] = [
        ("services", vec![("name", "pytbak"), ("url", &url)]),
        (
            "routes",
            vec![
                ("name", "api"),
                ("service", "pytbak"),
                ("paths", "/api/"),
                ("strip_path", "false"),
            ],
        ),
        ("plugins", vec![("name", "key-auth"), ("service", "pytbak")]),
        ("consumers", vec![("username", "slow_user")]),
    ];
    for (collection, fields) in steps {
        page.goto(&format!("http://{listen}/{collection}"))
            .await
            .unwrap();
        submit(page, &fields).await;
        page.wait()
            .for_element(Locator::Css("p.notice"))
            .await
            .unwrap();
    }
    click(page, Locator::LinkText("Open")).await;
    click(page, Locator::Css("form.entity button[type=submit]")).await;
    let key = waited_text(page, "code.key").await;
    screenshot(page, "console-consumer-key").await;
    page.goto(&format!("http://{listen}/plugins"))
        .await
        .unwrap();
    let limit = [
        ("name", "rate-limiting"),
        ("config.second", "2"),
        ("consumer", "slow_user"),
        ("route", "api"),
    ];
    submit(page, &limit).await;
    page.wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_drives_the_seed_walkthrough_and_watches_the_429s_with_and_without_javascript() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let (gw, listen) = console_gateway().await;
    let backend = Backend::start().await;
    let profiles = tempfile::tempdir().unwrap();

    // With JavaScript: everything through the forms, then traffic until 429s.
    let page = browser(&driver, true, &profiles.path().join("js")).await;
    log_in(&page, &listen).await;
    let key = walkthrough(&page, &listen, &backend).await;
    gw.settled().await;
    assert_eq!(burst(&gw, &key, 5).await, [200, 200, 429, 429, 429]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    page.goto(&format!("http://{listen}/?range=15m"))
        .await
        .unwrap();
    assert_eq!(card(&page, "Requests").await, "5");
    assert_eq!(card(&page, "429s").await, "3");
    assert!(
        page.find(Locator::Css("svg.chart rect.s429")).await.is_ok(),
        "the 429s are drawn"
    );
    screenshot(&page, "console-dashboard-js").await;
    // Usable on a phone: nothing wider than the screen.
    page.set_window_size(390, 844).await.unwrap();
    let width = page
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap();
    assert!(
        width.as_u64().unwrap() <= 390,
        "the page is {width} px wide at 390 px"
    );
    screenshot(&page, "console-dashboard-390").await;
    page.close().await.unwrap();

    // Without JavaScript: log in, add a consumer through a form, read the same dashboard.
    let page = browser(&driver, false, &profiles.path().join("nojs")).await;
    log_in(&page, &listen).await;
    page.goto(&format!("http://{listen}/consumers"))
        .await
        .unwrap();
    submit(&page, &[("username", "fast_user")]).await;
    let notice = waited_text(&page, "p.notice").await;
    assert_eq!(notice, "Created fast_user.");
    page.goto(&format!("http://{listen}/?range=15m"))
        .await
        .unwrap();
    assert_eq!(card(&page, "429s").await, "3");
    screenshot(&page, "console-dashboard-nojs").await;
    page.close().await.unwrap();
}

/// Fills the named inputs of the form at `form` (a CSS selector: text and textareas typed
/// into, selects chosen by value or else by label) and submits it. Each input is waited for:
/// the form may be on a page the last submit is still loading.
async fn fill_and_submit(page: &Client, form: &str, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        let input = page
            .wait()
            .for_element(Locator::Css(&format!("{form} [name='{name}']")))
            .await
            .unwrap();
        if input.tag_name().await.unwrap() != "select" {
            input.send_keys(value).await.unwrap();
        } else if input.clone().select_by_value(value).await.is_err() {
            input.select_by_label(value).await.unwrap();
        }
    }
    click(page, Locator::Css(&format!("{form} button[type=submit]"))).await;
}

/// The portal set up by an operator: the petstore published on `/v1` behind key-auth, and a
/// plan of 2 requests a second.
async fn published_portal(backend: &Backend) -> (Gateway, String) {
    let gw = Gateway::start_listening(
        &[
            ("TOLLGATE_CONSOLE_ADMIN_PASSWORD", PASSWORD),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "100"),
        ],
        &["TOLLGATE_PORTAL_LISTEN", "TOLLGATE_CONSOLE_LISTEN"],
    )
    .await;
    let [portal, console] = [gw.listeners[0], gw.listeners[1]];
    let service = serde_json::json!({"name": "pets", "url": format!("http://127.0.0.1:{}", backend.port),
        "portal": {"title": "Pet store", "description": "Pets for everyone."}});
    let admin = |p: &str| gw.admin_url(p);
    gw.create("/services", service).await;
    let route = serde_json::json!({"name": "v1", "paths": ["/v1"]});
    gw.create("/services/pets/routes", route).await;
    let key_auth = serde_json::json!({"name": "key-auth"});
    gw.create("/services/pets/plugins", key_auth).await;
    let petstore = include_str!("data/petstore-3.0.yaml").to_string();
    let r = send(
        "PUT",
        &admin("/services/pets/openapi"),
        &[],
        Some(("application/yaml", petstore)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let console = Site { port: console };
    let login = console
        .post(
            "/login",
            None,
            &[("username", "admin"), ("password", PASSWORD)],
        )
        .await;
    let operator = session_cookie(&login);
    let plan = console
        .post(
            "/plans",
            Some(&operator),
            &[("name", "Starter"), ("second", "2")],
        )
        .await;
    assert_eq!(plan.status, 303, "{}", plan.body);
    gw.settled().await;
    (gw, format!("127.0.0.1:{portal}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_goes_from_the_front_page_to_a_working_key_and_sees_their_429s() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let backend = Backend::start().await;
    let (gw, portal) = published_portal(&backend).await;
    let profiles = tempfile::tempdir().unwrap();
    for javascript in [false, true] {
        let run = if javascript { "js" } else { "nojs" };
        let page = browser(&driver, javascript, &profiles.path().join(run)).await;

        // The front page, then the docs of the API.
        page.goto(&format!("http://{portal}/")).await.unwrap();
        click(&page, Locator::LinkText("Pet store")).await;
        let operations = page
            .find_all(Locator::Css("section.operation"))
            .await
            .unwrap();
        assert_eq!(operations.len(), 19, "every operation of the petstore");
        screenshot(&page, &format!("portal-reference-{run}")).await;

        // Sign up, log in with the form the answer shows (sign-up answers alike for known
        // emails, so it does not log in by itself), create an application, copy its key.
        click(&page, Locator::LinkText("Sign up")).await;
        let email = format!("dev-{run}@example.com");
        let password = "a long developer password";
        fill_and_submit(
            &page,
            "form.card",
            &[("email", &email), ("password", password)],
        )
        .await;
        fill_and_submit(&page, "form[action='/login']", &[("password", password)]).await;
        page.wait()
            .for_element(Locator::Css("form[action='/apps']"))
            .await
            .unwrap();
        fill_and_submit(
            &page,
            "form[action='/apps']",
            &[
                ("name", "my first app"),
                ("plan", "Starter (2/second; API key)"),
            ],
        )
        .await;
        let key = waited_text(&page, "code.key").await;
        assert_eq!(key.len(), 32, "{key}");
        screenshot(&page, &format!("portal-new-key-{run}")).await;

        // The key works through the proxy within 2 seconds, and the plan limits it.
        let started = Instant::now();
        while send("GET", &gw.proxy_url("/v1/pet/1"), &[("apikey", &key)], None)
            .await
            .status
            != 200
        {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the new key never worked"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let statuses = burst_on(&gw, "/v1/pet/1", &key, 5).await;
        assert_eq!(statuses, [200, 200, 429, 429, 429]);

        // The 429s on the application's usage page.
        tokio::time::sleep(Duration::from_millis(600)).await;
        click(&page, Locator::LinkText("Usage")).await;
        click(&page, Locator::LinkText("Last 15 minutes")).await;
        assert_eq!(card(&page, "429s").await, "3");
        assert_eq!(card(&page, "Requests").await, "6");
        screenshot(&page, &format!("portal-usage-{run}")).await;

        // With JavaScript the reference's curl samples carry the key shown in this browser.
        page.goto(&format!("http://{portal}/apis/pets#getPetById"))
            .await
            .unwrap();
        let sample = page
            .find(Locator::Css("#getPetById pre.curl"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let expected = if javascript {
            key.as_str()
        } else {
            "YOUR_API_KEY"
        };
        assert!(sample.contains(&format!("apikey: {expected}")), "{sample}");
        page.close().await.unwrap();
    }
}

/// Issue 22, item 2: a route path or a published API's description of
/// `</textarea><script>...` ran script in the admin's session on the console's edit pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_stored_in_entities_stays_text_on_the_consoles_edit_pages() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let (gw, listen) = console_gateway().await;
    let script = "</textarea><script>document.title='pwned'</script>";
    let service = serde_json::json!({"name": "s", "url": "http://127.0.0.1:9",
        "portal": {"title": "S", "description": script}});
    let s = gw.create("/services", service).await;
    let path = format!("/x{script}");
    let r = gw
        .create("/services/s/routes", serde_json::json!({"paths": [path]}))
        .await;
    let pages = [
        (
            format!(
                "http://{listen}/routes/{}/edit",
                r.json["id"].as_str().unwrap()
            ),
            "paths",
            path.clone(),
        ),
        (
            format!("http://{listen}/apis/{}", s.json["id"].as_str().unwrap()),
            "description",
            script.to_string(),
        ),
    ];
    let profile = tempfile::tempdir().unwrap();
    let page = browser(&driver, true, profile.path()).await;
    log_in(&page, &listen).await;
    for (url, field, value) in pages {
        page.goto(&url).await.unwrap();
        let textarea = page
            .find(Locator::Css(&format!("textarea[name='{field}']")))
            .await
            .unwrap();
        let shown = textarea.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(shown, value, "{url}: the field holds the text as it is");
        let title = page.title().await.unwrap();
        assert!(!title.contains("pwned"), "{url}: script ran");
        screenshot(&page, "console-markup-as-text").await;
    }
    page.close().await.unwrap();
    // Every console page says where scripts may come from, and refuses framing.
    let r = send("GET", &format!("http://{listen}/login"), &[], None).await;
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
}

/// Issue 22, item 3: any page an operator opened could reconfigure the gateway through the
/// admin API on loopback, by a form post (CSRF) or by rebinding its own host name to
/// 127.0.0.1 (then its requests are same-origin to the browser).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_sites_cannot_write_through_the_admin_api() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let gw = Gateway::start(&[]).await;
    // The attacker's page, on another origin: it posts a form to the admin API at once.
    let admin = gw.admin;
    let page_html = format!(
        "<form method=post action='http://127.0.0.1:{admin}/services'>\
         <input name=name value=csrf><input name=url value=http://evil.example></form>\
         <script>document.forms[0].submit()</script>"
    );
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = page_html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(evil, app).await.unwrap() });
    let profile = tempfile::tempdir().unwrap();
    let rules = "--host-resolver-rules=MAP rebind.test 127.0.0.1";
    let page = browser_with(&driver, true, profile.path(), &[rules]).await;
    page.goto(&format!("http://127.0.0.1:{evil_port}/"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while page.current_url().await.unwrap().port() != Some(admin) {
        assert!(Instant::now() < deadline, "the form was not posted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = page.source().await.unwrap();
    assert!(answer.contains("cross-origin request refused"), "{answer}");
    // DNS rebinding: a page of rebind.test, whose name now points at 127.0.0.1.
    page.goto(&format!("http://rebind.test:{admin}/"))
        .await
        .unwrap();
    let post = "const done = arguments[arguments.length - 1];\
        fetch('/services', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},\
        body: 'name=rebound&url=http://evil.example'}).then(r => done(r.status), e => done(String(e)));";
    let status = page.execute_async(post, vec![]).await.unwrap();
    assert_eq!(status, serde_json::json!(403));
    page.close().await.unwrap();
    for name in ["csrf", "rebound"] {
        let r = send(
            "GET",
            &gw.admin_url(&format!("/services/{name}")),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{name} was not created");
    }
    // The operator's own tools still work: curl and scripts send no Origin.
    let r = send("GET", &gw.admin_url("/services"), &[], None).await;
    assert_eq!(r.status, 200);
}

/// cors (issue 27): a page on another origin calls the API from Chromium with a credentialed
/// `PUT` carrying a custom header, so the browser sends a preflight first. The route whose
/// cors plugin names the page's origin answers the preflight and the call goes through; the
/// route that names another origin answers the preflight without that origin, and the
/// browser never sends the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_calls_the_api_as_its_cors_plugin_allows() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let backend = Backend::start().await;
    let page_server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!(
        "http://127.0.0.1:{}",
        page_server.local_addr().unwrap().port()
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<title>another site</title>") }),
    );
    tokio::spawn(async move { axum::serve(page_server, app).await.unwrap() });
    let gw = Gateway::start(&[]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", serde_json::json!({"name": "api", "url": url}))
        .await;
    for (route, origin) in [
        ("allowed", page_origin.as_str()),
        ("blocked", "http://elsewhere.test"),
    ] {
        let path = format!("/{route}");
        gw.create(
            "/services/api/routes",
            serde_json::json!({"name": route, "paths": [path]}),
        )
        .await;
        let config = serde_json::json!({"origins": [origin], "credentials": true});
        gw.create(
            &format!("/routes/{route}/plugins"),
            serde_json::json!({"name": "cors", "config": config}),
        )
        .await;
    }
    gw.settled().await;
    let profile = tempfile::tempdir().unwrap();
    let page = browser(&driver, true, profile.path()).await;
    page.goto(&format!("{page_origin}/")).await.unwrap();
    let call = |route: &str| {
        format!(
            "const done = arguments[arguments.length - 1];\
             fetch('{}', {{method: 'PUT', credentials: 'include', headers: {{'x-custom': 'from-page'}}, body: 'hi'}})\
               .then(r => r.json().then(j => done([r.status, j.method, j.headers['x-custom']])), e => done(String(e)));",
            gw.proxy_url(&format!("/{route}/x"))
        )
    };
    let hits = backend.hits();
    let allowed = page.execute_async(&call("allowed"), vec![]).await.unwrap();
    assert_eq!(allowed, serde_json::json!([200, "PUT", "from-page"]));
    assert_eq!(
        backend.hits(),
        hits + 1,
        "the gateway answered the preflight itself"
    );
    let blocked = page.execute_async(&call("blocked"), vec![]).await.unwrap();
    assert!(
        blocked.as_str().is_some_and(|e| e.contains("TypeError")),
        "{blocked}"
    );
    assert_eq!(
        backend.hits(),
        hits + 1,
        "the browser did not send the blocked call"
    );
    page.close().await.unwrap();
}
