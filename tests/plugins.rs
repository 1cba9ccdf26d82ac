//! Plugin phases end to end, through the real proxy: response-transformer in the header and
//! body filter phases, file-log in the log phase, request-termination in access.
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_transformer_changes_headers_and_json_bodies() {
    let (gw, _backend) = echo_gateway().await;
    gw.create("/services/echo/plugins", json!({"name": "response-transformer", "config": {
        "remove": {"json": ["peer", "headers"]},
        "rename": {"headers": ["content-type:x-original-type"]},
        "add": {"headers": ["x-transformed:yes", "content-type:application/json"], "json": ["gateway:tollgate", "version:2"], "json_types": ["string", "number"]},
    }}))
    .await;
    gw.settled().await;
    let r = send("GET", &gw.proxy_url("/echo/pets?x=1"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-transformed"), Some("yes"));
    assert_eq!(r.header("x-original-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.json["gateway"], "tollgate");
    assert_eq!(r.json["version"], 2);
    assert_eq!(
        r.json["path"], "/pets",
        "the rest of the body is the upstream's"
    );
    assert!(
        r.json.get("peer").is_none() && r.json.get("headers").is_none(),
        "{}",
        r.body
    );

    // A body that is not JSON passes untouched; the headers still change.
    gw.create("/plugins", json!({"name": "request-termination", "route": {"id": "echo"}, "config": {"status_code": 418, "message": "teapot", "trigger": "x-teapot"}})).await;
    gw.settled().await;
    let passed = send("GET", &gw.proxy_url("/echo/a"), &[], None).await;
    assert_eq!(passed.status, 200, "the trigger was not sent");
    let stopped = send("GET", &gw.proxy_url("/echo/a"), &[("x-teapot", "1")], None).await;
    assert_eq!(
        (stopped.status, stopped.json["message"].as_str()),
        (418, Some("teapot"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_log_appends_one_json_line_per_request() {
    let (gw, _backend) = echo_gateway().await;
    let file = gw.data_dir.join("requests.log");
    gw.create(
        "/plugins",
        json!({"name": "file-log", "config": {"path": file}}),
    )
    .await;
    gw.create("/services/echo/plugins", json!({"name": "key-auth"}))
        .await;
    gw.create("/consumers", json!({"username": "reader"})).await;
    gw.create(
        "/consumers/reader/key-auth",
        json!({"key": "reader-key-123"}),
    )
    .await;
    gw.settled().await;
    assert_eq!(
        send(
            "GET",
            &gw.proxy_url("/echo/one"),
            &[("apikey", "reader-key-123")],
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send("GET", &gw.proxy_url("/echo/two"), &[], None)
            .await
            .status,
        401
    );
    let bad = json!({"name": "file-log", "config": {"path": "relative.log"}});
    let r = send("POST", &gw.admin_url("/plugins"), &[], json_body(bad)).await;
    assert_eq!(r.status, 400, "{}", r.body);

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["request"]["uri"], "/echo/one");
    assert_eq!(lines[0]["response"]["status"], 200);
    assert_eq!(lines[0]["consumer"]["username"], "reader");
    assert_eq!(lines[0]["service"]["name"], "echo");
    assert!(lines[0]["latencies"]["request"].is_u64());
    assert_eq!(lines[1]["response"]["status"], 401);
    assert!(lines[1].get("consumer").is_none());
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("reader-key-123"),
        "no key in the log"
    );
}

/// request-transformer through the proxy: a regex route's captures rendered into the upstream
/// path and query (Kong's 02-access_spec.lua:2064 and :2086), the method changed, a JSON body
/// and headers edited, and the `Host` replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_transformer_rewrites_path_method_headers_query_and_body() {
    let (gw, _backend) = echo_gateway().await;
    let route = json!({"name": "users", "paths": [r"~/requests/user1/(?P<user1>\w+)/user2/(?P<user2>\S+)"]});
    gw.create("/services/echo/routes", route).await;
    gw.create("/routes/users/plugins", json!({"name": "request-transformer", "config": {
        "http_method": "PUT",
        "remove": {"headers": ["x-secret"], "body": ["password"]},
        "replace": {"uri": "/v2/$(uri_captures.user2)/$(uri_captures[1])", "headers": ["host:users.internal"]},
        "add": {"headers": ["x-user:$(uri_captures.user1)"], "querystring": ["from:$(query_params.q or 'none')"],
            "body": ["source:gateway"]},
    }}))
    .await;
    gw.settled().await;
    let body = json_body(json!({"name": "ann", "password": "hunter2"}));
    let r = send(
        "POST",
        &gw.proxy_url("/requests/user1/foo/user2/bar?q=20"),
        &[("x-secret", "s")],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["method"], "PUT");
    assert_eq!(r.json["path"], "/v2/bar/foo");
    assert_eq!(r.json["query"], "q=20&from=20");
    assert_eq!(r.json["headers"]["x-user"], "foo");
    assert_eq!(r.json["headers"]["host"], "users.internal");
    assert!(r.json["headers"].get("x-secret").is_none());
    let sent: serde_json::Value = serde_json::from_str(r.json["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"name": "ann", "source": "gateway"}));
    assert_eq!(
        r.json["headers"]["content-length"],
        r.json["body"].as_str().unwrap().len().to_string()
    );
    // Without the optional query parameter the fallback is rendered.
    let r = send("GET", &gw.proxy_url("/requests/user1/a/user2/b"), &[], None).await;
    assert_eq!(
        (r.json["path"].as_str(), r.json["query"].as_str()),
        (Some("/v2/b/a"), Some("from=none"))
    );
    // A value the schema refuses is a 400 naming the field; nothing is stored.
    let refused = send(
        "POST",
        &gw.admin_url("/plugins"),
        &[],
        json_body(json!({"name": "request-transformer",
        "config": {"add": {"querystring": ["x:$(10 * uri_captures.user1)"]}}})),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.json["fields"]["config"]["add"]["querystring"][0].is_string(),
        "{}",
        refused.body
    );
}

/// correlation-id through the proxy (spec/03-plugins/11-correlation-id/01-access_spec.lua:330,
/// :393, and :439 for a reply another plugin wrote): the id the upstream gets is echoed to the
/// client, one the client sent is kept, and a tracker id names the address the request came in
/// on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_id_reaches_the_upstream_and_the_client() {
    let (gw, _backend) = echo_gateway().await;
    gw.create(
        "/services/echo/plugins",
        json!({"name": "correlation-id",
        "config": {"echo_downstream": true}}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"name": "tracked", "paths": ["/tracked"], "service": {"name": "echo"}}),
    )
    .await;
    gw.create(
        "/routes/tracked/plugins",
        json!({"name": "correlation-id",
        "config": {"generator": "tracker", "header_name": "X-Trace"}}),
    )
    .await;
    gw.create(
        "/routes/echo/plugins",
        json!({"name": "request-termination",
        "config": {"status_code": 418, "trigger": "x-teapot"}}),
    )
    .await;
    gw.settled().await;
    let r = send("GET", &gw.proxy_url("/echo/a"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.header("kong-request-id").unwrap().to_string();
    assert_eq!(r.json["headers"]["kong-request-id"], id.as_str());
    assert!(id.contains('#'), "uuid#counter: {id}");
    let kept = send(
        "GET",
        &gw.proxy_url("/echo/a"),
        &[("kong-request-id", "foobar")],
        None,
    )
    .await;
    assert_eq!(
        (
            kept.header("kong-request-id"),
            kept.json["headers"]["kong-request-id"].as_str()
        ),
        (Some("foobar"), Some("foobar"))
    );
    let stopped = send("GET", &gw.proxy_url("/echo/a"), &[("x-teapot", "1")], None).await;
    assert_eq!(stopped.status, 418);
    assert!(stopped
        .header("kong-request-id")
        .is_some_and(|v| v.contains('#')));
    let tracked = send("GET", &gw.proxy_url("/tracked"), &[], None).await;
    let trace = tracked.json["headers"]["x-trace"].as_str().unwrap();
    assert!(
        trace.starts_with(&format!("127.0.0.1-{}-", gw.proxy)),
        "{trace}"
    );
    assert!(
        tracked.header("x-trace").is_none(),
        "not echoed unless asked"
    );
}
