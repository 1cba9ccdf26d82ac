//! Issue 22's probes, each kept as a regression test: the real binary attacked the way the
//! probe did (raw sockets, crafted files, slow connections, a browser in tests/browser.rs).
mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A gateway with a catch-all route `/` and a route `/secure` behind key-auth, both to
/// `backend`, and consumer `c` with key `k`.
async fn protected_gateway(backend: &Backend) -> Gateway {
    let gw = Gateway::start(&[]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    let open = json!({"name": "open", "paths": ["/"], "strip_path": false});
    gw.create("/services/s/routes", open).await;
    let secure = json!({"name": "secure", "paths": ["/secure"], "strip_path": false});
    gw.create("/services/s/routes", secure).await;
    gw.create("/routes/secure/plugins", json!({"name": "key-auth"}))
        .await;
    gw.create("/consumers", json!({"username": "c"})).await;
    gw.create("/consumers/c/key-auth", json!({"key": "k"}))
        .await;
    gw.settled().await;
    gw
}

/// Service `s` for `backend` with a catch-all route, served once the call returns.
async fn route_everything_to(gw: &Gateway, backend: &Backend) {
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    gw.create("/services/s/routes", json!({"paths": ["/"]}))
        .await;
    gw.settled().await;
}

/// Item 1: `//secure` was matched by the catch-all and forwarded as it was, so a backend that
/// merges slashes served the protected page without a key.
#[tokio::test(flavor = "multi_thread")]
async fn doubled_slashes_and_hidden_separators_do_not_get_past_key_auth() {
    let backend = Backend::start().await;
    let gw = protected_gateway(&backend).await;
    let before = backend.hits();
    for target in ["//secure", "///secure", "//secure//page", "/secure//"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let status = raw_status(gw.proxy, req.as_bytes()).await;
        assert_eq!(status, 401, "{target} is the protected route");
    }
    // Escaped or backslashed separators a backend may read as `/`: refused outright.
    for target in [
        "/%2fsecure",
        "/%2Fsecure",
        "/open/..%2fsecure",
        "/open/..%5csecure",
        "/open\\..\\secure",
        "/open/%2e%2e%2fsecure",
        "/\\secure",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let status = raw_status(gw.proxy, req.as_bytes()).await;
        assert_eq!(status, 400, "{target}");
    }
    assert_eq!(backend.hits(), before, "none of them reached the backend");
    // With the key, the merged path is what goes upstream (as Kong forwards it).
    let r = send(
        "GET",
        &gw.proxy_url("//secure//page"),
        &[("apikey", "k")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["path"], "/secure/page");
    // Paths are case-sensitive, as in Kong's router: `/Secure` is the catch-all's, and goes
    // upstream as `/Secure` (README: a case-insensitive backend needs a `~(?i)` route).
    let r = send("GET", &gw.proxy_url("/Secure"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["path"], "/Secure");
}

/// Item 8: a malformed chunked body was sent on, failed there, and was answered 502 and
/// logged as an upstream failure.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_chunked_bodies_get_400_not_502() {
    let backend = Backend::start().await;
    let gw = protected_gateway(&backend).await;
    let long_extension = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(20_000));
    let bodies = [
        "zz\r\nhello\r\n0\r\n\r\n".to_string(),
        "-1\r\nhello\r\n0\r\n\r\n".to_string(),
        "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_string(),
        long_extension,
    ];
    for body in &bodies {
        let req = format!(
            "POST /anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let status = raw_status(gw.proxy, req.as_bytes()).await;
        assert_eq!(status, 400, "{}", &body[..body.len().min(30)]);
    }
    let log = gw.log_text();
    assert!(!log.contains("upstream request failed"), "{log}");
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("code=\"502\""), "{metrics}");
}

/// Item 9: with the proxy off and embedded analytics, SIGTERM logged "draining" and the
/// process never exited.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_without_a_proxy_listener_exits() {
    let mut gw = Gateway::start(&[("TOLLGATE_PROXY_LISTEN", "off")]).await;
    let pid = gw.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gw.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "still running 10 s after SIGTERM:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.log_text().contains("stopped"));
}

