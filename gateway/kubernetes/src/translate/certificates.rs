//! Ingress TLS sections into certificates and SNIs (KIC's `translate_certs.go`): each
//! `kubernetes.io/tls` Secret an Ingress names becomes one certificate serving the hosts that
//! name it; a host already served by an older Ingress's certificate keeps that one.
use super::objects::{api_version, secret_data, ObjectRef};
use super::{Failures, Index};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// A TLS Secret on its way to a certificate: the Secret, its cert and key, the hosts it serves.
struct Served {
    origin: ObjectRef,
    cert: String,
    key: String,
    hosts: Vec<String>,
}

pub fn certificates(ingresses: &[&Ingress], index: &Index, failures: &mut Failures) -> Vec<Value> {
    let mut certs: BTreeMap<(String, String), Served> = BTreeMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut ordered: Vec<&&Ingress> = ingresses.iter().collect();
    ordered.sort_by_key(|i| i.metadata.creation_timestamp.as_ref().map(|t| t.0));
    for ing in ordered {
        let origin = ObjectRef::new("Ingress", api_version("Ingress"), &ing.metadata);
        let ns = origin.namespace.clone().unwrap_or_default();
        for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let Some(secret) = index.secrets.get(&(ns.as_str(), secret_name)) else {
                failures.push(
                    &origin,
                    format!("failed to fetch the TLS secret {ns}/{secret_name}: not found"),
                );
                continue;
            };
            let data = secret_data(secret);
            let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
            let (Some(cert), Some(key)) = (text("tls.crt"), text("tls.key")) else {
                failures.push(
                    &origin,
                    format!("TLS secret {ns}/{secret_name} lacks tls.crt or tls.key"),
                );
                continue;
            };
            let entry = certs
                .entry((ns.clone(), secret_name.to_string()))
                .or_insert_with(|| {
                    let r = ObjectRef::new("Secret", api_version("Secret"), &secret.metadata);
                    Served {
                        origin: r,
                        cert,
                        key,
                        hosts: Vec::new(),
                    }
                });
            for h in tls.hosts.iter().flatten() {
                if taken.insert(h.clone()) {
                    entry.hosts.push(h.clone());
                }
            }
        }
    }
    certs
        .into_values()
        .map(|s| {
            let tags = s.origin.tags();
            let snis: Vec<Value> = s
                .hosts
                .iter()
                .map(|h| json!({"name": h, "tags": tags}))
                .collect();
            json!({"cert": s.cert, "key": s.key, "tags": tags, "snis": snis})
        })
        .collect()
}
