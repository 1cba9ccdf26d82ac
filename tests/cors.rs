//! cors through the proxy, ported from Kong's `spec/03-plugins/13-cors/01-access_spec.lua`
//! (Kong/kong@22246ef; line numbers cite that file); its origin table and the schema spec are
//! unit tests in gateway/src/plugins/cors/tests.rs. Left out: the runtime-error case (Kong's
//! error-generator plugin) and allow_origin_absent with an empty `Origin` value (hyper's
//! client sends one as given, the cases with none are here).
mod common;

use common::*;
use serde_json::{json, Value};

const DEFAULT_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT";

/// The spec's routes (`hosts`) and each one's cors config (:243-510).
fn routes(backend: u16) -> Vec<(&'static str, Value, Option<String>)> {
    let options = json!({"origins": ["example.test"], "methods": ["GET"],
        "headers": ["origin", "type", "accepts"], "exposed_headers": ["x-auth-token"], "max_age": 23});
    let with = |extra: Value| {
        let mut o = options.clone();
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        o
    };
    vec![
        ("cors1.test", json!({}), None),
        ("cors2.test", with(json!({"credentials": true})), None),
        (
            "cors3.test",
            with(json!({"preflight_continue": true})),
            None,
        ),
        ("cors4.test", json!({}), None),
        (
            "cors5.test",
            json!({"origins": ["*"], "credentials": true}),
            None,
        ),
        (
            "cors7.test",
            json!({"origins": ["*"], "credentials": false}),
            None,
        ),
        ("cors-empty-origins.test", json!({"origins": []}), None),
        (
            "cors6.test",
            json!({"origins": ["example.test", "example.org"], "methods": ["GET"],
            "headers": ["origin", "type", "accepts"], "exposed_headers": ["x-auth-token"],
            "max_age": 23, "preflight_continue": true}),
            None,
        ),
        (
            "cors9.test",
            json!({"origins": [r".*\.?example(?:-foo)?.test"]}),
            None,
        ),
        (
            "cors10.test",
            json!({"origins": ["http://my-site.test", "http://my-other-site.test"]}),
            None,
        ),
        (
            "cors11.test",
            json!({"origins": ["http://my-site.test", "https://my-other-site.test:9000"]}),
            None,
        ),
        (
            "cors12.test",
            json!({"credentials": true, "max_age": 1728000,
            "origins": ["allowed-domain.test", "http://other.test"]}),
            None,
        ),
        (
            "cors13.test",
            json!({"private_network": true, "origins": ["allowed-domain.test"]}),
            None,
        ),
        ("cors14.test", json!({"origins": ["foo.bar", "*"]}), None),
        (
            "cors15.test",
            json!({"allow_origin_absent": false, "origins": ["foo.bar"],
            "exposed_headers": ["x-auth-token"], "credentials": true}),
            None,
        ),
        (
            "cors16.test",
            json!({"allow_origin_absent": true, "origins": ["foo.bar"],
            "exposed_headers": ["x-auth-token"], "credentials": true}),
            None,
        ),
        // :322 an upstream that does not answer (here: a closed port).
        (
            "cors-timeout.test",
            options.clone(),
            Some(format!("http://127.0.0.1:{}", free_port())),
        ),
        (
            "cors-upstream.test",
            json!({"origins": ["example.test"]}),
            Some(format!("http://127.0.0.1:{backend}")),
        ),
    ]
}

