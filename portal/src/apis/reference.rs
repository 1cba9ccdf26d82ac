//! A document turned into what the reference page shows: operations grouped by tag, with
//! parameters, request bodies and responses whose schemas are resolved (`$ref`, `allOf`,
//! `oneOf`/`anyOf`) into indented rows, examples, descriptions rendered from Markdown safely,
//! and a curl sample per operation. Rendered by the askama template `reference.html`.
use crate::web::markdown::to_safe_html;
use askama::Template;
use serde_json::{Map, Value};
use tollgate_gateway::admin::service_openapi::METHODS;

const MAX_DEPTH: usize = 8;
const MAX_ROWS: usize = 400;

#[derive(Template)]
#[template(path = "reference.html")]
pub struct Reference {
    pub title: String,
    pub version: String,
    pub description_html: String,
    pub groups: Vec<Group>,
    pub operation_count: usize,
    /// Operations of the backend's document that no route reaches (`x-tollgate-not-exposed`).
    pub not_exposed: Vec<NotExposed>,
}

/// A backend operation the gateway does not serve: shown, not linked.
pub struct NotExposed {
    pub method: String,
    pub path: String,
    pub summary: String,
}

pub struct Group {
    pub name: String,
    pub description_html: String,
    pub operations: Vec<Operation>,
}

pub struct Operation {
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description_html: String,
    pub deprecated: bool,
    pub parameters: Vec<Parameter>,
    pub body: Vec<Media>,
    pub responses: Vec<Response>,
    pub curl: String,
}

pub struct Parameter {
    pub name: String,
    pub location: String,
    pub required: bool,
    pub type_label: String,
    pub description_html: String,
}

pub struct Media {
    pub content_type: String,
    pub rows: Vec<Row>,
    pub example: Option<String>,
}

pub struct Response {
    pub status: String,
    pub description_html: String,
    pub media: Vec<Media>,
}

/// One line of a schema: a property at some depth.
pub struct Row {
    pub depth: usize,
    pub name: String,
    pub type_label: String,
    pub required: bool,
    pub description_html: String,
    pub values: String,
}

/// How the curl samples send the key: `(header or query, name, value)`.
pub struct KeyUse {
    pub in_header: bool,
    pub name: String,
    pub value: String,
}

/// The reference of `doc`, with curl samples against its first server.
pub fn build(doc: &Value, key: Option<&KeyUse>) -> Reference {
    let server = doc["servers"][0]["url"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/');
    let mut groups: Vec<Group> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Group {
                name: t["name"].as_str()?.to_string(),
                description_html: markdown(&t["description"]),
                operations: Vec::new(),
            })
        })
        .collect();
    let mut count = 0;
    let empty = Map::new();
    for (path, item) in doc["paths"].as_object().unwrap_or(&empty) {
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let op_view = operation(doc, path, method, item, op, server, key);
            let tag = op["tags"][0].as_str().unwrap_or("Operations").to_string();
            let group = match groups.iter_mut().position(|g| g.name == tag) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Group {
                        name: tag,
                        description_html: String::new(),
                        operations: Vec::new(),
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            group.operations.push(op_view);
            count += 1;
        }
    }
    groups.retain(|g| !g.operations.is_empty());
    Reference {
        title: doc["info"]["title"].as_str().unwrap_or("API").to_string(),
        version: doc["info"]["version"].as_str().unwrap_or("").to_string(),
        description_html: markdown(&doc["info"]["description"]),
        groups,
        operation_count: count,
        not_exposed: doc["x-tollgate-not-exposed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| NotExposed {
                method: o["method"].as_str().unwrap_or_default().to_string(),
                path: o["path"].as_str().unwrap_or_default().to_string(),
                summary: o["summary"].as_str().unwrap_or_default().to_string(),
            })
            .collect(),
    }
}

fn markdown(v: &Value) -> String {
    v.as_str().map(to_safe_html).unwrap_or_default()
}

