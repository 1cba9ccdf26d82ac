//! The oauth2 plugin driven over HTTP as a client application and an operator's login page
//! drive Kong's: authorization code with PKCE, client credentials, password, refresh,
//! tokens used, expired and revoked. Ported from Kong's spec files (Kong/kong@22246ef;
//! `file:line` cites them): `spec/03-plugins/25-oauth2/03-access_spec.lua` and
//! `02-api_spec.lua`. Left out: gRPC calls and multipart bodies (Tollgate reads form and JSON
//! parameters only).
//!
//! The endpoints insist on HTTPS; most requests here come from a trusted proxy saying
//! `X-Forwarded-Proto: https` (`accept_http_if_already_terminated`), and one set goes over
//! the gateway's own TLS listener with curl.
mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const TRUSTED: (&str, &str) = ("TOLLGATE_TRUSTED_IPS", "127.0.0.1/32");
const HTTPS: (&str, &str) = ("x-forwarded-proto", "https");
const REDIRECT: &str = "http://google.test/kong";

/// Kong's test plugin config (03-access_spec.lua:171 ff.): `token_expiration` 5 s.
fn plugin(extra: Value) -> Value {
    let mut config = json!({
        "scopes": ["email", "profile", "user.email"],
        "enable_authorization_code": true,
        "enable_client_credentials": true,
        "mandatory_scope": true,
        "provision_key": "provision123",
        "token_expiration": 5,
        "enable_implicit_grant": true,
        "accept_http_if_already_terminated": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    json!({"name": "oauth2", "config": config})
}

/// A service per `(host, plugin config)`, each with a route on that host.
async fn gateway(backend: &Backend, hosts: &[(&str, Value)]) -> Gateway {
    let gw = Gateway::start(&[TRUSTED]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    for (i, (host, extra)) in hosts.iter().enumerate() {
        let service = format!("s{i}");
        gw.create("/services", json!({"name": service, "url": url}))
            .await;
        let route = json!({"name": format!("r{i}"), "hosts": [host]});
        gw.create(&format!("/services/{service}/routes"), route)
            .await;
        gw.create(&format!("/routes/r{i}/plugins"), plugin(extra.clone()))
            .await;
    }
    gw.create("/consumers", json!({"username": "bob"})).await;
    let apps = [
        json!({"name": "testapp", "client_id": "clientid123", "client_secret": "secret123",
            "redirect_uris": [REDIRECT]}),
        json!({"name": "testapp2", "client_id": "clientid456", "client_secret": "secret456",
            "redirect_uris": ["http://one.test/one", "http://two.test/two"]}),
        json!({"name": "public", "client_id": "publicclient", "client_type": "public",
            "redirect_uris": [REDIRECT]}),
        json!({"name": "no-redirect", "client_id": "clientid789", "client_secret": "secret789"}),
    ];
    for app in apps {
        gw.create("/consumers/bob/oauth2", app).await;
    }
    gw.settled().await;
    gw
}

/// A JSON POST to `path` on `host`, from a trusted proxy that terminated TLS.
async fn post(gw: &Gateway, host: &str, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("host", host), HTTPS];
    all.extend_from_slice(headers);
    send("POST", &gw.proxy_url(path), &all, json_body(body)).await
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A code from the authorize endpoint for `client_id` (Kong's `provision_code`, :31).
async fn provision_code(
    gw: &Gateway,
    host: &str,
    client_id: &str,
    challenge: Option<&str>,
) -> String {
    let mut body = json!({"provision_key": "provision123", "authenticated_userid": "id123",
        "client_id": client_id, "scope": "email", "response_type": "code", "state": "hello"});
    if let Some(c) = challenge {
        body["code_challenge"] = c.into();
        body["code_challenge_method"] = "S256".into();
    }
    let r = post(gw, host, "/oauth2/authorize", body, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let uri = r.json["redirect_uri"].as_str().unwrap();
    let code = between(uri, "code=", "&").unwrap();
    assert!(uri.ends_with("&state=hello"), "{uri}");
    code
}

/// Tokens for a code of `clientid123` (Kong's `provision_token`, :69).
async fn provision_token(gw: &Gateway, host: &str) -> Value {
    let code = provision_code(gw, host, "clientid123", None).await;
    let body = json!({"code": code, "client_id": "clientid123", "client_secret": "secret123",
        "grant_type": "authorization_code"});
    let r = post(gw, host, "/oauth2/token", body, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json
}

/// A GET of `/request` on `host` with `headers`.
async fn request(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    send("GET", &gw.proxy_url(path), &all, None).await
}

fn pkce_pair() -> (String, String) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-longer-than-43";
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    (verifier.to_string(), challenge)
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_endpoint_answers_as_kongs() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[("oauth2.test", json!({}))]).await;
    let host = "oauth2.test";
    // :636 "returns an error when no provision_key is being sent".
    let r = post(&gw, host, "/oauth2/authorize", json!({}), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"error_description": "Invalid provision_key", "error": "invalid_provision_key"})
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    // :662 "returns an error when no parameter is being sent".
    let r = post(
        &gw,
        host,
        "/oauth2/authorize",
        json!({"provision_key": "provision123"}),
        &[],
    )
    .await;
    assert_eq!(r.json["error"], "invalid_authenticated_userid");
    assert_eq!(
        r.json["error_description"],
        "Missing authenticated_userid parameter"
    );
    // :678 "returns an error when only provision_key and authenticated_userid are sent".
    let base = json!({"provision_key": "provision123", "authenticated_userid": "id123"});
    let r = post(&gw, host, "/oauth2/authorize", base.clone(), &[]).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (
            400,
            json!({"error_description": "Invalid client authentication", "error": "invalid_client"})
        )
    );
    // :715 "returns an error when an invalid scope is being sent": in the redirect URI.
    let mut body = base.clone();
    body["client_id"] = "clientid123".into();
    body["scope"] = "wot".into();
    let r = post(&gw, host, "/oauth2/authorize", body.clone(), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["redirect_uri"],
        "http://google.test/kong?error=invalid_scope&error_description=%22wot%22%20is%20an%20invalid%20scope"
    );
    // :753 "returns an error with a state when no response_type is being sent".
    body["scope"] = "email".into();
    body["state"] = "somestate".into();
    let r = post(&gw, host, "/oauth2/authorize", body.clone(), &[]).await;
    assert_eq!(
        r.json["redirect_uri"],
        "http://google.test/kong?error=unsupported_response_type&error_description=Invalid%20response_type&state=somestate"
    );
    body.as_object_mut().unwrap().remove("state");
    body["response_type"] = "code".into();
    // :773 "returns error when the redirect_uri does not match".
    body["scope"] = "email".into();
    body["redirect_uri"] = "http://hello.test/".into();
    let r = post(&gw, host, "/oauth2/authorize", body.clone(), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"redirect_uri": "http://google.test/kong?error=invalid_request&error_description=Invalid%20redirect_uri%20that%20does%20not%20match%20with%20any%20redirect_uri%20created%20with%20the%20application"})
    );
    // :814 "works with multiple redirect_uris in the application".
    let mut two = body.clone();
    two["client_id"] = "clientid456".into();
    two["redirect_uri"] = "http://two.test/two".into();
    let r = post(&gw, host, "/oauth2/authorize", two, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json["redirect_uri"]
        .as_str()
        .unwrap()
        .starts_with("http://two.test/two?code="));
    // :835 "fails when not under HTTPS": no trusted proxy's word, no TLS.
    body.as_object_mut().unwrap().remove("redirect_uri");
    let r = send(
        "POST",
        &gw.proxy_url("/oauth2/authorize"),
        &[("host", host)],
        json_body(body.clone()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"error": "access_denied", "error_description": "You must use HTTPS"})
    );
    // :900 "returns success", and :976 with a state.
    body["state"] = "hello".into();
    let r = post(&gw, host, "/oauth2/authorize", body.clone(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let uri = r.json["redirect_uri"].as_str().unwrap();
    let code = between(uri, "http://google.test/kong?code=", "&state=hello").unwrap();
    assert_eq!(code.len(), 32);
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()), "{uri}");
    // :957 "returns success when requesting the url with final slash", as a form.
    let mut form_body = vec![];
    for (k, v) in body.as_object().unwrap() {
        form_body.push((k.as_str(), v.as_str().unwrap()));
    }
    let r = send(
        "POST",
        &gw.proxy_url("/oauth2/authorize/"),
        &[("host", host), HTTPS],
        form(&form_body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // :1058 and :1081: a challenge method other than S256, or without a challenge.
    let mut pkce = body.clone();
    pkce["code_challenge"] = "abc".into();
    pkce["code_challenge_method"] = "foo".into();
    let r = post(&gw, host, "/oauth2/authorize", pkce.clone(), &[]).await;
    assert!(r.json["redirect_uri"].as_str().unwrap().contains(
        "error_description=code_challenge_method%20is%20not%20supported%2C%20must%20be%20S256"
    ));
    pkce.as_object_mut().unwrap().remove("code_challenge");
    pkce["code_challenge_method"] = "S256".into();
    let r = post(&gw, host, "/oauth2/authorize", pkce, &[]).await;
    assert!(r.json["redirect_uri"]
        .as_str()
        .unwrap()
        .contains("code_challenge%20is%20required%20when%20code_method%20is%20present"));
    // :1103 "fails when code challenge is not included for public client".
    let mut public = body.clone();
    public["client_id"] = "publicclient".into();
    let r = post(&gw, host, "/oauth2/authorize", public, &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.json["redirect_uri"]
        .as_str()
        .unwrap()
        .contains("code_challenge%20is%20required%20for%20public%20clients"));
    // :1230 Implicit Grant "returns success": the token in the fragment, no refresh token.
    let mut implicit = body.clone();
    implicit["response_type"] = "token".into();
    let r = post(&gw, host, "/oauth2/authorize", implicit, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let uri = r.json["redirect_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("http://google.test/kong#access_token="),
        "{uri}"
    );
    assert!(
        uri.ends_with("&expires_in=5&state=hello&token_type=bearer"),
        "{uri}"
    );
    let token = between(uri, "#access_token=", "&").unwrap();
    let r = request(
        &gw,
        host,
        "/request",
        &[("authorization", &format!("bearer {token}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Kong answers any other method with 405 (:1427).
    let r = request(&gw, host, "/oauth2/authorize", &[HTTPS]).await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.json["error_description"],
        "The HTTP method GET is invalid for the authorization endpoint"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_grants_as_kongs() {
    let backend = Backend::start().await;
    let gw = gateway(
        &backend,
        &[
            ("oauth2.test", json!({})),
            (
                "password.test",
                json!({"enable_password_grant": true, "realm": "test-oauth2"}),
            ),
        ],
    )
    .await;
    let host = "oauth2.test";
    let token = "/oauth2/token";
    // Client Credentials, :1371 "returns an error when client_secret is not sent".
    let r = post(
        &gw,
        host,
        token,
        json!({"client_id": "clientid123", "scope": "email"}),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (
            400,
            json!({"error_description": "Invalid client authentication", "error": "invalid_client"})
        )
    );
    // :1427 "... regardless of method - without realm" and :1443 "with realm".
    let r = request(
        &gw,
        host,
        "/oauth2/token?grant_type=client_credentials",
        &[HTTPS],
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_method\", error_description=\"The HTTP method GET is invalid for the token endpoint\"")
    );
    let r = request(&gw, "password.test", "/oauth2/token", &[HTTPS]).await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"test-oauth2\", error=\"invalid_method\", error_description=\"The HTTP method GET is invalid for the token endpoint\"")
    );
    // :1459 "returns an error when grant_type is not sent".
    let cc = json!({"client_id": "clientid123", "client_secret": "secret123", "scope": "email"});
    let r = post(&gw, host, token, cc.clone(), &[]).await;
    assert_eq!(
        r.json,
        json!({"error_description": "Invalid grant_type", "error": "unsupported_grant_type"})
    );
    // :1540 "returns success".
    let mut body = cc.clone();
    body["grant_type"] = "client_credentials".into();
    let r = post(&gw, host, token, body.clone(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["token_type"], "bearer");
    assert_eq!(r.json["expires_in"], 5);
    assert_eq!(r.json["access_token"].as_str().unwrap().len(), 32);
    assert!(r.json.get("refresh_token").is_none(), "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // :1499 and :1519: an authenticated_userid needs the provision key.
    body["authenticated_userid"] = "user123".into();
    let r = post(&gw, host, token, body.clone(), &[]).await;
    assert_eq!(r.json["error"], "invalid_provision_key");
    body["provision_key"] = "provision123".into();
    let r = post(&gw, host, token, body.clone(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // :1715 "sets the right upstream headers".
    let access = r.json["access_token"].as_str().unwrap().to_string();
    let r = request(
        &gw,
        host,
        "/request",
        &[
            ("authorization", &format!("bearer {access}")),
            ("x-authenticated-scope", "admin"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.json["headers"];
    assert_eq!(h["x-consumer-username"], "bob");
    assert_eq!(h["x-credential-identifier"], "clientid123");
    assert_eq!(h["x-authenticated-scope"], "email");
    assert_eq!(h["x-authenticated-userid"], "user123");
    assert!(h.get("x-anonymous-consumer").is_none());
    // :1607 "returns success with an application that has not redirect_uri".
    let r = post(
        &gw,
        host,
        token,
        json!({"client_id": "clientid789", "client_secret": "secret789", "scope": "email",
            "grant_type": "client_credentials"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // :1653 "returns success with authorization header", :1696 "... a wrong authorization
    // header": 401 with Kong's Basic challenge.
    let cc_form = json!({"scope": "email", "grant_type": "client_credentials"});
    let basic = format!("Basic {}", b64("clientid123:secret123"));
    let r = post(
        &gw,
        host,
        token,
        cc_form.clone(),
        &[("authorization", &basic)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let wrong = format!("Basic {}", b64("clientid123:secret124"));
    let r = post(
        &gw,
        host,
        token,
        cc_form.clone(),
        &[("authorization", &wrong)],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "invalid_client");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"OAuth2.0\"")
    );
    // Password Grant, off unless enabled: :1827 on the route without it.
    let pw = json!({"provision_key": "provision123", "authenticated_userid": "id123",
        "client_id": "clientid123", "client_secret": "secret123", "scope": "email",
        "grant_type": "password"});
    let r = post(&gw, host, token, pw.clone(), &[]).await;
    assert_eq!(r.json["error"], "unsupported_grant_type");
    // :1846 "fails when no provision key is being sent", :1905 "returns success".
    let mut no_key = pw.clone();
    no_key.as_object_mut().unwrap().remove("provision_key");
    let r = post(&gw, "password.test", token, no_key, &[]).await;
    assert_eq!(r.json["error"], "invalid_provision_key");
    let r = post(&gw, "password.test", token, pw.clone(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["refresh_token"].as_str().unwrap().len(), 32);
    // :1783 "blocks unauthorized requests - with realm set".
    let r = request(&gw, "password.test", "/request", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"test-oauth2\"")
    );
    assert_eq!(
        r.json,
        json!({"error_description": "The access token is missing", "error": "invalid_request"})
    );
    // The same over the gateway's own TLS listener, with curl: no proxy's word needed.
    let url = format!("https://oauth2.test:{}/oauth2/token", gw.tls);
    let resolve = format!("oauth2.test:{}:127.0.0.1", gw.tls);
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--resolve",
            &resolve,
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(
            json!({"client_id": "clientid123", "client_secret": "secret123", "scope": "email",
            "grant_type": "client_credentials"})
            .to_string(),
        )
        .arg(&url)
        .output()
        .expect("curl runs");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(answer["token_type"], "bearer", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_pkce_and_refresh_tokens_are_good_once() {
    let backend = Backend::start().await;
    let gw = gateway(
        &backend,
        &[("oauth2.test", json!({})), ("other.test", json!({}))],
    )
    .await;
    let host = "oauth2.test";
    let token = "/oauth2/token";
    // :2013 "returns an error when nothing is being sent".
    let r = post(&gw, host, token, json!({}), &[]).await;
    assert_eq!(r.json["error"], "invalid_client");
    // :2091 "returns an error with a wrong code".
    let wrong = json!({"code": "abc", "client_id": "clientid123", "client_secret": "secret123",
        "grant_type": "authorization_code"});
    let r = post(&gw, host, token, wrong, &[]).await;
    assert_eq!(
        r.json,
        json!({"error": "invalid_request", "error_description": "Invalid code"})
    );
    // :2218 "fails when an authorization code is used more than once".
    let code = provision_code(&gw, host, "clientid123", None).await;
    let redeem = json!({"code": code, "client_id": "clientid123", "client_secret": "secret123",
        "grant_type": "authorization_code", "state": "xyz"});
    let r = post(&gw, host, token, redeem.clone(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["state"], "xyz");
    assert_eq!(r.json["refresh_token"].as_str().unwrap().len(), 32);
    let first = r.json.clone();
    let r = post(&gw, host, token, redeem, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error_description"], "Invalid code");
    // :2165 "fails when the client used for the code is not the same client used for the
    // token", and a code of another service (:2283).
    let code = provision_code(&gw, host, "clientid123", None).await;
    let other_client = json!({"code": code, "client_id": "clientid456",
        "client_secret": "secret456", "grant_type": "authorization_code",
        "redirect_uri": "http://one.test/one"});
    let r = post(&gw, host, token, other_client, &[]).await;
    assert_eq!(r.json["error_description"], "Invalid code");
    let other_api = json!({"code": code, "client_id": "clientid123",
        "client_secret": "secret123", "grant_type": "authorization_code"});
    let r = post(&gw, "other.test", token, other_api.clone(), &[]).await;
    assert_eq!(r.json["error_description"], "Invalid code");
    // A wrong redirect_uri at the token endpoint.
    let mut bad_redirect = other_api.clone();
    bad_redirect["redirect_uri"] = "http://evil.test/".into();
    let r = post(&gw, host, token, bad_redirect, &[]).await;
    assert_eq!(r.json["error"], "invalid_request");
    assert!(r.json["error_description"]
        .as_str()
        .unwrap()
        .starts_with("Invalid redirect_uri"));
    // The refused attempts did not use the code up.
    let r = post(&gw, host, token, other_api, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // PKCE S256 with a public client (:2303 "succeeds when using code challenge", :2676
    // "fails when code verifier does not match challenge", :2571 shorter than 43).
    let (verifier, challenge) = pkce_pair();
    let code = provision_code(&gw, host, "publicclient", Some(&challenge)).await;
    let public = |code: &str, verifier: &str| {
        json!({"code": code, "client_id": "publicclient", "grant_type": "authorization_code",
            "code_verifier": verifier})
    };
    let r = post(
        &gw,
        host,
        token,
        public(&code, "x".repeat(42).as_str()),
        &[],
    )
    .await;
    assert_eq!(
        r.json["error_description"],
        "code_verifier must be between 43 and 128 characters"
    );
    let r = post(&gw, host, token, public(&code, &"y".repeat(50)), &[]).await;
    assert_eq!(
        r.json,
        json!({"error": "invalid_grant", "error_description": "Invalid code"})
    );
    let r = post(&gw, host, token, public(&code, &verifier), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // :2407 "fails when a secret provided for public app".
    let code = provision_code(&gw, host, "publicclient", Some(&challenge)).await;
    let mut with_secret = public(&code, &verifier);
    with_secret["client_secret"] = "secret".into();
    let r = post(&gw, host, token, with_secret, &[]).await;
    assert_eq!(
        r.json["error_description"],
        "client_secret is disallowed for public clients"
    );
    // :2450 "fails when no code_verifier provided for public app".
    let mut no_verifier = public(&code, &verifier);
    no_verifier.as_object_mut().unwrap().remove("code_verifier");
    let r = post(&gw, host, token, no_verifier, &[]).await;
    assert_eq!(
        r.json["error_description"],
        "code_verifier is required for PKCE authorization requests"
    );
    // Refresh Token, :3576 "does not refresh an invalid access token".
    let refresh = |t: &str| {
        json!({"refresh_token": t, "client_id": "clientid123", "client_secret": "secret123",
            "grant_type": "refresh_token"})
    };
    let r = post(&gw, host, token, refresh("hello"), &[]).await;
    assert_eq!(
        r.json,
        json!({"error": "invalid_request", "error_description": "Invalid refresh_token"})
    );
    // :3595 "refreshes an valid access token": new tokens; the old ones are gone.
    let old_refresh = first["refresh_token"].as_str().unwrap();
    let old_access = first["access_token"].as_str().unwrap();
    let r = post(&gw, "other.test", token, refresh(old_refresh), &[]).await;
    assert_eq!(
        r.json["error_description"], "Invalid refresh_token",
        "another service's"
    );
    let r = post(&gw, host, token, refresh(old_refresh), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["expires_in"], 5);
    let renewed = r.json["access_token"].as_str().unwrap().to_string();
    let r = post(&gw, host, token, refresh(old_refresh), &[]).await;
    assert_eq!(
        r.json["error_description"], "Invalid refresh_token",
        "used twice"
    );
    let bearer = |t: &str| format!("Bearer {t}");
    let r = request(
        &gw,
        host,
        "/request",
        &[("authorization", &bearer(old_access))],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = request(
        &gw,
        host,
        "/request",
        &[("authorization", &bearer(&renewed))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["headers"]["x-authenticated-userid"], "id123");
    // :3159 "does not work when requesting a different API".
    let r = request(
        &gw,
        "other.test",
        "/request",
        &[("authorization", &bearer(&renewed))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_tokens_are_checked_expire_and_are_revoked_through_the_admin_api() {
    let backend = Backend::start().await;
    let gw = gateway(
        &backend,
        &[("oauth2.test", json!({"hide_credentials": true}))],
    )
    .await;
    let host = "oauth2.test";
    let t = provision_token(&gw, host).await;
    let access = t["access_token"].as_str().unwrap();
    // :3508 "returns 401 Unauthorized without error if it lacks any authentication information".
    let r = request(&gw, host, "/request", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // :3521 and :3534: an invalid token in the query string or the header.
    let invalid = "Bearer error=\"invalid_token\", error_description=\"The access token is invalid or has expired\"";
    let r = request(&gw, host, "/request?access_token=invalid", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(invalid));
    let r = request(
        &gw,
        host,
        "/request",
        &[("authorization", "bearer invalid")],
    )
    .await;
    assert_eq!(r.header("www-authenticate"), Some(invalid));
    // :2954 in the query string, :3189 in a form body; hidden from the upstream.
    let r = request(
        &gw,
        host,
        &format!("/request?access_token={access}&a=1"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(access), "{}", r.body);
    let r = send(
        "POST",
        &gw.proxy_url("/request"),
        &[("host", host)],
        form(&[("access_token", access), ("b", "2")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(access), "{}", r.body);
    // :3246 the `token` scheme; the header is hidden too.
    let r = request(
        &gw,
        host,
        "/request",
        &[("authorization", &format!("token {access}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json["headers"].get("authorization").is_none());
    // A token made through the admin API (02-api_spec.lua:720), expiring after a second
    // (03-access_spec.lua:3548 "returns 401 Unauthorized when token has expired").
    let credential = send("GET", &gw.admin_url("/oauth2/clientid123"), &[], None).await;
    let service = send("GET", &gw.admin_url("/services/s0"), &[], None).await;
    let made = gw
        .create(
            "/oauth2_tokens",
            json!({"credential": {"id": credential.json["id"]},
                "service": {"id": service.json["id"]}, "expires_in": 1}),
        )
        .await;
    assert_eq!(made.json["token_type"], "bearer");
    assert_eq!(made.json["expires_in"], 1);
    assert_eq!(made.json["refresh_token"], Value::Null);
    let short = made.json["access_token"].as_str().unwrap();
    let auth = format!("bearer {short}");
    let r = request(&gw, host, "/request", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = request(&gw, host, "/request", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json["error_description"],
        "The access token is invalid or has expired"
    );
    // 02-api_spec.lua:742 "returns bad request"; :834 and :843 found by id and by token.
    let r = send(
        "POST",
        &gw.admin_url("/oauth2_tokens"),
        &[],
        json_body(json!({})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["fields"],
        json!({"expires_in": "required field missing", "credential": "required field missing"})
    );
    let by_token = send(
        "GET",
        &gw.admin_url(&format!("/oauth2_tokens/{access}")),
        &[],
        None,
    )
    .await;
    assert_eq!(by_token.status, 200, "{}", by_token.body);
    assert!(
        by_token.json.get("access_token").is_none(),
        "never shown again"
    );
    let id = by_token.json["id"].as_str().unwrap();
    let by_id = send(
        "GET",
        &gw.admin_url(&format!("/oauth2_tokens/{id}")),
        &[],
        None,
    )
    .await;
    assert_eq!(by_id.json["credential"], by_token.json["credential"]);
    let list = send("GET", &gw.admin_url("/oauth2_tokens?size=1"), &[], None).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert!(list.json["offset"].is_string(), "{}", list.body);
    // :950 "deletes a token": revoked at once; :958 204 for one that does not exist.
    let r = send(
        "DELETE",
        &gw.admin_url(&format!("/oauth2_tokens/{id}")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = request(
        &gw,
        host,
        "/request",
        &[("authorization", &format!("bearer {access}"))],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send("DELETE", &gw.admin_url("/oauth2_tokens/blah"), &[], None).await;
    assert_eq!(r.status, 204);
    // A client-sent X-Authenticated-UserId never reaches the upstream on its own.
    let fresh = provision_token(&gw, host).await;
    let auth = format!("bearer {}", fresh["access_token"].as_str().unwrap());
    let anonymous_attempt = request(
        &gw,
        host,
        "/request",
        &[
            ("authorization", &auth),
            ("x-authenticated-userid", "admin"),
        ],
    )
    .await;
    assert_eq!(
        anonymous_attempt.json["headers"]["x-authenticated-userid"],
        "id123"
    );
}

/// 02-api_spec.lua: credentials through `/consumers/{c}/oauth2` and `/oauth2`; the secret
/// shown once when generated, stored hashed, and the token survives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_kept_hashed_and_tokens_survive_a_restart() {
    let backend = Backend::start().await;
    let gw = gateway(&backend, &[("oauth2.test", json!({}))]).await;
    // :56 "creates a oauth2 credential"; a generated secret is shown once.
    let r = gw
        .create(
            "/consumers/bob/oauth2",
            json!({"name": "Test APP", "redirect_uris": [REDIRECT]}),
        )
        .await;
    let secret = r.json["client_secret"].as_str().unwrap().to_string();
    let client_id = r.json["client_id"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    assert_eq!(r.json["hash_secret"], true);
    let again = send(
        "GET",
        &gw.admin_url(&format!("/oauth2/{client_id}")),
        &[],
        None,
    )
    .await;
    assert!(again.json["client_secret"]
        .as_str()
        .unwrap()
        .starts_with("$argon2id$"));
    let nested = send(
        "GET",
        &gw.admin_url(&format!("/consumers/bob/oauth2/{client_id}")),
        &[],
        None,
    )
    .await;
    assert_eq!(nested.json["id"], again.json["id"]);
    // :239 "returns bad request with invalid redirect_uris": nothing stored.
    let r = send(
        "POST",
        &gw.admin_url("/consumers/bob/oauth2"),
        &[],
        json_body(json!({"name": "Test APP", "redirect_uris": ["http://valid.test", "not-valid"]})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["fields"],
        json!({"redirect_uris": [null, "cannot parse 'not-valid'"]})
    );
    let all = send("GET", &gw.admin_url("/oauth2"), &[], None).await;
    assert_eq!(all.json["data"].as_array().unwrap().len(), 5);
    // :605 "does not create oauth2 credential when missing consumer".
    let r = send(
        "POST",
        &gw.admin_url("/oauth2"),
        &[],
        json_body(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        r.json["message"],
        "schema violation (consumer: required field missing)"
    );
    // The generated secret works; a token outlives the process.
    gw.settled().await;
    let r = post(
        &gw,
        "oauth2.test",
        "/oauth2/token",
        json!({"client_id": client_id, "client_secret": secret, "scope": "email",
            "grant_type": "client_credentials"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json["access_token"].as_str().unwrap().to_string();
    let mut gw = gw;
    gw.terminate();
    let data_dir = gw.data_dir.clone();
    let again = Gateway::start_in(&[TRUSTED], data_dir, None).await;
    let r = request(
        &again,
        "oauth2.test",
        "/request",
        &[("authorization", &format!("bearer {access}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    drop(gw);
}

/// Two nodes on one PostgreSQL: a token one issues works on the other within the poll
/// interval, and one revoked on either stops on both.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_sharing_postgresql_share_tokens_and_revocations() {
    let Some(db) = PgDatabase::create("tollgate_oauth2").await else {
        return;
    };
    let env = [
        TRUSTED,
        ("TOLLGATE_DATABASE", "postgres"),
        ("TOLLGATE_DATABASE_URL", db.url.as_str()),
    ];
    let backend = Backend::start().await;
    let a = Gateway::start(&env).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    a.create("/services", json!({"name": "s0", "url": url}))
        .await;
    a.create(
        "/services/s0/routes",
        json!({"name": "r0", "hosts": ["oauth2.test"]}),
    )
    .await;
    a.create("/routes/r0/plugins", plugin(json!({}))).await;
    a.create("/consumers", json!({"username": "bob"})).await;
    a.create(
        "/consumers/bob/oauth2",
        json!({"name": "app", "client_id": "clientid123", "client_secret": "secret123",
            "redirect_uris": [REDIRECT]}),
    )
    .await;
    a.settled().await;
    let b = Gateway::start(&env).await;
    b.settled().await;
    let t = provision_token(&a, "oauth2.test").await;
    let auth = format!("bearer {}", t["access_token"].as_str().unwrap());
    let header = [("authorization", auth.as_str())];
    let status_on = |gw: &Gateway| {
        let url = gw.proxy_url("/request");
        let headers = [("host", "oauth2.test"), header[0]];
        async move { send("GET", &url, &headers, None).await.status }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status_on(&b).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "node b never saw the token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let access = t["access_token"].as_str().unwrap();
    let r = send(
        "DELETE",
        &b.admin_url(&format!("/oauth2_tokens/{access}")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status_on(&a).await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "node a never saw the revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_on(&b).await, 401);
    drop((a, b));
    db.drop_now().await;
}
