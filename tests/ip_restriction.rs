//! ip-restriction through the proxy, ported from Kong's
//! `spec/03-plugins/17-ip-restriction/02-access_spec.lua` (Kong/kong@22246ef; line numbers
//! cite that file). As in Kong's spec, the gateway trusts every proxy (`trusted_ips
//! 0.0.0.0/0, ::/0`, `real_ip_header X-Forwarded-For`, recursive), so `X-Forwarded-For` sets
//! the client's address and the IPv6 cases run over IPv4 connections. The schema cases are unit
//! tests in gateway/src/plugins/ip_restriction.rs. Left out: the gRPC and TCP (stream) cases.
mod common;

use common::*;
use serde_json::{json, Value};

/// The spec's routes (`ip-restriction<n>.test`) and each one's plugin config.
fn routes() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ip-restriction1.test",
            json!({"deny": ["127.0.0.1", "127.0.0.2"]}),
        ),
        ("ip-restriction2.test", json!({"deny": ["127.0.0.2"]})),
        ("ip-restriction3.test", json!({"allow": ["127.0.0.2"]})),
        ("ip-restriction4.test", json!({"allow": ["127.0.0.1"]})),
        ("ip-restriction5.test", json!({"deny": ["127.0.0.0/24"]})),
        ("ip-restriction6.test", json!({"allow": ["127.0.0.4"]})),
        ("ip-restriction7.test", json!({"deny": ["127.0.0.4"]})),
        ("ip-restriction8.test", json!({"allow": ["0.0.0.0/0"]})),
        (
            "ip-restriction9.test",
            json!({"allow": ["127.0.0.1"], "deny": ["127.0.0.1"]}),
        ),
        (
            "ip-restriction10.test",
            json!({"allow": ["127.0.0.0/24"], "deny": ["127.0.0.1"]}),
        ),
        (
            "ip-restriction11.test",
            json!({"allow": ["127.0.0.0/24"], "deny": ["127.0.0.0/24"]}),
        ),
        (
            "ip-restriction12.test",
            json!({"deny": ["127.0.0.0/24"], "status": 401, "message": "Forbidden"}),
        ),
        // :998 and :1006, the IPv6 file's routes.
        ("ipv6-deny.test", json!({"deny": ["::4"]})),
        ("ipv6-allow.test", json!({"allow": ["::4"]})),
    ]
}

async fn gateway(backend: &Backend) -> Gateway {
    let gw = Gateway::start(&[
        ("TOLLGATE_TRUSTED_IPS", "0.0.0.0/0, ::/0"),
        ("TOLLGATE_REAL_IP_HEADER", "X-Forwarded-For"),
    ])
    .await;
    let routes: Vec<(&str, Vec<(&str, Value)>)> = routes()
        .into_iter()
        .map(|(host, config)| (host, vec![("ip-restriction", config)]))
        .collect();
    routes_by_host(&gw, backend, &routes).await;
    gw.settled().await;
    gw
}

async fn call(gw: &Gateway, host: &str, forwarded_for: Option<&str>) -> Resp {
    let mut headers = vec![("host", host)];
    if let Some(f) = forwarded_for {
        headers.push(("x-forwarded-for", f));
    }
    send("GET", &gw.proxy_url("/status/200"), &headers, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_are_refused_or_let_through_by_address_as_kong_does() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;

    // :299 denied, in Kong's words; :311 with the plugin's status and message.
    let r = call(&gw, "ip-restriction1.test", None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json["message"], "IP address not allowed: 127.0.0.1");
    let r = call(&gw, "ip-restriction12.test", None).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("Forbidden"))
    );

    for (line, host, forwarded_for, status) in [
        (353, "ip-restriction2.test", None, 200),
        (392, "ip-restriction5.test", None, 403),
        (403, "ip-restriction10.test", None, 403),
        (414, "ip-restriction9.test", None, 403),
        (425, "ip-restriction11.test", None, 403),
        (438, "ip-restriction7.test", None, 200),
        (450, "ip-restriction7.test", Some("127.0.0.3"), 200),
        (463, "ip-restriction7.test", Some("127.0.0.4"), 403),
        (479, "ip-restriction3.test", None, 403),
        (490, "ip-restriction4.test", None, 200),
        (502, "ip-restriction6.test", None, 403),
        (513, "ip-restriction6.test", Some("127.0.0.3"), 403),
        (536, "ip-restriction6.test", Some("127.0.0.4"), 200),
        // Every hop is trusted here: the leftmost is the client, as nginx's recursive real IP.
        (
            557,
            "ip-restriction6.test",
            Some("127.0.0.4, 127.0.0.3"),
            200,
        ),
        (630, "ip-restriction8.test", None, 200),
        (1032, "ipv6-deny.test", Some("::3"), 200),
        (1045, "ipv6-deny.test", Some("::4"), 403),
        (1057, "ipv6-deny.test", Some("::4, ::3"), 403),
        (1069, "ipv6-deny.test", Some("::3, ::4"), 200),
        (1085, "ipv6-allow.test", Some("::3"), 403),
        (1097, "ipv6-allow.test", Some("::4"), 200),
        (1110, "ipv6-allow.test", Some("::4, ::3"), 200),
        (1123, "ipv6-allow.test", Some("::3, ::4"), 403),
    ] {
        let r = call(&gw, host, forwarded_for).await;
        assert_eq!(r.status, status, "02-access_spec.lua:{line}: {}", r.body);
    }
}

/// :571-627 "supports config changes without restarting".
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_list_applies_without_a_restart() {
    let backend = Backend::start().await;
    let gw = gateway(&backend).await;
    assert_eq!(call(&gw, "ip-restriction2.test", None).await.status, 200);
    let plugins = send("GET", &gw.admin_url("/routes/r1/plugins"), &[], None).await;
    let id = plugins.json["data"][0]["id"].as_str().unwrap().to_string();
    for (deny, status) in [
        (json!(["127.0.0.1", "127.0.0.2"]), 403),
        (json!(["127.0.0.2", "127.0.0.3"]), 200),
    ] {
        let body = json!({"config": {"deny": deny}});
        let r = send(
            "PATCH",
            &gw.admin_url(&format!("/plugins/{id}")),
            &[],
            json_body(body),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        gw.settled().await;
        assert_eq!(call(&gw, "ip-restriction2.test", None).await.status, status);
    }
}

/// The admin API refuses what 01-schema_spec.lua refuses, in Kong's shape, and describes
/// the plugin at `/schemas/plugins/ip-restriction`.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_checks_and_describes_the_config() {
    let gw = Gateway::start(&[]).await;
    let plugin = json!({"name": "ip-restriction", "config": {"allow": ["127.0.0.1/32", "hello"]}});
    let r = send("POST", &gw.admin_url("/plugins"), &[], json_body(plugin)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json["fields"]["config"]["allow"],
        json!([null, "invalid ip or cidr range: 'hello'"])
    );
    let r = send(
        "GET",
        &gw.admin_url("/schemas/plugins/ip-restriction"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fields = r.json["fields"].to_string();
    for f in ["allow", "deny", "status", "message"] {
        assert!(fields.contains(&format!("\"{f}\"")), "{fields}");
    }
}
