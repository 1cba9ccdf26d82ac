//! Kong's proxy-cache schema spec (spec/03-plugins/31-proxy-cache/01-schema_spec.lua), and
//! its request and response rules on single requests.
use super::*;
use crate::plugins::checked_config;
use serde_json::json;

fn errors(config: Value) -> Value {
    checked_config("proxy-cache", config).unwrap_err()
}

#[test]
fn schema_accepts_kongs_configs_and_fills_defaults() {
    // 01-schema_spec.lua:5 minimal config, :15 default content types.
    let c = checked_config("proxy-cache", json!({"strategy": "memory"})).unwrap();
    assert_eq!(c["content_type"], json!(["text/plain", "application/json"]));
    assert_eq!(c["response_code"], json!([200, 301, 404]));
    assert_eq!(c["request_method"], json!(["GET", "HEAD"]));
    assert_eq!(c["memory"]["dictionary_name"], "kong_db_cache");
    assert_eq!(c["response_headers"]["X-Cache-Key"], true);
    // :23 custom values, :34 numbers, :111 vary_query_params, :121 vary_headers,
    // :131 wildcard content types, :150 a content type with a parameter.
    for config in [
        json!({"strategy": "memory", "response_code": [200, 301], "request_method": ["GET"],
            "content_type": ["application/json"]}),
        json!({"strategy": "memory", "response_code": [123, 200]}),
        json!({"strategy": "memory", "vary_query_params": ["foo"]}),
        json!({"strategy": "memory", "vary_headers": ["foo"]}),
        json!({"strategy": "memory", "content_type": ["application/*", "*/text"]}),
        json!({"strategy": "memory", "content_type": ["*/*"]}),
        json!({"strategy": "memory", "content_type": ["application/json; charset=UTF-8"]}),
        json!({"strategy": "memory", "response_headers": {"age": false}}),
    ] {
        assert!(
            checked_config("proxy-cache", config.clone()).is_ok(),
            "{config}"
        );
    }
    let partial = json!({"strategy": "memory", "response_headers": {"age": false}});
    let c = checked_config("proxy-cache", partial).unwrap();
    assert_eq!(c["response_headers"]["X-Cache-Status"], true);
}

#[test]
fn schema_refuses_what_kong_refuses_in_its_words() {
    // 01-schema_spec.lua:45 out of range, :55 empty, :65 a string, :75 non-integers,
    // :85 a fraction, :95 a negative ttl.
    let e = errors(json!({"strategy": "memory", "response_code": [99]}));
    assert_eq!(
        e["response_code"],
        json!(["value should be between 100 and 900"])
    );
    let e = errors(json!({"strategy": "memory", "response_code": []}));
    assert_eq!(e["response_code"], "length must be at least 1");
    let e = errors(json!({"strategy": "memory", "response_code": ""}));
    assert_eq!(e["response_code"], "expected an array");
    let e = errors(json!({"strategy": "memory", "response_code": [true, "alo", 123]}));
    assert_eq!(
        e["response_code"],
        json!(["expected an integer", "expected an integer"])
    );
    let e = errors(json!({"strategy": "memory", "response_code": [123.5]}));
    assert_eq!(e["response_code"], json!(["expected an integer"]));
    let e = errors(json!({"strategy": "memory", "cache_ttl": -1}));
    assert_eq!(e["cache_ttl"], "value must be greater than 0");
    let e = errors(json!({"strategy": "memory", "cache_ttl": 1.5}));
    assert_eq!(e["cache_ttl"], "expected an integer");
    // schema.lua: strategy is required and one of the known ones; methods are Kong's five.
    assert_eq!(errors(json!({}))["strategy"], "required field missing");
    let e = errors(json!({"strategy": "disk"}));
    assert_eq!(e["strategy"], "expected one of: memory, redis");
    let e = errors(json!({"strategy": "memory", "request_method": ["GET", "DELETE"]}));
    assert_eq!(
        e["request_method"],
        json!([null, "expected one of: HEAD, GET, POST, PATCH, PUT"])
    );
    let e = errors(json!({"strategy": "memory", "memory": {"size": 1}}));
    assert_eq!(e["memory"]["size"], "unknown field");
    let e = errors(json!({"strategy": "memory", "nope": 1}));
    assert_eq!(e["nope"], "unknown field");
}

fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut b = http::Response::builder().status(status);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn instance(config: Value) -> Settings {
    let mut c = config.as_object().cloned().unwrap();
    c.insert("strategy".into(), json!("memory"));
    let c = checked_config("proxy-cache", Value::Object(c)).unwrap();
    settings(&c, &Arc::new(super::super::Shared::default())).unwrap()
}

#[test]
fn a_response_is_cacheable_by_status_type_and_cache_control() {
    let now = 1_800_000_000;
    let s = instance(json!({}));
    let json_ok = response(200, &[("content-type", "application/json")]);
    assert_eq!(s.cacheable_response(&json_ok, now), Some(300));
    // 02-access_spec.lua:1121 status, :1132 content type, :1289 an invalid content type.
    let teapot = response(418, &[("content-type", "application/json")]);
    assert_eq!(s.cacheable_response(&teapot, now), None);
    let xml = response(200, &[("content-type", "application/xml")]);
    assert_eq!(s.cacheable_response(&xml, now), None);
    let invalid = response(200, &[("content-type", "application/json;;")]);
    assert_eq!(s.cacheable_response(&invalid, now), None);
    let untyped = response(200, &[]);
    assert_eq!(s.cacheable_response(&untyped, now), None);
    // :1274 a parameter that does not match.
    let s = instance(json!({"content_type": ["application/json; charset=UTF-8"]}));
    assert_eq!(s.cacheable_response(&json_ok, now), None);
    let utf8 = response(200, &[("content-type", "application/json; charset=UTF-8")]);
    assert_eq!(s.cacheable_response(&utf8, now), Some(300));
    // With cache_control the response's own directives decide (:589, :668, :681).
    let s = instance(json!({"cache_control": true}));
    let with = |cc: &str| {
        response(
            200,
            &[("content-type", "text/plain"), ("cache-control", cc)],
        )
    };
    assert_eq!(s.cacheable_response(&with("max-age=5"), now), Some(5));
    assert_eq!(
        s.cacheable_response(&with("public, s-maxage=9"), now),
        Some(9)
    );
    for refused in [
        "private, max-age=5",
        "no-store",
        "no-cache, max-age=5",
        "max-age=0",
    ] {
        assert_eq!(s.cacheable_response(&with(refused), now), None, "{refused}");
    }
    let plain = response(200, &[("content-type", "text/plain")]);
    assert_eq!(s.cacheable_response(&plain, now), None);
}

#[test]
fn a_stored_response_is_stale_by_cache_ttl_or_the_clients_directives() {
    let res = Cached {
        status: http::StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        timestamp: 1000,
        ttl: 10,
    };
    let none = Directives::default();
    let s = instance(json!({"cache_ttl": 5}));
    assert!(!s.stale(&res, &none, 1005));
    assert!(s.stale(&res, &none, 1006));
    // 02-access_spec.lua:705-815: min-fresh, max-age, max-stale with cache_control.
    let s = instance(json!({"cache_control": true}));
    let cc = |min_fresh, max_age, max_stale| Directives {
        min_fresh,
        max_age,
        max_stale,
        ..Directives::default()
    };
    assert!(!s.stale(&res, &none, 1004));
    assert!(s.stale(&res, &cc(Some(7), None, None), 1004));
    assert!(!s.stale(&res, &cc(Some(6), None, None), 1004));
    assert!(s.stale(&res, &cc(None, Some(3), None), 1004));
    assert!(s.stale(&res, &cc(None, None, Some(Some(1))), 1012));
    assert!(!s.stale(&res, &cc(None, None, Some(Some(2))), 1012));
    assert!(!s.stale(&res, &cc(None, None, Some(None)), 1100));
}

#[test]
fn stored_headers_leave_out_hop_by_hop_lengths_limits_and_the_caches_own() {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("content-type", "text/plain"),
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("content-length", "5"),
        ("x-ratelimit-remaining-minute", "4"),
        ("ratelimit-remaining", "4"),
        ("x-cache-status", "Miss"),
        ("set-cookie", "a=1"),
    ] {
        h.append(n, HeaderValue::from_static(v));
    }
    let kept = stored_headers(&h);
    let names: Vec<&str> = kept.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-type", "set-cookie"]);
}