/// A document of nested aliases: under 1 KiB, about 10^12 values once expanded.
fn alias_bomb() -> String {
    let mut doc =
        String::from("_format_version: \"3.0\"\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    doc
}

/// Item 4: 400 bytes of nested aliases took the process past 18 GB through the OpenAPI upload,
/// and `tollgate config validate` aborted at 1.8 GB.
#[tokio::test(flavor = "multi_thread")]
async fn yaml_alias_bombs_are_refused_with_a_clear_error() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 1024);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.yaml");
    std::fs::write(&file, &bomb).unwrap();
    let started = std::time::Instant::now();
    let (ok, out, err) = tollgate(&["config", "validate", file.to_str().unwrap()], &[], None);
    assert!(!ok, "{out}");
    assert!(err.contains("aliases are expanded"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let backend = Backend::start().await;
    let gw = protected_gateway(&backend).await;
    let r = send(
        "PUT",
        &gw.admin_url("/services/s/openapi"),
        &[],
        Some(("application/yaml", bomb.clone())),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("aliases are expanded"), "{}", r.body);
    // Still serving, and nothing was stored.
    let r = send("GET", &gw.admin_url("/services/s/openapi"), &[], None).await;
    assert_eq!(r.status, 404);

    // A DB-less gateway keeps its configuration when its file turns into a bomb.
    let good = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/]\n",
        backend.port
    );
    std::fs::write(&file, good).unwrap();
    let path = file.to_str().unwrap();
    let dbless = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", path),
    ])
    .await;
    dbless
        .wait_for_status("/x", 200, Duration::from_secs(5))
        .await;
    std::fs::write(&file, &bomb).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dbless.log_text().contains("aliases are expanded") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            dbless.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = send("GET", &dbless.proxy_url("/x"), &[], None).await;
    assert_eq!(r.status, 200, "the running configuration stays");
}

/// Reads from `socket` until the peer closes it; false if it is still open after `within`.
async fn closed_within(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// Raises this test process's own open-file limit (the slow clients need a descriptor each).
fn raise_own_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Item 5: 1,100 connections that never finish their request head used up the process's
/// descriptors through the portal, and the proxy stopped accepting. Now the portal takes at
/// most `TOLLGATE_LISTENER_MAX_CONNECTIONS` at once, closes each after the header timeout,
/// and the proxy answers throughout, with the process held to 1,024 descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_connections_to_the_portal_do_not_starve_the_proxy() {
    use tokio::io::AsyncWriteExt;
    raise_own_open_files();
    let backend = Backend::start().await;
    let portal = free_port();
    let listen = format!("127.0.0.1:{portal}");
    let gw = Gateway::start_with_open_files(
        &[
            ("TOLLGATE_PORTAL_LISTEN", &listen),
            ("TOLLGATE_CLIENT_HEADER_TIMEOUT", "2"),
        ],
        1024,
    )
    .await;
    route_everything_to(&gw, &backend).await;
    let mut slow = Vec::new();
    for _ in 0..1100 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", portal))
            .await
            .unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(s);
    }
    for i in 0..20 {
        let r = send("GET", &gw.proxy_url(&format!("/while-slow/{i}")), &[], None).await;
        assert_eq!(
            r.status, 200,
            "the proxy answers while the portal is flooded"
        );
    }
    let status = gw.status().await;
    assert_eq!(status.json["open_files"]["limit"], 1024, "{}", status.body);
    let open = status.json["open_files"]["open"].as_u64().unwrap();
    assert!(
        open < 600,
        "{open} descriptors open: the portal took only its share"
    );
    // Every slow connection is closed: 256 at a time, 2 s each.
    let started = std::time::Instant::now();
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(30)).await,
            "a slow connection stayed open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let front = send("GET", &format!("http://{listen}/"), &[], None).await;
    assert_eq!(front.status, 200, "the portal serves again");
    assert!(
        !gw.log_text().contains("Too many open files"),
        "{}",
        gw.log_text()
    );
}

/// Item 5: an HTTP/2 preface followed by silence on the proxy, and a half-sent head on the
/// admin API and status listeners, were never closed.
#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_are_closed_on_every_listener() {
    use tokio::io::AsyncWriteExt;
    let gw = Gateway::start(&[("TOLLGATE_CLIENT_HEADER_TIMEOUT", "1")]).await;
    let cases: [(u16, &[u8]); 4] = [
        (gw.proxy, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        (gw.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n"),
        (gw.admin, b"POST /services HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
        (gw.status, b""),
    ];
    for (port, sent) in cases {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(sent).await.unwrap();
        let what = String::from_utf8_lossy(sent)
            .lines()
            .next()
            .unwrap_or("nothing")
            .to_string();
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).await,
            "{port}: {what}"
        );
    }
    // A request whose body never comes is answered 408 by the admin API after the request
    // timeout, and the connection closed.
    let gw = Gateway::start(&[("TOLLGATE_CLIENT_REQUEST_TIMEOUT", "1")]).await;
    let head = "POST /services HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    assert_eq!(raw_status(gw.admin, head.as_bytes()).await, 408);
}

