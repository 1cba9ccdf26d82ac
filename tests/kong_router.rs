//! Kong's router behaviour through the real proxy, ported from Kong's
//! `spec/02-integration/05-proxy/02-router_spec.lua` (Kong/kong@22246ef; line numbers cite
//! that file) and its path table `spec/fixtures/router_path_handling_tests.lua`.
mod common;

use common::*;
use serde_json::json;

/// One expanded row of Kong's path-handling table (`tests/data/kong/router_path_handling_tests.tsv`).
struct PathCase {
    line: u32,
    service: String,
    route_path: Option<String>,
    strip: bool,
    handling: String,
    request: String,
    expected: String,
}

/// The table expanded as Kong's `line:expand()` does: a cell listing `false,true` or `v0,v1`
/// gives one case per value.
fn path_cases() -> Vec<PathCase> {
    let text = include_str!("data/kong/router_path_handling_tests.tsv");
    let mut out = Vec::new();
    for row in text.lines().filter(|l| !l.starts_with('#')) {
        let c: Vec<&str> = row.split('\t').collect();
        for strip in c[3].split(',') {
            for handling in c[4].split(',') {
                out.push(PathCase {
                    line: c[0].parse().unwrap(),
                    service: c[1].into(),
                    route_path: (c[2] != "-").then(|| c[2].into()),
                    strip: strip == "true",
                    handling: handling.into(),
                    request: c[5].into(),
                    expected: c[6].into(),
                });
            }
        }
    }
    out
}

/// Creates one service and route per case, each route on its own host (as Kong's spec does),
/// with the route's path as given or turned into a regex by `regex`.
async fn route_each_case(
    gw: &Gateway,
    backend: &Backend,
    cases: &[PathCase],
    kind: &str,
    regex: fn(&str) -> String,
) {
    for (i, case) in cases.iter().enumerate() {
        let name = format!("{kind}-{i}");
        let url = format!("http://127.0.0.1:{}{}", backend.port, case.service);
        gw.create("/services", json!({"name": name, "url": url}))
            .await;
        let mut route = json!({
            "hosts": [format!("{name}.test")],
            "strip_path": case.strip,
            "path_handling": case.handling,
        });
        if let Some(p) = &case.route_path {
            route["paths"] = json!([regex(p)]);
        }
        gw.create(&format!("/services/{name}/routes"), route).await;
    }
    gw.settled().await;
}

/// Sends each case's request to its route and collects every row whose upstream path differs.
async fn wrong_rows(gw: &Gateway, cases: &[PathCase], kind: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let host = format!("{kind}-{i}.test");
        let r = send(
            "GET",
            &gw.proxy_url(&case.request),
            &[("host", &host)],
            None,
        )
        .await;
        if r.status != 200 || r.json["path"] != case.expected.as_str() {
            wrong.push(format!(
                "line {} ({} {:?} strip={} {} {}): want {}, got {} {}",
                case.line,
                case.service,
                case.route_path,
                case.strip,
                case.handling,
                case.request,
                case.expected,
                r.status,
                r.json["path"]
            ));
        }
    }
    wrong
}

/// 02-router_spec.lua:2305-2369 "slash handling (plain)": every row of the table, v0 and v1,
/// through the proxy, the upstream path read from what the backend received.
#[tokio::test(flavor = "multi_thread")]
async fn kong_path_handling_table_plain_paths() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let cases = path_cases();
    assert_eq!(cases.len(), 212, "Kong's table expands to 212 cases");
    route_each_case(&gw, &backend, &cases, "plain", str::to_string).await;
    let wrong = wrong_rows(&gw, &cases, "plain").await;
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// 02-router_spec.lua:2371-2429 "slash handling (regex)": the rows with a route path, the path
/// made a regex (`~/[0]?route`) that matches the same prefix.
#[tokio::test(flavor = "multi_thread")]
async fn kong_path_handling_table_regex_paths() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let cases: Vec<PathCase> = path_cases()
        .into_iter()
        .filter(|c| c.route_path.is_some())
        .collect();
    let regex = |p: &str| format!("~/[0]?{}", &p[1..]);
    route_each_case(&gw, &backend, &cases, "regex", regex).await;
    let wrong = wrong_rows(&gw, &cases, "regex").await;
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Creates a service named `name` on `backend` with path `/name` and a route on it; requests
/// then tell by the upstream path which route took them.
async fn routed(gw: &Gateway, backend: &Backend, name: &str, route: serde_json::Value) {
    let url = format!("http://127.0.0.1:{}/{name}", backend.port);
    gw.create("/services", json!({"name": name, "url": url}))
        .await;
    gw.create(&format!("/services/{name}/routes"), route).await;
}

