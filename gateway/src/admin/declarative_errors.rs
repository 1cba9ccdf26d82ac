//! A declarative file's problems in Kong's `/config` error shapes (kong/db/errors.lua,
//! `declarative_config` and `declarative_config_flattened`), so tools written for Kong's
//! DB-less admin API read Tollgate's answers: a `fields` tree that mirrors the document
//! (`{"services": [{"port": "..."}]}`), the message as Kong prints that tree, and with
//! `flatten_errors` one record per entity at fault.
use crate::declarative::Diagnostic;
use serde_json::{json, Map, Value};

/// Kong's code and name for an invalid declarative configuration.
const CODE: u32 = 14;
const NAME: &str = "invalid declarative configuration";

/// The 400 body for `diagnostics` found in `doc` (the document as parsed, when it parsed).
pub fn body(diagnostics: &[Diagnostic], doc: Option<&Value>, flatten: bool) -> Value {
    let (flattened, rest): (Vec<_>, Vec<_>) = match (flatten, doc) {
        (true, Some(doc)) => flattened(diagnostics, doc),
        _ => (Vec::new(), diagnostics.iter().collect()),
    };
    let fields = tree(&rest);
    let mut out = json!({
        "code": CODE,
        "name": NAME,
        "message": format!("declarative config is invalid: {}", crate::penlight::write(&fields)),
        "fields": fields,
    });
    if flatten {
        out["flattened_errors"] = Value::Array(flattened);
    }
    out
}

/// One step of a diagnostic's path: a field name or a list index.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

/// `services[0].routes[1].paths` → Field services, Index 0, Field routes, Index 1, Field paths.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, mut indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Step::Field(name));
        }
        while let Some(close) = indices.find(']') {
            if let Ok(i) = indices[1..close].parse() {
                out.push(Step::Index(i));
            }
            indices = &indices[close + 1..];
        }
    }
    out
}

/// The diagnostics as one nested value; a diagnostic without a path goes under `error`, and
/// several on one spot are joined.
fn tree(diagnostics: &[&Diagnostic]) -> Value {
    let mut root = Value::Object(Map::new());
    for d in diagnostics {
        let mut path = steps(&d.path);
        if path.is_empty() {
            path.push(Step::Field("error"));
        }
        place(&mut root, &path, &d.message);
    }
    root
}

fn place(node: &mut Value, path: &[Step<'_>], message: &str) {
    let Some((step, rest)) = path.split_first() else {
        *node = match node.take() {
            Value::String(before) => Value::String(format!("{before}; {message}")),
            _ => Value::String(message.to_string()),
        };
        return;
    };
    let child = match step {
        Step::Field(name) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            node.as_object_mut()
                .expect("made an object above")
                .entry(name.to_string())
                .or_insert(Value::Null)
        }
        Step::Index(i) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let list = node.as_array_mut().expect("made an array above");
            if list.len() <= *i {
                list.resize(*i + 1, Value::Null);
            }
            &mut list[*i]
        }
    };
    place(child, rest, message);
}

/// The lists that nest entities inside another, as decK writes them.
const NESTED: [&str; 3] = ["routes", "plugins", "keyauth_credentials"];

/// Kong's `flattened_errors`: the diagnostics inside an entity grouped by that entity (its
/// innermost one), with the entity as the file gave it less its nested lists and with its
/// parent's id when the parent gave one. Returns them and the diagnostics outside any entity.
fn flattened<'a>(diagnostics: &'a [Diagnostic], doc: &Value) -> (Vec<Value>, Vec<&'a Diagnostic>) {
    let mut records: Vec<(String, Value)> = Vec::new();
    let mut outside = Vec::new();
    for d in diagnostics {
        let path = steps(&d.path);
        let Some(at) = path.iter().rposition(|s| matches!(s, Step::Index(_))) else {
            outside.push(d);
            continue;
        };
        let (entity_path, field_path) = path.split_at(at + 1);
        let key = format!("{entity_path:?}");
        let field = field_path
            .iter()
            .map(|s| match s {
                Step::Field(f) => f.to_string(),
                Step::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".");
        let error = if field.is_empty() {
            json!({"type": "entity", "message": d.message})
        } else {
            json!({"type": "field", "field": field, "message": d.message})
        };
        match records.iter_mut().find(|(k, _)| *k == key) {
            Some((_, r)) => r["errors"].as_array_mut().expect("made below").push(error),
            None => records.push((key, entity_record(doc, entity_path, error))),
        }
    }
    (records.into_iter().map(|(_, r)| r).collect(), outside)
}

/// Kong's record for one entity at fault.
fn entity_record(doc: &Value, path: &[Step<'_>], first_error: Value) -> Value {
    let mut node = doc;
    let mut kind = "";
    // The entity the walk is in (its collection and value), and the one containing it.
    let mut inside: Option<(&str, &Value)> = None;
    let mut parent: Option<(&str, &Value)> = None;
    for step in path {
        match step {
            Step::Field(f) => {
                parent = inside;
                kind = f;
                node = node.get(*f).unwrap_or(&Value::Null);
            }
            Step::Index(i) => {
                node = node.get(*i).unwrap_or(&Value::Null);
                inside = Some((kind, node));
            }
        }
    }
    let mut entity = node.clone();
    if let Some(obj) = entity.as_object_mut() {
        for list in NESTED {
            obj.remove(list);
        }
        if let Some((parent_kind, p)) = parent {
            if let Some(pid) = p.get("id").filter(|id| id.is_string()) {
                let field = singular(parent_kind).to_string();
                obj.entry(field).or_insert(json!({"id": pid}));
            }
        }
    }
    let mut record = json!({
        "entity_type": singular(kind),
        "entity": entity,
        "errors": [first_error],
    });
    let valid_id = node
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| uuid::Uuid::parse_str(id).is_ok());
    if let Some(id) = valid_id {
        record["entity_id"] = json!(id);
    }
    if let Some(name) = node
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        record["entity_name"] = json!(name);
    }
    let tags = node.get("tags").and_then(Value::as_array);
    if let Some(tags) = tags.filter(|t| t.iter().all(Value::is_string)) {
        record["entity_tags"] = json!(tags);
    }
    record
}

