//! The Kubernetes objects a translation reads: the built-in kinds as the API serves them
//! (k8s-openapi's types) and Kong's CRDs, reduced to the fields the translation uses.
//!
//! Manifests read offline go through the same types: each document is checked for its kind,
//! and a networking.k8s.io/v1beta1 (or extensions/v1beta1) Ingress is converted to v1 as the
//! API server converts it on storage, so an old manifest translates as the cluster would.
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Kong's CRD group.
pub const KONG_GROUP: &str = "configuration.konghq.com";

/// Everything a translation reads, as the cluster holds it now.
#[derive(Default, Clone)]
pub struct Cluster {
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub secrets: Vec<Secret>,
    pub kong_plugins: Vec<KongPlugin>,
    pub kong_cluster_plugins: Vec<KongPlugin>,
    pub kong_consumers: Vec<KongConsumer>,
    pub kong_consumer_groups: Vec<KongConsumerGroup>,
    pub kong_ingresses: Vec<KongIngress>,
}

/// A KongPlugin (namespaced) or KongClusterPlugin (cluster-wide; its `configFrom` may name the
/// Secret's namespace).
#[derive(Deserialize, Clone, Default, Debug)]
pub struct KongPlugin {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub plugin: String,
    pub config: Option<Value>,
    #[serde(rename = "configFrom")]
    pub config_from: Option<ConfigFrom>,
    /// Not applied yet; a KongPlugin with them is refused rather than run half-configured.
    #[serde(default, rename = "configPatches")]
    pub config_patches: Vec<Value>,
    #[serde(default)]
    pub disabled: bool,
    pub protocols: Option<Vec<String>>,
    pub instance_name: Option<String>,
}

#[derive(Deserialize, Clone, Default, Debug)]
pub struct ConfigFrom {
    #[serde(rename = "secretKeyRef")]
    pub secret_key_ref: SecretKeyRef,
}

#[derive(Deserialize, Clone, Default, Debug)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
    pub namespace: Option<String>,
}

#[derive(Deserialize, Clone, Default, Debug)]
pub struct KongConsumer {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    #[serde(default)]
    pub credentials: Vec<String>,
    #[serde(default, rename = "consumerGroups")]
    pub consumer_groups: Vec<String>,
}

#[derive(Deserialize, Clone, Default, Debug)]
pub struct KongConsumerGroup {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// KongIngress: KIC 3.x applies only its `upstream` section (through a Service's
/// `konghq.com/override` annotation); `proxy` and `route` became annotations.
#[derive(Deserialize, Clone, Default, Debug)]
pub struct KongIngress {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub upstream: Option<serde_json::Map<String, Value>>,
    pub proxy: Option<Value>,
    pub route: Option<Value>,
}

/// The object a failure or an entity came from, as an Event's `involvedObject` names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectRef {
    pub fn new(kind: &'static str, api_version: &'static str, meta: &ObjectMeta) -> ObjectRef {
        ObjectRef {
            kind,
            api_version,
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
        }
    }

    /// `Ingress pytbak/api`
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// KIC's tags for an entity made from this object (`k8s-name:api`, ...): the console shows
    /// an entity with them as owned by the cluster.
    pub fn tags(&self) -> Vec<String> {
        let (group, version) = match self.api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version),
        };
        let mut tags = vec![format!("k8s-name:{}", self.name)];
        if let Some(ns) = &self.namespace {
            tags.push(format!("k8s-namespace:{ns}"));
        }
        tags.push(format!("k8s-kind:{}", self.kind));
        if let Some(uid) = &self.uid {
            tags.push(format!("k8s-uid:{uid}"));
        }
        if !group.is_empty() {
            tags.push(format!("k8s-group:{group}"));
        }
        tags.push(format!("k8s-version:{version}"));
        tags
    }

    /// The object an entity's tags name (the inverse of `tags`).
    pub fn from_tags(tags: &[Value]) -> Option<ObjectRef> {
        let get = |prefix| tollgate_gateway::model::owner::tag(tags, prefix).map(str::to_string);
        let kind = KINDS
            .iter()
            .find(|(k, _)| get("k8s-kind:").as_deref() == Some(k))?;
        Some(ObjectRef {
            kind: kind.0,
            api_version: kind.1,
            namespace: get("k8s-namespace:"),
            name: get("k8s-name:")?,
            uid: get("k8s-uid:"),
        })
    }
}

/// The kinds entities come from, with the API version the controller reads them in.
pub const KINDS: [(&str, &str); 8] = [
    ("Ingress", "networking.k8s.io/v1"),
    ("Service", "v1"),
    ("Secret", "v1"),
    ("KongPlugin", "configuration.konghq.com/v1"),
    ("KongClusterPlugin", "configuration.konghq.com/v1"),
    ("KongConsumer", "configuration.konghq.com/v1"),
    ("KongIngress", "configuration.konghq.com/v1"),
    ("KongConsumerGroup", "configuration.konghq.com/v1beta1"),
];

/// The API version of `kind`, as `KINDS` lists it.
pub fn api_version(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| *v)
        .unwrap_or("v1")
}

/// A Secret's data, `stringData` merged in as the API server merges it.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

