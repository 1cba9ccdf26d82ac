//! request-transformer's config: Kong's schema (kong/plugins/request-transformer/schema.lua)
//! and its messages, and the parsed form the handler runs.
use super::template::Template;
use crate::model::schema::{field, Field, FieldErrors, Ty};
use crate::plugins::get_strings;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{json, Map, Value};

const TARGETS: [&str; 3] = ["body", "headers", "querystring"];
const GROUP: &[Field] = &[
    field("body", Ty::StrArray),
    field("headers", Ty::StrArray),
    field("querystring", Ty::StrArray),
];
const REPLACE: &[Field] = &[
    field("body", Ty::StrArray),
    field("headers", Ty::StrArray),
    field("querystring", Ty::StrArray),
    field("uri", Ty::Str),
];

/// Kong's operations, in the order they apply.
pub const OPERATIONS: [&str; 5] = ["remove", "rename", "replace", "add", "append"];

pub const FIELDS: &[Field] = &[
    field("http_method", Ty::Str),
    field("remove", Ty::Record(GROUP)),
    field("rename", Ty::Record(GROUP)),
    field("replace", Ty::Record(REPLACE)),
    field("add", Ty::Record(GROUP)),
    field("append", Ty::Record(GROUP)),
];

pub fn defaults() -> Map<String, Value> {
    let mut d: Map<String, Value> = OPERATIONS
        .iter()
        .map(|op| {
            (
                op.to_string(),
                json!({"body": [], "headers": [], "querystring": []}),
            )
        })
        .collect();
    d["replace"]["uri"] = Value::Null;
    d.insert("http_method".into(), Value::Null);
    d
}

pub fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    if let Some(m) = c.get("http_method").and_then(Value::as_str) {
        if !m.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.add("http_method", format!("invalid value: {m}"));
        }
    }
    for op in OPERATIONS {
        let Some(Value::Object(group)) = c.get_mut(op) else {
            continue;
        };
        for target in TARGETS {
            group.entry(target).or_insert(json!([]));
        }
        let mut inner = FieldErrors::default();
        for target in TARGETS {
            let checked = get_strings(group, target)
                .iter()
                .map(|entry| check_entry(op, target, entry).err())
                .collect();
            inner.elements(target, checked);
        }
        if let Some(uri) = group.get("uri").and_then(Value::as_str) {
            if let Err(e) = Template::parse(uri) {
                inner.add("uri", e);
            }
        }
        errors.nest(op, inner);
    }
}

/// An entry's name and value: `name:value`, any colons after the name skipped (Kong's
/// `^([^:]+):*(.-)$`).
pub fn split(entry: &str) -> (&str, &str) {
    match entry.split_once(':') {
        Some((name, value)) => (name, value.trim_start_matches(':')),
        None => (entry, ""),
    }
}

/// One entry of `op`'s `target` list, with Kong's message when it is refused.
fn check_entry(op: &str, target: &str, entry: &str) -> Result<(), String> {
    let is_header = |name: &str| {
        HeaderName::try_from(name)
            .map(|_| ())
            .map_err(|_| format!("'{name}' is not a valid header"))
    };
    if op == "remove" {
        return if target == "headers" {
            is_header(entry)
        } else {
            Ok(())
        };
    }
    let (name, value) = split(entry);
    if target == "headers" {
        if name.is_empty() || !entry.contains(':') {
            return Err(format!("invalid value: {entry}"));
        }
        is_header(name)?;
        if op == "rename" {
            return is_header(value);
        }
    } else if name.is_empty() || value.is_empty() {
        return Err(format!("key '{name}' has no value"));
    }
    Template::parse(value).map(|_| ())
}

/// One operation's entries for each part of the request.
#[derive(Default)]
pub struct Group {
    pub headers: Vec<Entry>,
    pub querystring: Vec<Entry>,
    pub body: Vec<Entry>,
}

/// A name, and the value (the new name, for `rename`) when the operation takes one.
pub struct Entry {
    pub name: String,
    /// The name as a header, for header entries (parsed once, not per request).
    pub header: Option<HeaderName>,
    pub value: Option<Template>,
    /// The value as a header value, for header entries whose value is no template.
    pub fixed: Option<HeaderValue>,
    /// The new name, for a header `rename` whose value is no template.
    pub renamed: Option<HeaderName>,
    /// `name=value` form-encoded, for query string entries whose value is no template (what
    /// `add` and `append` put after the client's query string).
    pub encoded: Option<String>,
    /// For a value that is a template, its place among the request's rendered values
    /// (`edit::Rendered`): numbered in `Group::entries` order across the groups.
    pub slot: Option<usize>,
}

impl Group {
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.entries().filter_map(|e| e.value.as_ref())
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        [&self.headers, &self.querystring, &self.body]
            .into_iter()
            .flatten()
    }
}

/// The checked config as the handler runs it.
pub struct Parsed {
    pub method: Option<Method>,
    /// `replace.uri`.
    pub uri: Option<Template>,
    /// The groups in `OPERATIONS` order.
    pub groups: [Group; 5],
}

pub fn parse(c: &Map<String, Value>) -> Result<Parsed, String> {
    let method = c
        .get("http_method")
        .and_then(Value::as_str)
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string()))
        .transpose()?;
    let group = |op: &str| c.get(op).and_then(Value::as_object);
    let uri = group("replace")
        .and_then(|g| g.get("uri"))
        .and_then(Value::as_str)
        .map(Template::parse)
        .transpose()?;
    let mut groups: [Group; 5] = Default::default();
    for (i, op) in OPERATIONS.iter().enumerate() {
        let Some(g) = group(op) else { continue };
        let entries = |target: &str| -> Result<Vec<Entry>, String> {
            let headers = target == "headers";
            get_strings(g, target)
                .iter()
                .map(|entry| {
                    let (name, value) = split(entry);
                    let value = if *op == "remove" || value.is_empty() {
                        None
                    } else {
                        Some(Template::parse(value)?)
                    };
                    let name = if *op == "remove" {
                        entry.as_str()
                    } else {
                        name
                    };
                    let header = headers.then(|| HeaderName::try_from(name).ok()).flatten();
                    let plain = value.as_ref().and_then(Template::plain);
                    let for_headers = plain.filter(|_| headers);
                    let fixed = for_headers.and_then(|v| HeaderValue::from_str(v).ok());
                    let renamed = for_headers
                        .filter(|_| *op == "rename")
                        .and_then(|v| HeaderName::try_from(v).ok());
                    let encoded = plain.filter(|_| target == "querystring").map(|v| {
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair(name, v)
                            .finish()
                    });
                    Ok(Entry {
                        name: name.to_string(),
                        header,
                        value,
                        fixed,
                        renamed,
                        encoded,
                        slot: None,
                    })
                })
                .collect()
        };
        groups[i] = Group {
            headers: entries("headers")?,
            querystring: entries("querystring")?,
            body: entries("body")?,
        };
    }
    let mut slots = 0..;
    for g in &mut groups {
        for e in [&mut g.headers, &mut g.querystring, &mut g.body]
            .into_iter()
            .flatten()
        {
            if e.value.as_ref().is_some_and(|t| t.plain().is_none()) {
                e.slot = slots.next();
            }
        }
    }
    Ok(Parsed {
        method,
        uri,
        groups,
    })
}
