//! Kong's ingress controller's own cases for the Ingress translation, ported from
//! Kong/kubernetes-ingress-controller@1fa68f8
//! `internal/dataplane/translator/subtranslator/ingress_test.go` and
//! `internal/dataplane/kongstate/route_test.go` (the annotations' overrides), each citing its
//! line; route_test.go's expression-router cases do not apply (Tollgate routes as Kong's
//! `traditional_compatible`). Left
//! out: KongServiceFacade backends (an incubator CRD Tollgate does not read), the
//! `konghq.com/rewrite` annotation (not among those Tollgate reads), and the legacy regex
//! heuristic (KIC applies it only when IngressClassParameters enable it; Tollgate does not read
//! those). KIC's Go structs leave `pathType` unset where a v1 API server requires it; the
//! ports give `ImplementationSpecific`, which is what KIC assumes for an unset one.
use super::*;
use crate::translate::read_manifests;

/// `(name, host, [(route name, hosts, paths)])` of each Kong service, by name.
type Shape = Vec<(String, String, Vec<(String, Value, Value)>)>;

/// Translates the Ingresses in `yaml` (namespace `default`).
fn translated(yaml: &str) -> (BTreeMap<String, KongService>, Failures) {
    let cluster = read_manifests(&[("test".into(), yaml.into())]).unwrap();
    let ingresses: Vec<&Ingress> = cluster.ingresses.iter().collect();
    let mut failures = Failures::default();
    let services = services(&ingresses, &mut failures);
    (services, failures)
}

fn shape(services: &BTreeMap<String, KongService>) -> Shape {
    services
        .values()
        .map(|s| {
            let routes = s
                .routes
                .iter()
                .map(|r| {
                    let f = &r.fields;
                    let hosts = f.get("hosts").cloned().unwrap_or(Value::Null);
                    (r.name.clone(), hosts, f["paths"].clone())
                })
                .collect();
            (
                s.fields["name"].as_str().unwrap().to_string(),
                s.fields["host"].as_str().unwrap().to_string(),
                routes,
            )
        })
        .collect()
}

/// An Ingress `test-ingress` in `default` with one rule for `host` (none when empty).
fn ingress(host: &str, paths: &[(&str, &str, &str)]) -> String {
    let paths: String = paths
        .iter()
        .map(|(path, path_type, backend)| {
            format!(
                "      - path: \"{path}\"\n        pathType: {path_type}\n        backend: {{service: {{name: {backend}, port: {{name: http, number: 80}}}}}}\n"
            )
        })
        .collect();
    let host = match host {
        "" => String::new(),
        h => format!("host: \"{h}\"\n    "),
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: test-ingress, namespace: default}}\nspec:\n  rules:\n  - {host}http:\n      paths:\n{paths}"
    )
}

/// One service `default.test-service.80` with one route for `konghq.com` with `paths`.
fn one_route(paths: &[&str]) -> Shape {
    vec![(
        "default.test-service.80".into(),
        "test-service.default.80.svc".into(),
        vec![(
            "default.test-ingress.test-service.konghq.com.80".into(),
            json!(["konghq.com"]),
            json!(paths),
        )],
    )]
}

/// ingress_test.go:65 "a basic ingress resource with a single rule and prefix path type":
/// KIC's service and route names, host, defaults and tags.
#[test]
fn a_prefix_path_gets_kics_names_defaults_and_tags() {
    let (services, failures) = translated(&ingress(
        "konghq.com",
        &[("/api", "Prefix", "test-service")],
    ));
    assert!(failures.0.is_empty());
    assert_eq!(shape(&services), one_route(&["/api/", "~/api$"]));
    let s = &services["default.test-service.80"];
    assert_eq!(s.fields["path"], "/");
    assert_eq!(s.fields["port"], 80);
    assert_eq!(s.fields["protocol"], "http");
    let r = &s.routes[0].fields;
    assert_eq!(r["preserve_host"], true);
    assert_eq!(r["strip_path"], false);
    assert_eq!(r["regex_priority"], 0);
    assert_eq!(r["request_buffering"], true);
    assert_eq!(r["response_buffering"], true);
    assert!(r.get("protocols").is_none());
    assert_eq!(
        r["tags"],
        json!([
            "k8s-name:test-ingress",
            "k8s-namespace:default",
            "k8s-kind:Ingress",
            "k8s-group:networking.k8s.io",
            "k8s-version:v1"
        ])
    );
}

