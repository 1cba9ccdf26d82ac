//! TLS termination end to end, with real clients: `openssl s_client` and `curl` (HTTP/2 by
//! ALPN) against the proxy's TLS port, certificates managed through the admin API over its own
//! TLS port, and a Rust TLS client for a connection kept open across a certificate change.
//! Kong's cases are from spec/02-integration/05-proxy/06-ssl_spec.lua and
//! spec/02-integration/04-admin_api/06-certificates_routes_spec.lua.
mod common;

use common::{free_ports, json_body, openssl_cert, send, Backend, Gateway, PythonServer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What `openssl s_client` reports for a handshake on `port` asking for `sni` (none: no SNI):
/// the subject line and the protocol line.
fn s_client(port: u16, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("subject=") || l.starts_with("New, "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `curl` with `args`; its stdout.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn admin_tls_gateway() -> (Gateway, u16) {
    let [admin_tls] = free_ports();
    let listen = format!("127.0.0.1:{admin_tls}");
    let gw = Gateway::start(&[("TOLLGATE_ADMIN_TLS_LISTEN", &listen)]).await;
    (gw, admin_tls)
}

/// Creates a certificate through the admin API over TLS (8444's role), as the seed does.
fn create_certificate(admin_tls: u16, body: &Value) -> Value {
    let url = format!("https://127.0.0.1:{admin_tls}/certificates");
    let out = curl(&[
        "-k",
        "-X",
        "POST",
        &url,
        "-H",
        "content-type: application/json",
        "--data-binary",
        &body.to_string(),
    ]);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sni_gets_its_certificate_over_tls_1_3_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, admin_tls) = admin_tls_gateway().await;
    let backend = Backend::start().await;
    let (a_cert, a_key) = openssl_cert(dir.path(), "a.example.test", "rsa");
    let (w_cert, w_key) = openssl_cert(dir.path(), "*.wild.test", "ec");
    let a = create_certificate(
        admin_tls,
        &json!({"cert": a_cert, "key": a_key, "snis": ["a.example.test"]}),
    );
    assert_eq!(a["snis"], json!(["a.example.test"]), "{a}");
    let w = create_certificate(
        admin_tls,
        &json!({"cert": w_cert, "key": w_key, "snis": ["*.wild.test"]}),
    );
    assert_eq!(w["snis"], json!(["*.wild.test"]), "{w}");
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    gw.create("/services/s/routes", json!({"paths": ["/"]}))
        .await;
    gw.settled().await;

    // 06-ssl_spec.lua:"handshake": each SNI gets its own; no match or no SNI, the default.
    let exact = s_client(gw.tls, Some("a.example.test"));
    assert!(exact.contains("CN = a.example.test"), "{exact}");
    assert!(exact.contains("TLSv1.3"), "{exact}");
    let wild = s_client(gw.tls, Some("x.wild.test"));
    assert!(wild.contains("CN = *.wild.test"), "{wild}");
    let other = s_client(gw.tls, Some("other.test"));
    assert!(other.contains("CN = localhost"), "{other}");
    let none = s_client(gw.tls, None);
    assert!(none.contains("CN = localhost"), "{none}");

    // curl negotiates h2 by ALPN and reaches the backend, which learns the scheme and port.
    let resolve = format!("a.example.test:{}:127.0.0.1", gw.tls);
    let target = format!("https://a.example.test:{}/hello", gw.tls);
    let out = curl(&[
        "-k",
        "--http2",
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version} %{http_code}",
        &target,
    ]);
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "2 200", "{out}");
    let echoed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echoed["headers"]["x-forwarded-port"], gw.tls.to_string());

    // Cleartext sent to the TLS port gets nginx's 400.
    let plain = curl(&[
        "-w",
        "\n%{http_code}",
        &format!("http://127.0.0.1:{}/", gw.tls),
    ]);
    assert!(plain.ends_with("\n400"), "{plain}");
    assert!(plain.contains("The plain HTTP request was sent to HTTPS port"));
}

