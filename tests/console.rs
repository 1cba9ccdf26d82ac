//! The admin console end to end, over HTTP as a browser without JavaScript uses it: the login
//! form, the session cookie, the guard, the cross-origin check and the dashboard's numbers.
mod common;

use common::*;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";

struct Console {
    gw: Gateway,
    port: u16,
}

impl Console {
    async fn start() -> Console {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let gw = Gateway::start(&[
            ("TOLLGATE_CONSOLE_LISTEN", &listen),
            ("TOLLGATE_CONSOLE_ADMIN_PASSWORD", PASSWORD),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "100"),
        ])
        .await;
        Console { gw, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn login(&self, password: &str, cookie: Option<&str>) -> Resp {
        let origin = self.origin();
        let mut headers = vec![("origin", origin.as_str())];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        let body = form(&[("username", "admin"), ("password", password)]);
        send("POST", &self.url("/login"), &headers, body).await
    }

    async fn get(&self, path: &str, cookie: &str) -> Resp {
        send("GET", &self.url(path), &[("cookie", cookie)], None).await
    }
}

#[tokio::test]
async fn visitors_without_a_session_go_to_the_login_form_and_foreign_posts_are_refused() {
    let c = Console::start().await;
    for front in ["/", "/?range=24h"] {
        let r = send("GET", &c.url(front), &[], None).await;
        assert_eq!(r.status, 200, "the front page shows the login form");
        assert!(r.body.contains("<form method=\"post\" action=\"/login\""));
        assert!(!r.body.contains("Dashboard"));
    }
    for path in ["/services", "/plugins", "/consumers/x", "/routes/x/delete"] {
        let r = send("GET", &c.url(path), &[], None).await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "{path}"
        );
    }
    // Actions too, even from the console's own origin.
    let origin = c.origin();
    for path in ["/services", "/consumers/x/keys", "/routes/x/delete"] {
        let r = send(
            "POST",
            &c.url(path),
            &[("origin", &origin)],
            form(&[("name", "x")]),
        )
        .await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "POST {path}"
        );
    }
    let login = send("GET", &c.url("/login"), &[], None).await;
    assert!(login
        .body
        .contains("<form method=\"post\" action=\"/login\""));
    let css = send("GET", &c.url("/assets/console.css"), &[], None).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    // Posts from another origin, or with no origin at all, change nothing.
    let evil = [("origin", "https://evil.example")];
    let body = form(&[("username", "admin"), ("password", PASSWORD)]);
    assert_eq!(
        send("POST", &c.url("/login"), &evil, body).await.status,
        403
    );
    assert_eq!(send("POST", &c.url("/logout"), &[], None).await.status, 403);
}

#[tokio::test]
async fn a_login_gets_a_fresh_strict_session_and_logout_ends_it() {
    let c = Console::start().await;
    let wrong = c.login("nope", None).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong username or password."));
    assert!(wrong.header("set-cookie").is_none());

    // A session id planted before the login is not the one after it.
    let planted = "tollgate_console=AAAAAAAAAAAAAAAAAAAAAA";
    let ok = c.login(PASSWORD, Some(planted)).await;
    assert_eq!((ok.status, ok.header("location")), (303, Some("/")));
    let set = ok.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = session_cookie(&ok);
    assert_ne!(cookie, planted);
    let page = c.get("/", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<h1>Dashboard</h1>") && page.body.contains("admin"));
    assert!(page.body.contains("No traffic yet"));

    let origin = c.origin();
    let out = send(
        "POST",
        &c.url("/logout"),
        &[("cookie", &cookie), ("origin", &origin)],
        None,
    )
    .await;
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    let after = c.get("/services", &cookie).await;
    assert_eq!(after.status, 303, "the old cookie no longer works");
}

#[tokio::test]
async fn five_wrong_passwords_in_a_minute_lock_the_login() {
    let c = Console::start().await;
    for _ in 0..5 {
        assert_eq!(c.login("wrong", None).await.status, 401);
    }
    let locked = c.login(PASSWORD, None).await;
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("try again in a minute"));
}