async fn upstream_path(gw: &Gateway, path: &str, host: &str) -> String {
    let r = send("GET", &gw.proxy_url(path), &[("host", host)], None).await;
    format!(
        "{} {}",
        r.status,
        r.json["path"].as_str().unwrap_or_default()
    )
}

/// kong/router/transform.lua:536,661 (PLAIN_HOST_ONLY_BIT): a route with only plain hosts
/// outranks one with only `paths: ["/"]`, both one attribute kind; a wildcard host does not
/// get that bit. 02-router_spec.lua:2265-2303 "[paths] + [hosts]": the longer path wins
/// between two routes on the same host.
#[tokio::test(flavor = "multi_thread")]
async fn plain_hosts_outrank_a_catch_all_path_and_longer_paths_win_on_one_host() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    routed(
        &gw,
        &backend,
        "root",
        json!({"paths": ["/"], "strip_path": false}),
    )
    .await;
    routed(&gw, &backend, "host", json!({"hosts": ["api.test"]})).await;
    routed(&gw, &backend, "wild", json!({"hosts": ["*.wild.test"]})).await;
    let short = json!({"hosts": ["route.com"], "paths": ["/root/fixture", "/root/fixture/non-matching-but-longer"]});
    routed(&gw, &backend, "short", short).await;
    let long = json!({"hosts": ["route.com"], "paths": ["/root/fixture/get"]});
    routed(&gw, &backend, "long", long).await;
    gw.settled().await;
    assert_eq!(upstream_path(&gw, "/x", "api.test").await, "200 /host/x");
    assert_eq!(upstream_path(&gw, "/x", "other.test").await, "200 /root/x");
    // A wildcard-host route and the catch-all: neither has the plain-host bit, and the
    // catch-all's path length (the lowest bits of Kong's priority) decides.
    assert_eq!(upstream_path(&gw, "/x", "a.wild.test").await, "200 /root/x");
    let got = upstream_path(&gw, "/root/fixture/get", "route.com").await;
    assert_eq!(got, "200 /long");
}

/// 02-router_spec.lua:1138-1247 "preserve_host": the request's Host goes upstream as sent,
/// with its port, when preserve_host is set; a hosts list holding `h` and `h:123` matches `h`
/// on any port and `h:123`; without preserve_host the upstream gets the service's host:port.
#[tokio::test(flavor = "multi_thread")]
async fn preserve_host_forwards_the_host_as_sent() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let preserved = json!({"preserve_host": true, "hosts": ["preserved.com", "preserved.com:123"]});
    routed(&gw, &backend, "preserved", preserved).await;
    routed(
        &gw,
        &backend,
        "discarded",
        json!({"hosts": ["discarded.com"]}),
    )
    .await;
    gw.settled().await;
    let host_seen = |host: &'static str| {
        let url = gw.proxy_url("/get");
        async move {
            let r = send("GET", &url, &[("host", host)], None).await;
            assert_eq!(r.status, 200, "{host}: {}", r.body);
            r.json["headers"]["host"].as_str().unwrap().to_string()
        }
    };
    // 02-router_spec.lua:1171,1184: the upstream's own host and its non-default port.
    let upstream = format!("127.0.0.1:{}", backend.port);
    assert_eq!(host_seen("discarded.com").await, upstream);
    // 02-router_spec.lua:1199,1211,1223.
    assert_eq!(host_seen("preserved.com").await, "preserved.com");
    assert_eq!(host_seen("preserved.com:80").await, "preserved.com:80");
    assert_eq!(host_seen("preserved.com:123").await, "preserved.com:123");
}

