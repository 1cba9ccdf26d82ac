//! response-transformer: changes the response's headers (header filter) and the top-level
//! keys of a JSON response body (body filter) before they reach the client. Kong's plugin and
//! its order: remove, rename, replace, add, append; `replace` touches only what exists, `add`
//! only what does not (a JSON key holding `null` or `false` counts as absent, as in Lua),
//! `append` makes an array of what is there and the value. JSON values are strings unless
//! `json_types` (one per value: `string`, `boolean`, `number`) says otherwise.
use super::{get_strings, Handler, PluginSpec};
use crate::model::schema::{self, field, Field, FieldErrors, Ty};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "response-transformer",
    priority: 800,
    no_consumer: false,
    fields: &[
        field("remove", Ty::Object),
        field("rename", Ty::Object),
        field("replace", Ty::Object),
        field("add", Ty::Object),
        field("append", Ty::Object),
    ],
    defaults,
    validate,
    build,
};

const OPERATIONS: [&str; 5] = ["remove", "rename", "replace", "add", "append"];
const GROUP: &[Field] = &[
    field("headers", Ty::StrArray),
    field("json", Ty::StrArray),
    field("json_types", Ty::StrArray),
];
const JSON_TYPES: [&str; 3] = ["string", "boolean", "number"];

fn defaults() -> Map<String, Value> {
    OPERATIONS
        .iter()
        .map(|op| {
            (
                op.to_string(),
                json!({"headers": [], "json": [], "json_types": []}),
            )
        })
        .collect()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    for op in OPERATIONS {
        let Some(Value::Object(group)) = c.get_mut(op) else {
            continue;
        };
        let mut inner = schema::check(GROUP, group, true);
        for k in ["headers", "json", "json_types"] {
            group.entry(k).or_insert(json!([]));
        }
        if inner.is_empty() {
            check_group(op, group, &mut inner);
        }
        errors.nest(op, inner);
    }
}

/// `name` or `name:value` entries, each name a valid header where headers are meant.
fn check_group(op: &str, group: &Map<String, Value>, errors: &mut FieldErrors) {
    let pairs = op != "remove";
    for (key, is_header) in [("headers", true), ("json", false)] {
        for entry in get_strings(group, key) {
            let name = if pairs {
                match entry.split_once(':') {
                    Some((n, _)) => n,
                    None => {
                        errors.add(key, format!("'{entry}': expected name:value"));
                        continue;
                    }
                }
            } else {
                entry.as_str()
            };
            if is_header && HeaderName::try_from(name).is_err() {
                errors.add(key, format!("'{name}' is not a header name"));
            }
        }
    }
    if get_strings(group, "json_types")
        .iter()
        .any(|t| !JSON_TYPES.contains(&t.as_str()))
    {
        errors.add("json_types", "expected one of: string, boolean, number");
    }
}

/// One operation's changes, parsed once when the snapshot is built.
#[derive(Default)]
struct Changes {
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
    json: Vec<(String, Value)>,
}

struct ResponseTransformer {
    remove: Changes,
    rename: Vec<(HeaderName, HeaderName)>,
    rename_json: Vec<(String, String)>,
    replace: Changes,
    add: Changes,
    append: Changes,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let group = |op: &str| {
        c.get(op)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let rename = group("rename");
    let renames = get_strings(&rename, "headers")
        .iter()
        .filter_map(|e| e.split_once(':'))
        .map(|(from, to)| Ok((header(from)?, header(to)?)))
        .collect::<Result<_, String>>()?;
    let rename_json = get_strings(&rename, "json")
        .iter()
        .filter_map(|e| e.split_once(':'))
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect();
    Ok(Arc::new(ResponseTransformer {
        remove: changes(&group("remove"), false)?,
        rename: renames,
        rename_json,
        replace: changes(&group("replace"), true)?,
        add: changes(&group("add"), true)?,
        append: changes(&group("append"), true)?,
    }))
}

fn header(name: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(name.trim()).map_err(|e| format!("{name}: {e}"))
}

/// The group's headers and JSON keys, with their values when `pairs`.
fn changes(group: &Map<String, Value>, pairs: bool) -> Result<Changes, String> {
    let mut out = Changes::default();
    for entry in get_strings(group, "headers") {
        let (name, value) = match entry.split_once(':') {
            Some((n, v)) if pairs => (n, Some(v)),
            _ => (entry.as_str(), None),
        };
        let value = value
            .map(|v| HeaderValue::from_str(v.trim()).map_err(|e| format!("{name}: {e}")))
            .transpose()?;
        out.headers.push((header(name)?, value));
    }
    let types = get_strings(group, "json_types");
    for (i, entry) in get_strings(group, "json").iter().enumerate() {
        // Kong's `^([^:]+):*(.-)$`: the colons after the name are skipped.
        let (key, raw) = match entry.split_once(':') {
            Some((k, v)) if pairs => (k, v.trim_start_matches(':')),
            _ => (entry.as_str(), ""),
        };
        // A number that does not parse sets nothing, as Kong's `tonumber` giving nil.
        if let Some(value) = typed(raw, types.get(i).map(String::as_str)) {
            out.json.push((key.to_string(), value));
        }
    }
    Ok(out)
}

/// A JSON value from its text: a string unless the type says boolean or number.
fn typed(raw: &str, ty: Option<&str>) -> Option<Value> {
    match ty {
        Some("boolean") => Some(Value::Bool(raw.trim() == "true")),
        Some("number") => {
            let raw = raw.trim();
            match raw.parse::<i64>() {
                Ok(i) => Some(Value::from(i)),
                Err(_) => raw
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
            }
        }
        _ => Some(Value::String(raw.to_string())),
    }
}

fn is_json(response: &http::response::Parts) -> bool {
    response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("application/json"))
}