/// ingress_test.go:139, :286, :360, :434, :507: one path of each type, as KIC writes it.
#[test]
fn each_path_type_becomes_kics_kong_paths() {
    for (line, path, path_type, kong) in [
        (139, "/api/", "ImplementationSpecific", vec!["/api/"]),
        (286, "/api", "Exact", vec!["~/api$"]),
        (360, "/api", "ImplementationSpecific", vec!["/api"]),
        (
            434,
            "/v1//api///",
            "ImplementationSpecific",
            vec!["/v1/api/"],
        ),
        (507, "", "ImplementationSpecific", vec!["/"]),
    ] {
        let (services, _) =
            translated(&ingress("konghq.com", &[(path, path_type, "test-service")]));
        assert_eq!(shape(&services), one_route(&kong), "ingress_test.go:{line}");
    }
}

const VARIOUS_PATHS: [(&str, &str, &str); 6] = [
    ("/v1/api", "ImplementationSpecific", "test-service"),
    ("/v2/api", "ImplementationSpecific", "test-service"),
    ("/v3/api", "ImplementationSpecific", "test-service"),
    ("/other/path/1", "Exact", "test-service"),
    ("/other/path/2", "ImplementationSpecific", "test-service"),
    ("", "ImplementationSpecific", "test-service"),
];
const VARIOUS_KONG_PATHS: [&str; 6] = [
    "/v1/api",
    "/v2/api",
    "/v3/api",
    "~/other/path/1$",
    "/other/path/2",
    "/",
];

/// ingress_test.go:580 "multiple and various paths get compiled together properly".
#[test]
fn paths_to_one_backend_share_one_route_in_order() {
    let (services, _) = translated(&ingress("konghq.com", &VARIOUS_PATHS));
    assert_eq!(shape(&services), one_route(&VARIOUS_KONG_PATHS));
}

/// ingress_test.go:725 "when no host is provided, all hosts are matched": no `hosts`, and an
/// empty host in the route's name.
#[test]
fn a_rule_without_a_host_matches_every_host() {
    let (services, _) = translated(&ingress("", &VARIOUS_PATHS));
    assert_eq!(
        shape(&services),
        vec![(
            "default.test-service.80".to_string(),
            "test-service.default.80.svc".to_string(),
            vec![(
                "default.test-ingress.test-service..80".to_string(),
                Value::Null,
                json!(VARIOUS_KONG_PATHS)
            )]
        )]
    );
}

/// ingress_test.go:868 "when there are multiple backends services, paths wont be combined and
/// separate kong services will be provided".
#[test]
fn each_backend_gets_its_own_service_and_route() {
    let (services, _) = translated(&ingress(
        "konghq.com",
        &[
            ("/v1/api", "ImplementationSpecific", "test-service1"),
            ("/v2/api", "ImplementationSpecific", "test-service2"),
        ],
    ));
    let expected: Shape = [("1", "/v1/api"), ("2", "/v2/api")]
        .iter()
        .map(|(n, p)| {
            (
                format!("default.test-service{n}.80"),
                format!("test-service{n}.default.80.svc"),
                vec![(
                    format!("default.test-ingress.test-service{n}.konghq.com.80"),
                    json!(["konghq.com"]),
                    json!([p]),
                )],
            )
        })
        .collect();
    assert_eq!(shape(&services), expected);
}

