//! Route matching with 10,000 routes: the time to find the route of a typical request.
//! Run with `cargo bench -p tollgate-gateway --bench router`.
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;
use tollgate_gateway::model::{normalize, Kind, Route, Source};
use tollgate_gateway::router::{RequestInfo, Router};

/// 10,000 routes of the shapes real configurations have: prefixes per API and version, some
/// with hosts, methods or headers, and a few regexes.
fn routes() -> Vec<Route> {
    (0..10_000)
        .map(|i| {
            let spec = match i % 10 {
                0 => json!({"paths": [format!("/api{i}/v1/")], "hosts": [format!("tenant{i}.example.com")]}),
                1 => json!({"paths": [format!("/api{i}/")], "methods": ["GET", "POST"]}),
                2 => json!({"paths": [format!("/api{i}/")], "headers": {"x-version": ["2"]}}),
                3 if i % 1000 == 3 => json!({"paths": [format!("~/api{i}/items/\\d+$")]}),
                _ => json!({"paths": [format!("/api{i}/")]}),
            };
            let n = normalize(Kind::Route, spec.as_object().unwrap().clone(), None, Source::Typed, i).unwrap();
            serde_json::from_value(n.record.body).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let router = Router::new(&routes()).unwrap();
    let headers = http::HeaderMap::new();
    let req = |path: &'static str, host: &'static str| RequestInfo {
        method: "GET",
        host,
        port: 8000,
        path,
        headers: &headers,
        tls: false,
        sni: None,
    };
    let cases = [
        ("prefix", req("/api7771/get/context", "api.example.com")),
        (
            "host+prefix",
            req("/api7770/v1/users", "tenant7770.example.com"),
        ),
        ("no match", req("/unknown/path", "api.example.com")),
    ];
    for (name, r) in &cases {
        assert!(
            name == &"no match" || router.find(r).is_some(),
            "{name} must match"
        );
        c.bench_function(&format!("match 10k routes: {name}"), |b| {
            b.iter(|| black_box(router.find(black_box(r))))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
