//! Kubernetes: the seed's manifests served through the ingress controller's translation, as a
//! decK file (`tollgate kubernetes translate`) and through the running controller.
mod common;

use common::*;
use std::time::Duration;

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