impl Handler for ResponseTransformer {
    fn on_response(&self) -> bool {
        true
    }

    fn header_filter(&self, response: &mut http::response::Parts) {
        let h = &mut response.headers;
        for (name, _) in &self.remove.headers {
            h.remove(name);
        }
        for (from, to) in &self.rename {
            let values: Vec<HeaderValue> = h.get_all(from).iter().cloned().collect();
            if !values.is_empty() {
                h.remove(from);
                for v in values {
                    h.append(to.clone(), v);
                }
            }
        }
        for (name, value) in &self.replace.headers {
            if let (true, Some(v)) = (h.contains_key(name), value) {
                h.insert(name.clone(), v.clone());
            }
        }
        for (name, value) in &self.add.headers {
            if let (false, Some(v)) = (h.contains_key(name), value) {
                h.insert(name.clone(), v.clone());
            }
        }
        for (name, value) in &self.append.headers {
            if let Some(v) = value {
                h.append(name.clone(), v.clone());
            }
        }
    }

    fn wants_body(&self, response: &http::response::Parts) -> bool {
        let any = [&self.remove, &self.replace, &self.add, &self.append]
            .iter()
            .any(|c| !c.json.is_empty())
            || !self.rename_json.is_empty();
        any && is_json(response)
    }

    fn body_filter(&self, _response: &http::response::Parts, body: Bytes) -> Bytes {
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        self.transform(&mut object);
        serde_json::to_vec(&Value::Object(object)).map_or(body, Bytes::from)
    }
}

