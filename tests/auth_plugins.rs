//! basic-auth, hmac-auth and acl through the proxy, and authentication plugins combined.
//! Ported from Kong's spec files (Kong/kong@22246ef; `file:line` cites them):
//! `spec/03-plugins/10-basic-auth/03-access_spec.lua`, `19-hmac-auth/03-access_spec.lua`,
//! `18-acl/02-access_spec.lua`. Left out: the gRPC cases, and ACL's authenticated groups (set
//! by LDAP and OAuth2 plugins Tollgate does not have).
mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A gateway with one route per `(host, plugins)` on a backend, and `consumers` made by
/// `(username, [(nested collection, credential)])`.
async fn gateway(
    backend: &Backend,
    routes: &[(&str, Vec<(&str, Value)>)],
    consumers: &[(&str, Vec<(&str, Value)>)],
) -> Gateway {
    let gw = Gateway::start(&[]).await;
    routes_by_host(&gw, backend, routes).await;
    for (username, credentials) in consumers {
        gw.create("/consumers", json!({"username": username})).await;
        for (collection, body) in credentials {
            gw.create(&format!("/consumers/{username}/{collection}"), body.clone())
                .await;
        }
    }
    gw.settled().await;
    gw
}

async fn call(gw: &Gateway, host: &str, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    send("GET", &gw.proxy_url("/status/200"), &all, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_behaves_as_kongs_spec_says() {
    let backend = Backend::start().await;
    let basic = |config: Value| vec![("basic-auth", config)];
    let gw = gateway(
        &backend,
        &[
            ("basic-auth1.test", basic(json!({"realm": "test-realm"}))),
            ("basic-auth2.test", basic(json!({}))),
            ("basic-auth3.test", basic(json!({"anonymous": "no-body"}))),
            ("basic-auth4.test", basic(json!({"hide_credentials": true}))),
            ("basic-auth5.test", basic(json!({"anonymous": "ghost"}))),
        ],
        &[
            (
                "bob",
                vec![
                    ("basic-auth", json!({"username": "bob", "password": "kong"})),
                    (
                        "basic-auth",
                        json!({"username": "user123", "password": "password123"}),
                    ),
                    (
                        "basic-auth",
                        json!({"username": "user321", "password": "password:123"}),
                    ),
                ],
            ),
            ("no-body", vec![]),
        ],
    )
    .await;
    let realm = |r: &Resp| r.header("www-authenticate").map(String::from);
    // :139 and :156 missing credentials, with a configured and the default realm.
    let r = call(&gw, "basic-auth1.test", &[]).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("Unauthorized"))
    );
    assert_eq!(realm(&r).as_deref(), Some("Basic realm=\"test-realm\""));
    let r = call(&gw, "basic-auth2.test", &[]).await;
    assert_eq!(realm(&r).as_deref(), Some("Basic realm=\"service\""));
    // :175 / :191 invalid credentials, :207 password only, :223 username only, :299 bad base64.
    let bad = [
        ("authorization", "foobar".to_string()),
        ("proxy-authorization", "foobar".to_string()),
        ("authorization", format!("Basic {}", b64(":password"))),
        ("authorization", format!("Basic {}", b64("username"))),
        (
            "authorization",
            "Basic adXNlcjEyMzpwYXNzd29yZDEyMw==".to_string(),
        ),
        ("authorization", format!("Basic {}", b64("bob:wrong"))),
        ("authorization", format!("Basic {}", b64("nobody:kong"))),
    ];
    for (header, value) in &bad {
        let r = call(&gw, "basic-auth1.test", &[(header, value)]).await;
        assert_eq!(r.status, 401, "{header}: {value}");
        assert_eq!(r.json["message"], "Unauthorized");
        assert_eq!(realm(&r).as_deref(), Some("Basic realm=\"test-realm\""));
    }
    // :271 valid credentials, :285 a password with ':', :315 in Proxy-Authorization; :331 the
    // consumer headers, the credential named by its username.
    for (header, user, password) in [
        ("authorization", "user123", "password123"),
        ("authorization", "user321", "password:123"),
        ("proxy-authorization", "bob", "kong"),
    ] {
        let value = format!("Basic {}", b64(&format!("{user}:{password}")));
        for _ in 0..2 {
            // The second time the verified password is remembered: the same answer.
            let r = call(&gw, "basic-auth1.test", &[(header, &value)]).await;
            assert_eq!(r.status, 200, "{user}");
            assert_eq!(r.json["headers"]["x-consumer-username"], "bob");
            assert_eq!(r.json["headers"]["x-credential-identifier"], user);
        }
    }
    // :351 / :365 hide_credentials.
    let value = format!("Basic {}", b64("bob:kong"));
    let r = call(&gw, "basic-auth2.test", &[("authorization", &value)]).await;
    assert_eq!(r.json["headers"]["authorization"], "Basic Ym9iOmtvbmc=");
    let r = call(&gw, "basic-auth4.test", &[("authorization", &value)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["headers"].get("authorization"), None);
    // :384 / :399 anonymous, :426 an anonymous consumer that does not exist.
    let r = call(&gw, "basic-auth3.test", &[("authorization", &value)]).await;
    assert_eq!(r.json["headers"]["x-consumer-username"], "bob");
    let wrong = format!("Basic {}", b64("bob:wrong"));
    let r = call(&gw, "basic-auth3.test", &[("authorization", &wrong)]).await;
    assert_eq!(r.json["headers"]["x-consumer-username"], "no-body");
    assert_eq!(r.json["headers"]["x-anonymous-consumer"], "true");
    assert_eq!(r.json["headers"].get("x-credential-identifier"), None);
    let r = call(&gw, "basic-auth5.test", &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "anonymous consumer ghost is configured but doesn't exist"
    );
    // A password change takes effect: the remembered verification was for the old hash.
    let r = send(
        "PATCH",
        &gw.admin_url("/consumers/bob/basic-auth/bob"),
        &[],
        json_body(json!({"password": "new"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json["password"]
        .as_str()
        .unwrap()
        .starts_with("$argon2id$"));
    gw.settled().await;
    assert_eq!(
        call(&gw, "basic-auth2.test", &[("authorization", &value)])
            .await
            .status,
        401
    );
    let new = format!("Basic {}", b64("bob:new"));
    assert_eq!(
        call(&gw, "basic-auth2.test", &[("authorization", &new)])
            .await
            .status,
        200
    );
}

/// An hmac-auth `Authorization` value signing `headers` of a GET of `/status/200`.
fn hmac_signature(
    username: &str,
    secret: &str,
    algorithm: &str,
    lines: &[(&str, String)],
) -> String {
    let alg = match algorithm {
        "hmac-sha1" => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        "hmac-sha256" => ring::hmac::HMAC_SHA256,
        "hmac-sha384" => ring::hmac::HMAC_SHA384,
        _ => ring::hmac::HMAC_SHA512,
    };
    let text: Vec<String> = lines
        .iter()
        .map(|(name, value)| match *name {
            "request-line" => value.clone(),
            _ => format!("{name}: {value}"),
        })
        .collect();
    let key = ring::hmac::Key::new(alg, secret.as_bytes());
    let tag = ring::hmac::sign(&key, text.join("\n").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    let names: Vec<&str> = lines.iter().map(|(n, _)| *n).collect();
    format!(
        "hmac username=\"{username}\", algorithm=\"{algorithm}\", headers=\"{}\", signature=\"{signature}\"",
        names.join(" ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_auth_behaves_as_kongs_spec_says() {
    let backend = Backend::start().await;
    let hmac = |config: Value| vec![("hmac-auth", config)];
    let gw = gateway(
        &backend,
        &[
            ("hmacauth.test", hmac(json!({"clock_skew": 3000}))),
            ("hmacauth2.test", hmac(json!({"anonymous": "no-body"}))),
            (
                "hmacauth3.test",
                hmac(json!({"enforce_headers": ["date", "request-line"],
                "algorithms": ["hmac-sha1", "hmac-sha256"]})),
            ),
            (
                "hmacauth4.test",
                hmac(json!({"validate_request_body": true})),
            ),
            ("hmacauth5.test", hmac(json!({"hide_credentials": true}))),
        ],
        &[
            (
                "bob",
                vec![("hmac-auth", json!({"username": "bob", "secret": "secret"}))],
            ),
            ("no-body", vec![]),
        ],
    )
    .await;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let sign = |alg: &str, lines: &[(&str, String)]| hmac_signature("bob", "secret", alg, lines);
    let signed_date = vec![("date", date.clone())];
    // :181 no credentials.
    let r = call(&gw, "hmacauth.test", &[("date", &date)]).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("Unauthorized"))
    );
    assert_eq!(r.header("www-authenticate"), Some("hmac"));
    // :260 no date, :931 neither date nor x-date, :956 x-date malformed.
    let auth = sign("hmac-sha1", &signed_date);
    let no_date = "HMAC signature cannot be verified, a valid date or x-date header is \
                   required for HMAC Authentication";
    let r = call(&gw, "hmacauth.test", &[("authorization", &auth)]).await;
    assert_eq!(r.json["message"], no_date);
    let r = call(
        &gw,
        "hmacauth.test",
        &[("authorization", &auth), ("x-date", "yesterday")],
    )
    .await;
    assert_eq!(r.json["message"], no_date);
    // :423 a good GET, with each algorithm; :881 the upstream is told who it is.
    for alg in ["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"] {
        let auth = sign(alg, &signed_date);
        let r = call(
            &gw,
            "hmacauth.test",
            &[("authorization", &auth), ("date", &date)],
        )
        .await;
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
        assert_eq!(r.json["headers"]["x-consumer-username"], "bob");
        assert_eq!(r.json["headers"]["x-credential-identifier"], "bob");
    }
    // :477 in Proxy-Authorization; :536 a bad Authorization beside a good Proxy-Authorization.
    let r = call(
        &gw,
        "hmacauth.test",
        &[
            ("proxy-authorization", &auth),
            ("authorization", "hmac x"),
            ("date", &date),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    // :577 request-line, :600 @request-target.
    let line = vec![
        ("date", date.clone()),
        ("request-line", "GET /status/200 HTTP/1.1".to_string()),
    ];
    let auth = sign("hmac-sha256", &line);
    let r = call(
        &gw,
        "hmacauth.test",
        &[("authorization", &auth), ("date", &date)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let target = vec![("@request-target", "get /status/200".to_string())];
    let auth = sign("hmac-sha256", &target);
    let r = call(
        &gw,
        "hmacauth.test",
        &[("authorization", &auth), ("date", &date)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // :225 a wrong signature, :242 one that is not base64, :648 a wrong username, :857 a
    // wrong algorithm.
    let good = sign("hmac-sha256", &signed_date);
    let mismatched = good.replace("signature=\"", "signature=\"AAAA");
    for (auth, message) in [
        (mismatched.as_str(), "HMAC signature does not match"),
        (
            &good.replace("signature=\"", "signature=\"%%"),
            "HMAC signature does not match",
        ),
        (
            &good.replace("username=\"bob\"", "username=\"alice\""),
            "HMAC signature cannot be verified",
        ),
        (
            &good.replace("hmac-sha256", "hmac-sha666"),
            "HMAC signature cannot be verified",
        ),
        ("hmac username=\"bob\"", "HMAC signature cannot be verified"),
    ] {
        let r = call(
            &gw,
            "hmacauth.test",
            &[("authorization", auth), ("date", &date)],
        )
        .await;
        assert_eq!(
            (r.status, r.json["message"].as_str()),
            (401, Some(message)),
            "{auth}"
        );
    }
    // enforce_headers and algorithms: date alone, or sha512, are not enough there.
    let r = call(
        &gw,
        "hmacauth3.test",
        &[("authorization", &good), ("date", &date)],
    )
    .await;
    assert_eq!(r.json["message"], "HMAC signature cannot be verified");
    let r = call(
        &gw,
        "hmacauth3.test",
        &[
            ("authorization", &sign("hmac-sha512", &line)),
            ("date", &date),
        ],
    )
    .await;
    assert_eq!(r.json["message"], "HMAC signature cannot be verified");
    let auth = sign("hmac-sha256", &line);
    assert_eq!(
        call(
            &gw,
            "hmacauth3.test",
            &[("authorization", &auth), ("date", &date)]
        )
        .await
        .status,
        200
    );
    // :1074 / :1165 anonymous.
    let r = call(
        &gw,
        "hmacauth2.test",
        &[("authorization", &mismatched), ("date", &date)],
    )
    .await;
    assert_eq!(r.json["headers"]["x-consumer-username"], "no-body");
    assert_eq!(r.json["headers"]["x-anonymous-consumer"], "true");
    // hide_credentials takes the signature off.
    let r = call(
        &gw,
        "hmacauth5.test",
        &[("authorization", &good), ("date", &date)],
    )
    .await;
    assert_eq!(
        (r.status, r.json["headers"].get("authorization")),
        (200, None)
    );
    // :1230 / :1307 / :1280 validate_request_body.
    let body = "{\"a\":1}";
    let digest = format!(
        "SHA-256={}",
        base64::engine::general_purpose::STANDARD
            .encode(ring::digest::digest(&ring::digest::SHA256, body.as_bytes()))
    );
    let with_digest = vec![("date", date.clone()), ("digest", digest.clone())];
    let auth = sign("hmac-sha256", &with_digest);
    let post = |body: &'static str, headers: Vec<(&'static str, String)>| {
        let url = gw.proxy_url("/status/200");
        async move {
            let mut all: Vec<(&str, &str)> = vec![("host", "hmacauth4.test")];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            send(
                "POST",
                &url,
                &all,
                Some(("application/json", body.to_string())),
            )
            .await
        }
    };
    let base = vec![("authorization", auth.clone()), ("date", date.clone())];
    let mut ok = base.clone();
    ok.push(("digest", digest.clone()));
    assert_eq!(post(body, ok.clone()).await.status, 200);
    let r = post("{\"a\":2}", ok).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("HMAC signature does not match"))
    );
    let r = post(body, base).await;
    assert_eq!(r.json["message"], "HMAC signature does not match");
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_allows_and_denies_by_group_as_kongs_spec_says() {
    let backend = Backend::start().await;
    let key = |config: Value| ("key-auth", config);
    let acl = |config: Value| ("acl", config);
    let gw = gateway(
        &backend,
        &[
            ("acl1.test", vec![acl(json!({"allow": ["admin"]}))]),
            (
                "acl2.test",
                vec![key(json!({})), acl(json!({"allow": ["admin"]}))],
            ),
            (
                "acl3.test",
                vec![key(json!({})), acl(json!({"deny": ["admin"]}))],
            ),
            (
                "acl4.test",
                vec![key(json!({})), acl(json!({"allow": ["admin", "pro"]}))],
            ),
            (
                "acl5.test",
                vec![
                    key(json!({})),
                    acl(json!({"allow": ["admin"], "hide_groups_header": true})),
                ],
            ),
            (
                "acl6.test",
                vec![
                    key(json!({"anonymous": "anon"})),
                    acl(json!({"allow": ["anonymous"]})),
                ],
            ),
        ],
        &[
            (
                "admin",
                vec![
                    ("key-auth", json!({"key": "apikey124"})),
                    ("acls", json!({"group": "admin"})),
                ],
            ),
            (
                "pro",
                vec![
                    ("key-auth", json!({"key": "apikey125"})),
                    ("acls", json!({"group": "pro"})),
                    ("acls", json!({"group": "hello"})),
                ],
            ),
            ("loner", vec![("key-auth", json!({"key": "apikey126"}))]),
            ("anon", vec![("acls", json!({"group": "anonymous"}))]),
        ],
    )
    .await;
    let with_key = |k: &'static str| [("apikey", k)];
    // :907 no authentication plugin: 401.
    let r = call(&gw, "acl1.test", &[]).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("Unauthorized"))
    );
    // :931 not allowed, :955 allowed with X-Consumer-Groups.
    let r = call(&gw, "acl2.test", &with_key("apikey125")).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (403, Some("You cannot consume this service"))
    );
    let r = call(&gw, "acl2.test", &with_key("apikey124")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["headers"]["x-consumer-groups"], "admin");
    // A consumer in no group presented a credential: 403.
    let r = call(&gw, "acl2.test", &with_key("apikey126")).await;
    assert_eq!(r.status, 403);
    // :1021 / :1039 deny lists; a consumer in no group passes one.
    assert_eq!(
        call(&gw, "acl3.test", &with_key("apikey125")).await.status,
        200
    );
    assert_eq!(
        call(&gw, "acl3.test", &with_key("apikey124")).await.status,
        403
    );
    assert_eq!(
        call(&gw, "acl3.test", &with_key("apikey126")).await.status,
        200
    );
    // :1077 several groups (Kong accepts either order; Tollgate sorts them).
    let r = call(&gw, "acl4.test", &with_key("apikey125")).await;
    assert_eq!(r.json["headers"]["x-consumer-groups"], "hello, pro");
    // :977 hide_groups_header.
    let r = call(&gw, "acl5.test", &with_key("apikey124")).await;
    assert_eq!(
        (r.status, r.json["headers"].get("x-consumer-groups")),
        (200, None)
    );
    // :880 the anonymous consumer's groups.
    let r = call(&gw, "acl6.test", &[]).await;
    assert_eq!(r.json["headers"]["x-consumer-groups"], "anonymous");
    // A client cannot claim groups: the gateway's header replaces its own.
    let r = call(
        &gw,
        "acl4.test",
        &[("apikey", "apikey125"), ("x-consumer-groups", "admin")],
    )
    .await;
    assert_eq!(r.json["headers"]["x-consumer-groups"], "hello, pro");
    // /consumers/{c}/acls/{group} finds the membership by its group; deleting it takes effect.
    let r = send(
        "GET",
        &gw.admin_url("/consumers/admin/acls/admin"),
        &[],
        None,
    )
    .await;
    assert_eq!((r.status, r.json["group"].as_str()), (200, Some("admin")));
    let r = send(
        "DELETE",
        &gw.admin_url("/consumers/admin/acls/admin"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    gw.settled().await;
    assert_eq!(
        call(&gw, "acl2.test", &with_key("apikey124")).await.status,
        403
    );
}

/// 10-basic-auth/03-access_spec.lua:541 and :599: key-auth and basic-auth on one route,
/// without anonymous (both needed) and with it (either one, else the anonymous consumer).
#[tokio::test(flavor = "multi_thread")]
async fn authentication_plugins_combine_as_logical_and_or_or() {
    let backend = Backend::start().await;
    let gw = gateway(
        &backend,
        &[
            (
                "logical-and.test",
                vec![("basic-auth", json!({})), ("key-auth", json!({}))],
            ),
            (
                "logical-or.test",
                vec![
                    ("basic-auth", json!({"anonymous": "anon"})),
                    ("key-auth", json!({"anonymous": "anon"})),
                ],
            ),
        ],
        &[
            ("user1", vec![("key-auth", json!({"key": "Mouse"}))]),
            (
                "user2",
                vec![(
                    "basic-auth",
                    json!({"username": "Aladdin", "password": "OpenSesame"}),
                )],
            ),
            ("anon", vec![]),
        ],
    )
    .await;
    let basic = format!("Basic {}", b64("Aladdin:OpenSesame"));
    let both = [("apikey", "Mouse"), ("authorization", basic.as_str())];
    let only_key = [("apikey", "Mouse")];
    let only_basic = [("authorization", basic.as_str())];
    // :543 all given: 200; :560 / :572 / :585 one or none: 401.
    assert_eq!(call(&gw, "logical-and.test", &both).await.status, 200);
    assert_eq!(call(&gw, "logical-and.test", &only_key).await.status, 401);
    let r = call(&gw, "logical-and.test", &only_basic).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Key")));
    assert_eq!(call(&gw, "logical-and.test", &[]).await.status, 401);
    // :601 - :650 with anonymous, any credential passes as its consumer; none as anon.
    let who = |r: &Resp| {
        r.json["headers"]["x-consumer-username"]
            .as_str()
            .map(String::from)
    };
    let r = call(&gw, "logical-or.test", &both).await;
    assert!(
        matches!(who(&r).as_deref(), Some("user1" | "user2")),
        "{}",
        r.body
    );
    assert_eq!(
        who(&call(&gw, "logical-or.test", &only_key).await).as_deref(),
        Some("user1")
    );
    assert_eq!(
        who(&call(&gw, "logical-or.test", &only_basic).await).as_deref(),
        Some("user2")
    );
    let r = call(&gw, "logical-or.test", &[]).await;
    assert_eq!(who(&r).as_deref(), Some("anon"));
    assert_eq!(r.json["headers"]["x-anonymous-consumer"], "true");
}
