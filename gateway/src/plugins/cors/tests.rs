//! Kong's spec/03-plugins/13-cors (Kong/kong@22246ef): the schema spec whole, and the origin
//! table of 01-access_spec.lua (`regex_testcases`, :22-239, run as preflights at :587-612).
use super::*;

fn config(v: Value) -> Result<Map<String, Value>, Value> {
    crate::plugins::checked_config("cors", v)
}

/// The preflight's answer for a request from `origin` under `origins`.
fn preflight(origins: &[&str], origin: &str) -> HeaderMap {
    let c = config(json!({ "origins": origins })).unwrap();
    let handler = build(&c, &Default::default(), &Arc::default()).unwrap();
    let request = http::Request::options("/")
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .body(())
        .unwrap();
    let mut ctx = Context::for_test(request.into_parts().0);
    let headers = match handler.access(&mut ctx) {
        Access::Now(Flow::Respond(reply)) => {
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.shape, crate::plugins::context::Shape::Empty);
            reply.headers
        }
        _ => panic!("a preflight is answered"),
    };
    headers
}

/// 02-schema_spec.lua, every case.
#[test]
fn kongs_schema_cases() {
    for origins in [
        json!(["*"]),
        json!(["example.com"]),
        json!([r".*\.example(?:-foo)?\.com"]),
    ] {
        assert!(config(json!({ "origins": origins })).is_ok(), "{origins}");
    }
    let err = config(json!({"origins": [".*.example.com", "invalid_**regex"]})).unwrap_err();
    assert_eq!(err["origins"][1], "'invalid_**regex' is not a valid regex");
    for m in METHODS {
        assert!(config(json!({ "methods": [m] })).is_ok(), "{m}");
    }
    let err = config(json!({"methods": ["FAKE"]})).unwrap_err();
    assert_eq!(
        err["methods"][0],
        "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"
    );
}

/// What Kong's table expects: the request's own origin (`Echo`), a given value, or nothing.
enum Expect {
    Echo,
    Value(&'static str),
    No,
}
use Expect::{Echo, No, Value as Is};

/// A configuration's line in the spec, its `origins`, and what each of `ORIGINS` gets.
type TableRow = (u32, Vec<&'static str>, [Option<Expect>; 11]);

const ORIGINS: [&str; 11] = [
    "http://evil.test",
    "http://foo.test",
    "http://foo.test.evil.test",
    "http://something.foo.test",
    "http://evilfoo.test",
    "http://foo.test:80",
    "http://foo.test:8000",
    "https://foo.test:8000",
    "http://foo.test:90",
    "http://foobtest",
    "https://bar.test:1234",
];

/// 01-access_spec.lua:22-239, each configuration (cited by its `origins` line) against each
/// origin of its table (`None` where the table leaves the origin out).
#[test]
fn origins_are_matched_as_kongs_table_says() {
    let cases: Vec<TableRow> = vec![
        (
            32,
            vec!["foo.test"],
            [
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
                Some(Is("foo.test")),
            ],
        ),
        (
            49,
            vec!["https://bar.test:1234"],
            [
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
                Some(Is("https://bar.test:1234")),
            ],
        ),
        (
            66,
            vec!["foo\\.test"],
            [
                Some(No),
                Some(Echo),
                Some(No),
                Some(No),
                Some(No),
                Some(Is("http://foo.test")),
                Some(Echo),
                Some(Echo),
                Some(Echo),
                Some(No),
                Some(No),
            ],
        ),
        (
            83,
            vec!["(.*[./])?foo\\.test"],
            [
                Some(No),
                Some(Echo),
                Some(No),
                Some(Echo),
                Some(No),
                Some(Is("http://foo.test")),
                Some(Echo),
                Some(Echo),
                Some(Echo),
                Some(No),
                Some(No),
            ],
        ),
        (
            100,
            vec!["(.*[./])?foo\\.test:8000"],
            [
                Some(No),
                Some(No),
                Some(No),
                Some(No),
                Some(No),
                Some(No),
                Some(Echo),
                Some(Echo),
                Some(No),
                Some(No),
                Some(No),
            ],
        ),
        (
            117,
            vec!["https://(.*[.])?foo\\.test:8000"],
            [
                Some(No),
                Some(No),
                Some(No),
                Some(No),
                None,
                Some(No),
                Some(No),
                Some(Echo),
                Some(No),
                Some(No),
                Some(No),
            ],
        ),
        (
            133,
            vec!["^http://(.*[.])?foo\\.test(:(80|90))?$"],
            [
                Some(No),
                Some(Echo),
                Some(No),
                Some(Echo),
                None,
                Some(Is("http://foo.test")),
                Some(No),
                Some(No),
                Some(Echo),
                Some(No),
                Some(No),
            ],
        ),
        (
            149,
            vec!["foo.test", "bar.test"],
            [
                Some(No),
                Some(No),
                Some(No),
                None,
                None,
                Some(No),
                Some(No),
                None,
                Some(No),
                Some(No),
                Some(No),
            ],
        ),
        (
            163,
            vec!["http://foo.test", "https://bar.test:1234"],
            [
                Some(No),
                Some(Echo),
                Some(No),
                None,
                None,
                Some(Is("http://foo.test")),
                Some(No),
                None,
                Some(No),
                Some(No),
                Some(Echo),
            ],
        ),
        (
            177,
            vec!["bar.test", "foo\\.test"],
            [
                Some(No),
                Some(Echo),
                Some(No),
                Some(No),
                None,
                Some(Is("http://foo.test")),
                Some(Echo),
                None,
                Some(Echo),
                Some(No),
                Some(No),
            ],
        ),
        (
            192,
            vec!["bar.test", "(.*\\.)?foo\\.test"],
            [
                Some(No),
                Some(Echo),
                Some(No),
                Some(Echo),
                None,
                Some(Is("http://foo.test")),
                Some(Echo),
                None,
                Some(Echo),
                Some(No),
                Some(No),
            ],
        ),
        (
            207,
            vec!["bar.test", "(.*[./])?foo\\.test:8000"],
            [
                Some(No),
                Some(No),
                Some(No),
                Some(No),
                None,
                Some(No),
                Some(Echo),
                Some(Echo),
                Some(No),
                Some(No),
                Some(No),
            ],
        ),
        (
            223,
            vec!["bar.test", "https://(.*\\.)?foo\\.test:8000"],
            [
                Some(No),
                Some(No),
                Some(No),
                Some(No),
                None,
                Some(No),
                Some(No),
                Some(Echo),
                Some(No),
                Some(No),
                Some(No),
            ],
        ),
    ];
    for (line, origins, expected) in cases {
        for (origin, expect) in ORIGINS.iter().zip(expected) {
            let Some(expect) = expect else { continue };
            let headers = preflight(&origins, origin);
            let acao = headers
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.to_str().unwrap().to_string());
            let want = match expect {
                Echo => Some(origin.to_string()),
                Is(v) => Some(v.to_string()),
                No => None,
            };
            assert_eq!(
                acao, want,
                "01-access_spec.lua:{line} {origins:?} given {origin}"
            );
            if want.is_some() {
                assert_eq!(
                    headers[header::ACCESS_CONTROL_ALLOW_METHODS],
                    "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
                );
                for absent in [
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    header::ACCESS_CONTROL_MAX_AGE,
                ] {
                    assert!(headers.get(&absent).is_none(), "{line} {origin}: {absent}");
                }
            }
        }
    }
}