fn operation(
    doc: &Value,
    path: &str,
    method: &str,
    item: &Value,
    op: &Value,
    server: &str,
    key: Option<&KeyUse>,
) -> Operation {
    let mut parameters: Vec<Parameter> = Vec::new();
    for p in item["parameters"]
        .as_array()
        .into_iter()
        .chain(op["parameters"].as_array())
        .flatten()
    {
        let p = resolve(doc, p);
        let name = p["name"].as_str().unwrap_or("").to_string();
        parameters.retain(|x| x.name != name);
        parameters.push(Parameter {
            name,
            location: p["in"].as_str().unwrap_or("").to_string(),
            required: p["required"].as_bool().unwrap_or(false),
            type_label: type_label(doc, &p["schema"]),
            description_html: markdown(&p["description"]),
        });
    }
    let body_value = resolve(doc, &op["requestBody"]);
    let body = media_list(doc, &body_value["content"]);
    let responses = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, r)| {
            let r = resolve(doc, r);
            Response {
                status: status.clone(),
                description_html: markdown(&r["description"]),
                media: media_list(doc, &r["content"]),
            }
        })
        .collect();
    let example = body
        .first()
        .and_then(|m| m.example.clone().map(|e| (m.content_type.clone(), e)));
    Operation {
        anchor: op["operationId"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("{method}-{path}")),
        method: method.to_uppercase(),
        path: path.to_string(),
        summary: op["summary"].as_str().unwrap_or("").to_string(),
        description_html: markdown(&op["description"]),
        deprecated: op["deprecated"].as_bool().unwrap_or(false),
        parameters,
        body,
        responses,
        curl: curl(method, server, path, key, example),
    }
}

fn curl(
    method: &str,
    server: &str,
    path: &str,
    key: Option<&KeyUse>,
    body: Option<(String, String)>,
) -> String {
    let mut url = format!("{server}{path}");
    let mut out = format!("curl -i -X {}", method.to_uppercase());
    if let Some(k) = key {
        if k.in_header {
            out.push_str(&format!(" \\\n  -H '{}: {}'", k.name, k.value));
        } else {
            url.push_str(&format!("?{}={}", k.name, k.value));
        }
    }
    if let Some((content_type, example)) = body {
        let compact = serde_json::from_str::<Value>(&example)
            .map(|v| v.to_string())
            .unwrap_or(example);
        out.push_str(&format!(
            " \\\n  -H 'Content-Type: {content_type}' \\\n  -d '{}'",
            compact.replace('\'', "'\\''")
        ));
    }
    out.push_str(&format!(" \\\n  '{url}'"));
    out
}

fn media_list(doc: &Value, content: &Value) -> Vec<Media> {
    content
        .as_object()
        .into_iter()
        .flatten()
        .map(|(content_type, m)| {
            let mut rows = Vec::new();
            let schema = &m["schema"];
            if !schema.is_null() {
                schema_rows(doc, schema, "", false, 0, &mut rows, &mut Vec::new());
            }
            let example = m
                .get("example")
                .cloned()
                .or_else(|| {
                    m["examples"]
                        .as_object()
                        .and_then(|e| e.values().next())
                        .map(|e| resolve(doc, e)["value"].clone())
                })
                .or_else(|| (!schema.is_null()).then(|| example_of(doc, schema, 0)))
                .filter(|v| !v.is_null())
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default());
            Media {
                content_type: content_type.clone(),
                rows,
                example,
            }
        })
        .collect()
}

/// Follows `$ref`s to `#/...` within the document (a dangling one gives `null`).
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    static NULL: Value = Value::Null;
    for _ in 0..10 {
        let Some(target) = v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) else {
            break;
        };
        v = doc.pointer(target).unwrap_or(&NULL);
    }
    v
}

fn ref_name(v: &Value) -> Option<&str> {
    v["$ref"].as_str().and_then(|r| r.rsplit('/').next())
}

