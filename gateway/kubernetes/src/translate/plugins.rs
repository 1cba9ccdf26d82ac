//! KongPlugins and KongClusterPlugins into plugins, attached where `konghq.com/plugins` names
//! them (KIC's `getPluginRelations` and `buildPlugins`): a Service's plugins on each Kong
//! service made from it, an Ingress's on each of its routes, a KongConsumer's on its consumer,
//! and a plugin named by both a consumer and routes or services once per pair. A
//! KongClusterPlugin labelled `global: "true"` applies everywhere.
//!
//! Each plugin's configuration is checked against the plugin's own schema (the one the admin
//! API validates with) before it is used. Where a plugin cannot be built (missing, invalid
//! config, unreadable `configFrom`), Tollgate fails closed where KIC would serve without it:
//! the routes and services that name it answer 503 (a request-termination in its place), and a
//! consumer that names it is left out, so a broken auth or limit plugin never opens a route.
use super::consumers::KongConsumerEntity;
use super::ingress::KongService;
use super::objects::{api_version, secret_data, KongPlugin, ObjectRef};
use super::{Failures, Index};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use tollgate_gateway::model::{self, Kind, Source};

/// What names one plugin: (kind of entity, the entity's name, the object that named it).
#[derive(Default)]
struct Relations {
    services: Vec<(String, ObjectRef)>,
    routes: Vec<(String, ObjectRef)>,
    consumers: Vec<(String, ObjectRef)>,
}

impl Relations {
    fn referrers(&self) -> BTreeSet<&ObjectRef> {
        self.services
            .iter()
            .chain(&self.routes)
            .chain(&self.consumers)
            .map(|(_, r)| r)
            .collect()
    }

    /// KIC's `GetCombinations`: consumer × (service | route) when both name the plugin.
    fn combinations(&self) -> Vec<Map<String, Value>> {
        let one = |field: &str, name: &str| {
            let mut m = Map::new();
            m.insert(field.into(), json!(name));
            m
        };
        let scoped: Vec<Map<String, Value>> = self
            .services
            .iter()
            .map(|(s, _)| one("service", s))
            .chain(self.routes.iter().map(|(r, _)| one("route", r)))
            .collect();
        if self.consumers.is_empty() {
            return scoped;
        }
        let mut out = Vec::new();
        for (c, _) in &self.consumers {
            if scoped.is_empty() {
                out.push(one("consumer", c));
            }
            for s in &scoped {
                let mut m = s.clone();
                m.insert("consumer".into(), json!(c));
                out.push(m);
            }
        }
        out
    }
}