/// ingress_test.go:999 "when there are multiple ingress rules with overlapping host and
/// service, separate kong services will be provided".
#[test]
fn rules_with_overlapping_hosts_keep_their_own_services() {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: test-ingress, namespace: default}
spec:
  rules:
  - host: konghq.com
    http:
      paths: [{path: /v1/api, pathType: ImplementationSpecific, backend: {service: {name: ad-service, port: {name: http, number: 80}}}}]
  - host: konghq.co
    http:
      paths: [{path: /v1/api, pathType: ImplementationSpecific, backend: {service: {name: mad-service, port: {name: http, number: 80}}}}]
"#;
    let (services, _) = translated(yaml);
    let expected: Shape = [("ad-service", "konghq.com"), ("mad-service", "konghq.co")]
        .iter()
        .map(|(svc, host)| {
            (
                format!("default.{svc}.80"),
                format!("{svc}.default.80.svc"),
                vec![(
                    format!("default.test-ingress.{svc}.{host}.80"),
                    json!([host]),
                    json!(["/v1/api"]),
                )],
            )
        })
        .collect();
    assert_eq!(shape(&services), expected);
}

/// ingress_test.go:1141 "* in host is replaced to _" (in the route's name only).
#[test]
fn a_wildcard_host_is_written_as_underscore_in_the_name() {
    let (services, _) = translated(&ingress(
        "*.konghq.com",
        &[("/api/", "ImplementationSpecific", "test-service")],
    ));
    let shape = shape(&services);
    assert_eq!(
        shape[0].2[0].0,
        "default.test-ingress.test-service._.konghq.com.80"
    );
    assert_eq!(shape[0].2[0].1, json!(["*.konghq.com"]));
}

/// ingress_test.go:1214 "use port name when service port number is not provided".
#[test]
fn a_port_given_by_name_names_the_service() {
    let yaml = ingress(
        "konghq.com",
        &[("/api/", "ImplementationSpecific", "test-service")],
    )
    .replace("port: {name: http, number: 80}", "port: {name: http}");
    let (services, _) = translated(&yaml);
    assert_eq!(
        shape(&services),
        vec![(
            "default.test-service.http".to_string(),
            "test-service.default.http.svc".to_string(),
            vec![(
                "default.test-ingress.test-service.konghq.com.http".to_string(),
                json!(["konghq.com"]),
                json!(["/api/"])
            )]
        )]
    );
}

/// ingress_test.go:1711 TestFlattenMultipleSlashes, every case.
#[test]
fn runs_of_slashes_are_flattened() {
    for (input, output) in [
        ("api", "api"),
        ("/v1/api/packages/", "/v1/api/packages/"),
        ("//", "/"),
        ("/////////////////", "/"),
        ("//api//packages//", "/api/packages/"),
        (
            "////////v1////api//packages///and/stuff//////////////////",
            "/v1/api/packages/and/stuff/",
        ),
        (
            "////////v1////api//packages///and/stuff",
            "/v1/api/packages/and/stuff",
        ),
        (
            "v1/////api//packages///and/stuff//////",
            "v1/api/packages/and/stuff/",
        ),
        (
            "v1/////api//packages//////////////////////////and/stuff",
            "v1/api/packages/and/stuff",
        ),
    ] {
        assert_eq!(flatten_slashes(input), output, "{input}");
    }
}

/// ingress_test.go:1769 TestPathsFromIngressPaths, every case.
#[test]
fn ingress_paths_become_kics_kong_paths() {
    let path = |p: &str, t: &str| HTTPIngressPath {
        path: Some(p.into()),
        path_type: t.into(),
        ..Default::default()
    };
    for (line, p, t, kong) in [
        (
            1776,
            "/v1/api/packages",
            "Prefix",
            vec!["/v1/api/packages/", "~/v1/api/packages$"],
        ),
        (
            1787,
            "/v1/api/packages/",
            "Prefix",
            vec!["/v1/api/packages/", "~/v1/api/packages$"],
        ),
        (1798, "", "Prefix", vec!["/"]),
        (
            1806,
            "/v1/api/packages",
            "Exact",
            vec!["~/v1/api/packages$"],
        ),
        (
            1814,
            "/v1/api/packages/",
            "Exact",
            vec!["~/v1/api/packages/$"],
        ),
        (1822, "", "Exact", vec!["~/$"]),
        (
            1830,
            "/asdfasd9jhf09432$",
            "ImplementationSpecific",
            vec!["/asdfasd9jhf09432$"],
        ),
    ] {
        assert_eq!(kong_paths(&path(p, t)), kong, "ingress_test.go:{line}");
    }
}