const CONSOLE_PASSWORD: &str = "console password for the probes";

/// A gateway with the console on a fresh port; (gateway, console port).
async fn console_gateway(env: &[(&str, &str)]) -> (Gateway, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![("TOLLGATE_CONSOLE_LISTEN", listen.as_str())];
    all.extend_from_slice(env);
    (Gateway::start(&all).await, port)
}

/// Posts the console's login form from client address `from` (any 127.0.0.0/8 address: the
/// console on 127.0.0.1 sees each as another client); the status and the time it took.
async fn console_login(port: u16, from: &str, user: &str, password: &str) -> (u16, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("password", password)
        .finish();
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = std::time::Instant::now();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, elapsed)
}

/// Item 6: five wrong passwords from anyone locked the right one out too; 10,000 junk
/// usernames filled the throttle's table so that nothing was throttled any more.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_cannot_lock_the_admin_out_nor_flood_the_throttle() {
    let (_gw, port) =
        console_gateway(&[("TOLLGATE_CONSOLE_ADMIN_PASSWORD", CONSOLE_PASSWORD)]).await;
    let login = |from: &'static str, user: &'static str, password: &'static str| async move {
        console_login(port, from, user, password).await.0
    };
    // The admin has logged in from 127.0.0.1 before.
    assert_eq!(login("127.0.0.1", "admin", CONSOLE_PASSWORD).await, 303);
    // A stranger at 127.0.0.2 guesses five times: admin is locked for guesses...
    for _ in 0..5 {
        assert_eq!(login("127.0.0.2", "admin", "guess").await, 401);
    }
    assert_eq!(login("127.0.0.2", "admin", CONSOLE_PASSWORD).await, 429);
    assert_eq!(login("127.0.0.3", "admin", "guess").await, 429);
    // ...but the admin's correct password from an address they used gets through.
    assert_eq!(login("127.0.0.1", "admin", CONSOLE_PASSWORD).await, 303);
    // Junk usernames count against the address that sends them: after ten, it waits.
    for i in 0..10 {
        let user: &'static str = Box::leak(format!("junk{i}").into_boxed_str());
        assert_eq!(login("127.0.0.4", user, "x").await, 401);
    }
    assert_eq!(login("127.0.0.4", "junk-more", "x").await, 429);
    assert_eq!(login("127.0.0.4", "admin", CONSOLE_PASSWORD).await, 429);
    // Locked again by the stranger, the right password from a new address gets in once the
    // back-off (10 s after the last wrong password) has passed.
    for _ in 0..5 {
        login("127.0.0.2", "admin", "guess").await;
    }
    assert_eq!(login("127.0.0.5", "admin", CONSOLE_PASSWORD).await, 429);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(login("127.0.0.5", "admin", CONSOLE_PASSWORD).await, 303);
}

/// Item 6: an unknown user was answered in 0.3 ms and a wrong password in 12.6 ms, which told
/// which usernames exist.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_users_and_wrong_passwords_take_the_same_time() {
    let (_gw, port) =
        console_gateway(&[("TOLLGATE_CONSOLE_ADMIN_PASSWORD", CONSOLE_PASSWORD)]).await;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    // Four of each, interleaved, from one address (under its ten failures a minute).
    for _ in 0..4 {
        let (status, t) = console_login(port, "127.0.0.1", "nobody-here", "wrong").await;
        assert_eq!(status, 401);
        unknown.push(t);
        let (status, t) = console_login(port, "127.0.0.1", "admin", "wrong").await;
        assert_eq!(status, 401);
        wrong.push(t);
    }
    let (u, w) = (median(unknown), median(wrong));
    let ratio = u.as_secs_f64() / w.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown user {u:?}, wrong password {w:?}"
    );
}

/// Item 6: portal sign-up answered 409 for an email that had an account.
#[tokio::test(flavor = "multi_thread")]
async fn portal_sign_up_does_not_tell_which_emails_have_accounts() {
    let gw = Gateway::start_listening(&[], &["TOLLGATE_PORTAL_LISTEN"]).await;
    let portal = &Site {
        port: gw.listeners[0],
    };
    let sign_up = |password: &'static str| async move {
        let pairs = [("email", "dev@example.com"), ("password", password)];
        portal.post("/signup", None, &pairs).await
    };
    let first = sign_up("first password 1").await;
    let again = sign_up("second password 2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    let login = |password: &'static str| async move {
        let pairs = [("email", "dev@example.com"), ("password", password)];
        portal.post("/login", None, &pairs).await
    };
    assert_eq!(login("first password 1").await.status, 303);
    assert_eq!(login("second password 2").await.status, 401);
}