/// 02-router_spec.lua:940-1075 "URI normalization": routes match the normalized path (runs of
/// slashes merged, escapes of unreserved characters decoded) and it goes upstream, while
/// `X-Forwarded-Path` carries the path as sent; other escapes stay. Kong also resolves dot
/// segments (`/foo/a/../bar`); Tollgate refuses them with 400 (README, "Differences from Kong").
#[tokio::test(flavor = "multi_thread")]
async fn routes_match_the_normalized_path() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    routed(&gw, &backend, "foobar", json!({"paths": ["/foo/bar"]})).await;
    routed(&gw, &backend, "hello", json!({"paths": ["/hello"]})).await;
    let keep = json!({"paths": ["/anything/world"], "strip_path": false});
    routed(&gw, &backend, "world", keep).await;
    gw.settled().await;
    let get = |path: &'static str| {
        let url = gw.proxy_url(path);
        async move { send("GET", &url, &[], None).await }
    };
    let r = get("/foo//bar").await;
    assert_eq!((r.status, r.json["path"].clone()), (200, json!("/foobar")));
    assert_eq!(r.json["headers"]["x-forwarded-path"], "/foo//bar");
    let r = get("/h%65llo").await;
    assert_eq!((r.status, r.json["path"].clone()), (200, json!("/hello")));
    assert_eq!(r.json["headers"]["x-forwarded-path"], "/h%65llo");
    let r = get("/h%65llo/anything/b").await;
    assert_eq!(r.json["path"], "/hello/anything/b");
    let r = get("/anything/wor%6cd/b").await;
    assert_eq!(r.json["path"], "/world/anything/world/b");
    let r = get("/anything/world/cat%20and%20dog").await;
    assert_eq!(r.json["path"], "/world/anything/world/cat%20and%20dog");
    assert_eq!(get("/foo/a/../bar").await.status, 400);
}

/// 02-router_spec.lua:1610-1772 "[headers]": header values match case-insensitively, header
/// names too, and among routes that match the one with more headers wins.
#[tokio::test(flavor = "multi_thread")]
async fn routes_match_headers_and_more_headers_win() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    routed(
        &gw,
        &backend,
        "r1",
        json!({"headers": {"Version": ["v1", "v2"]}}),
    )
    .await;
    let two = json!({"headers": {"version": ["v3"], "location": ["us-east"]}});
    routed(&gw, &backend, "r2", two).await;
    routed(&gw, &backend, "r3", json!({"headers": {"version": ["V3"]}})).await;
    gw.settled().await;
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let url = gw.proxy_url("/");
        async move { send("GET", &url, headers, None).await.json["path"].clone() }
    };
    assert_eq!(get(&[("version", "v1")]).await, "/r1");
    assert_eq!(get(&[("Version", "v3")]).await, "/r3");
    assert_eq!(
        get(&[("version", "v3"), ("location", "us-east")]).await,
        "/r2"
    );
}

/// 02-router_spec.lua:800-862 "URI regexes order of evaluation with regex_priority": of two
/// regex routes matching, the higher `regex_priority` wins even when created later; named
/// groups in Kong's `(?P<name>...)` syntax work.
#[tokio::test(flavor = "multi_thread")]
async fn regex_priority_orders_regex_routes() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[]).await;
    let first = json!({"paths": ["~/status/(?P<foo>re)"], "regex_priority": 0});
    routed(&gw, &backend, "regex1", first).await;
    let second = json!({"paths": ["~/status/(re)"], "regex_priority": 4});
    routed(&gw, &backend, "regex2", second).await;
    gw.settled().await;
    assert_eq!(
        upstream_path(&gw, "/status/re", "x.test").await,
        "200 /regex2"
    );
}