impl ResponseTransformer {
    fn transform(&self, o: &mut Map<String, Value>) {
        for (key, _) in &self.remove.json {
            o.remove(key);
        }
        for (from, to) in &self.rename_json {
            if let Some(v) = o.remove(from) {
                o.insert(to.clone(), v);
            }
        }
        // Lua's truthiness, as Kong tests the keys: `null` and `false` count as absent.
        let present = |o: &Map<String, Value>, k: &str| {
            !matches!(
                o.get(k),
                None | Some(Value::Null) | Some(Value::Bool(false))
            )
        };
        for (key, value) in &self.replace.json {
            if present(o, key) {
                o.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in &self.add.json {
            if !present(o, key) {
                o.insert(key.clone(), value.clone());
            }
        }
        // Kong's `append_value`: beside a string, into an array, else a new array.
        for (key, value) in &self.append.json {
            let list = match o.remove(key) {
                Some(Value::Array(mut a)) => {
                    a.push(value.clone());
                    a
                }
                Some(Value::String(old)) => vec![Value::String(old), value.clone()],
                _ => vec![value.clone()],
            };
            o.insert(key.clone(), Value::Array(list));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(config: Value) -> Arc<dyn Handler> {
        let mut c = config.as_object().cloned().unwrap();
        super::super::normalize_config("response-transformer", &mut c).unwrap();
        build(&c, &Default::default(), &Arc::new(Default::default())).unwrap()
    }

    fn response(headers: &[(&str, &str)]) -> http::response::Parts {
        let mut b = http::Response::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn headers_change_in_kongs_order() {
        let h = handler(json!({
            "remove": {"headers": ["server"]},
            "rename": {"headers": ["x-old:x-new"]},
            "replace": {"headers": ["x-kept:replaced", "x-missing:never"]},
            "add": {"headers": ["x-added:yes", "x-kept:not-added"]},
            "append": {"headers": ["x-list:two"]},
        }));
        let mut r = response(&[
            ("server", "nginx"),
            ("x-old", "v"),
            ("x-kept", "orig"),
            ("x-list", "one"),
        ]);
        h.header_filter(&mut r);
        let get = |k: &str| {
            r.headers
                .get_all(k)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert!(get("server").is_empty());
        assert_eq!(get("x-new"), ["v"]);
        assert!(get("x-old").is_empty());
        assert_eq!(get("x-kept"), ["replaced"]);
        assert!(get("x-missing").is_empty());
        assert_eq!(get("x-added"), ["yes"]);
        assert_eq!(get("x-list"), ["one", "two"]);
    }

    #[test]
    fn json_bodies_change_and_others_pass() {
        let h = handler(json!({
            "remove": {"json": ["secret"]},
            "rename": {"json": ["old:new"]},
            "replace": {"json": ["n:5"], "json_types": ["number"]},
            "add": {"json": ["flag:true", "name:x"], "json_types": ["boolean"]},
            "append": {"json": ["tags:b"]},
        }));
        let json_response = response(&[("content-type", "application/json; charset=utf-8")]);
        assert!(h.wants_body(&json_response));
        assert!(!h.wants_body(&response(&[("content-type", "text/html")])));
        let body = Bytes::from(r#"{"secret":1,"old":2,"n":"1","name":"kept","tags":"a"}"#);
        let out: Value = serde_json::from_slice(&h.body_filter(&json_response, body)).unwrap();
        assert_eq!(
            out,
            json!({"new": 2, "n": 5, "flag": true, "name": "kept", "tags": ["a", "b"]})
        );
        let not_object = Bytes::from("[1,2]");
        assert_eq!(
            h.body_filter(&json_response, not_object.clone()),
            not_object
        );
    }

    // spec/03-plugins/15-response-transformer/02-body_transformer_spec.lua:26, :38, :44 (add)
    // and :78, :84, :96, :102 (append)
    #[test]
    fn json_add_and_append_as_kongs_body_transformer() {
        let json_response = response(&[("content-type", "application/json")]);
        let add = handler(json!({"add": {
            "json": ["p1:v1", "p3:value:3", "p4:\"v1\"", "p5:-1", "p6:false", "p7:true", "p8:x"],
            "json_types": ["string", "string", "string", "number", "boolean", "boolean", "number"]}}));
        let body = |h: &Arc<dyn Handler>, b: &'static str| -> Value {
            serde_json::from_slice(&h.body_filter(&json_response, Bytes::from(b))).unwrap()
        };
        let added =
            json!({"p1": "v1", "p3": "value:3", "p4": "\"v1\"", "p5": -1, "p6": false, "p7": true});
        let mut expected = added.clone();
        expected["p2"] = json!("v1");
        assert_eq!(
            body(&add, r#"{"p2":"v1"}"#),
            expected,
            "p8 is no number: not added"
        );
        expected["p2"] = json!(false);
        assert_eq!(body(&add, r#"{"p2":false}"#), expected);
        assert_eq!(
            body(&add, r#"{"p1":false,"p2":false}"#),
            expected,
            "false counts as absent"
        );
        let append = handler(json!({"append": {"json": ["p1:v1", "p4:-1", "p5:false"],
            "json_types": ["string", "number", "boolean"]}}));
        assert_eq!(
            body(&append, r#"{"p2":"v1"}"#),
            json!({"p2": "v1", "p1": ["v1"], "p4": [-1], "p5": [false]})
        );
        assert_eq!(
            body(&append, r#"{"p1":"v2","p4":"v2","p5":7}"#),
            json!({"p1": ["v2", "v1"], "p4": ["v2", -1], "p5": [false]})
        );
    }

    #[test]
    fn bad_entries_are_refused_by_field() {
        let mut c = json!({"add": {"headers": ["no-value"]}, "remove": {"headers": ["bad header"]}, "replace": {"json_types": ["date"]}})
            .as_object().cloned().unwrap();
        match super::super::normalize_config("response-transformer", &mut c) {
            Err(super::super::ConfigError::Fields(f)) => {
                let m = f.message();
                assert!(
                    m.contains("add.headers: 'no-value': expected name:value"),
                    "{m}"
                );
                assert!(
                    m.contains("remove.headers: 'bad header' is not a header name"),
                    "{m}"
                );
                assert!(m.contains("replace.json_types"), "{m}");
            }
            _ => panic!("accepted"),
        }
    }
}