/// A client that trusts any certificate and keeps one connection open: the certificate it
/// got, and requests sent on that same connection.
struct KeptConnection {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl KeptConnection {
    async fn open(port: u16, sni: &str) -> KeptConnection {
        let config = tollgate_gateway::tls::client::unverified();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        KeptConnection { stream }
    }

    fn peer_certificate(&self) -> Vec<u8> {
        let (_, session) = self.stream.get_ref();
        session.peer_certificates().unwrap()[0].to_vec()
    }

    /// Sends a GET on this connection; the status of its answer (body read to its length).
    async fn get(&mut self, host: &str, path: &str) -> u16 {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if body.len() >= length {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_certificate_serves_the_next_handshake_and_open_connections_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, admin_tls) = admin_tls_gateway().await;
    let backend = Backend::start().await;
    let (old_cert, old_key) = openssl_cert(dir.path(), "keep.example.test", "rsa");
    let created = create_certificate(
        admin_tls,
        &json!({"cert": old_cert, "key": old_key, "snis": ["keep.example.test"]}),
    );
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    gw.create("/services/s/routes", json!({"paths": ["/"]}))
        .await;
    gw.settled().await;

    let mut kept = KeptConnection::open(gw.tls, "keep.example.test").await;
    let first = kept.peer_certificate();
    assert_eq!(kept.get("keep.example.test", "/one").await, 200);

    let newer = dir.path().join("newer");
    std::fs::create_dir(&newer).unwrap();
    let (new_cert, new_key) = openssl_cert(&newer, "keep.example.test", "ec");
    let id = created["id"].as_str().unwrap();
    let r = send(
        "PATCH",
        &gw.admin_url(&format!("/certificates/{id}")),
        &[],
        json_body(json!({"cert": new_cert, "key": new_key})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let changed_at = std::time::Instant::now();
    gw.settled().await;
    let fresh = KeptConnection::open(gw.tls, "keep.example.test").await;
    assert_ne!(
        fresh.peer_certificate(),
        first,
        "the next handshake gets the new one"
    );
    assert!(changed_at.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(kept.get("keep.example.test", "/two").await, 200);
    assert_eq!(backend.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificates_are_refused_naming_the_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&[]).await;
    let (cert, key) = openssl_cert(dir.path(), "one.test", "rsa");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_key) = openssl_cert(&other, "two.test", "rsa");
    let post = |body: Value| {
        let url = gw.admin_url("/certificates");
        async move { send("POST", &url, &[], json_body(body)).await }
    };
    // 06-certificates_routes_spec.lua:526: the key must match.
    let r = post(json!({"cert": cert, "key": other_key})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["message"],
        "schema violation (certificate does not match key)"
    );
    // A malformed PEM names its field.
    let r = post(json!({"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "key": key})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["fields"]["cert"]
            .as_str()
            .unwrap()
            .starts_with("invalid certificate"),
        "{}",
        r.body
    );
    // An expired certificate (made by rcgen with dates in the past).
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old_key = rcgen::KeyPair::generate().unwrap();
    let old = params.self_signed(&old_key).unwrap();
    let r = post(json!({"cert": old.pem(), "key": old_key.serialize_pem()})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["fields"]["cert"],
        "certificate expired, \"Not After\" time is in the past"
    );
    // 06-certificates_routes_spec.lua:155 and :182: a SNI twice in one request, or one that
    // another certificate holds.
    let r = post(json!({"cert": cert, "key": key, "snis": ["dup.test", "DUP.test"]})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["message"],
        "schema violation (snis: dup.test is duplicated)"
    );
    gw.create(
        "/certificates",
        json!({"cert": cert, "key": key, "snis": ["held.test"]}),
    )
    .await;
    let r = post(json!({"cert": cert, "key": key, "snis": ["held.test", "free.test"]})).await;
    assert_eq!(r.status, 400);
    assert!(r.json["message"].as_str().unwrap().starts_with(
        "schema violation (snis: held.test already associated with existing certificate"
    ));
    let all = send("GET", &gw.admin_url("/certificates"), &[], None).await;
    assert_eq!(
        all.json["data"].as_array().unwrap().len(),
        1,
        "{}",
        all.body
    );
    let snis = send("GET", &gw.admin_url("/snis"), &[], None).await;
    assert_eq!(
        snis.json["data"].as_array().unwrap().len(),
        1,
        "{}",
        snis.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_only_routes_redirect_or_ask_for_tls_and_route_snis_match_the_handshake() {
    let gw = Gateway::start(&[]).await;
    let backend = Backend::start().await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    gw.create(
        "/services/s/routes",
        json!({"paths": ["/secure"], "protocols": ["https"]}),
    )
    .await;
    gw.create(
        "/services/s/routes",
        json!({"paths": ["/moved"], "protocols": ["https"], "https_redirect_status_code": 301}),
    )
    .await;
    gw.create(
        "/services/s/routes",
        json!({"paths": ["/by-sni"], "snis": ["*.sni.test"]}),
    )
    .await;
    gw.settled().await;
    // 06-ssl_spec.lua "https_redirect_status_code": 426 with Kong's body, or a redirect.
    let r = send(
        "GET",
        &gw.proxy_url("/secure"),
        &[("host", "api.test")],
        None,
    )
    .await;
    assert_eq!(r.status, 426);
    assert_eq!(r.json["message"], "Please use HTTPS protocol");
    let r = send(
        "GET",
        &gw.proxy_url("/moved/x?q=1"),
        &[("host", "api.test")],
        None,
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://api.test/moved/x?q=1"));
    let tls = |sni: &str, path: &str| {
        let resolve = format!("{sni}:{}:127.0.0.1", gw.tls);
        let url = format!("https://{sni}:{}{path}", gw.tls);
        curl(&[
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            &resolve,
            &url,
        ])
    };
    assert_eq!(tls("api.test", "/secure"), "200");
    assert_eq!(tls("a.sni.test", "/by-sni"), "200");
    assert_eq!(tls("other.test", "/by-sni"), "404");
    // In cleartext a route's SNIs do not count (kong/router/transform.lua).
    let r = send("GET", &gw.proxy_url("/by-sni"), &[], None).await;
    assert_eq!(r.status, 200);
}

/// A test CA made by openssl: its directory, and its certificate as PEM.
struct Ca {
    dir: std::path::PathBuf,
    cert: String,
}

/// Runs openssl with `args` in `dir`; fails the test on an error.
fn openssl_in(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        openssl_in(
            dir,
            &[
                "req",
                "-x509",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "30",
                "-subj",
                "/CN=tollgate-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let cert = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            cert,
        }
    }

    /// A certificate for `cn` (also its DNS name) signed by this CA: the paths of its
    /// certificate and key files.
    fn issue(&self, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let ext = format!("{cn}.ext");
        let extensions = format!("subjectAltName=DNS:{cn}\nbasicConstraints=CA:FALSE\n");
        std::fs::write(self.dir.join(&ext), extensions).unwrap();
        let (key, csr, crt) = (
            format!("{cn}.key"),
            format!("{cn}.csr"),
            format!("{cn}.crt"),
        );
        let subject = format!("/CN={cn}");
        openssl_in(
            &self.dir,
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        );
        openssl_in(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "30",
                "-extfile",
                &ext,
            ],
        );
        (self.dir.join(crt), self.dir.join(key))
    }
}

/// tests/data/tls_backend.py serving `cert` and `key`, asking clients for a certificate
/// from `client_ca` when given.
async fn tls_backend(cert: &Path, key: &Path, client_ca: Option<&Path>) -> PythonServer {
    let mut args = vec![cert.as_os_str(), key.as_os_str()];
    args.extend(client_ca.map(Path::as_os_str));
    PythonServer::start("tls_backend.py", &args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_verifies_with_the_services_cas_presents_its_client_certificate_and_sends_the_host_as_sni(
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let (server_crt, server_key) = ca.issue("localhost");
    let (client_crt, client_key) = ca.issue("tollgate-client");
    let ca_file = dir.path().join("ca.crt");
    let backend = tls_backend(&server_crt, &server_key, Some(&ca_file)).await;
    let gw = Gateway::start(&[]).await;
    let ca_id = gw
        .create("/ca_certificates", json!({"cert": ca.cert}))
        .await
        .json["id"]
        .clone();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let client_pair = json!({"cert": read(&client_crt), "key": read(&client_key)});
    let client = gw.create("/certificates", client_pair).await.json["id"].clone();
    let url = format!("https://localhost:{}", backend.port);
    let service = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "url": url});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (name, extra) in [
        (
            "mtls",
            json!({"ca_certificates": [ca_id], "client_certificate": {"id": client}}),
        ),
        ("no-client-cert", json!({"ca_certificates": [ca_id]})),
        ("web-roots", json!({"client_certificate": {"id": client}})),
        (
            "unverified",
            json!({"tls_verify": false, "client_certificate": {"id": client}}),
        ),
    ] {
        gw.create("/services", service(name, extra)).await;
        let route = json!({"paths": [format!("/{name}")]});
        gw.create(&format!("/services/{name}/routes"), route).await;
    }
    gw.settled().await;
    let r = send("GET", &gw.proxy_url("/mtls"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["client"], "tollgate-client");
    assert_eq!(r.json["sni"], "localhost", "the service's host goes as SNI");
    // The backend requires a client certificate; the bundled roots do not know the CA.
    let r = send("GET", &gw.proxy_url("/no-client-cert"), &[], None).await;
    assert_eq!(r.status, 502, "{}", r.body);
    let r = send("GET", &gw.proxy_url("/web-roots"), &[], None).await;
    assert_eq!(r.status, 502, "{}", r.body);
    let r = send("GET", &gw.proxy_url("/unverified"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["client"], "tollgate-client");
    // A client certificate that does not exist is Kong's foreign key error.
    let gone = "00000000-0000-4000-8000-000000000001";
    let missing = json!({"name": "gone", "url": url, "client_certificate": {"id": gone}});
    let r = send("POST", &gw.admin_url("/services"), &[], json_body(missing)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json["fields"]["client_certificate"]["id"], gone,
        "{}",
        r.body
    );
    // services.lua's conditional checks: the TLS fields need a TLS protocol.
    let r = send(
        "POST",
        &gw.admin_url("/services"),
        &[],
        json_body(json!({"name": "plain", "url": "http://localhost:1", "tls_verify": true})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["fields"]["tls_verify"], "value must be null");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_forwarded_headers_are_passed_on_and_count_for_https_only_routes() {
    // kong/runloop/handler.lua: from a trusted address, X-Forwarded-Proto, -Host, -Port, -Path
    // and -Prefix are the proxy's; from anyone else, the gateway's own.
    let backend = Backend::start().await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    let sent = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "edge.example.com"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-path", "/edge/path"),
        ("x-forwarded-prefix", "/edge"),
    ];
    for trusted in [true, false] {
        let env: &[(&str, &str)] = if trusted {
            &[("TOLLGATE_TRUSTED_IPS", "127.0.0.1/32")]
        } else {
            &[("TOLLGATE_TRUSTED_IPS", "10.0.0.0/8")]
        };
        let gw = Gateway::start(env).await;
        gw.create("/services", json!({"name": "s", "url": url}))
            .await;
        let route = json!({"paths": ["/secure"], "protocols": ["https"]});
        gw.create("/services/s/routes", route).await;
        gw.settled().await;
        let r = send("GET", &gw.proxy_url("/secure"), &sent, None).await;
        if trusted {
            assert_eq!(r.status, 200, "{}", r.body);
            for (name, value) in sent {
                assert_eq!(r.json["headers"][name], value, "{name}");
            }
        } else {
            assert_eq!(r.status, 426, "{}", r.body);
        }
    }
}
