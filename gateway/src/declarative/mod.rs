//! Declarative configuration in decK's format (`_format_version` "3.0"; "1.1" and "2.1" read).
//!
//! A file is read into the same validated records the admin API produces, so DB-less mode,
//! `tollgate config validate` and `tollgate config apply` all see one meaning of a file. Nested
//! entities name their parent implicitly; top-level ones by name or id. Entities without an id
//! get one derived from what names them, so the same file always makes the same ids.
pub mod export;
pub mod sync;
pub mod yaml;

use crate::model::{normalize, schema::FieldErrors, Kind, Record, Source};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use uuid::Uuid;

/// Namespace of the ids derived for entities a file does not give ids to.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_52d4_1b0e_4d4e_9a57_3c1f_2b8e_7a10);

/// One problem in a file: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.path.is_empty()) {
            (Some(l), false) => write!(f, "line {l}: {}: {}", self.path, self.message),
            (Some(l), true) => write!(f, "line {l}: {}", self.message),
            (None, _) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A file's entities, validated, parents before children, and its developer-portal plans
/// (a Tollgate extension: the `plans` list, which Kong users' files simply lack).
#[derive(Debug)]
pub struct Config {
    pub records: Vec<Record>,
    pub plans: Vec<crate::store::portal::Plan>,
}

/// An entity found in the file, before validation.
struct Item {
    kind: Kind,
    path: String,
    fields: Map<String, Value>,
}

/// The credentials besides API keys that decK nests under a consumer, each under its Kong
/// schema name (`basicauth_credentials`, `jwt_secrets`, `hmacauth_credentials`,
/// `oauth2_credentials`, `acls`).
pub const CONSUMER_CREDENTIALS: [Kind; 5] = [
    Kind::BasicAuth,
    Kind::JwtSecret,
    Kind::HmacAuth,
    Kind::OAuth2Credential,
    Kind::Acl,
];

/// The file's own top-level keys.
const META: &[&str] = &["_format_version", "_transform", "_info", "_workspace"];
/// The top-level lists of entities.
const LISTS: &[&str] = &[
    "services",
    "routes",
    "consumers",
    "consumer_groups",
    "plugins",
    "upstreams",
    "certificates",
    "snis",
    "ca_certificates",
    "plans",
];

/// Reads a declarative file (`-`: standard input) without reading more than the parser
/// accepts (`yaml::MAX_DOCUMENT_BYTES`): a larger one is refused, not loaded into memory.
pub fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = yaml::MAX_DOCUMENT_BYTES as u64;
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().take(limit + 1).read_to_string(&mut text)?;
    } else {
        std::fs::File::open(path)?
            .take(limit + 1)
            .read_to_string(&mut text)?;
    }
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the document is more than the {limit} bytes allowed"),
        ));
    }
    Ok(text)
}

/// Reads and validates a declarative file. `now` stamps the entities' times.
pub fn load(text: &str, now: i64) -> Result<Config, Vec<Diagnostic>> {
    let doc = yaml::parse(text).map_err(|e| {
        vec![Diagnostic {
            line: Some(e.line),
            path: String::new(),
            message: e.message,
        }]
    })?;
    load_located(&doc, now)
}

/// Validates a document built in memory (the Kubernetes controller's translation), as a file
/// with the same content would be.
pub fn load_value(value: Value, now: i64) -> Result<Config, Vec<Diagnostic>> {
    let doc = yaml::Located {
        value,
        lines: HashMap::new(),
    };
    load_located(&doc, now)
}

fn load_located(doc: &yaml::Located, now: i64) -> Result<Config, Vec<Diagnostic>> {
    let mut reader = Reader {
        doc,
        diagnostics: Vec::new(),
        items: Vec::new(),
        plans: Vec::new(),
        legacy: false,
    };
    reader.read_top_level();
    let records = if reader.diagnostics.is_empty() {
        reader.validate(now)
    } else {
        Vec::new()
    };
    let plans = reader.resolve_plans(&records, now);
    if reader.diagnostics.is_empty() {
        Ok(Config { records, plans })
    } else {
        Err(reader.diagnostics)
    }
}

