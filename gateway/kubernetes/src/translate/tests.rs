//! Translation of the seed's manifests and of the failures the controller must report.
use super::*;
use tollgate_gateway::model::Kind;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/k8s-seed");

/// The seed's manifests, plus lorenzo's credential Secret (as `kubectl create secret generic
/// lorenzo-apikey --from-literal=kongCredType=key-auth --from-literal=key=...` stores it) and
/// an EndpointSlice for the backend.
fn seed(extra: &str) -> Cluster {
    let mut texts: Vec<(String, String)> = std::fs::read_dir(SEED)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    texts.sort();
    texts.push(("extra".into(), extra.into()));
    read_manifests(&texts).unwrap()
}

const SECRET_AND_ENDPOINTS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: lorenzo-apikey, namespace: pytbak}
stringData: {kongCredType: key-auth, key: 332d05445a560ee65a76aeaa372d8904}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: pytbak-svc-abc
  namespace: pytbak
  labels: {kubernetes.io/service-name: pytbak-svc}
addressType: IPv4
ports: [{name: "", port: 5000, protocol: TCP}]
endpoints:
- addresses: [10.1.0.7]
  conditions: {ready: true}
- addresses: [10.1.0.8]
  conditions: {ready: false}
- addresses: [10.1.0.9]
"#;

