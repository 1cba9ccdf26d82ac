//! Kong's request-transformer specs, translated: spec/03-plugins/36-request-transformer/
//! 01-schema_spec.lua and 02-access_spec.lua (cited by line), run on the handler with the
//! request as the proxy hands it over. Captures of regex routes are run end to end in
//! tests/plugins.rs.
use super::*;
use crate::plugins::{checked_config, RequestBody};
use serde_json::{json, Value};

fn handler(config: Value) -> Arc<dyn Handler> {
    let c = checked_config("request-transformer", config).unwrap();
    build(&c, &Default::default(), &Arc::new(Default::default())).unwrap()
}

/// What went upstream.
struct Sent {
    parts: http::request::Parts,
    /// The query string as it goes upstream.
    raw_query: Option<String>,
    body: String,
    path: Option<String>,
    host: Option<String>,
}

impl Sent {
    fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn headers(&self, name: &str) -> Vec<&str> {
        let all = self.parts.headers.get_all(name);
        all.iter().filter_map(|v| v.to_str().ok()).collect()
    }

    fn query(&self) -> Vec<(String, String)> {
        let q = self.raw_query.as_deref().unwrap_or("");
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    fn param(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn run(config: Value, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Sent {
    let h = handler(config);
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, _) = b.body(()).unwrap().into_parts();
    let mut ctx = Context::for_test(parts);
    *ctx.body = RequestBody::Buffered(Bytes::copy_from_slice(body.as_bytes()));
    assert!(matches!(h.access(&mut ctx).decided().await, Flow::Continue));
    let body = match &*ctx.body {
        RequestBody::Buffered(b) => String::from_utf8_lossy(b).into_owned(),
        RequestBody::Streaming(_) => unreachable!(),
    };
    Sent {
        raw_query: ctx.query().map(str::to_owned),
        parts: ctx.parts.clone(),
        body,
        path: ctx.upstream_path.clone(),
        host: ctx
            .upstream_host
            .as_ref()
            .map(|h| h.to_str().unwrap().into()),
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");
const MULTIPART: (&str, &str) = ("content-type", "multipart/form-data; boundary=B");

fn multipart(fields: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in fields {
        s.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    s + "--B--\r\n"
}

fn multipart_fields(body: &str) -> Vec<(String, String)> {
    let m =
        crate::plugins::multipart::Multipart::parse(MULTIPART.1, &Bytes::from(body.to_string()))
            .unwrap();
    ["p1", "p2", "p3", "p4", "a"]
        .iter()
        .filter_map(|k| {
            m.get(k)
                .map(|v| (k.to_string(), String::from_utf8_lossy(v).into()))
        })
        .collect()
}

// 01-schema_spec.lua:5, :10
#[test]
fn http_method_must_be_an_upper_case_token() {
    assert!(checked_config("request-transformer", json!({"http_method": "GET"})).is_ok());
    let err = checked_config("request-transformer", json!({"http_method": "HELLO!"})).unwrap_err();
    assert_eq!(err, json!({"http_method": "invalid value: HELLO!"}));
}

// 01-schema_spec.lua:16, :25, :35, :45
#[test]
fn values_need_a_value_and_a_well_formed_template() {
    let ok =
        json!({"add": {"querystring": ["uri_param1:$(uri_captures.user1)", "uri_param2:value"]}});
    assert!(checked_config("request-transformer", ok).is_ok());
    let missing = json!({"add": {"querystring": ["uri_param2:"]}});
    assert_eq!(
        checked_config("request-transformer", missing).unwrap_err(),
        json!({"add": {"querystring": ["key 'uri_param2' has no value"]}})
    );
    let malformed = json!({"add": {"querystring": ["a:1", "uri_param2:$(uri_captures user2)"]}});
    let err = checked_config("request-transformer", malformed).unwrap_err();
    assert!(err["add"]["querystring"][0].is_null(), "{err}");
    assert!(err["add"]["querystring"][1]
        .as_str()
        .unwrap()
        .contains("is not in supported format"));
}

#[test]
fn headers_unknown_fields_and_wrong_types_are_refused_by_field() {
    let bad = json!({
        "remove": {"headers": ["bad header"]},
        "rename": {"headers": ["x-a:bad header"]},
        "add": {"headers": ["novalue"]},
    });
    let err = checked_config("request-transformer", bad).unwrap_err();
    assert_eq!(
        err["remove"]["headers"][0],
        "'bad header' is not a valid header"
    );
    assert_eq!(
        err["rename"]["headers"][0],
        "'bad header' is not a valid header"
    );
    assert_eq!(err["add"]["headers"][0], "invalid value: novalue");
    let shape = json!({"add": {"cookies": []}, "append": "x", "remove": {"headers": 5}});
    let err = checked_config("request-transformer", shape).unwrap_err();
    assert_eq!(err["add"]["cookies"], "unknown field");
    assert!(
        err["append"].is_string() && err["remove"]["headers"].is_string(),
        "{err}"
    );
    let defaults = checked_config("request-transformer", json!({})).unwrap();
    assert_eq!(
        defaults["add"],
        json!({"body": [], "headers": [], "querystring": []})
    );
    assert_eq!(defaults["replace"]["uri"], Value::Null);
}

// 02-access_spec.lua:539, :553
#[tokio::test]
async fn http_method_changes_and_a_form_moves_to_the_query_for_get() {
    let post = run(json!({"http_method": "POST"}), "GET", "/", &[], "").await;
    assert_eq!(post.parts.method, http::Method::POST);
    let get = run(
        json!({"http_method": "GET"}),
        "POST",
        "/?q=1",
        &[FORM],
        "hello=world&name=marco",
    )
    .await;
    assert_eq!(get.parts.method, http::Method::GET);
    assert_eq!(get.param("hello").as_deref(), Some("world"));
    assert_eq!(get.param("name").as_deref(), Some("marco"));
    assert_eq!(get.param("q").as_deref(), Some("1"));
}

// 02-access_spec.lua:589, :604, :623, :642, :688, :707
#[tokio::test]
async fn remove() {
    let c = json!({"remove": {"headers": ["x-to-remove"], "querystring": ["toremovequery"],
        "body": ["toremoveform"]}});
    let s = run(
        c.clone(),
        "POST",
        "/?toremovequery=yes&nottoremove=yes",
        &[FORM, ("x-to-remove", "true"), ("x-another", "true")],
        "toremoveform=yes&nottoremove=yes",
    )
    .await;
    assert_eq!(s.header("x-to-remove"), None);
    assert_eq!(s.header("x-another"), Some("true"));
    assert_eq!(s.param("toremovequery"), None);
    assert_eq!(s.param("nottoremove").as_deref(), Some("yes"));
    assert_eq!(s.form(), [("nottoremove".to_string(), "yes".to_string())]);
    let j = run(
        c.clone(),
        "POST",
        "/",
        &[JSON],
        r#"{"toremoveform":"yes","nottoremove":"yes"}"#,
    )
    .await;
    assert_eq!(j.json(), json!({"nottoremove": "yes"}));
    let malformed = run(c.clone(), "POST", "/", &[JSON], "malformed json body").await;
    assert_eq!(malformed.body, "malformed json body");
    let m = run(
        c,
        "POST",
        "/",
        &[MULTIPART],
        &multipart(&[("toremoveform", "yes"), ("a", "1")]),
    )
    .await;
    assert!(!m.body.contains("toremoveform"), "{}", m.body);
    assert_eq!(
        multipart_fields(&m.body),
        [("a".to_string(), "1".to_string())]
    );
}

// 02-access_spec.lua:729 (and the other "preserves empty json array" cases)
#[tokio::test]
async fn json_arrays_stay_arrays() {
    let c = json!({"remove": {"body": ["x"]}, "add": {"body": ["y:1"]}});
    let s = run(c, "POST", "/", &[JSON], r#"{"emptyarray":[],"x":1}"#).await;
    assert_eq!(s.json(), json!({"emptyarray": [], "y": "1"}));
}

// 02-access_spec.lua:747, :763, :779, :813, :848, :884, :905, :957, :970
#[tokio::test]
async fn rename() {
    let c = json!({"rename": {"headers": ["x-to-rename:x-is-renamed"],
        "querystring": ["originalparam:renamedparam", "same:same"],
        "body": ["originalparam:renamedparam", "nilparam:renamedparam2"]}});
    let s = run(
        c.clone(),
        "POST",
        "/?originalparam=yes&same=1",
        &[FORM, ("x-to-rename", "true"), ("x-is-renamed", "old")],
        "originalparam=yes&nottorename=yes",
    )
    .await;
    assert_eq!(s.header("x-to-rename"), None);
    assert_eq!(
        s.headers("x-is-renamed"),
        ["true"],
        "the target's old value is overridden"
    );
    assert_eq!(s.param("originalparam"), None);
    assert_eq!(s.param("renamedparam").as_deref(), Some("yes"));
    assert_eq!(
        s.param("same").as_deref(),
        Some("1"),
        "renaming to the same name keeps it"
    );
    let form = s.form();
    assert!(
        form.contains(&("renamedparam".into(), "yes".into())),
        "{form:?}"
    );
    assert!(
        !form.iter().any(|(k, _)| k == "renamedparam2"),
        "absent fields are not made up"
    );
    let absent = run(c.clone(), "GET", "/", &[], "").await;
    assert_eq!(absent.header("x-is-renamed"), None);
    let j = run(
        c.clone(),
        "POST",
        "/",
        &[JSON],
        r#"{"originalparam":"yes","nottorename":"yes"}"#,
    )
    .await;
    assert_eq!(
        j.json(),
        json!({"renamedparam": "yes", "nottorename": "yes"})
    );
    let m = run(
        c,
        "POST",
        "/",
        &[MULTIPART],
        &multipart(&[("originalparam", "yes")]),
    )
    .await;
    assert!(
        m.body.contains("name=\"renamedparam\"\r\n\r\nyes"),
        "{}",
        m.body
    );
    assert!(!m.body.contains("originalparam"));
}

// 02-access_spec.lua:987, :1005, :1021, :1040, :1057, :1090, :1107, :1127, :1147, :1169
#[tokio::test]
async fn replace() {
    let c = json!({"replace": {"headers": ["h1:v1", "h2:v2"], "querystring": ["q1:v1"],
        "body": ["p1:v1", "p2:v1"]}});
    let s = run(
        c.clone(),
        "POST",
        "/?q1=20&q1=21&q2=x",
        &[FORM, ("h1", "old")],
        "p1=old&p3=x",
    )
    .await;
    assert_eq!(s.header("h1"), Some("v1"));
    assert_eq!(s.header("h2"), None, "only what exists is replaced");
    assert_eq!(
        s.query(),
        [
            ("q1".to_string(), "v1".to_string()),
            ("q2".into(), "x".into())
        ]
    );
    assert_eq!(
        s.form(),
        [
            ("p1".to_string(), "v1".to_string()),
            ("p3".into(), "x".into())
        ]
    );
    let j = run(c.clone(), "POST", "/", &[JSON], r#"{"p1":"old","p3":"x"}"#).await;
    assert_eq!(j.json(), json!({"p1": "v1", "p3": "x"}));
    let m = run(
        c,
        "POST",
        "/",
        &[MULTIPART],
        &multipart(&[("p1", "old"), ("p3", "x")]),
    )
    .await;
    let fields = multipart_fields(&m.body);
    assert!(fields.contains(&("p1".into(), "v1".into())), "{fields:?}");
    assert!(!fields.iter().any(|(k, _)| k == "p2"));
}

// 02-access_spec.lua:1247, :1262, :1278, :1296, :1315, :1332, :1365, :1380, :1401, :1419, :1435
#[tokio::test]
async fn add() {
    let c = json!({"add": {"headers": ["h1:v1", "h2:v2", "host:mark"], "querystring": ["q1:v1"],
        "body": ["p1:v1", "p2:v1"]}});
    let s = run(
        c.clone(),
        "POST",
        "/?q1=old",
        &[FORM, ("h2", "old"), ("host", "test.test")],
        "p2=old",
    )
    .await;
    assert_eq!(s.header("h1"), Some("v1"));
    assert_eq!(s.headers("h2"), ["old"]);
    assert_eq!(
        s.header("host"),
        Some("test.test"),
        "add never changes the host"
    );
    assert_eq!(s.host, None);
    assert_eq!(s.query(), [("q1".to_string(), "old".to_string())]);
    let fresh = run(c.clone(), "GET", "/", &[], "").await;
    assert_eq!(fresh.param("q1").as_deref(), Some("v1"));
    assert_eq!(
        s.form(),
        [
            ("p2".to_string(), "old".to_string()),
            ("p1".into(), "v1".into())
        ]
    );
    let j = run(c.clone(), "POST", "/", &[JSON], r#"{"p2":"old"}"#).await;
    assert_eq!(j.json(), json!({"p1": "v1", "p2": "old"}));
    let empty = run(c.clone(), "POST", "/", &[JSON], "").await;
    assert_eq!(
        empty.json(),
        json!({"p1": "v1", "p2": "v1"}),
        "an empty JSON body gets the fields"
    );
    let m = run(c, "POST", "/", &[MULTIPART], &multipart(&[("p2", "old")])).await;
    let fields = multipart_fields(&m.body);
    assert!(
        fields.contains(&("p1".into(), "v1".into()))
            && fields.contains(&("p2".into(), "old".into())),
        "{fields:?}"
    );
    assert_eq!(
        m.header("content-length"),
        Some(m.body.len().to_string().as_str())
    );
}

// 02-access_spec.lua:1467, :1480, :1494, :1527, :1543, :1556, :1573, :1608
#[tokio::test]
async fn append() {
    let c = json!({"append": {"headers": ["h1:v1", "h1:v2", "h2:v1", "x-hash:#value"],
        "querystring": ["q1:v1", "q1:v2", "q2:v1"], "body": ["p1:v1", "p1:v2", "p2:v1"]}});
    let s = run(
        c.clone(),
        "POST",
        "/?q1=old",
        &[FORM, ("h1", "old")],
        "p1=old",
    )
    .await;
    assert_eq!(s.headers("h1"), ["old", "v1", "v2"]);
    assert_eq!(s.headers("h2"), ["v1"]);
    assert_eq!(s.header("x-hash"), Some("#value"));
    let q1: Vec<String> = s
        .query()
        .into_iter()
        .filter(|(k, _)| k == "q1")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(q1, ["old", "v1", "v2"]);
    assert_eq!(s.param("q2").as_deref(), Some("v1"));
    let p1: Vec<String> = s
        .form()
        .into_iter()
        .filter(|(k, _)| k == "p1")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(p1, ["old", "v1", "v2"]);
    let j = run(c.clone(), "POST", "/", &[JSON], r#"{"p1":"old"}"#).await;
    assert_eq!(j.json(), json!({"p1": ["old", "v1", "v2"], "p2": ["v1"]}));
    let m = run(c, "POST", "/", &[MULTIPART], &multipart(&[("p1", "old")])).await;
    assert_eq!(
        multipart_fields(&m.body),
        [("p1".to_string(), "old".to_string())],
        "multipart gets no appends"
    );
}

// 02-access_spec.lua:1643-1720 and :1843-1911 (header names match whatever their case)
#[tokio::test]
async fn operations_combine_in_kongs_order_and_ignore_header_case() {
    let c = json!({
        "remove": {"headers": ["X-To-Remove"]},
        "replace": {"headers": ["x-to-Replace:false"]},
        "add": {"headers": ["X-aDDed:a1", "x-aDDed2:b1"]},
        "append": {"headers": ["X-aDDed:a2", "X-aDDed:a3"]},
    });
    let s = run(
        c,
        "GET",
        "/",
        &[
            ("x-to-remove", "1"),
            ("X-TO-REPLACE", "true"),
            ("x-added2", "kept"),
        ],
        "",
    )
    .await;
    assert_eq!(s.header("x-to-remove"), None);
    assert_eq!(s.header("x-to-replace"), Some("false"));
    assert_eq!(s.headers("x-added"), ["a1", "a2", "a3"]);
    assert_eq!(s.headers("x-added2"), ["kept"]);
}

// 02-access_spec.lua:2298, :2313 (remove then add)
#[tokio::test]
async fn a_removed_header_can_be_added_again() {
    let c = json!({"remove": {"headers": ["Authorization"]},
        "add": {"headers": ["Authorization:Basic test"]}});
    for sent in [&[("authorization", "Basic dGVzdDp0ZXN0")][..], &[][..]] {
        let s = run(c.clone(), "GET", "/", sent, "").await;
        assert_eq!(s.header("authorization"), Some("Basic test"));
    }
}

// 02-access_spec.lua:2140, :2162, :2184 (templates read the request as the client sent it)
#[tokio::test]
async fn templates_read_the_request_before_any_change() {
    let c = json!({
        "remove": {"headers": ["x-remove-header"], "querystring": ["q1"]},
        "replace": {"headers": ["x-replace-header:the new value"]},
        "add": {"headers": ["x-test-header:$(query_params.q1)", "x-old:$(headers['x-replace-header'])"],
            "querystring": ["q2:$(headers.x_remove_header)", "q3:$(headers.host)"]},
    });
    let s = run(
        c,
        "GET",
        "/?q1=20",
        &[
            ("x-remove-header", "its a test"),
            ("x-replace-header", "the old value"),
            ("host", "test15.test"),
        ],
        "",
    )
    .await;
    assert_eq!(s.header("x-test-header"), Some("20"));
    assert_eq!(s.param("q1"), None);
    assert_eq!(s.param("q2").as_deref(), Some("its a test"));
    assert_eq!(s.param("q3").as_deref(), Some("test15.test"));
    assert_eq!(s.header("x-old"), Some("the old value"));
    assert_eq!(s.header("x-replace-header"), Some("the new value"));
}

// 02-access_spec.lua:1236 (a path with UTF-8 goes percent-encoded), replace of `host`
#[tokio::test]
async fn uri_and_host_replacement() {
    let c = json!({"replace": {"uri": "/requests/tést", "headers": ["host:upstream.test"]}});
    let s = run(
        c,
        "GET",
        "/requests/wrong_path?a=1",
        &[("host", "client.test")],
        "",
    )
    .await;
    assert_eq!(s.path.as_deref(), Some("/requests/t%C3%A9st"));
    assert_eq!(s.host.as_deref(), Some("upstream.test"));
    assert_eq!(s.param("a").as_deref(), Some("1"), "the query stays");
}

// 02-access_spec.lua:2327 (a query string nobody edits passes as it came)
#[tokio::test]
async fn an_untouched_query_string_is_not_reencoded() {
    let s = run(
        json!({"add": {"headers": ["x:1"]}}),
        "GET",
        "/request?expected=$&+,/:;?@",
        &[],
        "",
    )
    .await;
    assert_eq!(s.raw_query.as_deref(), Some("expected=$&+,/:;?@"));
}

#[tokio::test]
async fn headers_set_by_earlier_plugins_are_edited_too() {
    let h = handler(json!({"rename": {"headers": ["x-from-auth:x-renamed"]}}));
    let (parts, _) = http::Request::get("/")
        .header("apikey", "secret")
        .body(())
        .unwrap()
        .into_parts();
    let mut ctx = Context::for_test(parts);
    let name = http::HeaderName::from_static;
    ctx.set_upstream_header(name("apikey"), None);
    ctx.set_upstream_header(name("x-from-auth"), Some(HeaderValue::from_static("v")));
    assert!(matches!(h.access(&mut ctx).decided().await, Flow::Continue));
    assert!(ctx.upstream_headers.is_empty());
    assert_eq!(ctx.parts.headers.get("apikey"), None);
    assert_eq!(ctx.parts.headers.get("x-renamed").unwrap(), "v");
}

#[tokio::test]
async fn a_body_is_read_by_the_content_type_the_client_sent() {
    let c = json!({"remove": {"headers": ["content-type"], "body": ["a"]}});
    let m = run(
        c,
        "POST",
        "/",
        &[MULTIPART],
        &multipart(&[("a", "1"), ("p1", "2")]),
    )
    .await;
    assert_eq!(m.header("content-type"), None);
    assert_eq!(
        multipart_fields(&m.body),
        [("p1".to_string(), "2".to_string())]
    );
}