/// `services` → `service`, `keyauth_credentials` → `keyauth_credential`.
fn singular(collection: &str) -> &str {
    collection.strip_suffix('s').unwrap_or(collection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(path: &str, message: &str) -> Diagnostic {
        Diagnostic {
            line: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// 15-off_spec.lua:647-680: Kong's tree and message for a service's two field errors.
    #[test]
    fn kongs_tree_and_message() {
        let d = [
            diag("services[0].host", "required field missing"),
            diag("services[0].port", "value should be between 0 and 65535"),
        ];
        let b = body(&d, None, false);
        assert_eq!(b["code"], 14);
        assert_eq!(b["name"], "invalid declarative configuration");
        assert_eq!(
            b["fields"],
            json!({"services": [{"host": "required field missing", "port": "value should be between 0 and 65535"}]})
        );
        assert_eq!(
            b["message"],
            "declarative config is invalid: {services={{host=\"required field missing\",port=\"value should be between 0 and 65535\"}}}"
        );
        // 15-off_spec.lua:682-737: a hole in a list prints with its index.
        let d = [diag("services[1]", "uniqueness violation")];
        let b = body(&d, None, false);
        assert_eq!(
            b["fields"],
            json!({"services": [null, "uniqueness violation"]})
        );
        assert_eq!(
            b["message"],
            "declarative config is invalid: {services={[2]=\"uniqueness violation\"}}"
        );
        let b = body(&[diag("", "expected an object")], None, false);
        assert_eq!(b["fields"], json!({"error": "expected an object"}));
    }

    /// 15-off_spec.lua:2482-2525: flattened records keep the entity's id and name, and a
    /// nested route names its service by the id the file gave.
    #[test]
    fn flattened_records_per_entity() {
        let doc = json!({"services": [{"id": "cb019421-62c2-47a8-b714-d7567b114037", "name": "test",
            "protocol": "nope", "tags": ["s-1"], "routes": [{"bad": true, "tags": ["r-1"]}]}]});
        let d = [
            diag("services[0].protocol", "expected one of: http, https"),
            diag("services[0].routes[0].bad", "unknown field"),
        ];
        let b = body(&d, Some(&doc), true);
        let f = b["flattened_errors"].as_array().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0]["entity_type"], "service");
        assert_eq!(f[0]["entity_id"], "cb019421-62c2-47a8-b714-d7567b114037");
        assert_eq!(f[0]["entity_name"], "test");
        assert_eq!(f[0]["entity_tags"], json!(["s-1"]));
        assert_eq!(f[0]["entity"].get("routes"), None);
        assert_eq!(
            f[0]["errors"],
            json!([{"type": "field", "field": "protocol", "message": "expected one of: http, https"}])
        );
        assert_eq!(f[1]["entity_type"], "route");
        assert_eq!(
            f[1]["entity"]["service"],
            json!({"id": "cb019421-62c2-47a8-b714-d7567b114037"})
        );
        assert_eq!(b["fields"], json!({}));
        // A plugin under a route names the route, not the service.
        let doc = json!({"services": [{"id": "cb019421-62c2-47a8-b714-d7567b114037", "routes": [
            {"id": "0855b320-0dd2-547d-891d-601e9b38647f", "plugins": [{"name": "x"}]}]}]});
        let d = [diag(
            "services[0].routes[0].plugins[0].name",
            "unknown plugin",
        )];
        let b = body(&d, Some(&doc), true);
        let plugin = &b["flattened_errors"][0];
        assert_eq!(plugin["entity_type"], "plugin");
        assert_eq!(
            plugin["entity"]["route"],
            json!({"id": "0855b320-0dd2-547d-891d-601e9b38647f"})
        );
        assert_eq!(plugin["entity"].get("service"), None);
    }
}