/// The first of `rec`'s unique keys an earlier entity of its kind took, in Kong's words
/// (`primary key set to '<id>'`, `name set to 'foo'`); records the keys it finds free.
fn taken_key(rec: &Record, seen: &mut HashSet<(Kind, &'static str, String)>) -> Option<String> {
    let k = &rec.keys;
    let name_field = match rec.kind {
        Kind::KeyAuth => "key",
        Kind::Plugin => "name and scope",
        other => other.name_field(),
    };
    // The name first: an id the file did not give is derived from it.
    let keys = [
        (name_field, k.name_key.clone()),
        (
            if rec.kind == Kind::Plugin {
                "instance_name"
            } else {
                "custom_id"
            },
            k.alt_key.clone(),
        ),
        ("primary key", Some(rec.id.to_string())),
    ];
    let mut taken = None;
    for (field, value) in keys {
        let Some(value) = value else { continue };
        let shown = match rec.kind {
            // The stored key is a hash, and a plugin's key is internal: name the entity.
            Kind::KeyAuth | Kind::Plugin if field != "primary key" && field != "instance_name" => {
                rec.body
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("(hidden)")
                    .to_string()
            }
            _ => value.clone(),
        };
        if !seen.insert((rec.kind, field, value)) && taken.is_none() {
            taken = Some(format!("{field} set to '{shown}'"));
        }
    }
    taken
}

struct Reader<'a> {
    doc: &'a yaml::Located,
    diagnostics: Vec<Diagnostic>,
    items: Vec<Item>,
    /// The `plans` list, checked, with each plan's place in the file.
    plans: Vec<(String, crate::model::plan::PlanInput, Option<i64>)>,
    /// Formats before 3.0 wrote regex paths without the `~`.
    legacy: bool,
}

