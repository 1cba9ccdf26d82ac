use super::*;
use crate::model::{normalize, Kind, Source};
use serde_json::{json, Value};

fn routes(specs: &[Value]) -> Vec<Route> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = normalize(
                Kind::Route,
                s.as_object().unwrap().clone(),
                None,
                Source::Typed,
                i as i64,
            )
            .unwrap_or_else(|e| panic!("{}", e.message()));
            serde_json::from_value(n.record.body).unwrap()
        })
        .collect()
}

fn find(
    router: &Router,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(usize, usize)> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (h, port) = strip_port(host);
    router
        .find(&RequestInfo {
            method,
            host: h,
            port: port.unwrap_or(80),
            path,
            headers: &map,
            tls: false,
            sni: None,
        })
        .map(|m| (m.route, m.matched_len))
}

#[test]
fn longest_prefix_wins_like_the_seed_routes() {
    let r = Router::new(&routes(&[
        json!({"paths": ["/api/"]}),
        json!({"paths": ["/api/get/"]}),
        json!({"paths": ["/api/post/"]}),
    ]))
    .unwrap();
    assert_eq!(find(&r, "GET", "x", "/api/get/context", &[]), Some((1, 9)));
    assert_eq!(
        find(&r, "POST", "x", "/api/post/context", &[]),
        Some((2, 10))
    );
    assert_eq!(find(&r, "GET", "x", "/api/other", &[]), Some((0, 5)));
    assert_eq!(find(&r, "GET", "x", "/apx", &[]), None);
}

#[test]
fn prefixes_are_not_segment_bound() {
    let r = Router::new(&routes(&[json!({"paths": ["/api"]})])).unwrap();
    assert_eq!(find(&r, "GET", "x", "/apiary", &[]), Some((0, 4)));
}

#[test]
fn more_attributes_beat_a_longer_prefix() {
    let r = Router::new(&routes(&[
        json!({"paths": ["/api/get/"]}),
        json!({"paths": ["/api/"], "methods": ["GET"]}),
    ]))
    .unwrap();
    assert_eq!(find(&r, "GET", "x", "/api/get/1", &[]).unwrap().0, 1);
    assert_eq!(find(&r, "POST", "x", "/api/get/1", &[]).unwrap().0, 0);
}

#[test]
fn hosts_exact_beat_wildcards_and_ports_must_match() {
    let r = Router::new(&routes(&[
        json!({"hosts": ["*.example.com"], "paths": ["/"]}),
        json!({"hosts": ["api.example.com"], "paths": ["/"]}),
        json!({"hosts": ["example.*"]}),
        json!({"hosts": ["ported.test:8000"]}),
    ]))
    .unwrap();
    assert_eq!(find(&r, "GET", "api.example.com", "/a", &[]).unwrap().0, 1);
    assert_eq!(find(&r, "GET", "web.example.com", "/a", &[]).unwrap().0, 0);
    // `*.example.com` needs a label before the suffix; `example.*` takes it instead.
    assert_eq!(find(&r, "GET", "example.com", "/a", &[]).unwrap().0, 2);
    assert_eq!(find(&r, "GET", "example.org", "/a", &[]).unwrap().0, 2);
    assert_eq!(find(&r, "GET", "ported.test:8000", "/", &[]).unwrap().0, 3);
    assert_eq!(find(&r, "GET", "ported.test:9000", "/", &[]), None);
}

#[test]
fn headers_count_and_match_case_insensitively_or_by_regex() {
    let r = Router::new(&routes(&[
        json!({"paths": ["/"]}),
        json!({"paths": ["/"], "headers": {"x-version": ["V2"]}}),
        json!({"paths": ["/"], "headers": {"x-version": ["~*v3\\..*"], "x-tier": ["gold"]}}),
    ]))
    .unwrap();
    assert_eq!(
        find(&r, "GET", "x", "/a", &[("x-version", "v2")])
            .unwrap()
            .0,
        1
    );
    assert_eq!(
        find(
            &r,
            "GET",
            "x",
            "/a",
            &[("x-version", "V3.1"), ("x-tier", "GOLD")]
        )
        .unwrap()
        .0,
        2
    );
    assert_eq!(
        find(&r, "GET", "x", "/a", &[("x-version", "v3.1")])
            .unwrap()
            .0,
        0
    );
}

#[test]
fn regex_paths_beat_prefixes_and_order_by_priority() {
    let r = Router::new(&routes(&[
        json!({"paths": ["/users/"]}),
        json!({"paths": ["~/users/\\d+$"]}),
        json!({"paths": ["~/users/1"], "regex_priority": 5}),
    ]))
    .unwrap();
    assert_eq!(find(&r, "GET", "x", "/users/42", &[]), Some((1, 9)));
    assert_eq!(find(&r, "GET", "x", "/users/1", &[]), Some((2, 8)));
    assert_eq!(find(&r, "GET", "x", "/users/abc", &[]), Some((0, 7)));
    // Anchored at the start: a regex does not match in the middle of the path.
    assert_eq!(find(&r, "GET", "x", "/v1/users/42", &[]), None);
}

#[test]
fn older_route_wins_a_tie() {
    let r = Router::new(&routes(&[
        json!({"paths": ["/a"]}),
        json!({"paths": ["/a"]}),
    ]))
    .unwrap();
    assert_eq!(find(&r, "GET", "x", "/a", &[]).unwrap().0, 0);
}

#[test]
fn ten_thousand_routes_still_find_the_right_one() {
    let specs: Vec<Value> = (0..10_000)
        .map(|i| json!({"paths": [format!("/svc{i}/")], "methods": ["GET"]}))
        .collect();
    let r = Router::new(&routes(&specs)).unwrap();
    assert_eq!(
        find(&r, "GET", "x", "/svc9876/items/1", &[]),
        Some((9876, 9))
    );
    assert_eq!(find(&r, "GET", "x", "/svc98765/items", &[]), None);
}