impl Cluster {
    /// Files manifests (documents already parsed) by kind. Kinds the controller does not read
    /// (Deployments, Namespaces, ...) are skipped; a document of a known kind that does not
    /// parse is an error naming it.
    pub fn from_manifests(docs: Vec<Value>) -> Result<Cluster, Vec<String>> {
        let mut cluster = Cluster::default();
        let mut errors = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let doc = match doc.get("kind").and_then(Value::as_str) {
                Some("List") => {
                    let items = doc["items"].as_array().cloned().unwrap_or_default();
                    for item in items {
                        if let Err(e) = cluster.add(item) {
                            errors.push(format!("document {}: {e}", i + 1));
                        }
                    }
                    continue;
                }
                _ => doc,
            };
            if let Err(e) = cluster.add(doc) {
                errors.push(format!("document {}: {e}", i + 1));
            }
        }
        if errors.is_empty() {
            Ok(cluster)
        } else {
            Err(errors)
        }
    }

    fn add(&mut self, doc: Value) -> Result<(), String> {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let what = |e: serde_json::Error| format!("{kind} {name}: {e}");
        match (kind.as_str(), version.as_str()) {
            ("Ingress", v) if v.ends_with("v1beta1") => {
                parsed(&mut self.ingresses, ingress_v1(doc), what)
            }
            ("Ingress", _) => parsed(&mut self.ingresses, doc, what),
            ("IngressClass", _) => parsed(&mut self.ingress_classes, doc, what),
            ("Service", "v1") => parsed(&mut self.services, doc, what),
            ("EndpointSlice", _) => parsed(&mut self.endpoint_slices, doc, what),
            ("Secret", _) => parsed(&mut self.secrets, doc, what),
            ("KongPlugin", _) => parsed(&mut self.kong_plugins, doc, what),
            ("KongClusterPlugin", _) => parsed(&mut self.kong_cluster_plugins, doc, what),
            ("KongConsumer", _) => parsed(&mut self.kong_consumers, doc, what),
            ("KongConsumerGroup", _) => parsed(&mut self.kong_consumer_groups, doc, what),
            ("KongIngress", _) => parsed(&mut self.kong_ingresses, doc, what),
            _ => Ok(()),
        }
    }
}

/// Adds `doc`, read as a `T`, to `list`.
fn parsed<T: serde::de::DeserializeOwned>(
    list: &mut Vec<T>,
    doc: Value,
    what: impl Fn(serde_json::Error) -> String,
) -> Result<(), String> {
    list.push(serde_json::from_value(doc).map_err(what)?);
    Ok(())
}

/// A v1beta1 Ingress as the API server stores it in v1: `serviceName`/`servicePort` become
/// `service.name`/`service.port`, `backend` becomes `defaultBackend`, and a path without a
/// type is `ImplementationSpecific`.
fn ingress_v1(mut doc: Value) -> Value {
    doc["apiVersion"] = json!("networking.k8s.io/v1");
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return doc;
    };
    if let Some(b) = spec.remove("backend") {
        spec.insert("defaultBackend".into(), backend_v1(b));
    }
    for rule in spec
        .get_mut("rules")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for path in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
            let b = path["backend"].take();
            path["backend"] = backend_v1(b);
            if path.get("pathType").is_none_or(Value::is_null) {
                path["pathType"] = json!("ImplementationSpecific");
            }
        }
    }
    doc
}

fn backend_v1(b: Value) -> Value {
    if b.get("serviceName").is_none() {
        return b;
    }
    let port = match &b["servicePort"] {
        Value::Number(n) => json!({"number": n}),
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => json!({"number": n}),
            Err(_) => json!({"name": s}),
        },
        _ => json!({}),
    };
    json!({"service": {"name": b["serviceName"], "port": port}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1beta1_ingress_reads_as_v1() {
        let doc = json!({
            "apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress",
            "metadata": {"name": "api", "namespace": "ns"},
            "spec": {"backend": {"serviceName": "d", "servicePort": "http"},
                     "rules": [{"host": "h", "http": {"paths": [
                        {"path": "/api/", "backend": {"serviceName": "s", "servicePort": 5000}}]}}]}
        });
        let c = Cluster::from_manifests(vec![doc]).unwrap();
        let spec = c.ingresses[0].spec.as_ref().unwrap();
        let path = &spec.rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths[0];
        assert_eq!(path.path_type, "ImplementationSpecific");
        let svc = path.backend.service.as_ref().unwrap();
        assert_eq!(
            (svc.name.as_str(), svc.port.as_ref().unwrap().number),
            ("s", Some(5000))
        );
        let d = spec
            .default_backend
            .as_ref()
            .unwrap()
            .service
            .as_ref()
            .unwrap();
        assert_eq!(d.port.as_ref().unwrap().name.as_deref(), Some("http"));
    }

    #[test]
    fn tags_name_their_object_both_ways() {
        let meta = ObjectMeta {
            name: Some("api".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let r = ObjectRef::new("Ingress", "networking.k8s.io/v1", &meta);
        let tags: Vec<Value> = r.tags().into_iter().map(Value::String).collect();
        assert_eq!(
            tags,
            vec![
                "k8s-name:api",
                "k8s-namespace:ns",
                "k8s-kind:Ingress",
                "k8s-uid:u1",
                "k8s-group:networking.k8s.io",
                "k8s-version:v1"
            ]
        );
        assert_eq!(ObjectRef::from_tags(&tags), Some(r));
    }
}