async fn gateway(backend: &Backend) -> Gateway {
    let gw = Gateway::start(&[]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    gw.create("/services", json!({"name": "s", "url": url}))
        .await;
    for (i, (host, config, own_service)) in routes(backend.port).into_iter().enumerate() {
        let service = match own_service {
            Some(url) => {
                let name = format!("s{i}");
                gw.create("/services", json!({"name": name, "url": url, "retries": 0}))
                    .await;
                name
            }
            None => "s".to_string(),
        };
        let route = format!("r{i}");
        gw.create(
            &format!("/services/{service}/routes"),
            json!({"name": route, "hosts": [host]}),
        )
        .await;
        let plugin = json!({"name": "cors", "config": config});
        gw.create(&format!("/routes/{route}/plugins"), plugin).await;
    }
    // :363-368: cors4 also runs key-auth, which answers 401.
    gw.create("/routes/r3/plugins", json!({"name": "key-auth"}))
        .await;
    gw.settled().await;
    gw
}

async fn call(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(method, &gw.proxy_url(path), headers, None).await
}

fn preflight<'a>(host: &'a str, origin: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("host", host),
        ("origin", origin),
        ("access-control-request-method", "GET"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_are_answered_as_kong_answers_them() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    let hits = backend.hits();

    // :617 defaults; :637 empty origins: `*`, every method, no body, no Vary.
    for host in ["cors1.test", "cors-empty-origins.test"] {
        let r = call(&gw, "OPTIONS", "/", &preflight(host, "origin1.test")).await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.header("content-length"), Some("0"));
        assert_eq!(r.body, "");
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some(DEFAULT_METHODS)
        );
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        for absent in [
            "access-control-allow-headers",
            "access-control-expose-headers",
            "access-control-allow-credentials",
            "access-control-max-age",
            "vary",
        ] {
            assert_eq!(r.header(absent), None, "{host}: {absent}");
        }
    }
    // :663 `*` with credentials: the request's origin, Vary.
    let r = call(
        &gw,
        "OPTIONS",
        "/",
        &preflight("cors5.test", "origin5.test"),
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("origin5.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    // :683 a list holding `*`.
    let r = call(
        &gw,
        "OPTIONS",
        "/",
        &preflight("cors14.test", "http://www.example.net"),
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // :702 every option.
    let r = call(
        &gw,
        "OPTIONS",
        "/",
        &preflight("cors2.test", "origin5.test"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-methods"), Some("GET"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("example.test")
    );
    assert_eq!(r.header("access-control-max-age"), Some("23"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("origin,type,accepts")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-expose-headers"), None);
    // :735 the requested headers when none are configured.
    let mut h = preflight("cors5.test", "origin5.test");
    h.push(("access-control-request-headers", "origin,accepts"));
    let r = call(&gw, "OPTIONS", "/", &h).await;
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("origin,accepts")
    );
    // :789 private network access.
    let mut h = preflight("cors13.test", "allowed-domain.test");
    h.push(("access-control-request-private-network", "true"));
    let r = call(&gw, "OPTIONS", "/", &h).await;
    assert_eq!(
        r.header("access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(
        backend.hits(),
        hits,
        "the gateway answered every preflight itself"
    );

    // :722 preflight_continue: the upstream answers (here, a preflight with an origin too).
    let r = call(
        &gw,
        "OPTIONS",
        "/status/201",
        &preflight("cors3.test", "example.test"),
    )
    .await;
    assert_eq!(r.json["method"], "OPTIONS", "{}", r.body);
    assert_eq!(backend.hits(), hits + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_get_kongs_cors_headers() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    let acao = |r: &Resp| r.header("access-control-allow-origin").map(String::from);

    // :805 defaults; :822 an OPTIONS that is no preflight goes upstream.
    let r = call(&gw, "GET", "/", &[("host", "cors1.test")]).await;
    assert_eq!((r.status, acao(&r).as_deref()), (200, Some("*")));
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.header("access-control-allow-methods"), None);
    let r = call(&gw, "OPTIONS", "/anything", &[("host", "cors1.test")]).await;
    assert_eq!(r.json["method"], "OPTIONS", "{}", r.body);
    assert_eq!(acao(&r).as_deref(), Some("*"));
    // :842 config options on a response.
    let r = call(&gw, "GET", "/", &[("host", "cors2.test")]).await;
    assert_eq!(acao(&r).as_deref(), Some("example.test"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-auth-token")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-max-age"), None);
    // :859 an upstream that fails still gets the headers (Tollgate's 502 for a refused
    // connection, Kong's for its timeout).
    let r = call(&gw, "GET", "/", &[("host", "cors-timeout.test")]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(acao(&r).as_deref(), Some("example.test"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-auth-token")
    );
    // :911 a 401 from another plugin.
    let r = call(&gw, "GET", "/", &[("host", "cors4.test")]).await;
    assert_eq!((r.status, acao(&r).as_deref()), (401, Some("*")));
    // :928 flat entries match the whole origin; :976 the host alone does not.
    let r = call(
        &gw,
        "GET",
        "/",
        &[("host", "cors6.test"), ("origin", "example.test")],
    )
    .await;
    assert_eq!(acao(&r).as_deref(), Some("example.test"));
    assert_eq!(r.header("vary"), Some("Origin"));
    for origin in [
        "http://example.test",
        "https://example.test",
        "http://www.example.net",
    ] {
        let r = call(
            &gw,
            "GET",
            "/",
            &[("host", "cors6.test"), ("origin", origin)],
        )
        .await;
        assert_eq!(acao(&r), None, "{origin}");
    }
    // :943-959 a regex on the host.
    for (origin, allowed) in [
        ("example.test", true),
        ("www.example.test", true),
        ("example-foo.test", true),
        ("www.example-foo.test", true),
        ("www.example-fo0.test", false),
    ] {
        let r = call(
            &gw,
            "GET",
            "/",
            &[("host", "cors9.test"), ("origin", origin)],
        )
        .await;
        assert_eq!(acao(&r).is_some(), allowed, "{origin}");
    }
    // :751 flat strings (an OPTIONS without Access-Control-Request-Method is proxied).
    for (origin, allowed) in [
        ("http://my-site.test", true),
        ("http://bad-guys.test", false),
        ("http://my-site.test.bad-guys.test", false),
    ] {
        let r = call(
            &gw,
            "OPTIONS",
            "/",
            &[("host", "cors10.test"), ("origin", origin)],
        )
        .await;
        assert_eq!(acao(&r).is_some(), allowed, "{origin}");
    }
    // :999 scheme and port.
    for (origin, expected) in [
        ("http://my-site.test", Some("http://my-site.test")),
        ("http://my-site.test:80", Some("http://my-site.test")),
        ("http://my-site.test:8000", None),
        ("https://my-site.test", None),
        (
            "https://my-other-site.test:9000",
            Some("https://my-other-site.test:9000"),
        ),
        ("https://my-other-site.test:9001", None),
    ] {
        let r = call(
            &gw,
            "GET",
            "/",
            &[("host", "cors11.test"), ("origin", origin)],
        )
        .await;
        assert_eq!(acao(&r).as_deref(), expected, "{origin}");
    }
    // :1073, :1087 `*` with credentials echoes the origin; :1101 without, `*` and no Vary.
    for origin in ["http://www.example.net", "http://www.example.net:3000"] {
        let r = call(
            &gw,
            "GET",
            "/",
            &[("host", "cors5.test"), ("origin", origin)],
        )
        .await;
        assert_eq!(acao(&r).as_deref(), Some(origin));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("vary"), Some("Origin"));
    }
    let r = call(
        &gw,
        "GET",
        "/",
        &[("host", "cors7.test"), ("origin", "http://www.example.net")],
    )
    .await;
    assert_eq!(acao(&r).as_deref(), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(r.header("vary"), None);
    // :1115 a list holding `*`.
    let r = call(
        &gw,
        "GET",
        "/",
        &[
            ("host", "cors14.test"),
            ("origin", "http://www.example.net"),
        ],
    )
    .await;
    assert_eq!(acao(&r).as_deref(), Some("*"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstreams_own_headers_meet_kongs_rules() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    // :963 Vary: the upstream's kept, Origin added.
    let r = call(
        &gw,
        "GET",
        "/response-headers?vary=Accept-Encoding",
        &[("host", "cors-upstream.test"), ("origin", "example.test")],
    )
    .await;
    let vary: Vec<&str> = r
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    // :1127 the upstream's Access-Control-Allow-Origin goes when the origin does not match.
    let path = "/response-headers?Response-Header=is-added&Access-Control-Allow-Origin=*";
    for (origin, expected) in [
        ("allowed-domain.test", Some("allowed-domain.test")),
        ("disallowed-domain.test", None),
    ] {
        let r = call(
            &gw,
            "GET",
            path,
            &[("host", "cors12.test"), ("origin", origin)],
        )
        .await;
        assert_eq!(r.header("response-header"), Some("is-added"));
        assert_eq!(
            r.header("access-control-allow-origin"),
            expected,
            "{origin}"
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.json["headers"]["origin"], origin);
    }
    // :1170 allow_origin_absent off: no headers without an Origin; :1185 on: Kong's headers.
    let r = call(&gw, "GET", "/", &[("host", "cors15.test")]).await;
    for h in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
    ] {
        assert_eq!(r.header(h), None, "{h}");
    }
    let r = call(&gw, "GET", "/", &[("host", "cors16.test")]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("foo.bar"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-auth-token")
    );
}