/// ingress_test.go:1844 TestMaybePrependRegexPrefix (the cases without the legacy
/// heuristic) and :1900 TestMaybePrependRegexPrefixForIngressV1Fn: a path starting with the
/// regex prefix (`/~`, or `konghq.com/regex-prefix`) becomes a Kong regex path.
#[test]
fn the_regex_prefix_marks_regex_paths() {
    for (line, prefix, path, kong) in [
        (1853, None, "/~/v1/api/packages", "~/v1/api/packages"),
        (1859, None, "/v1/api/packages", "/v1/api/packages"),
        (1865, Some("##"), "##/v1/api/packages", "~/v1/api/packages"),
        (1871, Some("##"), "/v1/api/packages", "/v1/api/packages"),
        (
            1884,
            None,
            "/v1/api/resource/\\\\d+/",
            "/v1/api/resource/\\d+/",
        ),
    ] {
        let mut yaml = ingress(
            "konghq.com",
            &[(path, "ImplementationSpecific", "test-service")],
        );
        if let Some(p) = prefix {
            yaml = yaml.replace(
                "namespace: default}",
                &format!("namespace: default, annotations: {{konghq.com/regex-prefix: \"{p}\"}}}}"),
            );
        }
        let (services, _) = translated(&yaml);
        assert_eq!(
            shape(&services),
            one_route(&[kong]),
            "ingress_test.go:{line}"
        );
    }
}

/// The route `start` after the Ingress annotations `pairs` (KIC's `overrideByAnnotation`).
fn overridden(start: Value, pairs: &[(&str, &str)]) -> Value {
    let mut f = start.as_object().cloned().unwrap_or_default();
    let a: Annotations = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    override_route(&mut f, &a);
    Value::Object(f)
}

