//! Test harness: the real `tollgate` binary in a temp data dir, a real HTTP backend, and a
//! plain HTTP client.
#![allow(dead_code)] // each test file uses a different part of the harness

use axum::extract::{ConnectInfo, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// The binary the tests start: this build's, or `TOLLGATE_TEST_BIN` (the benchmarks run the
/// harness unoptimised against a release build).
pub fn bin() -> String {
    std::env::var("TOLLGATE_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports: all are held open while they are picked, so that the kernel
/// cannot hand the same one out twice (a gateway once got one port for proxy and admin).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<StdListener> = (0..N)
        .map(|_| StdListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A service a test needs from the environment; the test script sets them all, and with
/// TOLLGATE_REQUIRE_SERVICES=1 a missing one fails the test instead of skipping it.
pub fn service_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("TOLLGATE_REQUIRE_SERVICES").is_ok() => {
            panic!("{name} is not set; run ./scripts/test")
        }
        _ => {
            eprintln!("skipping: {name} is not set (./scripts/test sets it)");
            None
        }
    }
}

/// An HTTP backend that answers every request with what it received, as JSON (`peer` is the
/// address the request came from, which tells connections apart).
/// Paths containing `slow` answer after 1.5 s.
pub struct Backend {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn start() -> Backend {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app =
            axum::Router::new().fallback(move |peer: ConnectInfo<SocketAddr>, req: Request| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if req.uri().path().contains("slow") {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    let headers: serde_json::Map<String, Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
                        .collect();
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    // A path ending in `/via` answers with its own Via and Server, as Kong's
                    // 35-via_spec.lua mock does; one ending in `/response-headers?name=value`
                    // with the headers its query names, as Kong's mock upstream does.
                    let own: Vec<(String, String)> = if parts.uri.path().ends_with("/via") {
                        vec![
                            ("via".into(), "2 nginx, HTTP/1.1 http_mock".into()),
                            ("server".into(), "http-mock".into()),
                        ]
                    } else if parts.uri.path().ends_with("/response-headers") {
                        let query = parts.uri.query().unwrap_or_default().as_bytes();
                        form_urlencoded::parse(query).into_owned().collect()
                    } else {
                        Vec::new()
                    };
                    // One ending in `/status/<code>` answers with that status, as Kong's
                    // mock upstream's `/status/:code`.
                    let status = parts
                        .uri
                        .path()
                        .rsplit_once("/status/")
                        .and_then(|(_, code)| code.parse::<u16>().ok())
                        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                        .unwrap_or(axum::http::StatusCode::OK);
                    let echo = axum::Json(json!({
                        "method": parts.method.as_str(),
                        "path": parts.uri.path(),
                        "query": parts.uri.query(),
                        "headers": headers,
                        "body": String::from_utf8_lossy(&body),
                        "peer": peer.0.to_string(),
                    }));
                    (status, axum::response::AppendHeaders(own), echo)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Backend { port, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A gateway with service `echo` in front of the test backend on route `/echo`.
pub async fn echo_gateway() -> (Gateway, Backend) {
    let gw = Gateway::start(&[]).await;
    let backend = Backend::start().await;
    let svc = json!({"name": "echo", "url": format!("http://127.0.0.1:{}", backend.port)});
    gw.create("/services", svc).await;
    let route = json!({"name": "echo", "paths": ["/echo"]});
    gw.create("/services/echo/routes", route).await;
    (gw, backend)
}

/// A running gateway process; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub proxy: u16,
    pub admin: u16,
    pub status: u16,
    /// The proxy's TLS port.
    pub tls: u16,
    /// The ports of the listeners `start_listening` was asked for, in its order.
    pub listeners: Vec<u16>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts the binary with fresh ports and data dir plus `env`, and waits until it serves.
    pub async fn start(env: &[(&str, &str)]) -> Gateway {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        Gateway::start_in(env, data_dir, Some(tmp)).await
    }

    /// Like `start`, in `data_dir`. A port picked free can be taken (by another test's
    /// connection) before the gateway binds it; the start is then tried again on fresh ports.
    pub async fn start_in(
        env: &[(&str, &str)],
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
    ) -> Gateway {
        Gateway::start_customized(env, data_dir, tmp, &[], |_| {}).await
    }

    /// Like `start`, with each of `listeners` (`TOLLGATE_PORTAL_LISTEN`...) on a fresh port of
    /// 127.0.0.1, picked again with the others when a start finds one taken; the ports are
    /// in `listeners` of the answer.
    pub async fn start_listening(env: &[(&str, &str)], listeners: &[&str]) -> Gateway {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        Gateway::start_customized(env, data_dir, Some(tmp), listeners, |_| {}).await
    }

    /// Like `start`, with the process's open-file limit (soft and hard) set to `nofile`.
    pub async fn start_with_open_files(env: &[(&str, &str)], nofile: u64) -> Gateway {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        Gateway::start_customized(env, data_dir, Some(tmp), &[], move |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
        .await
    }

    async fn start_customized(
        env: &[(&str, &str)],
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        listeners: &[&str],
        customize: impl Fn(&mut Command),
    ) -> Gateway {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let [proxy, admin, status, tls] = free_ports();
            let log = data_dir.join(format!("gateway-{proxy}.log"));
            let mut cmd = Gateway::command(env, &data_dir, [proxy, admin, status, tls]);
            let ports: Vec<u16> = listeners.iter().map(|_| free_port()).collect();
            for (name, port) in listeners.iter().zip(&ports) {
                cmd.env(name, format!("127.0.0.1:{port}"));
            }
            customize(&mut cmd);
            let child = cmd
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start tollgate");
            let mut gw = Gateway {
                child,
                proxy,
                admin,
                status,
                tls,
                listeners: ports,
                data_dir: data_dir.clone(),
                _tmp: None,
                log,
            };
            match gw.wait_ready().await {
                Ok(()) => {
                    gw._tmp = tmp;
                    return gw;
                }
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The gateway's command line: listeners on `[proxy, admin, status, proxy TLS]` ports of
    /// 127.0.0.1 (the admin API's TLS listener off), then `env`.
    pub fn command(
        env: &[(&str, &str)],
        data_dir: &std::path::Path,
        [proxy, admin, status, tls]: [u16; 4],
    ) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("TOLLGATE_DATA_DIR", data_dir)
            .env("TOLLGATE_PROXY_LISTEN", format!("127.0.0.1:{proxy}"))
            .env("TOLLGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("TOLLGATE_STATUS_LISTEN", format!("127.0.0.1:{status}"))
            .env("TOLLGATE_PROXY_TLS_LISTEN", format!("127.0.0.1:{tls}"))
            .env("TOLLGATE_ADMIN_TLS_LISTEN", "off")
            .env("TOLLGATE_CONSOLE_LISTEN", "off")
            .env("TOLLGATE_PORTAL_LISTEN", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Waits until the gateway serves; `Err` with what went wrong (and its log) otherwise.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(code) = self.child.try_wait().unwrap() {
                return Err(format!("tollgate exited with {code}:\n{}", self.log_text()));
            }
            if let Ok(r) = try_send(
                "GET",
                &format!("http://127.0.0.1:{}/status", self.status),
                &[],
                None,
            )
            .await
            {
                if r.status == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "tollgate did not become ready:\n{}",
            self.log_text()
        ))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `body` as JSON to the admin API at `path` and expects 201 Created.
    pub async fn create(&self, path: &str, body: Value) -> Resp {
        let r = send("POST", &self.admin_url(path), &[], json_body(body)).await;
        assert_eq!(r.status, 201, "POST {path}: {}", r.body);
        r
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    /// The status listener's `/status` answer.
    pub async fn status(&self) -> Resp {
        let url = format!("http://127.0.0.1:{}/status", self.status);
        send("GET", &url, &[], None).await
    }

    /// The status listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.status);
        send("GET", &url, &[], None).await.body
    }

    /// Waits until the proxy serves every admin write made so far.
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = send("GET", &self.admin_url("/status"), &[], None)
                .await
                .json;
            if s["configuration_version"] == s["database"]["configuration_version"] {
                return;
            }
            assert!(Instant::now() < deadline, "config never applied: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the proxy until `path` answers `status`, or panics after `within`.
    pub async fn wait_for_status(&self, path: &str, status: u16, within: Duration) -> Resp {
        let deadline = Instant::now() + within;
        loop {
            let r = send("GET", &self.proxy_url(path), &[], None).await;
            if r.status == status || Instant::now() > deadline {
                assert_eq!(r.status, status, "GET {path}: {}", r.body);
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A web front end (the console or the portal) on `port`, used as a browser without
/// JavaScript uses it: GETs, and form posts from the site's own origin.
pub struct Site {
    pub port: u16,
}

impl Site {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        send("GET", &self.url(path), &headers, None).await
    }

    /// Logs the console's `admin` in with `password`; the session cookie.
    pub async fn operator_session(&self, password: &str) -> String {
        let login = self
            .post(
                "/login",
                None,
                &[("username", "admin"), ("password", password)],
            )
            .await;
        assert_eq!(login.status, 303, "{}", login.body);
        session_cookie(&login)
    }

    pub async fn post(&self, path: &str, cookie: Option<&str>, pairs: &[(&str, &str)]) -> Resp {
        let origin = self.origin();
        let mut headers = vec![("origin", origin.as_str())];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        send("POST", &self.url(path), &headers, form(pairs)).await
    }
}

/// A new, empty PostgreSQL database on the suite's server, for one test.
pub struct PgDatabase {
    pub url: String,
    name: String,
    server: sqlx::PgPool,
}

impl PgDatabase {
    /// `{prefix}_{n}`, or `None` when the suite has no PostgreSQL (see `service_env`).
    pub async fn create(prefix: &str) -> Option<PgDatabase> {
        let server_url = service_env("TOLLGATE_TEST_POSTGRES_URL")?;
        let server = sqlx::PgPool::connect(&server_url).await.unwrap();
        let name = format!("{prefix}_{}", free_port());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&server)
            .await
            .unwrap();
        let url = format!("{}/{name}", server_url.rsplit_once('/').unwrap().0);
        Some(PgDatabase { url, name, server })
    }

    /// Drops it, whoever is still connected.
    pub async fn drop_now(&self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.server)
            .await
            .unwrap();
    }
}

/// The text between `start` and the next `end`.
pub fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_string())
}

/// `name=value` of the session cookie a response sets.
pub fn session_cookie(r: &Resp) -> String {
    let set = r.header("set-cookie").expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

/// A response, its body as text and (when it parses) as JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type Body = Option<(&'static str, String)>;

pub fn form(pairs: &[(&str, &str)]) -> Body {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    Some(("application/x-www-form-urlencoded", s.finish()))
}

pub fn json_body(v: Value) -> Body {
    Some(("application/json", v.to_string()))
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Body) -> Resp {
    try_send(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Result<Resp, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = match body {
        Some((ct, b)) => {
            // An empty type sends the body without a Content-Type.
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            Bytes::from(b)
        }
        None => Bytes::new(),
    };
    let resp = client
        .request(req.body(Full::new(payload)).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = String::from_utf8_lossy(&bytes).to_string();
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(Resp {
        status,
        headers,
        body,
        json,
    })
}

/// Sends raw bytes on a new connection and returns the status line's code.
pub async fn raw_status(port: u16, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Runs `tollgate` with `args`, returning (exit success, stdout, stderr).
pub fn tollgate(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("TOLLGATE_CONSOLE_LISTEN", "off")
        .env("TOLLGATE_PROXY_TLS_LISTEN", "off")
        .env("TOLLGATE_ADMIN_TLS_LISTEN", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A ClickHouse server of its own for one test (Debian's `clickhouse-server`, the config in
/// `deploy/clickhouse/`), on fresh ports with its data in `dir`; stopped when dropped.
pub struct ClickHouseServer {
    child: Child,
    pub http_port: u16,
    tcp_port: u16,
    dir: PathBuf,
}

impl ClickHouseServer {
    /// `None` (or a panic under TOLLGATE_REQUIRE_SERVICES) when the server binary is missing.
    pub async fn start(dir: &std::path::Path) -> Option<ClickHouseServer> {
        service_env("TOLLGATE_TEST_CLICKHOUSE_SERVER")?;
        let [http, tcp] = free_ports();
        Some(ClickHouseServer::start_on(dir, http, tcp).await)
    }

    async fn start_on(dir: &std::path::Path, http_port: u16, tcp_port: u16) -> ClickHouseServer {
        let server = ClickHouseServer {
            child: ClickHouseServer::spawn(dir, http_port, tcp_port),
            http_port,
            tcp_port,
            dir: dir.to_path_buf(),
        };
        server.wait_ready().await;
        server
    }

    fn spawn(dir: &std::path::Path, http_port: u16, tcp_port: u16) -> Child {
        let bin = std::env::var("TOLLGATE_TEST_CLICKHOUSE_SERVER").unwrap();
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/clickhouse/config.xml");
        let d = |sub: &str| format!("{}/{sub}/", dir.display());
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("clickhouse.log"))
            .unwrap();
        Command::new(bin)
            .arg(format!("--config-file={config}"))
            .arg("--")
            .arg(format!("--http_port={http_port}"))
            .arg(format!("--tcp_port={tcp_port}"))
            .arg(format!("--path={}", d("data")))
            .arg(format!("--tmp_path={}", d("tmp")))
            .arg(format!("--user_files_path={}", d("user_files")))
            .arg(format!("--format_schema_path={}", d("format_schemas")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start clickhouse-server")
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while try_send("GET", &self.url("/ping"), &[], None)
            .await
            .map(|r| r.status)
            != Ok(200)
        {
            assert!(Instant::now() < deadline, "ClickHouse did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Runs `sql` and returns the output (TSV).
    pub async fn query(&self, sql: &str) -> String {
        let r = send(
            "POST",
            &self.url("/"),
            &[],
            Some(("text/plain", sql.to_string())),
        )
        .await;
        assert_eq!(r.status, 200, "{sql}: {}", r.body);
        r.body.trim_end_matches('\n').to_string()
    }

    /// Stops the server (SIGKILL: as an outage looks from outside).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = ClickHouseServer::spawn(&self.dir, self.http_port, self.tcp_port);
        self.wait_ready().await;
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Service `pytbak` on `backend` with route `api` (`/api/`) limited to `per_hour` requests,
/// then `requests` GETs through the proxy: the traffic the console tests look at.
pub async fn limited_traffic(gw: &Gateway, backend: &Backend, per_hour: u32, requests: usize) {
    let url = format!("http://127.0.0.1:{}", backend.port);
    let limit = per_hour.to_string();
    let setup = [
        ("/services", vec![("name", "pytbak"), ("url", url.as_str())]),
        (
            "/services/pytbak/routes",
            vec![("name", "api"), ("paths[]", "/api/")],
        ),
        (
            "/routes/api/plugins",
            vec![("name", "rate-limiting"), ("config.hour", limit.as_str())],
        ),
    ];
    for (path, pairs) in setup {
        let r = send("POST", &gw.admin_url(path), &[], form(&pairs)).await;
        assert_eq!(r.status, 201, "{path}: {}", r.body);
    }
    gw.settled().await;
    for _ in 0..requests {
        send("GET", &gw.proxy_url("/api/get/context"), &[], None).await;
    }
}

/// `n` GETs to `/api/get/context` with API key `key` (see `burst_on`).
pub async fn burst(gw: &Gateway, key: &str, n: usize) -> Vec<u16> {
    burst_on(gw, "/api/get/context", key, n).await
}

/// `n` GETs to `path` with API key `key`, back to back from the start of a second (so they
/// share one rate-limit window); their statuses.
pub async fn burst_on(gw: &Gateway, path: &str, key: &str, n: usize) -> Vec<u16> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1020 - u64::from(now.subsec_millis()))).await;
    let mut out = Vec::new();
    for _ in 0..n {
        let r = send("GET", &gw.proxy_url(path), &[("apikey", key)], None).await;
        out.push(r.status);
    }
    out
}

/// `python3` running `tests/data/<script>` with `args`, on a free port given as its first
/// argument, with the PyPI packages the test script installed; stopped when dropped.
pub struct PythonServer {
    child: Child,
    pub port: u16,
}

impl PythonServer {
    /// Starts it and waits until its port accepts connections.
    pub async fn start(script: &str, args: &[&std::ffi::OsStr]) -> PythonServer {
        let port = free_port();
        let mut cmd = python(script);
        cmd.arg(port.to_string()).args(args);
        let server = PythonServer {
            child: cmd.spawn().expect("python3 runs"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "{script} did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        server
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `python3` command for `tests/data/<script>` with the test script's PyPI packages
/// (`TOLLGATE_TEST_PYTHONPATH`) on its path when there are some.
pub fn python(script: &str) -> Command {
    let mut cmd = Command::new("python3");
    if let Ok(path) = std::env::var("TOLLGATE_TEST_PYTHONPATH") {
        cmd.env("PYTHONPATH", path);
    }
    cmd.arg(format!(
        "{}/tests/data/{script}",
        env!("CARGO_MANIFEST_DIR")
    ));
    cmd
}

/// Runs tests/data/`script` with `args` then `extra`, and reads the one JSON line it prints.
pub fn python_json(script: &str, args: &[&str], extra: &[&str]) -> Value {
    let out = python(script)
        .args(args)
        .args(extra)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "{script} printed {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Whether the PyPI packages (websockets, grpcio) are there; a test that needs them skips
/// when they are not, unless the suite requires them.
pub fn python_packages() -> bool {
    service_env("TOLLGATE_TEST_PYTHONPATH").is_some()
}

/// A self-signed certificate for `cn` made by the openssl command line (`rsa` or `ec`), as
/// (cert, key) PEM.
pub fn openssl_cert(dir: &std::path::Path, cn: &str, kind: &str) -> (String, String) {
    let stem = dir.join(cn.replace('*', "star"));
    let (crt, key) = (stem.with_extension("crt"), stem.with_extension("key"));
    let algorithm: &[&str] = match kind {
        "rsa" => &["-newkey", "rsa:2048"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{cn}"))
        .args(algorithm)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    (read(&crt), read(&key))
}

/// Service `s` on `backend`, and for each `(host, plugins)` a route `r<i>` taking that host
/// with those `(name, config)` plugins on it, as Kong's plugin specs set their routes up.
pub async fn routes_by_host(
    gw: &Gateway,
    backend: &Backend,
    routes: &[(&str, Vec<(&str, Value)>)],
) {
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    for (i, (host, plugins)) in routes.iter().enumerate() {
        let name = format!("r{i}");
        gw.create("/services/s/routes", json!({"name": name, "hosts": [host]}))
            .await;
        for (plugin, config) in plugins {
            let body = json!({"name": plugin, "config": config});
            gw.create(&format!("/routes/{name}/plugins"), body).await;
        }
    }
}

/// Runs openapi-spec-validator on a document; `None` when the validator is not installed
/// (a failure under ./scripts/test).
pub fn validate_openapi(document: &str, extension: &str) -> Option<()> {
    let validator = service_env("TOLLGATE_TEST_OPENAPI_VALIDATOR")?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("openapi.{extension}"));
    std::fs::write(&file, document).unwrap();
    let out = std::process::Command::new(validator)
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document: {}{}\n{document}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}