/// The plugins, and the routes, services and consumers closed because a plugin they name
/// failed.
pub fn plugins(
    services: &BTreeMap<String, KongService>,
    consumers: &mut Vec<KongConsumerEntity>,
    index: &Index,
    failures: &mut Failures,
) -> Vec<Value> {
    let relations = relations(services, consumers, index);
    let mut out = Vec::new();
    let mut closed_consumers = HashSet::new();
    // (field, entity) → why, and the object that named the broken plugin there.
    let mut closed: BTreeMap<(&'static str, String), (String, ObjectRef)> = BTreeMap::new();
    for ((ns, name), rel) in &relations {
        match build(ns, name, rel, index) {
            Ok(base) => out.extend(instances(&base, rel)),
            Err(e) => {
                let (message, origin) = *e;
                if let Some(o) = &origin {
                    failures.push(o, message.clone());
                }
                for r in rel.referrers() {
                    failures.push(r, message.clone());
                }
                for (s, by) in &rel.services {
                    closed.insert(("service", s.clone()), (message.clone(), by.clone()));
                }
                for (r, by) in &rel.routes {
                    closed.insert(("route", r.clone()), (message.clone(), by.clone()));
                }
                closed_consumers.extend(rel.consumers.iter().map(|(c, _)| c.clone()));
            }
        }
    }
    consumers.retain(|c| !closed_consumers.contains(&c.identifier));
    out.retain(|p| {
        p.get("consumer")
            .and_then(Value::as_str)
            .is_none_or(|c| !closed_consumers.contains(c))
    });
    for ((field, entity), (message, by)) in closed {
        out.retain(|p| !(p["name"] == "request-termination" && p[field] == entity.as_str()));
        out.push(json!({
            "name": "request-termination",
            field: entity,
            "config": {"status_code": 503, "message": format!("unavailable: its configuration failed to translate ({message})")},
            "tags": by.tags(),
        }));
    }
    out.extend(global_plugins(index, failures));
    out
}

/// Which plugins each Service, Ingress and KongConsumer names, by (namespace, name).
fn relations(
    services: &BTreeMap<String, KongService>,
    consumers: &[KongConsumerEntity],
    index: &Index,
) -> BTreeMap<(String, String), Relations> {
    let mut rels: BTreeMap<(String, String), Relations> = BTreeMap::new();
    for (name, s) in services {
        if let Some(k8s) = index
            .services
            .get(&(s.namespace.as_str(), s.backend.as_str()))
        {
            let origin = ObjectRef::new("Service", api_version("Service"), &k8s.metadata);
            for key in named(k8s.metadata.annotations.as_ref(), &s.namespace) {
                rels.entry(key)
                    .or_default()
                    .services
                    .push((name.clone(), origin.clone()));
            }
        }
        for r in &s.routes {
            for key in named(Some(&r.annotations), &s.namespace) {
                rels.entry(key)
                    .or_default()
                    .routes
                    .push((r.name.clone(), r.ingress.clone()));
            }
        }
    }
    for c in consumers {
        let ns = c.origin.namespace.clone().unwrap_or_default();
        let anns = index
            .consumers
            .get(&(ns.as_str(), c.origin.name.as_str()))
            .and_then(|k| k.metadata.annotations.as_ref());
        for key in named(anns, &ns) {
            rels.entry(key)
                .or_default()
                .consumers
                .push((c.identifier.clone(), c.origin.clone()));
        }
    }
    rels
}

fn named(anns: Option<&BTreeMap<String, String>>, namespace: &str) -> Vec<(String, String)> {
    anns.map(|a| super::annotations::plugins(a, namespace))
        .unwrap_or_default()
}

/// Why a plugin cannot be built, and the plugin object at fault when there is one.
type Broken = Box<(String, Option<ObjectRef>)>;

/// The plugin (before its attachments) that `ns/name` names, checked; or why it cannot be
/// built and which plugin object is at fault.
fn build(
    ns: &str,
    name: &str,
    rel: &Relations,
    index: &Index,
) -> Result<Map<String, Value>, Broken> {
    if rel
        .referrers()
        .iter()
        .any(|r| r.namespace.as_deref() != Some(ns))
    {
        return Err(Box::new((
            format!("KongPlugin {ns}/{name} is in another namespace: cross-namespace plugin references are not supported"),
            None,
        )));
    }
    let (plugin, origin) = match index.plugins.get(&(ns, name)) {
        Some(p) => (
            *p,
            ObjectRef::new("KongPlugin", api_version("KongPlugin"), &p.metadata),
        ),
        None => match index.cluster_plugins.get(name) {
            Some(p) => (
                *p,
                ObjectRef::new(
                    "KongClusterPlugin",
                    api_version("KongClusterPlugin"),
                    &p.metadata,
                ),
            ),
            None => {
                return Err(Box::new((
                    format!("referenced KongPlugin or KongClusterPlugin {name:?} does not exist"),
                    None,
                )))
            }
        },
    };
    entity(plugin, &origin, ns, index).map_err(|e| Box::new((e, Some(origin))))
}

/// A KongPlugin's decK entry, its configuration checked against the plugin's schema.
fn entity(
    p: &KongPlugin,
    origin: &ObjectRef,
    ns: &str,
    index: &Index,
) -> Result<Map<String, Value>, String> {
    let what = origin.describe();
    if !p.config_patches.is_empty() {
        return Err(format!(
            "{what} uses configPatches, which Tollgate does not apply yet; use config or configFrom"
        ));
    }
    let config = match (&p.config, &p.config_from) {
        (Some(c), Some(_)) if !c.as_object().is_none_or(|m| m.is_empty()) => {
            return Err(format!("{what} has both config and configFrom set"))
        }
        (_, Some(from)) => {
            let r = &from.secret_key_ref;
            let secret_ns = r.namespace.as_deref().unwrap_or(ns);
            let secret = index
                .secrets
                .get(&(secret_ns, r.name.as_str()))
                .ok_or_else(|| {
                    format!(
                        "error fetching plugin configuration secret '{secret_ns}/{}'",
                        r.name
                    )
                })?;
            let data = secret_data(secret);
            let raw = data
                .get(&r.key)
                .ok_or_else(|| format!("no key '{}' in secret '{secret_ns}/{}'", r.key, r.name))?;
            let text = String::from_utf8_lossy(raw);
            tollgate_gateway::declarative::yaml::parse(&text)
                .map(|l| l.value)
                .map_err(|_| {
                    format!(
                        "key '{}' in secret '{secret_ns}/{}' contains neither valid JSON nor valid YAML",
                        r.key, r.name
                    )
                })?
        }
        (c, None) => c.clone().unwrap_or_else(|| json!({})),
    };
    let mut m = Map::new();
    m.insert("name".into(), json!(p.plugin));
    m.insert("config".into(), config);
    if p.disabled {
        m.insert("enabled".into(), json!(false));
    }
    if let Some(protocols) = &p.protocols {
        m.insert("protocols".into(), json!(protocols));
    }
    if let Some(i) = p.instance_name.as_ref().filter(|i| !i.is_empty()) {
        m.insert("instance_name".into(), json!(i));
    }
    m.insert("tags".into(), json!(origin.tags()));
    model::normalize(Kind::Plugin, m.clone(), None, Source::Typed, 0)
        .map_err(|e| format!("invalid {} plugin in {what}: {}", p.plugin, e.message()))?;
    Ok(m)
}

/// One plugin per attachment; an `instance_name` gets KIC's suffix so each stays unique.
fn instances(base: &Map<String, Value>, rel: &Relations) -> Vec<Value> {
    let mut used = HashSet::new();
    rel.combinations()
        .into_iter()
        .map(|attach| {
            let mut p = base.clone();
            let mut hash = String::new();
            for (field, prefix) in [
                ("service", "_service-"),
                ("route", "_route-"),
                ("consumer", "_consumer-"),
            ] {
                if let Some(v) = attach.get(field).and_then(Value::as_str) {
                    hash.push_str(prefix);
                    hash.push_str(v);
                }
            }
            if let Some(name) = p.get("instance_name").and_then(Value::as_str) {
                let sum = format!("{:x}", Sha256::digest(hash.as_bytes()));
                let mut suffixed = format!("{name}-{}", &sum[..9]);
                if !used.insert(suffixed.clone()) {
                    suffixed = format!("{name}-{sum}");
                }
                p.insert("instance_name".into(), json!(suffixed));
            }
            p.extend(attach);
            Value::Object(p)
        })
        .collect()
}

/// KongClusterPlugins labelled `global: "true"`; two of one plugin cancel out, as in KIC.
fn global_plugins(index: &Index, failures: &mut Failures) -> Vec<Value> {
    let mut by_name: BTreeMap<&str, Vec<&KongPlugin>> = BTreeMap::new();
    for p in &index.global_plugins {
        by_name.entry(p.plugin.as_str()).or_default().push(p);
    }
    let mut out = Vec::new();
    for (name, list) in by_name {
        let refs: Vec<ObjectRef> = list
            .iter()
            .map(|p| {
                ObjectRef::new(
                    "KongClusterPlugin",
                    api_version("KongClusterPlugin"),
                    &p.metadata,
                )
            })
            .collect();
        if list.len() > 1 {
            for r in &refs {
                failures.push(
                    r,
                    format!("several global KongClusterPlugins configure {name}; none applied"),
                );
            }
            continue;
        }
        match entity(list[0], &refs[0], "", index) {
            Ok(m) => out.push(Value::Object(m)),
            Err(e) => failures.push(&refs[0], e),
        }
    }
    out
}