fn type_label(doc: &Value, schema: &Value) -> String {
    if let Some(name) = ref_name(schema) {
        return name.to_string();
    }
    let s = resolve(doc, schema);
    let ty = match &s["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ if s.get("allOf").is_some() || s.get("properties").is_some() => "object".into(),
        _ if s.get("oneOf").is_some() || s.get("anyOf").is_some() => "one of".into(),
        _ => "any".into(),
    };
    let ty = if ty == "array" {
        format!("array of {}", type_label(doc, &s["items"]))
    } else {
        ty
    };
    match s["format"].as_str() {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

/// The rows of `schema`, named `name` (empty for the top level), at `depth`.
fn schema_rows(
    doc: &Value,
    schema: &Value,
    name: &str,
    required: bool,
    depth: usize,
    out: &mut Vec<Row>,
    seen: &mut Vec<String>,
) {
    if depth > MAX_DEPTH || out.len() >= MAX_ROWS {
        return;
    }
    let reference = ref_name(schema).map(String::from);
    if let Some(r) = &reference {
        if seen.contains(r) {
            out.push(row(
                doc,
                schema,
                name,
                required,
                depth,
                &format!("{r} (recursive, described above)"),
            ));
            return;
        }
        seen.push(r.clone());
    }
    let s = resolve(doc, schema);
    let child_depth = if name.is_empty() {
        depth
    } else {
        out.push(row(
            doc,
            schema,
            name,
            required,
            depth,
            &type_label(doc, schema),
        ));
        depth + 1
    };
    children(doc, s, child_depth, out, seen);
    if reference.is_some() {
        seen.pop();
    }
}

fn children(doc: &Value, s: &Value, depth: usize, out: &mut Vec<Row>, seen: &mut Vec<String>) {
    for part in s["allOf"].as_array().into_iter().flatten() {
        children(doc, resolve(doc, part), depth, out, seen);
    }
    for key in ["oneOf", "anyOf"] {
        for (i, alt) in s[key].as_array().into_iter().flatten().enumerate() {
            schema_rows(
                doc,
                alt,
                &format!("option {}", i + 1),
                false,
                depth,
                out,
                seen,
            );
        }
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (prop, ps) in s["properties"].as_object().into_iter().flatten() {
        schema_rows(
            doc,
            ps,
            prop,
            required.contains(&prop.as_str()),
            depth,
            out,
            seen,
        );
    }
    if s["type"] == "array" {
        let items = &s["items"];
        let inner = resolve(doc, items);
        if inner.get("properties").is_some()
            || inner.get("allOf").is_some()
            || inner.get("oneOf").is_some()
        {
            schema_rows(doc, items, "[item]", false, depth, out, seen);
        }
    }
}

fn row(doc: &Value, schema: &Value, name: &str, required: bool, depth: usize, label: &str) -> Row {
    let s = resolve(doc, schema);
    let values = s["enum"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Row {
        depth,
        name: name.to_string(),
        type_label: label.to_string(),
        required,
        description_html: markdown(&s["description"]),
        values,
    }
}

/// An example value for a schema: its own `example`, or one made from its properties'.
fn example_of(doc: &Value, schema: &Value, depth: usize) -> Value {
    let s = resolve(doc, schema);
    if let Some(e) = s.get("example") {
        return e.clone();
    }
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(first) = s["oneOf"].get(0).or_else(|| s["anyOf"].get(0)) {
        return example_of(doc, first, depth + 1);
    }
    let mut object = Map::new();
    for part in s["allOf"].as_array().into_iter().flatten() {
        if let Value::Object(m) = example_of(doc, part, depth + 1) {
            object.extend(m);
        }
    }
    for (prop, ps) in s["properties"].as_object().into_iter().flatten() {
        object.insert(prop.clone(), example_of(doc, ps, depth + 1));
    }
    if !object.is_empty() {
        return Value::Object(object);
    }
    match s["type"].as_str() {
        Some("array") => Value::Array(vec![example_of(doc, &s["items"], depth + 1)]),
        Some("string") => s["enum"].get(0).cloned().unwrap_or_else(|| "string".into()),
        Some("integer") | Some("number") => 0.into(),
        Some("boolean") => true.into(),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn petstore() -> Value {
        let text = include_str!("../../../tests/data/petstore-3.0.yaml");
        let mut doc = tollgate_gateway::admin::service_openapi::parse(text).unwrap();
        doc["servers"] = json!([{"url": "http://gw:8000/pets"}]);
        doc
    }

    fn find<'a>(r: &'a Reference, id: &str) -> &'a Operation {
        r.groups
            .iter()
            .flat_map(|g| &g.operations)
            .find(|o| o.anchor == id)
            .unwrap()
    }

    #[test]
    fn every_operation_is_grouped_under_its_tag() {
        let r = build(&petstore(), None);
        assert_eq!(r.operation_count, 19);
        let names: Vec<&str> = r.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["pet", "store", "user"]);
        assert_eq!(r.groups[0].operations.len(), 8);
    }

    #[test]
    fn schemas_are_resolved_into_rows() {
        let r = build(&petstore(), None);
        let add = find(&r, "addPet");
        let rows = &add.body[0].rows;
        let name = rows
            .iter()
            .find(|r| r.name == "name" && r.depth == 0)
            .unwrap();
        assert!(name.required && name.depth == 0 && name.type_label == "string");
        let category = rows.iter().find(|r| r.name == "category").unwrap();
        assert_eq!(category.type_label, "Category");
        assert!(
            rows.iter().any(|r| r.name == "id" && r.depth == 1),
            "category's own fields"
        );
        let status = rows.iter().find(|r| r.name == "status").unwrap();
        assert_eq!(status.values, "available, pending, sold");
        let example: Value = serde_json::from_str(add.body[0].example.as_ref().unwrap()).unwrap();
        assert_eq!(example["name"], "doggie");
    }

    #[test]
    fn curl_samples_carry_the_key_and_the_body() {
        let key = KeyUse {
            in_header: true,
            name: "apikey".into(),
            value: "k123".into(),
        };
        let r = build(&petstore(), Some(&key));
        let get = find(&r, "getPetById");
        assert!(get.curl.contains("-H 'apikey: k123'"), "{}", get.curl);
        assert!(
            get.curl.ends_with("'http://gw:8000/pets/pet/{petId}'"),
            "{}",
            get.curl
        );
        assert!(
            find(&r, "addPet").curl.contains(r#"-d '{"#),
            "{}",
            find(&r, "addPet").curl
        );
    }

    #[test]
    fn the_page_shows_every_operation_and_no_script_from_the_spec() {
        let mut doc = petstore();
        doc["info"]["description"] = json!("<script>alert(1)</script>\n\n**bold**");
        doc["paths"]["/pet"]["put"]["summary"] = json!("<script>x</script>");
        let html = build(&doc, None).render().unwrap();
        assert_eq!(html.matches(r#"<section class="operation""#).count(), 19);
        assert!(!html.contains("<script"), "no script survives");
        assert!(html.contains("<strong>bold</strong>"));
    }

    #[test]
    fn recursive_and_combined_schemas_end() {
        let doc = json!({
            "paths": {"/n": {"get": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}},
            "components": {"schemas": {
                "Node": {"allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}, "v": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}]},
                "Base": {"type": "object", "properties": {"id": {"type": "integer"}}}
            }}
        });
        let r = build(&doc, None);
        let rows = &r.groups[0].operations[0].responses[0].media[0].rows;
        let names: Vec<(&str, usize)> = rows.iter().map(|r| (r.name.as_str(), r.depth)).collect();
        assert_eq!(
            names,
            [
                ("id", 0),
                ("next", 0),
                ("v", 0),
                ("option 1", 1),
                ("option 2", 1)
            ]
        );
        assert!(rows[1].type_label.contains("recursive"));
    }
}