impl Reader<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            line: self.doc.line_of(path),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn read_top_level(&mut self) {
        let Some(top) = self.doc.value.as_object() else {
            return self.error(
                "",
                "failed parsing declarative configuration: expected an object",
            );
        };
        match top.get("_format_version").and_then(Value::as_str) {
            Some("3.0") => {}
            Some("1.1" | "2.1") => self.legacy = true,
            Some(v) => {
                return self.error(
                    "_format_version",
                    format!("unsupported format version '{v}' (expected 3.0, 2.1 or 1.1)"),
                )
            }
            None => return self.error("", "_format_version is required (\"3.0\")"),
        }
        let known = |k: &str| META.contains(&k) || LISTS.contains(&k);
        for key in top.keys().filter(|k| !known(k)) {
            self.error(key, "unknown or unsupported top-level entity list");
        }
        for (i, s) in list(top, "services").iter().enumerate() {
            self.read_service(s, &format!("services[{i}]"));
        }
        for (i, r) in list(top, "routes").iter().enumerate() {
            self.read_entity(Kind::Route, r, &format!("routes[{i}]"), None);
        }
        for (i, g) in list(top, "consumer_groups").iter().enumerate() {
            self.read_consumer_group(g, &format!("consumer_groups[{i}]"));
        }
        for (i, c) in list(top, "consumers").iter().enumerate() {
            self.read_consumer(c, &format!("consumers[{i}]"));
        }
        for (i, p) in list(top, "plugins").iter().enumerate() {
            self.read_entity(Kind::Plugin, p, &format!("plugins[{i}]"), None);
        }
        for (i, u) in list(top, "upstreams").iter().enumerate() {
            self.read_upstream(u, &format!("upstreams[{i}]"));
        }
        for (i, c) in list(top, "certificates").iter().enumerate() {
            self.read_certificate(c, &format!("certificates[{i}]"));
        }
        for (i, s) in list(top, "snis").iter().enumerate() {
            self.read_entity(Kind::Sni, s, &format!("snis[{i}]"), None);
        }
        for (i, c) in list(top, "ca_certificates").iter().enumerate() {
            self.read_entity(
                Kind::CaCertificate,
                c,
                &format!("ca_certificates[{i}]"),
                None,
            );
        }
        for (i, p) in list(top, "plans").iter().enumerate() {
            self.read_plan(p, &format!("plans[{i}]"));
        }
        for key in LISTS {
            if top.get(*key).is_some_and(|v| !v.is_array() && !v.is_null()) {
                self.error(key, "expected a list");
            }
        }
    }

    fn read_plan(&mut self, p: &Value, path: &str) {
        let Some(fields) = p.as_object() else {
            return self.error(path, "expected a record");
        };
        let created_at = fields.get("created_at").and_then(Value::as_i64);
        match crate::model::plan::check(fields.clone(), None, false) {
            Ok(input) => {
                if self
                    .plans
                    .iter()
                    .any(|(_, other, _)| other.name == input.name)
                {
                    let message = format!(
                        "uniqueness violation: 'plans' entity with name set to '{}' already declared",
                        input.name
                    );
                    return self.error(path, message);
                }
                self.plans.push((path.to_string(), input, created_at));
            }
            Err(errors) => self.field_errors(path, &errors),
        }
    }

    /// The plans with their services (named by name or id) resolved to the file's services;
    /// ids follow from the names, so the same file always makes the same plans.
    fn resolve_plans(&mut self, records: &[Record], now: i64) -> Vec<crate::store::portal::Plan> {
        let services: Vec<(&str, String)> = records
            .iter()
            .filter(|r| r.kind == Kind::Service)
            .flat_map(|r| {
                let id = r.id.to_string();
                let name = r
                    .body
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                [
                    (name, id.clone()),
                    (r.body["id"].as_str().unwrap_or_default(), id),
                ]
            })
            .collect();
        let mut out = Vec::new();
        for (path, input, created_at) in std::mem::take(&mut self.plans) {
            let mut ids = Vec::new();
            for (i, s) in input.services.iter().enumerate() {
                match services.iter().find(|(n, _)| !n.is_empty() && n == s) {
                    Some((_, id)) => ids.push(id.clone()),
                    None => self.error(
                        &format!("{path}.services[{i}]"),
                        format!("no services named '{s}' in the file"),
                    ),
                }
            }
            let id = Uuid::new_v5(&ID_NAMESPACE, format!("plan:{}", input.name).as_bytes());
            out.push(crate::store::portal::Plan {
                id: id.to_string(),
                name: input.name,
                limits: input.limits,
                services: ids,
                credentials: input.credentials,
                created_at: created_at.unwrap_or(now),
            });
        }
        out
    }

    fn read_service(&mut self, s: &Value, path: &str) {
        let Some(id) = self.read_entity(Kind::Service, s, path, None) else {
            return;
        };
        let parent = ("service", id);
        for (i, r) in children(s, "routes").iter().enumerate() {
            let Some(route_id) =
                self.read_entity(Kind::Route, r, &format!("{path}.routes[{i}]"), Some(parent))
            else {
                continue;
            };
            for (j, p) in children(r, "plugins").iter().enumerate() {
                self.read_entity(
                    Kind::Plugin,
                    p,
                    &format!("{path}.routes[{i}].plugins[{j}]"),
                    Some(("route", route_id)),
                );
            }
        }
        for (i, p) in children(s, "plugins").iter().enumerate() {
            self.read_entity(
                Kind::Plugin,
                p,
                &format!("{path}.plugins[{i}]"),
                Some(parent),
            );
        }
    }

    fn read_upstream(&mut self, u: &Value, path: &str) {
        let Some(id) = self.read_entity(Kind::Upstream, u, path, None) else {
            return;
        };
        for (i, t) in children(u, "targets").iter().enumerate() {
            let tpath = format!("{path}.targets[{i}]");
            self.read_entity(Kind::Target, t, &tpath, Some(("upstream", id)));
        }
    }

    /// A certificate and its nested `snis` (decK writes them as `{name: ...}` records).
    fn read_certificate(&mut self, c: &Value, path: &str) {
        let Some(id) = self.read_entity(Kind::Certificate, c, path, None) else {
            return;
        };
        for (i, s) in children(c, "snis").iter().enumerate() {
            let spath = format!("{path}.snis[{i}]");
            let sni = match s {
                Value::String(name) => json!({ "name": name }),
                other => other.clone(),
            };
            self.read_entity(Kind::Sni, &sni, &spath, Some(("certificate", id)));
        }
    }

    /// A consumer group and its nested `plugins` (decK's `consumer_groups` list).
    fn read_consumer_group(&mut self, g: &Value, path: &str) {
        let Some(id) = self.read_entity(Kind::ConsumerGroup, g, path, None) else {
            return;
        };
        for (i, p) in children(g, "plugins").iter().enumerate() {
            let ppath = format!("{path}.plugins[{i}]");
            self.read_entity(Kind::Plugin, p, &ppath, Some(("consumer_group", id)));
        }
    }

    fn read_consumer(&mut self, c: &Value, path: &str) {
        let Some(id) = self.read_entity(Kind::Consumer, c, path, None) else {
            return;
        };
        for (i, k) in children(c, "keyauth_credentials").iter().enumerate() {
            let kpath = format!("{path}.keyauth_credentials[{i}]");
            if k.get("key").is_none() && k.get("key_hash").is_none() {
                self.error(&kpath, "key is required in a declarative file");
                continue;
            }
            self.read_entity(Kind::KeyAuth, k, &kpath, Some(("consumer", id)));
        }
        // decK's `groups: [{name: gold}]`: the consumer's memberships.
        for (i, g) in children(c, "groups").iter().enumerate() {
            let group = match g {
                Value::String(name) => json!({ "consumer_group": name }),
                other => json!({ "consumer_group": other.get("name").or(other.get("id")) }),
            };
            let gpath = format!("{path}.groups[{i}]");
            self.read_entity(
                Kind::ConsumerGroupMember,
                &group,
                &gpath,
                Some(("consumer", id)),
            );
        }
        for kind in CONSUMER_CREDENTIALS {
            let key = kind.schema_name();
            for (i, k) in children(c, key).iter().enumerate() {
                self.read_entity(
                    kind,
                    k,
                    &format!("{path}.{key}[{i}]"),
                    Some(("consumer", id)),
                );
            }
        }
        for (i, p) in children(c, "plugins").iter().enumerate() {
            self.read_entity(
                Kind::Plugin,
                p,
                &format!("{path}.plugins[{i}]"),
                Some(("consumer", id)),
            );
        }
    }

    /// Records one entity (nested lists removed, parent reference set, id settled).
    fn read_entity(
        &mut self,
        kind: Kind,
        v: &Value,
        path: &str,
        parent: Option<(&str, Uuid)>,
    ) -> Option<Uuid> {
        let Some(obj) = v.as_object() else {
            self.error(path, "expected a mapping");
            return None;
        };
        let mut fields = obj.clone();
        for nested in nested_lists(kind) {
            fields.remove(*nested);
        }
        if let Some((field, id)) = parent {
            fields.insert(field.into(), json!({"id": id}));
        }
        if self.legacy && kind == Kind::Route {
            mark_legacy_regex_paths(&mut fields);
        }
        let id = match fields.get("id") {
            Some(Value::String(s)) => match Uuid::parse_str(s) {
                Ok(id) => id,
                Err(_) => {
                    self.error(&format!("{path}.id"), "expected a valid UUID");
                    return None;
                }
            },
            _ => derived_id(kind, &fields, path),
        };
        fields.insert("id".into(), json!(id));
        self.items.push(Item {
            kind,
            path: path.to_string(),
            fields,
        });
        Some(id)
    }

    /// Resolves references by name, checks every entity, and checks keys are unique in the file.
    fn validate(&mut self, now: i64) -> Vec<Record> {
        let names = self.name_index();
        let items = std::mem::take(&mut self.items);
        let paths: HashMap<Uuid, String> = items
            .iter()
            .filter_map(|i| {
                Some((
                    Uuid::parse_str(i.fields.get("id")?.as_str()?).ok()?,
                    i.path.clone(),
                ))
            })
            .collect();
        let mut records = Vec::with_capacity(items.len());
        let mut seen: HashSet<(Kind, &'static str, String)> = HashSet::new();
        for mut item in items {
            for (field, kind) in crate::model::REFERENCES {
                if let Err(msg) = resolve(&mut item.fields, field, kind, &names) {
                    self.error(&format!("{}.{field}", item.path), msg);
                }
            }
            match normalize(item.kind, item.fields, None, Source::Typed, now) {
                Ok(n) => {
                    if let Some(taken) = taken_key(&n.record, &mut seen) {
                        self.error(
                            &item.path,
                            format!(
                                "uniqueness violation: '{}' entity with {taken} already declared",
                                item.kind.schema_name()
                            ),
                        );
                    }
                    records.push(n.record);
                }
                Err(errors) => self.field_errors(&item.path, &errors),
            }
        }
        if self.diagnostics.is_empty() {
            self.check_references(&records, &paths);
        }
        records.sort_by_key(|r| r.kind);
        records
    }

    fn field_errors(&mut self, path: &str, errors: &FieldErrors) {
        for (field, message) in errors.flatten() {
            let at = if field.starts_with('@') || field.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{field}")
            };
            self.error(&at, message);
        }
    }

    /// Names and ids of the file's services, routes and consumers, for references.
    fn name_index(&self) -> HashMap<(Kind, String), Uuid> {
        let mut names = HashMap::new();
        for item in &self.items {
            let id = item
                .fields
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok());
            let Some(id) = id else { continue };
            names.insert((item.kind, id.to_string()), id);
            for f in ["name", "username", "custom_id"] {
                if let Some(n) = item.fields.get(f).and_then(Value::as_str) {
                    names.entry((item.kind, n.to_string())).or_insert(id);
                }
            }
        }
        names
    }

    /// Every reference must point at an entity of the file.
    fn check_references(&mut self, records: &[Record], paths: &HashMap<Uuid, String>) {
        let ids: std::collections::HashSet<(Kind, Uuid)> =
            records.iter().map(|r| (r.kind, r.id)).collect();
        let mut missing = Vec::new();
        for r in records {
            for (field, kind) in crate::model::REFERENCES {
                let id = r.keys.reference(field);
                if let Some(id) = id.filter(|id| !ids.contains(&(kind, *id))) {
                    missing.push((
                        r.id,
                        field,
                        format!(
                            "references {} '{id}', which the file does not define",
                            kind.collection()
                        ),
                    ));
                }
            }
        }
        for (id, field, message) in missing {
            let path = paths.get(&id).cloned().unwrap_or_default();
            self.error(&format!("{path}.{field}"), message);
        }
    }
}