/// Kong/kubernetes-ingress-controller@1fa68f8 `internal/dataplane/kongstate/route_test.go:18`
/// TestOverrideRoute, every case: what each annotation sets, and an invalid value ignored.
#[test]
fn route_annotations_override_as_kic_overrides_them() {
    let hosts = || json!({"hosts": ["foo.com", "bar.com"]});
    let with = |extra: Value| {
        let mut v = hosts();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    for (line, start, pairs, expected) in [
        (26, hosts(), vec![], hosts()),
        (
            40,
            hosts(),
            vec![("konghq.com/methods", "GET,POST")],
            with(json!({"methods": ["GET", "POST"]})),
        ),
        (
            57,
            hosts(),
            vec![("konghq.com/methods", "GET,post")],
            with(json!({"methods": ["GET", "POST"]})),
        ),
        (74, hosts(), vec![("konghq.com/methods", "GET,-1")], hosts()),
        (
            90,
            hosts(),
            vec![("konghq.com/https-redirect-status-code", "302")],
            with(json!({"https_redirect_status_code": 302})),
        ),
        (
            107,
            with(json!({"preserve_host": true, "strip_path": true})),
            vec![
                ("konghq.com/protocols", "http"),
                ("konghq.com/preserve-host", "false"),
                ("konghq.com/strip-path", "false"),
                ("konghq.com/regex-priority", "10"),
            ],
            with(
                json!({"protocols": ["http"], "preserve_host": false, "strip_path": false, "regex_priority": 10}),
            ),
        ),
        (
            132,
            json!({"hosts": ["foo.com"], "protocols": ["http", "https"]}),
            vec![("konghq.com/headers.foo-header", "bar-value")],
            json!({"hosts": ["foo.com"], "protocols": ["http", "https"], "headers": {"foo-header": ["bar-value"]}}),
        ),
        (
            153,
            json!({"hosts": ["foo.com"]}),
            vec![("konghq.com/protocols", "grpc,grpcs")],
            json!({"hosts": ["foo.com"], "protocols": ["grpc", "grpcs"]}),
        ),
        (
            171,
            json!({"hosts": ["foo.com"]}),
            vec![("konghq.com/path-handling", "v1")],
            json!({"hosts": ["foo.com"], "path_handling": "v1"}),
        ),
        (
            188,
            hosts(),
            vec![
                ("konghq.com/request-buffering", "true"),
                ("konghq.com/response-buffering", "true"),
            ],
            with(json!({"request_buffering": true, "response_buffering": true})),
        ),
    ] {
        assert_eq!(overridden(start, &pairs), expected, "route_test.go:{line}");
    }
}

/// route_test.go:434 TestOverrideRouteStripPath, :523 TestOverrideRouteHTTPSRedirectCode,
/// :631 TestOverrideRoutePreserveHost, :695 TestOverrideRouteRegexPriority, :759
/// TestOverrideRouteMethods, :802 TestOverrideRouteSNIs, :853/:926 the buffering overrides,
/// :999 TestOverrideHosts, :1063 TestOverrideHeaders, :1147 TestOverridePathHandling: each
/// annotation alone on an empty route (or the route the case starts from). KIC's case at :578
/// also sets `konghq.com/protocols: grpc`, which the function it tests does not read (the
/// protocols override runs after it and would set `grpc` again); the port leaves it out.
#[test]
fn each_route_annotation_alone_as_kic_reads_it() {
    let none = json!({});
    for (line, start, pairs, expected) in [
        (
            453,
            none.clone(),
            vec![("konghq.com/strip-path", "false")],
            json!({"strip_path": false}),
        ),
        (
            467,
            none.clone(),
            vec![("konghq.com/strip-path", "truE")],
            json!({"strip_path": true}),
        ),
        (
            481,
            json!({"strip_path": false}),
            vec![("konghq.com/strip-path", "truE")],
            json!({"strip_path": true}),
        ),
        (
            497,
            json!({"strip_path": false}),
            vec![("konghq.com/strip-path", "42")],
            json!({"strip_path": false}),
        ),
        (
            535,
            none.clone(),
            vec![("konghq.com/https-redirect-status-code", "301")],
            json!({"https_redirect_status_code": 301}),
        ),
        (
            548,
            none.clone(),
            vec![("konghq.com/https-redirect-status-code", "42")],
            none.clone(),
        ),
        (
            556,
            none.clone(),
            vec![("konghq.com/https-redirect-status-code", "foo")],
            none.clone(),
        ),
        (
            564,
            none.clone(),
            vec![("ingress.kubernetes.io/force-ssl-redirect", "true")],
            json!({"https_redirect_status_code": 302, "protocols": ["https"]}),
        ),
        (
            578,
            json!({"protocols": ["grpc"]}),
            vec![("ingress.kubernetes.io/force-ssl-redirect", "true")],
            json!({"https_redirect_status_code": 302, "protocols": ["grpcs"]}),
        ),
        (
            598,
            none.clone(),
            vec![("ingress.kubernetes.io/force-ssl-redirect", "false")],
            none.clone(),
        ),
        (
            606,
            none.clone(),
            vec![
                ("ingress.kubernetes.io/force-ssl-redirect", "true"),
                ("konghq.com/https-redirect-status-code", "307"),
            ],
            json!({"https_redirect_status_code": 307, "protocols": ["https"]}),
        ),
        (
            643,
            none.clone(),
            vec![("konghq.com/preserve-host", "true")],
            json!({"preserve_host": true}),
        ),
        (
            656,
            none.clone(),
            vec![("konghq.com/preserve-host", "faLSe")],
            json!({"preserve_host": false}),
        ),
        (
            707,
            none.clone(),
            vec![("konghq.com/regex-priority", "10")],
            json!({"regex_priority": 10}),
        ),
        (
            720,
            none.clone(),
            vec![("konghq.com/regex-priority", "-10")],
            json!({"regex_priority": -10}),
        ),
        (
            733,
            none.clone(),
            vec![("konghq.com/regex-priority", "42.42")],
            none.clone(),
        ),
        (
            741,
            none.clone(),
            vec![("konghq.com/regex-priority", "foo")],
            none.clone(),
        ),
        (
            771,
            none.clone(),
            vec![("konghq.com/methods", "POST,GET")],
            json!({"methods": ["POST", "GET"]}),
        ),
        (
            784,
            none.clone(),
            vec![("konghq.com/methods", "-10,GET")],
            none.clone(),
        ),
        (
            814,
            none.clone(),
            vec![(
                "konghq.com/snis",
                "hrodna.kong.example, katowice.kong.example",
            )],
            json!({"snis": ["hrodna.kong.example", "katowice.kong.example"]}),
        ),
        (
            827,
            none.clone(),
            vec![("konghq.com/snis", "-10,GET")],
            none.clone(),
        ),
        (
            835,
            none.clone(),
            vec![("konghq.com/snis", "*.example.com")],
            none.clone(),
        ),
        (
            872,
            none.clone(),
            vec![("konghq.com/request-buffering", "false")],
            json!({"request_buffering": false}),
        ),
        (
            886,
            none.clone(),
            vec![("konghq.com/request-buffering", "tRuE")],
            json!({"request_buffering": true}),
        ),
        (
            945,
            none.clone(),
            vec![("konghq.com/response-buffering", "false")],
            json!({"response_buffering": false}),
        ),
        (
            959,
            none.clone(),
            vec![("konghq.com/response-buffering", "tRuE")],
            json!({"response_buffering": true}),
        ),
        (
            1011,
            none.clone(),
            vec![(
                "konghq.com/host-aliases",
                "illustration.com, example.com, *.example.com, example.*, *.illustration.*",
            )],
            json!({"hosts": ["illustration.com", "example.com", "*.example.com", "example.*", "*.illustration.*"]}),
        ),
        (
            1024,
            none.clone(),
            vec![("konghq.com/host-aliases", "example.com, example.com")],
            json!({"hosts": ["example.com"]}),
        ),
        (
            1037,
            none.clone(),
            vec![("konghq.com/host-aliases", "-10,GET")],
            none.clone(),
        ),
        (
            1045,
            none.clone(),
            vec![("konghq.com/host-aliases", "kong.*.com")],
            none.clone(),
        ),
        (
            1077,
            none.clone(),
            vec![("konghq.com/headers.x-example", "example")],
            json!({"headers": {"x-example": ["example"]}}),
        ),
        (
            1090,
            none.clone(),
            vec![("konghq.com/headers.x-example", "foo,bar")],
            json!({"headers": {"x-example": ["foo", "bar"]}}),
        ),
        (
            1120,
            none.clone(),
            vec![
                ("konghq.com/headers.x-foo", "foo,bar"),
                ("konghq.com/headers.x-bar", "bar,baz"),
            ],
            json!({"headers": {"x-foo": ["foo", "bar"], "x-bar": ["bar", "baz"]}}),
        ),
        (
            1159,
            none.clone(),
            vec![("konghq.com/path-handling", "v1")],
            json!({"path_handling": "v1"}),
        ),
        (
            1172,
            none.clone(),
            vec![("konghq.com/path-handling", "vA")],
            none.clone(),
        ),
    ] {
        assert_eq!(overridden(start, &pairs), expected, "route_test.go:{line}");
    }
}
