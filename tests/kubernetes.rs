//! Kubernetes: the seed's manifests served through the ingress controller's translation, as a
//! decK file (`tollgate kubernetes translate`) and through the running controller.
mod common;
#[path = "kubernetes/kube_api.rs"]
mod kube_api;

use common::*;
use kube_api::KubeApi;
use serde_json::Value;
use std::time::{Duration, Instant};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/k8s-seed");
const HOST: &str = "api.ing.h4x0r3d.lan";
const LORENZO_KEY: &str = "332d05445a560ee65a76aeaa372d8904";

/// The seed's manifest files.
fn seed_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(SEED)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// What the seed made with kubectl besides its files, as a v1 cluster stores it: lorenzo's
/// credential Secret (`kubectl create secret generic lorenzo-apikey -n pytbak
/// --from-literal=kongCredType=key-auth --from-literal=key=...`, so base64 `data`), the
/// backend's EndpointSlice (the backend on loopback as the Service's one ready pod), and a
/// rate-limiting KongPlugin of 4 per second the test adds to the Service's plugins.
fn cluster_additions(backend_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: lorenzo-apikey, namespace: pytbak}}
type: Opaque
data: {{kongCredType: a2V5LWF1dGg=, key: MzMyZDA1NDQ1YTU2MGVlNjVhNzZhZWFhMzcyZDg5MDQ=}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: pytbak-svc-x7k2p
  namespace: pytbak
  labels: {{kubernetes.io/service-name: pytbak-svc}}
addressType: IPv4
ports: [{{name: "", port: {backend_port}, protocol: TCP}}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
---
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {{name: pytbak-rate-limit, namespace: pytbak}}
plugin: rate-limiting
config: {{second: 4, hour: 1200, policy: local}}
"#
    )
}

/// The seed's Service with the rate-limiting plugin added to its `konghq.com/plugins`.
fn service_with_limits() -> String {
    std::fs::read_to_string(format!("{SEED}/02-svc-pytbak.yaml"))
        .unwrap()
        .replace(
            "konghq.com/plugins: pytbak-key-auth",
            "konghq.com/plugins: pytbak-key-auth, pytbak-rate-limit",
        )
}

async fn get(gw: &Gateway, path: &str, key: Option<&str>) -> Resp {
    let mut headers = vec![("host", HOST)];
    if let Some(k) = key {
        headers.push(("apikey", k));
    }
    send("GET", &gw.proxy_url(path), &headers, None).await
}