fn list<'a>(top: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    top.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn children<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The lists an entity of `kind` may hold in a file, read as entities of their own.
fn nested_lists(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Service => &["routes", "plugins"],
        Kind::Route => &["plugins"],
        Kind::Consumer => &[
            "keyauth_credentials",
            "basicauth_credentials",
            "jwt_secrets",
            "hmacauth_credentials",
            "oauth2_credentials",
            "acls",
            "groups",
            "plugins",
        ],
        Kind::Upstream => &["targets"],
        Kind::ConsumerGroup => &["plugins"],
        Kind::Certificate => &["snis"],
        _ => &[],
    }
}

/// An id that follows from what names the entity, or from its place in the file.
fn derived_id(kind: Kind, fields: &Map<String, Value>, path: &str) -> Uuid {
    let s = |f: &str| fields.get(f).and_then(Value::as_str).map(String::from);
    let r = |f: &str| fields.get(f).map(|v| v.to_string()).unwrap_or_default();
    let natural = match kind {
        Kind::Service | Kind::Route | Kind::Upstream | Kind::Sni => s("name"),
        Kind::Certificate | Kind::CaCertificate => s("cert").map(|c| {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(c.as_bytes()))
        }),
        Kind::Target => s("target").map(|t| format!("{}:{t}", r("upstream"))),
        Kind::Consumer => {
            s("username").or_else(|| s("custom_id").map(|c| format!("custom_id:{c}")))
        }
        Kind::BasicAuth | Kind::HmacAuth => s("username"),
        Kind::ConsumerGroup => s("name"),
        Kind::ConsumerGroupMember => Some(format!("{}:{}", r("consumer_group"), r("consumer"))),
        Kind::JwtSecret => s("key"),
        Kind::OAuth2Credential => s("client_id"),
        Kind::Acl => s("group").map(|g| format!("{}:{g}", r("consumer"))),
        Kind::KeyAuth => s("key")
            .map(|k| crate::model::credential::hash_key(&k))
            .or_else(|| s("key_hash")),
        Kind::Plugin => {
            s("name").map(|n| format!("{n}:{}:{}:{}", r("service"), r("route"), r("consumer")))
        }
    };
    let seed = format!(
        "{}:{}",
        kind.collection(),
        natural.unwrap_or_else(|| path.to_string())
    );
    Uuid::new_v5(&ID_NAMESPACE, seed.as_bytes())
}

/// References may name their target (`service: pytbak`) or give its id.
fn resolve(
    fields: &mut Map<String, Value>,
    field: &str,
    kind: Kind,
    names: &HashMap<(Kind, String), Uuid>,
) -> Result<(), String> {
    let key = match fields.get(field) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => match ["id", "name", "username"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str))
        {
            Some(s) => s.to_string(),
            None => return Ok(()),
        },
        Some(_) => return Ok(()),
    };
    match names.get(&(kind, key.clone())) {
        Some(id) => {
            fields.insert(field.into(), json!({"id": id}));
            Ok(())
        }
        None => Err(format!(
            "no {} named or with id '{key}' in this file",
            kind.collection()
        )),
    }
}

/// Before format 3.0 a regex path had no `~`; paths with regex syntax are marked as regexes.
fn mark_legacy_regex_paths(fields: &mut Map<String, Value>) {
    if let Some(Value::Array(paths)) = fields.get_mut("paths") {
        for p in paths.iter_mut() {
            if let Value::String(s) = p {
                if !s.starts_with('~')
                    && s.contains([
                        '(', ')', '[', ']', '*', '+', '?', '{', '}', '^', '$', '|', '\\',
                    ])
                {
                    *s = format!("~{s}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