/// Item 7: session cookies, session ids at rest, file modes, and the generated password.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_files_and_the_generated_password_are_kept_private() {
    use std::os::unix::fs::PermissionsExt;
    let (gw, port) = console_gateway(&[("TOLLGATE_SECURE_COOKIES", "true")]).await;
    let file = gw.data_dir.join("console-admin-password");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(password.len(), 20);
    let log = gw.log_text();
    assert!(!log.contains(&password), "the password is not logged");
    assert!(log.contains("console-admin-password"), "{log}");
    for stored in ["tollgate.db", "analytics.db", "analytics-spill.log"] {
        assert_eq!(mode(&gw.data_dir.join(stored)), 0o600, "{stored}");
    }
    let console = Site { port };
    let r = console
        .post(
            "/login",
            None,
            &[("username", "admin"), ("password", &password)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set_cookie = r.header("set-cookie").unwrap().to_string();
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    let cookie = session_cookie(&r);
    let id = cookie.split_once('=').unwrap().1.to_string();
    let db = format!("sqlite://{}", gw.data_dir.join("tollgate.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, data FROM console_sessions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].0.contains(&id) && !rows[0].1.contains(&id),
        "{rows:?} holds {id}"
    );
    // The session still works (looked up by its hash).
    let page = console.get("/services", Some(&cookie)).await;
    assert_eq!(page.status, 200);
}

/// Sends requests to `gw`'s proxy from `clients` tasks until `stop` is set; the instants at
/// which answers (status 200) arrived.
async fn load_until(
    gw: &Gateway,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::time::Instant> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, stop) = (gw.proxy_url(&format!("/load/{c}")), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(r) = try_send("GET", &url, &[], None).await {
                    if r.status == 200 {
                        done.push(std::time::Instant::now());
                    }
                }
            }
            done
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Requests the analytics store holds, once it stops changing.
async fn stored_requests(gw: &Gateway) -> u64 {
    let url = gw.admin_url("/analytics/summary?from=0&to=4000000000");
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = send("GET", &url, &[], None).await.json["requests"]
            .as_u64()
            .unwrap_or(0);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Item 10: after SIGKILL under load, the last ~0.8 s of events were lost though the README
/// promised nothing would be. Now SIGTERM loses nothing, SIGKILL at most the last flush
/// interval's events (plus the 20 ms hand-over), and with `TOLLGATE_ANALYTICS_DURABILITY=wal`
/// nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_under_load_analytics_lose_at_most_what_the_mode_allows() {
    let backend = Backend::start().await;
    for (signal, durability) in [("-KILL", "batch"), ("-KILL", "wal"), ("-TERM", "batch")] {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("TOLLGATE_ANALYTICS_DURABILITY", durability),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "1000"),
        ];
        let mut gw = Gateway::start_in(&env, dir.path().to_path_buf(), None).await;
        route_everything_to(&gw, &backend).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let stop = stop.clone();
            let gw = &gw;
            async move { load_until(gw, 8, stop).await }
        };
        let kill = async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let pid = gw.child.id().to_string();
            std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap();
            let killed = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::SeqCst);
            killed
        };
        let (answered, killed) = tokio::join!(load, kill);
        gw.child.wait().unwrap();
        // The last flush interval plus the hand-over tick, and slack for this machine.
        let window = Duration::from_millis(1000 + 20 + 200);
        let recent = answered
            .iter()
            .filter(|t| killed.duration_since(**t) < window)
            .count() as u64;
        let received = answered.len() as u64;
        let again = Gateway::start_in(&env, dir.path().to_path_buf(), None).await;
        let stored = stored_requests(&again).await;
        let lost = received.saturating_sub(stored);
        eprintln!("{signal} {durability}: {received} answered, {stored} stored, {lost} lost, {recent} in the last {window:?}");
        assert!(received > 100, "the load ran: {received}");
        match (signal, durability) {
            ("-KILL", "batch") => assert!(lost <= recent, "{lost} lost > {recent}"),
            _ => assert_eq!(lost, 0, "{signal} {durability}"),
        }
        drop(again);
    }
}