/// The seed's walkthrough: 401 without a key, 200 with lorenzo's, and the KongPlugin's
/// limit of 4 per second with Kong's headers, then 429.
async fn seed_walkthrough(gw: &Gateway) {
    let r = get(gw, "/api/get/context", None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json["message"], "No API key found in request");
    let r = get(gw, "/api/get/context", Some("not-a-key")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // Start at the beginning of a second so the burst shares one window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1020 - u64::from(now.subsec_millis()))).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = get(gw, "/api/get/context", Some(LORENZO_KEY)).await;
        statuses.push(r.status);
        if i == 0 {
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json["path"], "/api/get/context", "strip_path is false");
            assert_eq!(r.json["headers"]["host"], HOST, "preserve_host is true");
            assert_eq!(r.header("x-ratelimit-limit-second"), Some("4"));
            assert_eq!(r.header("x-ratelimit-remaining-second"), Some("3"));
            assert_eq!(r.header("ratelimit-limit"), Some("4"));
            assert_eq!(r.header("ratelimit-remaining"), Some("3"));
        }
        if i == 4 {
            assert_eq!(r.header("retry-after").is_some(), r.status == 429);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn translate_prints_a_deck_file_that_serves_the_seed_walkthrough_db_less() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("cluster.yaml");
    std::fs::write(&extra, cluster_additions(backend.port)).unwrap();
    let service = dir.path().join("02-svc-pytbak.yaml");
    std::fs::write(&service, service_with_limits()).unwrap();
    let mut files: Vec<String> = seed_files()
        .into_iter()
        .filter(|f| !f.ends_with("02-svc-pytbak.yaml"))
        .collect();
    files.push(service.display().to_string());
    files.push(extra.display().to_string());
    let mut args = vec!["kubernetes", "translate"];
    args.extend(files.iter().map(String::as_str));
    let (ok, deck, err) = tollgate(&args, &[], None);
    assert!(ok, "{err}\n{deck}");
    assert!(
        deck.contains("name: pytbak.api.pytbak-svc.api.ing.h4x0r3d.lan.5000"),
        "{deck}"
    );

    let file = dir.path().join("kong.yaml");
    std::fs::write(&file, &deck).unwrap();
    let gw = Gateway::start(&[
        ("TOLLGATE_DATABASE", "off"),
        ("TOLLGATE_DECLARATIVE_CONFIG", file.to_str().unwrap()),
    ])
    .await;
    seed_walkthrough(&gw).await;

    // Without the credential Secret the consumer has no key, and the command says why.
    let (ok, _, err) = tollgate(
        &[
            "kubernetes",
            "translate",
            &seed_files()[0],
            &seed_files()[2],
            &seed_files()[3],
            &seed_files()[4],
        ],
        &[],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("KongConsumer pytbak/pytbak-consumer: credential \"lorenzo-apikey\" failure"),
        "{err}"
    );
}

/// The seed's Ingress as a v1 cluster stores it (the API server converts the seed's
/// networking.k8s.io/v1beta1 manifest: `service.name`/`port.number`, `ImplementationSpecific`).
const SEED_INGRESS_V1: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  annotations: {kubernetes.io/ingress.class: kong}
  name: api
  namespace: pytbak
  labels: {app: api}
spec:
  rules:
  - host: api.ing.h4x0r3d.lan
    http:
      paths:
      - {path: /api/, pathType: ImplementationSpecific, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}
      - {path: /api/get/, pathType: ImplementationSpecific, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}
      - {path: /api/post/, pathType: ImplementationSpecific, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}
      - {path: /api/put/, pathType: ImplementationSpecific, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}
      - {path: /api/delete/, pathType: ImplementationSpecific, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}
"#;

/// The gateway's own Service, whose load balancer address Ingress status shows.
const GATEWAY_SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata: {name: tollgate-proxy, namespace: tollgate}
spec:
  type: LoadBalancer
  clusterIP: 10.152.183.55
  ports: [{name: proxy, port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10}]
"#;

/// The stand-in holding the seed's cluster: its manifests (the Ingress as v1) and what the
/// seed made with kubectl.
async fn seed_cluster(backend_port: u16) -> KubeApi {
    let api = KubeApi::start().await;
    for f in [
        "02-svc-pytbak.yaml",
        "pytbak-auth.yaml",
        "pytbak-consumer.yaml",
    ] {
        api.apply(&std::fs::read_to_string(format!("{SEED}/{f}")).unwrap());
    }
    api.apply(SEED_INGRESS_V1);
    api.apply(&cluster_additions(backend_port));
    api.apply(GATEWAY_SERVICE);
    api
}

/// A gateway in Kubernetes mode against the stand-in, DB-less.
async fn controller(api: &KubeApi, dir: &std::path::Path) -> Gateway {
    controller_with(api, dir, "off").await
}

/// A gateway in Kubernetes mode against the stand-in, with the store `database`.
async fn controller_with(api: &KubeApi, dir: &std::path::Path, database: &str) -> Gateway {
    controller_listening(api, dir, &[("TOLLGATE_DATABASE", database)], &[]).await
}

/// A gateway in Kubernetes mode against the stand-in, with `env` and `listeners` (as
/// `Gateway::start_listening` takes them).
async fn controller_listening(
    api: &KubeApi,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    listeners: &[&str],
) -> Gateway {
    let kubeconfig = api.kubeconfig(dir);
    let mut all = vec![
        ("TOLLGATE_KUBERNETES", "true"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("POD_NAMESPACE", "tollgate"),
        ("POD_NAME", "tollgate-0"),
        ("TOLLGATE_PUBLISH_SERVICE", "tollgate/tollgate-proxy"),
    ];
    all.extend_from_slice(env);
    Gateway::start_listening(&all, listeners).await
}

/// Polls `check` until it holds; how long that took. Fails after `within`.
async fn within<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_serves_the_seed_and_follows_the_cluster_within_a_second() {
    let backend = Backend::start().await;
    let api = seed_cluster(backend.port).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = controller(&api, dir.path()).await;

    // Served as translated: key-auth from the Service's KongPlugin, lorenzo's key from his
    // credential Secret; the rate-limiting KongPlugin exists but nothing names it yet.
    assert_eq!(get(&gw, "/api/get/context", None).await.status, 401);
    let r = get(&gw, "/api/get/context", Some(LORENZO_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-ratelimit-limit-second"), None);

    // Changing endpoints moves traffic within a second.
    let other = Backend::start().await;
    api.apply(&cluster_additions(other.port));
    let took = within(Duration::from_secs(1), "the new endpoints", || async {
        let before = other.hits();
        get(&gw, "/api/post/context", Some(LORENZO_KEY)).await;
        other.hits() > before
    })
    .await;
    eprintln!("endpoint change applied in {took:?}");

    // Deleting the credential Secret takes lorenzo's key away within a second.
    api.delete("Secret", "pytbak", "lorenzo-apikey");
    let took = within(Duration::from_secs(1), "the Secret's deletion", || async {
        get(&gw, "/api/get/context", Some(LORENZO_KEY)).await.status == 401
    })
    .await;
    eprintln!("credential Secret deletion applied in {took:?}");
    api.apply(&cluster_additions(other.port));
    within(Duration::from_secs(1), "the Secret back", || async {
        get(&gw, "/api/get/context", Some(LORENZO_KEY)).await.status != 401
    })
    .await;

    // Adding the plugin annotation takes effect within a second.
    api.apply(&service_with_limits());
    let took = within(Duration::from_secs(1), "the plugin annotation", || async {
        get(&gw, "/api/get/context", Some(LORENZO_KEY))
            .await
            .header("x-ratelimit-limit-second")
            == Some("4")
    })
    .await;
    eprintln!("plugin annotation applied in {took:?}");
    seed_walkthrough(&gw).await;

    // A dropped watch loses no change: the change made while every watch is down arrives.
    api.drop_watches();
    api.delete("Secret", "pytbak", "lorenzo-apikey");
    within(
        Duration::from_secs(10),
        "the change made while the watches were down",
        || async { get(&gw, "/api/get/context", Some(LORENZO_KEY)).await.status == 401 },
    )
    .await;
    // Nor does a relist after 410 Gone: the history is compacted, the watches dropped, and
    // the change made meanwhile is found by listing again.
    api.compact();
    api.drop_watches();
    api.apply(&cluster_additions(other.port));
    within(
        Duration::from_secs(10),
        "the change made before the 410 relist",
        || async { get(&gw, "/api/get/context", Some(LORENZO_KEY)).await.status != 401 },
    )
    .await;
    assert!(api.expired() > 0, "no watch was answered 410 Gone");

    // One replica, elected by the Lease, writes the gateway Service's address into the
    // Ingress's status.
    within(Duration::from_secs(8), "the Ingress status", || async {
        api.get("Ingress", "pytbak", "api")
            .is_some_and(|i| i["status"]["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.10")
    })
    .await;
    let lease = api
        .get("Lease", "tollgate", "tollgate-leader")
        .expect("the lease");
    assert_eq!(lease["spec"]["holderIdentity"], "tollgate-0");
    let status = gw.status().await;
    assert_eq!(status.json["kubernetes"]["synced"], true, "{}", status.body);
    assert_eq!(
        status.json["kubernetes"]["objects"]["Ingress"], 1,
        "{}",
        status.body
    );
}

/// Events the controller wrote about `kind` objects, their notes.
fn event_notes(api: &KubeApi, kind: &str, name: &str) -> Vec<String> {
    api.writes()
        .into_iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/events"))
        .map(|(_, _, b)| b)
        .filter(|b: &Value| b["regarding"]["kind"] == kind && b["regarding"]["name"] == name)
        .map(|b| format!("{} {}: {}", b["type"], b["reason"], b["note"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_resources_become_events_and_status_lines_and_the_rest_is_served() {
    let backend = Backend::start().await;
    let api = seed_cluster(backend.port).await;
    // A KongPlugin with an invalid config, named by another Ingress; an Ingress of another
    // class; a KongConsumer whose credential Secret does not exist.
    api.apply(
        r#"apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {name: broken-limit, namespace: pytbak}
plugin: rate-limiting
config: {second: fast}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: limited
  namespace: pytbak
  annotations: {konghq.com/plugins: broken-limit}
spec:
  ingressClassName: kong
  rules:
  - host: api.ing.h4x0r3d.lan
    http:
      paths: [{path: /limited, pathType: Prefix, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: elsewhere, namespace: pytbak}
spec:
  ingressClassName: nginx
  rules:
  - host: api.ing.h4x0r3d.lan
    http:
      paths: [{path: /nginx-only, pathType: Prefix, backend: {service: {name: pytbak-svc, port: {number: 5000}}}}]
---
apiVersion: configuration.konghq.com/v1
kind: KongConsumer
metadata:
  name: ghost
  namespace: pytbak
  annotations: {kubernetes.io/ingress.class: kong}
username: ghost
credentials: [no-such-secret]
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    // With a store (SQLite) of its own, where operators and the portal add entities.
    let gw = controller_with(&api, dir.path(), "sqlite").await;

    // The rest is served: the seed's route with lorenzo's key.
    assert_eq!(
        get(&gw, "/api/get/context", Some(LORENZO_KEY)).await.status,
        200
    );
    // The route whose plugin is broken is closed, not opened without it (key-auth, from the
    // Service, still runs first).
    let r = get(&gw, "/limited", Some(LORENZO_KEY)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // The other class's Ingress is not served (its path falls to the seed's routes: none match).
    assert_eq!(get(&gw, "/nginx-only", None).await.status, 404);

    within(Duration::from_secs(5), "the Events", || async {
        !event_notes(&api, "KongPlugin", "broken-limit").is_empty()
            && !event_notes(&api, "Ingress", "limited").is_empty()
            && !event_notes(&api, "KongConsumer", "ghost").is_empty()
    })
    .await;
    for (kind, name) in [("KongPlugin", "broken-limit"), ("Ingress", "limited")] {
        let notes = event_notes(&api, kind, name).join("\n");
        assert!(
            notes.contains("\"Warning\" \"KongConfigurationTranslationFailed\""),
            "{notes}"
        );
        assert!(
            notes.contains("config.second"),
            "the field is named: {notes}"
        );
    }
    let notes = event_notes(&api, "KongConsumer", "ghost").join("\n");
    assert!(notes.contains("no-such-secret"), "{notes}");
    assert!(event_notes(&api, "Ingress", "elsewhere").is_empty());

    // The cluster's entities change with their objects, not through the admin API; what an
    // operator adds beside them stays across translations.
    let route = "pytbak.api.pytbak-svc.api.ing.h4x0r3d.lan.5000";
    let r = send(
        "PATCH",
        &gw.admin_url(&format!("/routes/{route}")),
        &[],
        form(&[("strip_path", "true")]),
    )
    .await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(
        r.body
            .contains("belongs to the Kubernetes Ingress pytbak/api"),
        "{}",
        r.body
    );
    let r = send("DELETE", &gw.admin_url("/consumers/lorenzo"), &[], None).await;
    assert_eq!(r.status, 405, "{}", r.body);
    let r = send(
        "POST",
        &gw.admin_url("/consumers"),
        &[],
        form(&[("username", "operator-made")]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(
        "POST",
        &gw.admin_url("/consumers/operator-made/key-auth"),
        &[],
        form(&[("key", "operator-key-0001")]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    api.apply(&service_with_limits());
    within(Duration::from_secs(2), "the next translation", || async {
        get(&gw, "/api/get/context", Some(LORENZO_KEY))
            .await
            .header("x-ratelimit-limit-second")
            == Some("4")
    })
    .await;
    assert_eq!(
        get(&gw, "/api/get/context", Some("operator-key-0001"))
            .await
            .status,
        200
    );

    let status = gw.status().await;
    let lines = status.json["kubernetes"]["translation_failures"]["lines"].to_string();
    assert!(
        lines.contains("KongPlugin pytbak/broken-limit") && lines.contains("config.second"),
        "{lines}"
    );
    assert!(lines.contains("KongConsumer pytbak/ghost"), "{lines}");
}

const OPERATOR_PASSWORD: &str = "operator password for the console";

/// Console and portal in Kubernetes mode, over the store `env` names: the console lists the
/// cluster's entities read-only with their objects, and a developer's portal key (kept in the
/// gateway's store) opens the cluster's route with the plan's limit, beside lorenzo's key from
/// the cluster, across a later translation.
async fn console_and_portal_beside_the_cluster(env: &[(&str, &str)]) {
    let backend = Backend::start().await;
    let api = seed_cluster(backend.port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.push(("TOLLGATE_CONSOLE_ADMIN_PASSWORD", OPERATOR_PASSWORD));
    let listeners = ["TOLLGATE_CONSOLE_LISTEN", "TOLLGATE_PORTAL_LISTEN"];
    let gw = controller_listening(&api, dir.path(), &env, &listeners).await;
    let (console, portal) = (
        Site {
            port: gw.listeners[0],
        },
        Site {
            port: gw.listeners[1],
        },
    );
    let operator = console.operator_session(OPERATOR_PASSWORD).await;

    // The console lists the seed's route with its Ingress, without edit or delete.
    // With PostgreSQL the store's copy is the lease holder's to write: wait for the lease.
    within(
        Duration::from_secs(8),
        "the cluster's route in the console",
        || async {
            console
                .get("/routes", Some(&operator))
                .await
                .body
                .contains("Ingress pytbak/api")
        },
    )
    .await;
    let route_name = "pytbak.api.pytbak-svc.api.ing.h4x0r3d.lan.5000";
    let route = send(
        "GET",
        &gw.admin_url(&format!("/routes/{route_name}")),
        &[],
        None,
    )
    .await;
    let id = route.json["id"]
        .as_str()
        .expect("the route's id")
        .to_string();
    let list = console.get("/routes", Some(&operator)).await;
    assert!(list.body.contains("read-only"), "{}", list.body);
    assert!(
        !list.body.contains(&format!("/routes/{id}/edit")),
        "{}",
        list.body
    );
    for action in ["edit", "delete"] {
        let r = console
            .get(&format!("/routes/{id}/{action}"), Some(&operator))
            .await;
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(
            r.body.contains("kubectl edit ingress -n pytbak api"),
            "{}",
            r.body
        );
    }
    let lorenzo = send("GET", &gw.admin_url("/consumers/lorenzo"), &[], None).await;
    let lorenzo_id = lorenzo.json["id"].as_str().expect("lorenzo's id");
    let page = console
        .get(&format!("/consumers/{lorenzo_id}"), Some(&operator))
        .await;
    assert!(
        page.body.contains("KongConsumer pytbak/pytbak-consumer"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("from the Secret pytbak/lorenzo-apikey"),
        "{}",
        page.body
    );

    // A developer signs up in the portal and gets a key on the operator's plan, which covers
    // the cluster's service: the key opens the cluster's route (key-auth from the Service's
    // KongPlugin), limited by the plan.
    let service = route.json["service"]["id"]
        .as_str()
        .expect("the route's service");
    let r = console
        .post(
            "/plans",
            Some(&operator),
            &[("name", "Free"), ("second", "3"), ("service", service)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let email = "dev@example.com";
    let password = "developer password 123";
    let r = portal
        .post("/signup", None, &[("email", email), ("password", password)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = portal
        .post("/login", None, &[("email", email), ("password", password)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let developer = session_cookie(&r);
    let apps = portal.get("/apps", Some(&developer)).await;
    let plan = between(&apps.body, "<option value=\"", "\"").expect("a plan is offered");
    let r = portal
        .post(
            "/apps",
            Some(&developer),
            &[("name", "shop"), ("plan", &plan)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = between(&r.body, "data-new-key=\"", "\"").expect("the key is shown");
    within(
        Duration::from_secs(2),
        "the portal key on the cluster's route",
        || async { get(&gw, "/api/get/context", Some(&key)).await.status == 200 },
    )
    .await;
    let r = get(&gw, "/api/get/context", Some(&key)).await;
    assert_eq!(
        r.header("x-ratelimit-limit-second"),
        Some("3"),
        "{}",
        r.body
    );

    // The cluster changes (the Service gets its rate-limiting KongPlugin): the portal's
    // entities stay, and Kong's precedence puts the plan's consumer limit over the Service's.
    api.apply(&service_with_limits());
    within(Duration::from_secs(2), "the Service's limit", || async {
        get(&gw, "/api/get/context", Some(LORENZO_KEY))
            .await
            .header("x-ratelimit-limit-second")
            == Some("4")
    })
    .await;
    let r = get(&gw, "/api/get/context", Some(&key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-ratelimit-limit-second"),
        Some("3"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn console_and_portal_work_beside_the_cluster_with_sqlite() {
    console_and_portal_beside_the_cluster(&[("TOLLGATE_DATABASE", "sqlite")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_and_portal_work_beside_the_cluster_with_postgresql() {
    let Some(db) = PgDatabase::create("tollgate_k8s").await else {
        return;
    };
    console_and_portal_beside_the_cluster(&[
        ("TOLLGATE_DATABASE", "postgres"),
        ("TOLLGATE_DATABASE_URL", &db.url),
    ])
    .await;
    db.drop_now().await;
}

/// deploy/kubernetes: every overlay renders with `kubectl kustomize`, and every rendered object
/// validates against the Kubernetes 1.30 schemas (strict: an unknown field is an error), the
/// CRDs' own instances (the seed's KongPlugin and KongConsumer) against the CRDs; hadolint
/// passes the Dockerfile.
#[test]
fn manifests_render_and_validate_and_the_dockerfile_lints() {
    let (Some(kubectl), Some(hadolint)) = (
        service_env("TOLLGATE_TEST_KUBECTL"),
        service_env("TOLLGATE_TEST_HADOLINT"),
    ) else {
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let crds = format!("{root}/deploy/kubernetes/crds/kong-crds.yaml");
    let dir = tempfile::tempdir().unwrap();
    for overlay in ["dbless", "postgres", "clickhouse", "redis"] {
        let out = std::process::Command::new(&kubectl)
            .args([
                "kustomize",
                &format!("{root}/deploy/kubernetes/overlays/{overlay}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &out.stdout).unwrap();
        let report = python_json(
            "k8s_validate.py",
            &["1.30", file.to_str().unwrap()],
            &["--crds", &crds],
        );
        assert_eq!(
            report["errors"],
            serde_json::json!([]),
            "{overlay}: {report}"
        );
        let checked = report["checked"].to_string();
        for kind in [
            "Deployment tollgate/tollgate",
            "PodDisruptionBudget",
            "ClusterRole",
            "IngressClass",
            "CustomResourceDefinition",
        ] {
            assert!(checked.contains(kind), "{overlay} lacks {kind}: {checked}");
        }
    }
    let seed_crs: Vec<String> = [
        "pytbak-auth.yaml",
        "pytbak-consumer.yaml",
        "02-svc-pytbak.yaml",
    ]
    .iter()
    .map(|f| format!("{SEED}/{f}"))
    .collect();
    let mut args = vec!["1.30"];
    args.extend(seed_crs.iter().map(String::as_str));
    let report = python_json("k8s_validate.py", &args, &["--crds", &crds]);
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(report["checked"]
        .to_string()
        .contains("KongConsumer pytbak/pytbak-consumer"));
    // The validator does refuse what breaks a schema.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: configuration.konghq.com/v1\nkind: KongPlugin\nmetadata: {name: x}\nconfig: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {portz: []}\n").unwrap();
    let report = python_json(
        "k8s_validate.py",
        &["1.30", bad.to_str().unwrap()],
        &["--crds", &crds],
    );
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );

    let out = std::process::Command::new(&hadolint)
        .arg(format!("{root}/deploy/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cluster of the benchmark: `paths` Ingress paths (10 per Ingress, each Ingress on a
/// Service of its own) and `consumers` KongConsumers, each with a key-auth credential Secret.
fn large_cluster(api: &KubeApi, backend_port: u16, paths: usize, consumers: usize) {
    let mut text = String::new();
    for i in 0..paths / 10 {
        let rules: String = (0..10)
            .map(|p| format!("      - {{path: /svc{i}/p{p}, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n"))
            .collect();
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: bench, annotations: {{konghq.com/plugins: auth}}}}\nspec: {{ports: [{{port: 80, protocol: TCP}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc{i}-a, namespace: bench, labels: {{kubernetes.io/service-name: svc{i}}}}}\naddressType: IPv4\nports: [{{name: \"\", port: {backend_port}, protocol: TCP}}]\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}, namespace: bench}}\nspec:\n  ingressClassName: kong\n  rules:\n  - host: bench.example\n    http:\n      paths:\n{rules}"
        ));
    }
    text.push_str("---\napiVersion: configuration.konghq.com/v1\nkind: KongPlugin\nmetadata: {name: auth, namespace: bench}\nplugin: key-auth\n");
    for c in 0..consumers {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: key{c}, namespace: bench, labels: {{konghq.com/credential: key-auth}}}}\nstringData: {{key: bench-key-{c}}}\n\
             ---\napiVersion: configuration.konghq.com/v1\nkind: KongConsumer\nmetadata: {{name: c{c}, namespace: bench, annotations: {{kubernetes.io/ingress.class: kong}}}}\nusername: user{c}\ncredentials: [key{c}]\n"
        ));
    }
    api.apply(&text);
}

/// deploy/bench/kubernetes.sh: 5,000 Ingress paths and 10,000 consumers (with their Secrets)
/// in the stand-in; how long the controller takes from the lists to a served snapshot, how
/// long one change then takes to reach the proxy, and the gateway's memory. Run with
/// `--ignored` in a release build.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bench_large_cluster() {
    let backend = Backend::start().await;
    let api = KubeApi::start().await;
    large_cluster(&api, backend.port, 5_000, 10_000);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let gw = controller(&api, dir.path()).await;
    let ready = started.elapsed();
    let key = |c: usize| format!("bench-key-{c}");
    let get_at = |path: String, c: usize| {
        let gw = &gw;
        async move {
            send(
                "GET",
                &gw.proxy_url(&path),
                &[("host", "bench.example"), ("apikey", &key(c))],
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(get_at("/svc499/p9/x".into(), 9_999).await, 200);
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split(&format!("{name}="))
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let applied: Vec<(u64, u64)> = gw
        .log_text()
        .lines()
        .map(without_colours)
        .filter(|l| l.contains("Kubernetes configuration applied"))
        .filter_map(|l| Some((field(&l, "translate_ms")?, field(&l, "elapsed_ms")?)))
        .collect();
    // One more path: how long until the proxy serves it.
    let change = Instant::now();
    api.apply("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: extra, namespace: bench}\nspec:\n  ingressClassName: kong\n  rules:\n  - host: bench.example\n    http:\n      paths: [{path: /extra, pathType: Prefix, backend: {service: {name: svc0, port: {number: 80}}}}]\n");
    within(Duration::from_secs(5), "the extra path", || async {
        get_at("/extra".into(), 1).await == 200
    })
    .await;
    let change = change.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let rss = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    let (translate_ms, snapshot_ms) = applied.first().copied().unwrap_or_default();
    println!(
        "{{\"paths\": 5000, \"consumers\": 10000, \"translate_ms\": {translate_ms}, \"first_snapshot_ms\": {snapshot_ms}, \"start_to_ready_ms\": {}, \"change_to_served_ms\": {}, \"rss_mib\": {}, \"peak_rss_mib\": {}}}",
        ready.as_millis(),
        change.as_millis(),
        rss("VmRSS:"),
        rss("VmHWM:")
    );
}

/// A log line without its terminal colour codes (`\x1b[2m...\x1b[0m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
