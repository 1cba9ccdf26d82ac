//! Field schemas: the one place that knows each entity field's type.
//!
//! Kong's admin API accepts JSON, and also form bodies where every value is a string
//! (`port=8080`, `strip_path=false`). The schema coerces those strings, rejects unknown fields
//! and wrong types, and reports each problem under the field's name, the way Kong does.
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The type of one field, as the admin API and the declarative file see it.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    /// Kong's entity `name`: letters, digits and `.`, `-`, `_`, `~`, and not a UUID.
    Name,
    /// A DNS name or an IP address (a service's `host`).
    Host,
    /// An absolute URL path without empty or dot segments (a service's `path`).
    Path,
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// An array of strings (Kong's `array`: `paths`, `hosts`, `key_names`...).
    StrArray,
    /// A set of strings (Kong's `set`: `tags`, `methods`, `protocols`, a route's `snis`): the
    /// same values, described and refused as a set.
    StrSet,
    /// An object mapping a name to an array of strings (route `headers`).
    StrArrayMap,
    /// A reference to another entity: `{"id": "..."}` (forms say `service.id=...`).
    Ref,
    /// A free-form object checked elsewhere (plugin `config`).
    Object,
    /// A field Kong's entity has and Tollgate answers as `null`: any value is refused with
    /// this message (route `sources` on HTTP routes, as in Kong).
    NullOnly(&'static str),
    /// A number, fractions allowed (an upstream's health-check `interval` in seconds).
    Number {
        min: f64,
        max: f64,
    },
    /// A number above a bound, the bound excluded (Kong's `gt`: hmac-auth's `clock_skew`).
    Above(f64),
    /// An array of integers, each within bounds (health checks' `http_statuses`).
    IntArray {
        min: i64,
        max: i64,
    },
    /// A nested record with its own fields (an upstream's `healthchecks`), checked field by
    /// field, its errors nested under its name as Kong nests them.
    Record(&'static [Field]),
}

/// A named field of an entity.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
}

pub const fn field(name: &'static str, ty: Ty) -> Field {
    Field { name, ty }
}

/// The fields as Kong's `/schemas` endpoints describe a schema (kong/api/api_helpers.lua
/// `schema_to_jsonable`): `{"fields": [{"name": {"type": ..., "default": ...}}, ...]}`, each
/// field's type and bounds from `fields`, `required` and `defaults` as given. One definition:
/// the same `fields` validate the entity or plugin config.
pub fn describe(fields: &[Field], required: &[&str], defaults: &Map<String, Value>) -> Value {
    let described: Vec<Value> = fields
        .iter()
        .map(|f| {
            let mut d = describe_type(f.ty);
            if matches!(f.ty, Ty::Ref) {
                // `service` refers to `services`, `route` to `routes`, `consumer` to `consumers`.
                d["reference"] = Value::String(format!("{}s", f.name));
            }
            if required.contains(&f.name) {
                d["required"] = Value::Bool(true);
            }
            let default = defaults.get(f.name).filter(|v| !v.is_null());
            if let (Ty::Record(inner), Some(Value::Object(nested))) = (f.ty, default) {
                d["fields"] = describe(inner, &[], nested)["fields"].take();
            }
            if let Some(v) = default {
                d["default"] = v.clone();
            }
            serde_json::json!({ f.name: d })
        })
        .collect();
    serde_json::json!({ "fields": described })
}