#[tokio::test]
async fn the_dashboard_shows_the_proxys_requests_and_429s() {
    let c = Console::start().await;
    let backend = Backend::start().await;
    let gw = &c.gw;
    limited_traffic(gw, &backend, 7, 10).await;
    let cookie = session_cookie(&c.login(PASSWORD, None).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let p = c.get("/?range=15m", &cookie).await;
        if !p.body.contains("No traffic yet") || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |label: &str| -> String {
        let at = page.body.find(&format!(">{label}</span>")).expect(label);
        let rest = &page.body[at..];
        let start = rest.find("class=\"value\">").unwrap() + 14;
        rest[start..start + rest[start..].find('<').unwrap()].to_string()
    };
    assert_eq!(value("Requests"), "10");
    assert_eq!(value("429s"), "3");
    assert_eq!(
        value("Cache hits"),
        "0 (0.0 %)",
        "no proxy-cache on the route"
    );
    assert!(page.body.contains("<svg") && page.body.contains("class=\"s429\""));
    assert!(page.body.contains(">api</td>"), "top routes name the route");
    assert!(
        page.body.contains("/api/get/context"),
        "recent requests are listed"
    );
    let refreshing = c.get("/?range=15m&refresh=on", &cookie).await;
    assert!(refreshing
        .body
        .contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(!page.body.contains("http-equiv"));
    let filtered = c.get("/?range=15m&route=other", &cookie).await;
    assert!(filtered.body.contains("No traffic yet"));
}

/// Posts a console form as the browser would (same origin, the session cookie).
async fn post_form(c: &Console, cookie: &str, path: &str, pairs: &[(&str, &str)]) -> Resp {
    let origin = c.origin();
    let headers = [("cookie", cookie), ("origin", origin.as_str())];
    send("POST", &c.url(path), &headers, form(pairs)).await
}

#[tokio::test]
async fn the_seed_walkthrough_through_the_console_forms() {
    let c = Console::start().await;
    let backend = Backend::start().await;
    let cookie = session_cookie(&c.login(PASSWORD, None).await);
    let created = |r: &Resp| assert_eq!(r.status, 303, "{}", r.body);
    let url = format!("http://127.0.0.1:{}", backend.port);
    created(
        &post_form(
            &c,
            &cookie,
            "/services",
            &[("name", "pytbak"), ("url", &url)],
        )
        .await,
    );
    let paths = "/api/\n/v2/";
    created(
        &post_form(
            &c,
            &cookie,
            "/routes",
            &[
                ("name", "api"),
                ("service", "pytbak"),
                ("paths", paths),
                ("strip_path", "false"),
            ],
        )
        .await,
    );
    created(
        &post_form(
            &c,
            &cookie,
            "/plugins",
            &[("name", "key-auth"), ("service", "pytbak")],
        )
        .await,
    );
    created(&post_form(&c, &cookie, "/consumers", &[("username", "slow_user")]).await);

    // A bad limit is refused with the admin API's message next to the field.
    let bad = post_form(
        &c,
        &cookie,
        "/plugins",
        &[
            ("name", "rate-limiting"),
            ("config.second", "4"),
            ("config.minute", "2"),
        ],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("cannot be lower than the limit for second"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("field invalid"), "the field is marked");
    assert!(bad.body.contains("value=\"4\""), "what was typed stays");
    created(
        &post_form(
            &c,
            &cookie,
            "/plugins",
            &[
                ("name", "rate-limiting"),
                ("config.second", "3"),
                ("consumer", "slow_user"),
                ("route", "api"),
            ],
        )
        .await,
    );

    // The key is shown once, on the consumer's page.
    let consumer = c.get("/consumers", &cookie).await;
    let open = consumer.body.split("href=\"/consumers/").nth(1).unwrap();
    let id = &open[..36];
    let page = post_form(
        &c,
        &cookie,
        &format!("/consumers/{id}/keys"),
        &[("key", "")],
    )
    .await;
    let key_at = page.body.find("<code class=\"key\">").expect("the new key") + 18;
    let key = page.body[key_at..key_at + 32].to_string();
    assert!(page.body.contains("Route + Consumer (2nd of 8)"));
    assert!(
        page.body.contains("Service (7th of 8)"),
        "the service's key-auth is listed too"
    );
    assert!(
        !c.get(&format!("/consumers/{id}"), &cookie)
            .await
            .body
            .contains(&key),
        "shown only once"
    );

    // Through the proxy: three a second for slow_user, then 429s, and the dashboard shows them.
    c.gw.settled().await;
    let statuses: Vec<u16> = burst(&c.gw, &key, 5).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = c.get("/?range=15m", &cookie).await;
        if d.body
            .contains(">429s</span><span class=\"value\">2</span>")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed the 429s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Deleting asks first.
    let ask = c.get(&format!("/consumers/{id}/delete"), &cookie).await;
    assert!(
        ask.body.contains("cannot be undone")
            && ask
                .body
                .contains(&format!("action=\"/consumers/{id}/delete\""))
    );
    created(&post_form(&c, &cookie, &format!("/consumers/{id}/delete"), &[]).await);
    assert!(c
        .get("/consumers", &cookie)
        .await
        .body
        .contains("None yet."));
}

#[tokio::test]
async fn lists_page_through_a_thousand_rows_and_every_form_shows_its_errors() {
    let c = Console::start().await;
    for i in 0..1000 {
        let r = send(
            "POST",
            &c.gw.admin_url("/consumers"),
            &[],
            form(&[("username", &format!("user{i:04}"))]),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let cookie = session_cookie(&c.login(PASSWORD, None).await);
    let (mut seen, mut pages, mut next) = (0, 0, Some("/consumers".to_string()));
    while let Some(path) = next.take() {
        let page = c.get(&path.replace("&amp;", "&"), &cookie).await;
        assert_eq!(page.status, 200);
        let rows = page.body.matches(">Open</a>").count();
        assert!(rows <= 100, "a page holds at most 100 rows");
        seen += rows;
        pages += 1;
        next = page.body.split("<a href=\"").skip(1).find_map(|s| {
            let href = &s[..s.find('"')?];
            (href.starts_with("/consumers?offset=") && s[s.find('>')?..].starts_with(">Next page"))
                .then(|| href.to_string())
        });
    }
    assert_eq!((seen, pages), (1000, 10));

    // Each form, refused by the admin API's validation, says why next to the field.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 4] = [
        (
            "/services",
            vec![("name", "bad"), ("url", "ftp://x")],
            "url",
        ),
        (
            "/routes",
            vec![("name", "r"), ("service", "nope"), ("paths", "/a/")],
            "service",
        ),
        ("/consumers", vec![("username", "user0001")], "username"),
        (
            "/plugins",
            vec![
                ("name", "rate-limiting"),
                ("config.limit_by", "header"),
                ("config.second", "1"),
            ],
            "config.header_name",
        ),
    ];
    for (path, pairs, field) in cases {
        let r = post_form(&c, &cookie, path, &pairs).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("Not created"), "{path}: {}", r.body);
        let marked = r
            .body
            .split("<label class=\"field invalid\">")
            .skip(1)
            .any(|label| {
                let label = &label[..label.find("</label>").unwrap_or(label.len())];
                label.contains(&format!("name=\"{field}\""))
            });
        assert!(marked, "{path}: {field} is marked: {}", r.body);
    }
}

#[tokio::test]
async fn an_entity_is_edited_through_its_form_prefilled_with_what_is_stored() {
    let c = Console::start().await;
    let admin = |path: &str| c.gw.admin_url(path);
    let r = send(
        "POST",
        &admin("/plugins"),
        &[],
        form(&[
            ("name", "rate-limiting"),
            ("config.second", "3"),
            ("config.hour", "100"),
        ]),
    )
    .await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let cookie = session_cookie(&c.login(PASSWORD, None).await);
    let edit = c.get(&format!("/plugins/{id}/edit"), &cookie).await;
    assert!(
        edit.body.contains("name=\"config.second\" value=\"3\""),
        "{}",
        edit.body
    );
    assert!(edit.body.contains("name=\"config.hour\" value=\"100\""));

    // Only what is typed changes; the rest of the config stays (Kong's PATCH).
    let saved = post_form(
        &c,
        &cookie,
        &format!("/plugins/{id}/edit"),
        &[("config.second", "5")],
    )
    .await;
    assert_eq!(
        (saved.status, saved.header("location")),
        (303, Some("/plugins"))
    );
    let stored = send("GET", &admin(&format!("/plugins/{id}")), &[], None)
        .await
        .json;
    assert_eq!(
        (
            stored["config"]["second"].as_u64(),
            stored["config"]["hour"].as_u64()
        ),
        (Some(5), Some(100))
    );

    let bad = post_form(
        &c,
        &cookie,
        &format!("/plugins/{id}/edit"),
        &[("config.minute", "1")],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("Not saved")
            && bad
                .body
                .contains("cannot be lower than the limit for second")
    );
    let unchanged = send("GET", &admin(&format!("/plugins/{id}")), &[], None)
        .await
        .json;
    assert!(
        unchanged["config"]["minute"].is_null(),
        "nothing was written"
    );
}

/// An upstream through the console: created with its health checks from the form, targets
/// added, shown with their health, breaker, share of the traffic and the last hour's latency
/// per target; a weight changed, a target marked unhealthy (it then gets no traffic) and
/// removed behind a confirmation.
#[tokio::test]
async fn an_upstream_is_run_from_its_console_page() {
    let c = Console::start().await;
    let (a, b) = (Backend::start().await, Backend::start().await);
    let cookie = session_cookie(&c.login(PASSWORD, None).await);
    let r = post_form(
        &c,
        &cookie,
        "/upstreams",
        &[
            ("name", "orders.upstream"),
            ("healthchecks.passive.unhealthy.http_failures", "3"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let up = send(
        "GET",
        &c.gw.admin_url("/upstreams/orders.upstream"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        up.json["healthchecks"]["passive"]["unhealthy"]["http_failures"],
        3
    );
    let id = up.json["id"].as_str().unwrap().to_string();
    let page = format!("/upstreams/{id}");
    for backend in [&a, &b] {
        let target = format!("127.0.0.1:{}", backend.port);
        let r = post_form(
            &c,
            &cookie,
            &format!("{page}/targets"),
            &[("target", &target)],
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let bad = post_form(
        &c,
        &cookie,
        &format!("{page}/targets"),
        &[("target", "not a host")],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("Invalid target; not a valid hostname or ip address"),
        "{}",
        bad.body
    );
    c.gw.create(
        "/services",
        serde_json::json!({"name": "orders", "host": "orders.upstream"}),
    )
    .await;
    c.gw.create(
        "/services/orders/routes",
        serde_json::json!({"paths": ["/orders"]}),
    )
    .await;
    c.gw.settled().await;
    for _ in 0..20 {
        assert_eq!(
            send("GET", &c.gw.proxy_url("/orders"), &[], None)
                .await
                .status,
            200
        );
    }
    let since = Instant::now();
    let shown = loop {
        let r = c.get(&page, &cookie).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // The analytics flush every 100 ms: the per-target latency shows once they land.
        if r.body.contains(" of 10") || since.elapsed() > Duration::from_secs(5) {
            break r.body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(shown.contains("Upstream orders.upstream"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{}", a.port)));
    assert!(shown.contains("50.0 % (10)"), "an even share: {shown}");
    assert!(
        shown.contains("0 of 10"),
        "errors of the last hour per target: {shown}"
    );
    assert!(
        shown.contains("HEALTHY") && shown.contains("closed"),
        "{shown}"
    );
    let target_a = format!("127.0.0.1:{}", a.port);
    let health = send(
        "GET",
        &c.gw.admin_url(&format!("/upstreams/{id}/health")),
        &[],
        None,
    )
    .await;
    let tid = health.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == target_a.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_form(
        &c,
        &cookie,
        &format!("{page}/targets/{tid}/weight"),
        &[("weight", "70000")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("weight: value should be between 0 and 65535"),
        "{}",
        r.body
    );
    let r = post_form(
        &c,
        &cookie,
        &format!("{page}/targets/{tid}/weight"),
        &[("weight", "5")],
    )
    .await;
    assert_eq!(r.status, 303);
    let r = post_form(
        &c,
        &cookie,
        &format!("{page}/targets/{tid}/health"),
        &[("state", "unhealthy")],
    )
    .await;
    assert_eq!(r.status, 303);
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(
            send("GET", &c.gw.proxy_url("/orders"), &[], None)
                .await
                .status,
            200
        );
    }
    assert_eq!(a.hits(), before, "an unhealthy target gets no traffic");
    let shown = c.get(&page, &cookie).await.body;
    assert!(
        shown.contains("UNHEALTHY") && shown.contains("value=\"5\""),
        "{shown}"
    );
    let confirm = c
        .get(&format!("{page}/targets/{tid}/delete"), &cookie)
        .await;
    assert!(
        confirm.body.contains("Remove this target"),
        "{}",
        confirm.body
    );
    let r = post_form(&c, &cookie, &format!("{page}/targets/{tid}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    let listed = send(
        "GET",
        &c.gw.admin_url(&format!("/upstreams/{id}/targets")),
        &[],
        None,
    )
    .await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 1);
}