#[test]
fn the_seed_translates_as_kic_names_it() {
    let t = translate(&seed(SECRET_AND_ENDPOINTS), &Options::default(), 1);
    assert!(t.failures.is_empty(), "{:?}", t.failures);
    let d = &t.document;
    let service = &d["services"][0];
    assert_eq!(service["name"], "pytbak.pytbak-svc.5000");
    assert_eq!(service["host"], "pytbak-svc.pytbak.5000.svc");
    assert_eq!(service["port"], 5000);
    assert_eq!(service["retries"], 5);
    assert_eq!(service["read_timeout"], 60000);
    let routes = service["routes"].as_array().unwrap();
    assert_eq!(
        routes.len(),
        1,
        "one route per Ingress, host, Service and port"
    );
    let r = &routes[0];
    assert_eq!(r["name"], "pytbak.api.pytbak-svc.api.ing.h4x0r3d.lan.5000");
    assert_eq!(r["hosts"], json!(["api.ing.h4x0r3d.lan"]));
    assert_eq!(
        r["paths"],
        json!([
            "/api/",
            "/api/get/",
            "/api/post/",
            "/api/put/",
            "/api/delete/"
        ])
    );
    assert_eq!(
        (r["strip_path"].clone(), r["preserve_host"].clone()),
        (json!(false), json!(true))
    );
    assert!(r["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("k8s-kind:Ingress")));
    let up = &d["upstreams"][0];
    assert_eq!(up["name"], "pytbak-svc.pytbak.5000.svc");
    let targets: Vec<(&Value, &Value)> = up["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (&t["target"], &t["weight"]))
        .collect();
    assert_eq!(
        targets,
        [
            (&json!("10.1.0.7:5000"), &json!(100)),
            (&json!("10.1.0.9:5000"), &json!(100))
        ],
        "ready (or unknown) endpoints only"
    );
    let c = &d["consumers"][0];
    assert_eq!(c["username"], "lorenzo");
    assert_eq!(
        c["keyauth_credentials"][0]["key"],
        "332d05445a560ee65a76aeaa372d8904"
    );
    let p = &d["plugins"][0];
    assert_eq!(
        (p["name"].clone(), p["service"].clone()),
        (json!("key-auth"), json!("pytbak.pytbak-svc.5000"))
    );
    // The document loads as the DB-less file it is printed as, and every entity is marked as
    // the cluster's (the controller replaces exactly those).
    assert_eq!(t.config.records.len(), 8, "{:?}", t.config.records);
    for r in &t.config.records {
        let tags = r.body["tags"].as_array().cloned().unwrap_or_default();
        assert!(ObjectRef::from_tags(&tags).is_some(), "{:?}", r.body);
    }
}

#[test]
fn an_invalid_plugin_closes_the_routes_that_use_it_and_is_reported_on_both() {
    let extra = format!(
        "{SECRET_AND_ENDPOINTS}---
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {{name: limits, namespace: pytbak}}
plugin: rate-limiting
config: {{second: fast}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: limited
  namespace: pytbak
  annotations: {{konghq.com/plugins: limits}}
spec:
  ingressClassName: kong
  rules:
  - http:
      paths:
      - {{path: /limited, pathType: Prefix, backend: {{service: {{name: pytbak-svc, port: {{number: 5000}}}}}}}}
"
    );
    let t = translate(&seed(&extra), &Options::default(), 1);
    let reports = by_object(&t.failures);
    let on = |kind: &str, name: &str| {
        reports
            .iter()
            .find(|(o, _)| o.kind == kind && o.name == name)
            .map(|(_, m)| m.join("; "))
            .unwrap_or_default()
    };
    assert!(
        on("KongPlugin", "limits").contains("config.second"),
        "{reports:?}"
    );
    assert!(
        on("Ingress", "limited").contains("config.second"),
        "{reports:?}"
    );
    let plugins = t.document["plugins"].as_array().unwrap();
    let closed = plugins
        .iter()
        .find(|p| p["name"] == "request-termination")
        .expect("the route is closed");
    assert_eq!(closed["route"], "pytbak.limited.pytbak-svc..5000");
    assert_eq!(closed["config"]["status_code"], 503);
    // The seed's own route is untouched.
    assert!(plugins.iter().any(|p| p["name"] == "key-auth"));
    assert_eq!(
        t.document["services"][0]["routes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn other_classes_are_ignored_and_missing_secrets_reported() {
    let extra = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other, namespace: pytbak}
spec:
  ingressClassName: nginx
  rules: [{http: {paths: [{path: /x, pathType: Exact, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}]}}]
"#;
    let t = translate(&seed(extra), &Options::default(), 1);
    let routes = t.document["services"][0]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "the nginx Ingress is not ours");
    let reports = by_object(&t.failures);
    let consumer = reports
        .iter()
        .find(|(o, _)| o.kind == "KongConsumer")
        .expect("the missing credential Secret is reported");
    assert!(consumer.1[0].contains("lorenzo-apikey"), "{reports:?}");
    assert_eq!(
        t.document["consumers"][0]["username"], "lorenzo",
        "the consumer stays"
    );
}

/// KIC's other credential types (KongConsumer `credentials` naming Secrets labelled
/// `konghq.com/credential`, or with the older `kongCredType`): each becomes its decK list
/// under the consumer, and the document loads with every one of them.
#[test]
fn every_credential_type_translates_into_its_list() {
    let extra = r#"
apiVersion: configuration.konghq.com/v1
kind: KongConsumer
metadata:
  name: ann
  namespace: pytbak
  annotations: {kubernetes.io/ingress.class: kong}
username: ann
credentials: [ann-basic, ann-jwt, ann-hmac, ann-acl]
---
apiVersion: v1
kind: Secret
metadata: {name: ann-basic, namespace: pytbak, labels: {konghq.com/credential: basic-auth}}
stringData: {username: ann, password: open-sesame}
---
apiVersion: v1
kind: Secret
metadata: {name: ann-jwt, namespace: pytbak}
stringData: {kongCredType: jwt, key: ann-issuer, secret: s3cret, algorithm: HS256}
---
apiVersion: v1
kind: Secret
metadata: {name: ann-hmac, namespace: pytbak, labels: {konghq.com/credential: hmac-auth}}
stringData: {username: ann-hmac, secret: other}
---
apiVersion: v1
kind: Secret
metadata: {name: ann-acl, namespace: pytbak, labels: {konghq.com/credential: acl}}
stringData: {group: gold}
"#;
    let t = translate(
        &seed(&format!("{SECRET_AND_ENDPOINTS}---{extra}")),
        &Options::default(),
        1,
    );
    assert!(t.failures.is_empty(), "{:?}", t.failures);
    let consumers = t.document["consumers"].as_array().unwrap();
    let ann = consumers.iter().find(|c| c["username"] == "ann").unwrap();
    assert_eq!(ann["basicauth_credentials"][0]["username"], "ann");
    assert_eq!(ann["jwt_secrets"][0]["key"], "ann-issuer");
    assert_eq!(ann["hmacauth_credentials"][0]["secret"], "other");
    assert_eq!(ann["acls"][0]["group"], "gold");
    let kinds: Vec<_> = t.config.records.iter().map(|r| r.kind).collect();
    for kind in [Kind::BasicAuth, Kind::JwtSecret, Kind::HmacAuth, Kind::Acl] {
        assert!(kinds.contains(&kind), "{kind:?}: {kinds:?}");
    }
}