fn describe_type(ty: Ty) -> Value {
    use serde_json::json;
    let strings = json!({"type": "string"});
    match ty {
        Ty::Str | Ty::Name | Ty::Host | Ty::Path => strings,
        Ty::Int { min, max } => json!({"type": "integer", "between": [min, max]}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum(options) => json!({"type": "string", "one_of": options}),
        Ty::StrArray => json!({"type": "array", "elements": strings}),
        Ty::StrSet => json!({"type": "set", "elements": strings}),
        Ty::StrArrayMap => json!({"type": "map", "keys": strings,
            "values": {"type": "array", "elements": strings}}),
        Ty::Ref => json!({"type": "foreign"}),
        Ty::Object => json!({"type": "record"}),
        Ty::NullOnly(message) => json!({"type": "any", "eq": null, "description": message}),
        Ty::Number { min, max } => json!({"type": "number", "between": [min, max]}),
        Ty::Above(bound) => json!({"type": "number", "gt": bound}),
        Ty::IntArray { min, max } => json!({"type": "array",
            "elements": {"type": "integer", "between": [min, max]}}),
        Ty::Record(inner) => {
            json!({"type": "record", "fields": describe(inner, &[], &Map::new())["fields"]})
        }
    }
}

/// The fields as a JSON Schema (OpenAPI 3.1) object for request bodies: each field's type and
/// bounds from `fields`, as `check` enforces them (strings non-empty), no other field,
/// `required` required, `null` (which unsets a field) refused for those `kept`, `defaults`
/// shown. One definition: the admin API's OpenAPI document describes what the validation takes.
pub fn json_schema(
    fields: &[Field],
    (required, kept): (&[&str], &[&str]),
    defaults: &Map<String, Value>,
) -> Value {
    let mut properties = Map::new();
    for f in fields {
        let mut t = json_type(f.ty);
        if !kept.contains(&f.name) && !matches!(f.ty, Ty::NullOnly(_)) {
            t = serde_json::json!({"anyOf": [t, {"type": "null"}]});
        }
        if let Some(d) = defaults.get(f.name).filter(|d| !d.is_null()) {
            t["default"] = d.clone();
        }
        properties.insert(f.name.to_string(), t);
    }
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn json_type(ty: Ty) -> Value {
    use serde_json::json;
    let string = json!({"type": "string", "minLength": 1});
    match ty {
        Ty::Str => string,
        Ty::Name => json!({"type": "string", "pattern": "^[A-Za-z0-9._~-]+$",
            "not": {"format": "uuid"}}),
        Ty::Host => json!({"type": "string", "anyOf": [{"format": "hostname"},
            {"format": "ipv4"}, {"format": "ipv6"}]}),
        Ty::Path => json!({"type": "string", "pattern": "^/(?!.*//)(?!(.*/)?\\.\\.?(/|$))"}),
        Ty::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum(options) => json!({"type": "string", "enum": options}),
        Ty::StrArray | Ty::StrSet => json!({"type": "array", "items": string}),
        Ty::StrArrayMap => json!({"type": "object",
            "additionalProperties": {"type": "array", "items": string}}),
        Ty::Ref => json!({"type": "object", "properties": {"id": string},
            "required": ["id"], "additionalProperties": false}),
        Ty::Object => json!({"type": "object"}),
        Ty::NullOnly(message) => json!({"type": "null", "description": message}),
        Ty::Number { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        Ty::Above(bound) => json!({"type": "number", "exclusiveMinimum": bound}),
        Ty::IntArray { min, max } => json!({"type": "array",
            "items": {"type": "integer", "minimum": min, "maximum": max}}),
        Ty::Record(inner) => json_schema(inner, (&[], &[]), &Map::new()),
    }
}

/// Field errors, nested like the entity (`{"config": {"second": "expected a number"}}`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldErrors(BTreeMap<String, Value>);

impl FieldErrors {
    /// Records `message` for `field`; entity-level messages (`@entity`) are a list, as in
    /// Kong's answers.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let message = Value::String(message.into());
        if field == "@entity" {
            let list = self
                .0
                .entry(field.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(message);
            }
            return;
        }
        self.0.entry(field.to_string()).or_insert(message);
    }

    /// Records `message` for `field`, replacing what an earlier check said about it (an
    /// entity check's answer is more precise than the field's type error).
    pub fn set(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .insert(field.to_string(), Value::String(message.into()));
    }

    /// Records the errors of an array's elements as Kong answers them: the array, with `null`
    /// for each element before the last bad one that is fine (`[null, null, "bad"]`).
    pub fn elements(&mut self, field: &str, errors: Vec<Option<String>>) {
        let last_bad = errors.iter().rposition(Option::is_some);
        if let Some(last) = last_bad {
            let items = errors[..=last]
                .iter()
                .map(|e| e.clone().map_or(Value::Null, Value::String))
                .collect();
            self.0.insert(field.to_string(), Value::Array(items));
        }
    }

    /// Adds errors found inside a nested object (`config`) under its field name.
    pub fn nest(&mut self, field: &str, inner: FieldErrors) {
        if !inner.is_empty() {
            self.0.insert(field.to_string(), inner.to_value());
        }
    }

    /// Adds `other`'s errors, nested ones kept nested; a field already named keeps its
    /// message, entity-level messages add up.
    pub fn absorb(&mut self, other: FieldErrors) {
        for (field, v) in other.0 {
            match (field.as_str(), v) {
                ("@entity", Value::Array(messages)) => {
                    for m in messages {
                        self.add("@entity", m.as_str().unwrap_or_default());
                    }
                }
                (_, v) => {
                    self.0.entry(field).or_insert(v);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone().into_iter().collect())
    }

    /// Flattened `(dotted.path, message)` pairs, for messages and line lookups.
    pub fn flatten(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        flatten_into(&self.to_value(), "", &mut out);
        out
    }

    /// Kong's summary line: `schema violation (port: expected an integer)`.
    pub fn message(&self) -> String {
        let parts: Vec<String> = self
            .flatten()
            .into_iter()
            .map(|(k, v)| {
                if k.is_empty() || k.ends_with("@entity") {
                    v
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        match parts.len() {
            1 => format!("schema violation ({})", parts[0]),
            n => format!("{n} schema violations ({})", parts.join("; ")),
        }
    }

    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

fn flatten_into(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else if k.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(v, &path, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                flatten_into(item, prefix, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Checks every key of `input` against `fields`, coercing form strings when `from_form` is set.
/// Unknown fields and type mismatches are reported; `null` is kept (it means "unset").
pub fn check(fields: &[Field], input: &mut Map<String, Value>, from_form: bool) -> FieldErrors {
    let mut errors = FieldErrors::default();
    for (key, value) in input.iter_mut() {
        let Some(f) = fields.iter().find(|f| f.name == key) else {
            errors.add(key, "unknown field");
            continue;
        };
        if value.is_null() {
            continue;
        }
        if let (Ty::Record(inner), Value::Object(record)) = (f.ty, &mut *value) {
            errors.nest(key, check(inner, record, from_form));
            continue;
        }
        if let (Ty::IntArray { min, max }, Value::Array(items)) = (f.ty, &mut *value) {
            // Kong answers an array's bad elements one by one (`[null, "expected an integer"]`).
            let each = items
                .iter_mut()
                .map(|item| coerce_int(item, from_form, min, max).err());
            errors.elements(key, each.collect());
            continue;
        }
        if let Err(msg) = coerce(f.ty, value, from_form) {
            errors.add(key, msg);
        }
    }
    errors
}

/// Whether `re` is a regex Kong takes (its `is_regex`, PCRE): Rust's regex syntax, less a
/// repetition of a repetition (`a**`), which PCRE refuses ("nothing to repeat"). It parses
/// only: compiling (the router does that once per snapshot) would double the cost of
/// validating thousands of regex paths, as the Kubernetes controller's Prefix paths are.
pub fn check_regex(re: &str) -> Result<(), String> {
    use regex_syntax::ast::Ast;
    fn stacked(ast: &Ast) -> bool {
        match ast {
            Ast::Repetition(r) => matches!(*r.ast, Ast::Repetition(_)) || stacked(&r.ast),
            Ast::Group(g) => stacked(&g.ast),
            Ast::Concat(c) => c.asts.iter().any(stacked),
            Ast::Alternation(a) => a.asts.iter().any(stacked),
            _ => false,
        }
    }
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(re)
        .map_err(|e| e.to_string())?;
    if stacked(&ast) {
        return Err("nothing to repeat".into());
    }
    regex_syntax::hir::translate::Translator::new()
        .translate(re, &ast)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Converts `value` in place to the field's type, or says what was expected.
pub fn coerce(ty: Ty, value: &mut Value, from_form: bool) -> Result<(), String> {
    match ty {
        Ty::Str => expect_string(value),
        Ty::Name => {
            expect_string(value)?;
            check_name(value.as_str().unwrap_or_default())
        }
        Ty::Host => {
            expect_string(value)?;
            match super::service::valid_host(value.as_str().unwrap_or_default()) {
                true => Ok(()),
                false => Err("invalid hostname".into()),
            }
        }
        Ty::Path => {
            expect_string(value)?;
            check_path(value.as_str().unwrap_or_default())
        }
        Ty::Int { min, max } => coerce_int(value, from_form, min, max),
        Ty::Bool => coerce_bool(value, from_form),
        Ty::Enum(options) => {
            expect_string(value)?;
            let s = value.as_str().unwrap_or_default();
            if options.contains(&s) {
                Ok(())
            } else {
                Err(format!("expected one of: {}", options.join(", ")))
            }
        }
        Ty::StrArray => coerce_str_array(value, from_form, "expected an array"),
        Ty::StrSet => coerce_str_array(value, from_form, "expected a set"),
        Ty::StrArrayMap => {
            let Value::Object(map) = value else {
                return Err("expected a map".into());
            };
            for v in map.values_mut() {
                coerce_str_array(v, from_form, "expected an array")?;
            }
            Ok(())
        }
        Ty::Ref => coerce_ref(value),
        Ty::Object => match value {
            Value::Object(_) => Ok(()),
            _ => Err("expected a record".into()),
        },
        Ty::NullOnly(message) => Err(message.into()),
        Ty::Number { min, max } => coerce_number(value, from_form, min, max),
        Ty::Above(bound) => match coerce_number(value, from_form, f64::MIN, f64::MAX) {
            Ok(()) if value.as_f64().is_some_and(|n| n <= bound) => {
                Err(format!("value must be greater than {bound}"))
            }
            other => other,
        },
        Ty::IntArray { min, max } => coerce_int_array(value, from_form, min, max),
        Ty::Record(_) => Err("expected a record".into()),
    }
}

fn coerce_number(value: &mut Value, from_form: bool, min: f64, max: f64) -> Result<(), String> {
    if from_form {
        if let Some(n) = value.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
            *value = serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number);
        }
    }
    let n = value
        .as_f64()
        .ok_or_else(|| "expected a number".to_string())?;
    if n < min || n > max {
        return Err(format!("value should be between {min} and {max}"));
    }
    Ok(())
}

fn coerce_int_array(value: &mut Value, from_form: bool, min: i64, max: i64) -> Result<(), String> {
    if from_form {
        // One form value is a one-element array (an empty one is no array).
        if let Value::String(s) = value {
            if !s.is_empty() {
                *value = Value::Array(vec![Value::String(s.clone())]);
            }
        }
        if let Value::Object(m) = value {
            *value = indexed_object_to_array(m)?;
        }
    }
    let Value::Array(items) = value else {
        return Err("expected an array".into());
    };
    for item in items.iter_mut() {
        coerce_int(item, from_form, min, max)?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~');
    if !name.chars().all(allowed) {
        Err("invalid value: may only contain letters, digits and '.', '-', '_', '~'".into())
    } else if uuid::Uuid::parse_str(name).is_ok() {
        Err("a name cannot be a UUID".into())
    } else {
        Ok(())
    }
}

fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        Err("should start with: /".into())
    } else if p.contains("//") || p.split('/').any(|s| s == ".." || s == ".") {
        Err("must not contain empty or dot segments".into())
    } else {
        Ok(())
    }
}

fn expect_string(value: &Value) -> Result<(), String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(()),
        Value::String(_) => Err("length must be at least 1".into()),
        _ => Err("expected a string".into()),
    }
}

fn coerce_int(value: &mut Value, from_form: bool, min: i64, max: i64) -> Result<(), String> {
    if from_form {
        if let Value::String(s) = value {
            if let Ok(n) = s.trim().parse::<i64>() {
                *value = Value::from(n);
            }
        }
    }
    let n = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
    .ok_or_else(|| "expected an integer".to_string())?;
    if n < min || n > max {
        return Err(format!("value should be between {min} and {max}"));
    }
    *value = Value::from(n);
    Ok(())
}

fn coerce_bool(value: &mut Value, from_form: bool) -> Result<(), String> {
    if from_form {
        if let Value::String(s) = value {
            match s.as_str() {
                "true" => *value = Value::Bool(true),
                "false" => *value = Value::Bool(false),
                _ => {}
            }
        }
    }
    if value.is_boolean() {
        Ok(())
    } else {
        Err("expected a boolean".into())
    }
}

/// A string list, from a form's single value or indexed keys too; `not_a_list` is what a
/// value of another type gets.
fn coerce_str_array(value: &mut Value, from_form: bool, not_a_list: &str) -> Result<(), String> {
    if from_form {
        if let Value::String(s) = value {
            // A form may send one value for a one-element array (`paths=/api`).
            *value = Value::Array(vec![Value::String(s.clone())]);
        }
        if let Value::Object(m) = value {
            // Indexed form keys (`paths[1]=/a`) arrive as an object keyed by index.
            *value = indexed_object_to_array(m)?;
        }
    }
    let Value::Array(items) = value else {
        return Err(not_a_list.into());
    };
    if items
        .iter()
        .all(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        Ok(())
    } else {
        Err("expected an array of non-empty strings".into())
    }
}

/// `{"1": "a", "2": "b"}` (from `x[1]=a&x[2]=b`) → `["a", "b"]`, ordered by index.
pub fn indexed_object_to_array(m: &Map<String, Value>) -> Result<Value, String> {
    let mut pairs = Vec::with_capacity(m.len());
    for (k, v) in m {
        let i: usize = k.parse().map_err(|_| "expected a set".to_string())?;
        pairs.push((i, v.clone()));
    }
    pairs.sort_by_key(|(i, _)| *i);
    Ok(Value::Array(pairs.into_iter().map(|(_, v)| v).collect()))
}

fn coerce_ref(value: &mut Value) -> Result<(), String> {
    if let Value::String(s) = value {
        // The declarative file and some scripts name the parent directly.
        *value = serde_json::json!({ "id": s });
    }
    match value.get("id") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err("expected a reference with an id".into()),
    }
    if value.as_object().is_some_and(|m| m.len() == 1) {
        Ok(())
    } else {
        Err("a reference holds only an id".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: &[Field] = &[
        field("port", Ty::Int { min: 0, max: 65535 }),
        field("strip_path", Ty::Bool),
        field("paths", Ty::StrArray),
        field("service", Ty::Ref),
        field("tags", Ty::StrSet),
    ];

    /// Kong's `array` and `set` take the same values and are refused and described each in
    /// its own words (kong/db/schema/init.lua's type checks).
    #[test]
    fn arrays_and_sets_are_told_apart() {
        let (_, errors) = run(json!({"paths": "/a", "tags": "t"}), false);
        assert_eq!(
            errors.to_value(),
            json!({"paths": "expected an array", "tags": "expected a set"})
        );
        let described = describe(FIELDS, &[], &Map::new());
        assert_eq!(described["fields"][2]["paths"]["type"], "array");
        assert_eq!(described["fields"][4]["tags"]["type"], "set");
    }

    fn run(v: Value, form: bool) -> (Value, FieldErrors) {
        let mut m = v.as_object().unwrap().clone();
        let e = check(FIELDS, &mut m, form);
        (Value::Object(m), e)
    }

    #[test]
    fn form_strings_are_coerced() {
        let (v, e) = run(
            json!({"port": "8080", "strip_path": "false", "paths": {"2": "/b", "1": "/a"}}),
            true,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            v,
            json!({"port": 8080, "strip_path": false, "paths": ["/a", "/b"]})
        );
    }

    #[test]
    fn json_strings_are_not_numbers() {
        let (_, e) = run(json!({"port": "8080"}), false);
        assert_eq!(e.message(), "schema violation (port: expected an integer)");
    }

    #[test]
    fn every_problem_is_named() {
        let (_, e) = run(
            json!({"port": 70000, "nope": 1, "service": {"x": 1}}),
            false,
        );
        assert_eq!(e.flatten().len(), 3);
        assert!(e.message().starts_with("3 schema violations"));
        assert_eq!(e.to_value()["nope"], "unknown field");
    }
}
