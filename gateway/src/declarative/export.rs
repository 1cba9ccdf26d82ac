//! Writing the stored configuration out as a decK-format document (`tollgate config export`).
//!
//! Routes are nested under their service and credentials under their consumer; plugins are
//! listed at the top level with the ids of their scope. Keys are written as their hashes
//! (Tollgate never holds a key in clear); a file with `key_hash` reads back to the same keys.
use crate::model::Kind;
use crate::store::portal::Plan;
use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlEmitter};

/// The body as a file shows it: no timestamps, no unset fields, no implicit parent.
pub fn clean(body: &Value, parent_field: Option<&str>) -> Map<String, Value> {
    let mut m = body.as_object().cloned().unwrap_or_default();
    m.retain(|k, v| {
        !v.is_null() && k != "created_at" && k != "updated_at" && Some(k.as_str()) != parent_field
    });
    m
}

fn parent_id(body: &Value, field: &str) -> Option<String> {
    body.get(field)?.get("id")?.as_str().map(String::from)
}

/// Each parent with its children (those whose `parent_field` names it) listed under `key`.
fn nested<'a>(
    parents: impl Iterator<Item = &'a Value>,
    children: impl Iterator<Item = &'a Value> + Clone,
    parent_field: &str,
    key: &str,
) -> Vec<Value> {
    parents
        .map(|p| {
            let mut m = clean(p, None);
            let id = p["id"].as_str();
            let mine: Vec<Value> = children
                .clone()
                .filter(|c| parent_id(c, parent_field).as_deref() == id)
                .map(|c| Value::Object(clean(c, Some(parent_field))))
                .collect();
            if !mine.is_empty() {
                m.insert(key.into(), Value::Array(mine));
            }
            Value::Object(m)
        })
        .collect()
}

/// Lists each consumer's groups by name under it (decK's `groups: [{name: gold}]`).
fn memberships(consumers: &mut [Value], entities: &[(Kind, Value)]) {
    let name_of = |id: &str| {
        entities
            .iter()
            .find(|(k, b)| *k == Kind::ConsumerGroup && b["id"] == id)
            .and_then(|(_, b)| b["name"].as_str())
            .map(String::from)
    };
    for consumer in consumers.iter_mut() {
        let id = consumer["id"].as_str().map(String::from);
        let groups: Vec<Value> = entities
            .iter()
            .filter(|(k, m)| {
                *k == Kind::ConsumerGroupMember && m["consumer"]["id"].as_str() == id.as_deref()
            })
            .filter_map(|(_, m)| name_of(m["consumer_group"]["id"].as_str()?))
            .map(|name| json!({ "name": name }))
            .collect();
        if let (Some(c), false) = (consumer.as_object_mut(), groups.is_empty()) {
            c.insert("groups".into(), Value::Array(groups));
        }
    }
}

/// Builds the document from every stored entity and the developer portal's plans.
pub fn document(entities: &[(Kind, Value)], plans: &[Plan]) -> Value {
    let of = |kind: Kind| {
        entities
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, b)| b)
    };
    let services = nested(of(Kind::Service), of(Kind::Route), "service", "routes");
    let routes: Vec<Value> = of(Kind::Route)
        .filter(|r| parent_id(r, "service").is_none())
        .map(|r| Value::Object(clean(r, None)))
        .collect();
    let mut consumers = nested(
        of(Kind::Consumer),
        of(Kind::KeyAuth),
        "consumer",
        "keyauth_credentials",
    );
    for kind in super::CONSUMER_CREDENTIALS {
        let lists = nested(of(Kind::Consumer), of(kind), "consumer", kind.schema_name());
        for (consumer, with) in consumers.iter_mut().zip(lists) {
            if let (Some(c), Some(list)) = (consumer.as_object_mut(), with.get(kind.schema_name()))
            {
                c.insert(kind.schema_name().into(), list.clone());
            }
        }
    }
    memberships(&mut consumers, entities);
    let consumer_groups: Vec<Value> = of(Kind::ConsumerGroup)
        .map(|g| Value::Object(clean(g, None)))
        .collect();
    let upstreams = nested(of(Kind::Upstream), of(Kind::Target), "upstream", "targets");
    let certificates = nested(of(Kind::Certificate), of(Kind::Sni), "certificate", "snis");
    let ca_certificates: Vec<Value> = of(Kind::CaCertificate)
        .map(|c| Value::Object(clean(c, None)))
        .collect();
    let plugins: Vec<Value> = of(Kind::Plugin)
        .map(|p| Value::Object(clean(p, None)))
        .collect();
    let service_name = |id: &String| {
        of(Kind::Service)
            .find(|s| s["id"].as_str() == Some(id.as_str()))
            .and_then(|s| s["name"].as_str())
            .map_or_else(|| id.clone(), String::from)
    };
    let plans: Vec<Value> = plans
        .iter()
        .map(|p| plan_entry(p, p.services.iter().map(service_name).collect()))
        .collect();
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    for (key, list) in [
        ("services", services),
        ("routes", routes),
        ("consumer_groups", consumer_groups),
        ("consumers", consumers),
        ("plugins", plugins),
        ("upstreams", upstreams),
        ("certificates", certificates),
        ("ca_certificates", ca_certificates),
        ("plans", plans),
    ] {
        if !list.is_empty() {
            doc.insert(key.into(), Value::Array(list));
        }
    }
    Value::Object(doc)
}

/// A plan as a file lists it: its name, the windows it limits, its services by name. Its
/// id follows from the name when the file is read back.
fn plan_entry(p: &Plan, services: Vec<String>) -> Value {
    let limits: Map<String, Value> = [
        ("second", p.limits.second),
        ("minute", p.limits.minute),
        ("hour", p.limits.hour),
        ("day", p.limits.day),
    ]
    .into_iter()
    .filter_map(|(w, n)| Some((w.to_string(), json!(n?))))
    .collect();
    let mut entry = json!({"name": p.name, "limits": limits, "created_at": p.created_at});
    if !services.is_empty() {
        entry["services"] = json!(services);
    }
    entry
}

/// The document as YAML.
pub fn to_yaml(doc: &Value) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter
        .dump(&to_yaml_value(doc))
        .expect("writing to a String cannot fail");
    out.push('\n');
    out
}

fn to_yaml_value(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml_value).collect()),
        Value::Object(m) => Yaml::Hash(
            m.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml_value(v)))
                .collect(),
        ),
    }
}
