//! The entities Tollgate stores, with Kong's fields, defaults and validation.
//!
//! Every way of changing configuration (admin API, declarative file, console) goes through
//! [`normalize`], so an entity is validated the same way whichever door it came in by.
pub mod acl;
pub mod api_version;
pub mod basic_auth;
pub mod certificate;
pub mod consumer;
pub mod consumer_group;
pub mod credential;
pub mod hmac_credential;
pub mod jwt_secret;
pub mod oauth2_credential;
pub mod owner;
pub mod password;
pub mod plan;
pub mod plugin;
pub mod route;
pub mod schema;
pub mod service;
pub mod target;
pub mod upstream;

use schema::{Field, FieldErrors};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub use acl::Acl;
pub use basic_auth::BasicAuthCredential;
pub use certificate::{CaCertificate, Certificate, Sni};
pub use consumer::Consumer;
pub use consumer_group::{ConsumerGroup, ConsumerGroupMember};
pub use credential::KeyAuthCredential;
pub use hmac_credential::HmacCredential;
pub use jwt_secret::JwtSecret;
pub use oauth2_credential::OAuth2Credential;
pub use plugin::Plugin;
pub use route::Route;
pub use service::Service;
pub use target::Target;
pub use upstream::Upstream;

/// The kinds of entity, in the order a configuration must create them (parents first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    CaCertificate,
    Certificate,
    Sni,
    Service,
    Route,
    Consumer,
    ConsumerGroup,
    ConsumerGroupMember,
    KeyAuth,
    BasicAuth,
    JwtSecret,
    HmacAuth,
    OAuth2Credential,
    Acl,
    Plugin,
    Upstream,
    Target,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::CaCertificate,
        Kind::Certificate,
        Kind::Sni,
        Kind::Service,
        Kind::Route,
        Kind::Consumer,
        Kind::ConsumerGroup,
        Kind::ConsumerGroupMember,
        Kind::KeyAuth,
        Kind::BasicAuth,
        Kind::JwtSecret,
        Kind::HmacAuth,
        Kind::OAuth2Credential,
        Kind::Acl,
        Kind::Plugin,
        Kind::Upstream,
        Kind::Target,
    ];

    /// The admin API collection (`/services`) and the store's name for the kind.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Route => "routes",
            Kind::Consumer => "consumers",
            Kind::ConsumerGroup => "consumer_groups",
            Kind::ConsumerGroupMember => "consumer_group_consumers",
            Kind::KeyAuth => "key-auths",
            Kind::BasicAuth => "basic-auths",
            Kind::JwtSecret => "jwts",
            Kind::HmacAuth => "hmac-auths",
            Kind::OAuth2Credential => "oauth2",
            Kind::Acl => "acls",
            Kind::Plugin => "plugins",
            Kind::Upstream => "upstreams",
            Kind::Target => "targets",
            Kind::CaCertificate => "ca_certificates",
            Kind::Certificate => "certificates",
            Kind::Sni => "snis",
        }
    }

    /// Kong's schema name for the kind (`keyauth_credentials`), as declarative files and
    /// Kong's error messages name it.
    pub fn schema_name(self) -> &'static str {
        match self {
            Kind::KeyAuth => "keyauth_credentials",
            Kind::BasicAuth => "basicauth_credentials",
            Kind::JwtSecret => "jwt_secrets",
            Kind::HmacAuth => "hmacauth_credentials",
            Kind::OAuth2Credential => "oauth2_credentials",
            other => other.collection(),
        }
    }

    pub fn from_collection(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == s)
    }

    /// The field that names an entity of this kind in URLs (`/consumers/slow_user`,
    /// `/plugins/{instance_name}`, `/key-auths/{key}`; an ACL by its group within its consumer).
    pub fn name_field(self) -> &'static str {
        match self {
            Kind::Service | Kind::Route | Kind::Upstream | Kind::Sni | Kind::ConsumerGroup => {
                "name"
            }
            Kind::ConsumerGroupMember => "id",
            Kind::Certificate => "id",
            Kind::CaCertificate => "cert_digest",
            Kind::Target => "target",
            Kind::Consumer | Kind::BasicAuth | Kind::HmacAuth => "username",
            Kind::KeyAuth | Kind::JwtSecret => "key",
            Kind::OAuth2Credential => "client_id",
            Kind::Acl => "group",
            Kind::Plugin => "instance_name",
        }
    }

    /// Where the store finds an entity by that name, and what it holds there: a key is found
    /// by its hash, since only the hash is stored.
    pub fn name_lookup(self, name: &str) -> (&'static str, String) {
        match self {
            Kind::KeyAuth => ("name_key", credential::hash_key(name)),
            Kind::Plugin => ("alt_key", name.to_string()),
            _ => ("name_key", name.to_string()),
        }
    }

    /// The defaults the kind's validation fills in, read from a minimal entity put through
    /// that validation (the fields the probe gives and a plugin's `config` left out).
    fn defaults(self) -> Map<String, Value> {
        let probe = match self {
            Kind::Service => serde_json::json!({"host": "example.test"}),
            Kind::Route => serde_json::json!({"paths": ["/"]}),
            Kind::Consumer => serde_json::json!({"username": "probe"}),
            Kind::ConsumerGroup => serde_json::json!({"name": "probe"}),
            Kind::ConsumerGroupMember => serde_json::json!({
                "consumer_group": {"id": Uuid::nil()}, "consumer": {"id": Uuid::nil()}}),
            Kind::KeyAuth => serde_json::json!({"consumer": {"id": Uuid::nil()}, "key": "probe"}),
            Kind::BasicAuth => serde_json::json!({"consumer": {"id": Uuid::nil()},
                "username": "probe", "password": "probe"}),
            Kind::JwtSecret => serde_json::json!({"consumer": {"id": Uuid::nil()}}),
            Kind::HmacAuth => {
                serde_json::json!({"consumer": {"id": Uuid::nil()}, "username": "probe"})
            }
            Kind::Acl => serde_json::json!({"consumer": {"id": Uuid::nil()}, "group": "probe"}),
            Kind::OAuth2Credential => serde_json::json!({"consumer": {"id": Uuid::nil()},
                "name": "probe", "client_id": "probe", "client_secret": "probe"}),
            Kind::Plugin => serde_json::json!({"name": "key-auth"}),
            Kind::Upstream => serde_json::json!({"name": "probe.test"}),
            Kind::Target => {
                serde_json::json!({"upstream": {"id": Uuid::nil()}, "target": "probe.test"})
            }
            // Checked by parsing, so no probe passes; they have no defaults to show.
            Kind::Certificate | Kind::CaCertificate => serde_json::json!({}),
            Kind::Sni => {
                serde_json::json!({"certificate": {"id": Uuid::nil()}, "name": "probe.test"})
            }
        };
        let Value::Object(probe) = probe else {
            unreachable!("the probes are objects")
        };
        let given: Vec<String> = probe.keys().cloned().collect();
        let mut defaults = normalize(self, probe, None, Source::Typed, 0)
            .ok()
            .and_then(|n| n.record.body.as_object().cloned())
            .unwrap_or_default();
        defaults.retain(|k, _| !given.contains(k) && k != "config");
        defaults
    }

    /// Kong's `/schemas/{name}` answer for the kind: its fields, with the defaults its
    /// validation fills in and the generated ones (`id`, timestamps) marked `auto`.
    pub fn schema(self) -> Value {
        let defaults = self.defaults();
        let mut described = schema::describe(self.fields(), self.required(), &defaults);
        let auto = [
            (
                "id",
                serde_json::json!({"type": "string", "uuid": true, "auto": true}),
            ),
            (
                "created_at",
                serde_json::json!({"type": "integer", "timestamp": true, "auto": true}),
            ),
            (
                "updated_at",
                serde_json::json!({"type": "integer", "timestamp": true, "auto": true}),
            ),
        ];
        if let Some(list) = described["fields"].as_array_mut() {
            for (i, (name, d)) in auto.into_iter().enumerate() {
                list.insert(i, serde_json::json!({ name: d }));
            }
        }
        described
    }

    fn required(self) -> &'static [&'static str] {
        self.rules().required
    }

    fn fields(self) -> &'static [Field] {
        self.rules().fields
    }

    /// The kind's entity type's schema rules, read from its `Entity` impl.
    fn rules(self) -> Rules {
        match self {
            Kind::Service => Rules::of::<Service>(),
            Kind::Route => Rules::of::<Route>(),
            Kind::Consumer => Rules::of::<Consumer>(),
            Kind::ConsumerGroup => Rules::of::<ConsumerGroup>(),
            Kind::ConsumerGroupMember => Rules::of::<ConsumerGroupMember>(),
            Kind::KeyAuth => Rules::of::<KeyAuthCredential>(),
            Kind::BasicAuth => Rules::of::<BasicAuthCredential>(),
            Kind::JwtSecret => Rules::of::<JwtSecret>(),
            Kind::HmacAuth => Rules::of::<HmacCredential>(),
            Kind::OAuth2Credential => Rules::of::<OAuth2Credential>(),
            Kind::Acl => Rules::of::<Acl>(),
            Kind::Plugin => Rules::of::<Plugin>(),
            Kind::Upstream => Rules::of::<Upstream>(),
            Kind::Target => Rules::of::<Target>(),
            Kind::CaCertificate => Rules::of::<CaCertificate>(),
            Kind::Certificate => Rules::of::<Certificate>(),
            Kind::Sni => Rules::of::<Sni>(),
        }
    }

    /// The kind's request body as a JSON Schema, for the admin API's OpenAPI document: the
    /// fields the validation checks and the input-only ones `prepare` reads (a service's
    /// `url`), an optional `id`, the timestamps as read-only (the gateway sets them). Required
    /// are the required fields less those with a default and those `prepare` fills in; a
    /// nested path gives the `parent` field (a body's is ignored), a PUT's path may give the
    /// name, and a PATCH requires nothing.
    pub fn request_schema(self, parent: Option<&str>, write: Write) -> Value {
        let rules = self.rules();
        let defaults = self.defaults();
        let from_path =
            |f: &str| Some(f) == parent || (write == Write::Put && f == self.name_field());
        let required: Vec<&str> = rules
            .required
            .iter()
            .copied()
            .filter(|f| !defaults.contains_key(*f) && !rules.filled.contains(f))
            .filter(|f| !from_path(f) && write != Write::Patch)
            .collect();
        let fields: Vec<Field> = rules.fields.iter().chain(rules.input).copied().collect();
        let kept: Vec<&str> = rules.required.iter().chain(rules.filled).copied().collect();
        let mut body = schema::json_schema(&fields, (&required, &kept), &defaults);
        let props = &mut body["properties"];
        props["id"] = json!({"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]});
        for m in META {
            props[m] =
                json!({"type": "integer", "readOnly": true, "description": "set by the gateway"});
        }
        if let Some(p) = parent {
            props[p] = json!({"description": "ignored: the path names the parent"});
        }
        let one_of_these: Vec<Value> = rules
            .any_of
            .iter()
            .map(|f| json!({"required": [f], "properties": {*f: {"not": {"type": "null"}}}}))
            .collect();
        let given = rules.any_of.iter().any(|f| from_path(f));
        if !one_of_these.is_empty() && write != Write::Patch && !given {
            body["anyOf"] = Value::Array(one_of_these);
        }
        body
    }
}

/// Which write a request body is for (`Kind::request_schema`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create,
    Put,
    Patch,
}

/// What an entity type's `Entity` impl says about its fields, for any kind.
struct Rules {
    fields: &'static [Field],
    required: &'static [&'static str],
    input: &'static [Field],
    filled: &'static [&'static str],
    any_of: &'static [&'static str],
}

impl Rules {
    fn of<T: Entity>() -> Rules {
        Rules {
            fields: T::FIELDS,
            required: T::REQUIRED,
            input: T::INPUT,
            filled: T::FILLED,
            any_of: T::ANY_OF,
        }
    }
}

/// The fields that refer to another entity, and the kind each refers to.
pub const REFERENCES: [(&str, Kind); 7] = [
    ("service", Kind::Service),
    ("route", Kind::Route),
    ("consumer", Kind::Consumer),
    ("consumer_group", Kind::ConsumerGroup),
    ("upstream", Kind::Upstream),
    ("certificate", Kind::Certificate),
    ("client_certificate", Kind::Certificate),
];

/// What the store indexes besides the body: unique keys and references to parents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keys {
    /// Unique within the kind (service/route name, username, plugin scope, key hash).
    pub name_key: Option<String>,
    /// A second unique key (consumer `custom_id`).
    pub alt_key: Option<String>,
    pub service_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub consumer_id: Option<Uuid>,
    pub upstream_id: Option<Uuid>,
    pub certificate_id: Option<Uuid>,
    /// A membership's or a group-scoped plugin's consumer group.
    pub consumer_group_id: Option<Uuid>,
    /// A service's `client_certificate`: checked to exist, not a column of its own.
    pub client_certificate_id: Option<Uuid>,
    pub tags: Vec<String>,
}

impl Keys {
    /// A consumer's credential's keys: unique by `name` (a key's hash, a username, a jwt key).
    pub fn credential(
        name: String,
        consumer: &Option<EntityRef>,
        tags: &Option<Vec<String>>,
    ) -> Keys {
        Keys {
            name_key: Some(name),
            consumer_id: ref_id(consumer),
            tags: tags_of(tags),
            ..Keys::default()
        }
    }

    /// The id the reference field `field` holds.
    pub fn reference(&self, field: &str) -> Option<Uuid> {
        match field {
            "service" => self.service_id,
            "route" => self.route_id,
            "consumer" => self.consumer_id,
            "upstream" => self.upstream_id,
            "certificate" => self.certificate_id,
            "consumer_group" => self.consumer_group_id,
            "client_certificate" => self.client_certificate_id,
            _ => None,
        }
    }
}

/// A validated entity: its full body (defaults filled in) and what the store indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    pub id: Uuid,
    pub body: Value,
    pub keys: Keys,
}

/// The result of [`normalize`]: the record, and a secret to show once (a generated API key or
/// client secret) with the field it is shown in.
#[derive(Debug)]
pub struct Normalized {
    pub record: Record,
    pub revealed: Option<(&'static str, String)>,
}

/// Behaviour each entity type provides to [`normalize`].
pub trait Entity: Serialize + DeserializeOwned {
    const FIELDS: &'static [Field];
    /// Fields that must be present once input and defaults are merged.
    const REQUIRED: &'static [&'static str] = &[];
    /// Fields only `prepare` reads (a service's `url`): input, never stored.
    const INPUT: &'static [Field] = &[];
    /// Required fields `prepare` fills in when the input has none (a generated key's hash).
    const FILLED: &'static [&'static str] = &[];
    /// Fields of which the input needs at least one (a consumer's `username` or
    /// `custom_id`), checked by `validate` or `prepare`.
    const ANY_OF: &'static [&'static str] = &[];
    /// The field a secret `prepare` generated is shown in, once.
    const REVEALED: &'static str = "key";

    /// Rewrites shorthand input before the schema check (a service's `url`, a credential's
    /// clear `key`); returns a secret to show once, if any.
    fn prepare(_input: &mut Map<String, Value>, _existing: Option<&Value>) -> Option<String> {
        None
    }

    /// Kong's entity checks that must see the merged input before it is typed (their
    /// messages replace a field's type error, as Kong's do).
    fn check_merged(_body: &Map<String, Value>, _errors: &mut FieldErrors) {}

    /// Checks the rules that span several fields (none unless the entity has some).
    fn validate(&mut self, _errors: &mut FieldErrors) {}

    fn keys(&self) -> Keys;
}

/// Where an entity's input comes from, which decides how strictly values are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// JSON bodies and declarative files: values must have their real types.
    Typed,
    /// Form bodies: every value is a string and is coerced by the schema.
    Form,
}

/// Validates `input` as an entity of `kind`, merged over `existing` (PATCH) when given.
/// `now` becomes `updated_at` (and `created_at` for new entities).
pub fn normalize(
    kind: Kind,
    input: Map<String, Value>,
    existing: Option<&Value>,
    source: Source,
    now: i64,
) -> Result<Normalized, FieldErrors> {
    match kind {
        Kind::Service => normalize_as::<Service>(kind, input, existing, source, now),
        Kind::Route => normalize_as::<Route>(kind, input, existing, source, now),
        Kind::Consumer => normalize_as::<Consumer>(kind, input, existing, source, now),
        Kind::ConsumerGroup => normalize_as::<ConsumerGroup>(kind, input, existing, source, now),
        Kind::ConsumerGroupMember => {
            normalize_as::<ConsumerGroupMember>(kind, input, existing, source, now)
        }
        Kind::KeyAuth => normalize_as::<KeyAuthCredential>(kind, input, existing, source, now),
        Kind::BasicAuth => normalize_as::<BasicAuthCredential>(kind, input, existing, source, now),
        Kind::JwtSecret => normalize_as::<JwtSecret>(kind, input, existing, source, now),
        Kind::HmacAuth => normalize_as::<HmacCredential>(kind, input, existing, source, now),
        Kind::OAuth2Credential => {
            normalize_as::<OAuth2Credential>(kind, input, existing, source, now)
        }
        Kind::Acl => normalize_as::<Acl>(kind, input, existing, source, now),
        Kind::Plugin => normalize_as::<Plugin>(kind, input, existing, source, now),
        Kind::Upstream => normalize_as::<Upstream>(kind, input, existing, source, now),
        Kind::Target => normalize_as::<Target>(kind, input, existing, source, now),
        Kind::CaCertificate => normalize_as::<CaCertificate>(kind, input, existing, source, now),
        Kind::Certificate => normalize_as::<Certificate>(kind, input, existing, source, now),
        Kind::Sni => normalize_as::<Sni>(kind, input, existing, source, now),
    }
}

/// Fields every entity carries, set by the store rather than by the caller.
const META: [&str; 2] = ["created_at", "updated_at"];

fn normalize_as<T: Entity>(
    kind: Kind,
    mut input: Map<String, Value>,
    existing: Option<&Value>,
    source: Source,
    now: i64,
) -> Result<Normalized, FieldErrors> {
    for m in META {
        input.remove(m);
    }
    let mut errors = FieldErrors::default();
    let id = take_id(&mut input, existing, &mut errors);
    let revealed = T::prepare(&mut input, existing).map(|s| (T::REVEALED, s));
    errors.absorb(schema::check(
        kind.fields(),
        &mut input,
        source == Source::Form,
    ));
    let mut body = existing
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    merge(&mut body, input);
    // Reported with the field errors, as Kong does (`{host = "required field missing",
    // port = "value should be between 0 and 65535"}`).
    for f in T::REQUIRED {
        if !body.contains_key(*f) {
            errors.add(f, "required field missing");
        }
    }
    T::check_merged(&body, &mut errors);
    errors.into_result()?;
    let created_at = body
        .get("created_at")
        .and_then(Value::as_i64)
        .unwrap_or(now);
    body.insert("id".into(), Value::String(id.to_string()));
    body.insert("created_at".into(), created_at.into());
    body.insert("updated_at".into(), now.into());

    let mut typed: T = serde_json::from_value(Value::Object(body)).map_err(|e| {
        let mut errors = FieldErrors::default();
        errors.add("@entity", e.to_string());
        errors
    })?;
    let mut errors = FieldErrors::default();
    typed.validate(&mut errors);
    errors.into_result()?;
    let keys = typed.keys();
    let body = serde_json::to_value(&typed).expect("entities serialize");
    Ok(Normalized {
        record: Record {
            kind,
            id,
            body,
            keys,
        },
        revealed,
    })
}

fn take_id(
    input: &mut Map<String, Value>,
    existing: Option<&Value>,
    errors: &mut FieldErrors,
) -> Uuid {
    let existing_id = existing
        .and_then(|e| e.get("id"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    match input.remove("id") {
        Some(Value::String(s)) => match Uuid::parse_str(&s) {
            Ok(id) if existing_id.is_none_or(|e| e == id) => id,
            Ok(_) => {
                errors.add("id", "cannot change the id of an existing entity");
                Uuid::nil()
            }
            Err(_) => {
                errors.add("id", "expected a valid UUID");
                Uuid::nil()
            }
        },
        Some(Value::Null) | None => existing_id.unwrap_or_else(Uuid::new_v4),
        Some(_) => {
            errors.add("id", "expected a valid UUID");
            Uuid::nil()
        }
    }
}

/// Reads the id out of a `{"id": ...}` reference field.
/// Applies a change to a stored body as Kong's PATCH does: `null` removes a field, records
/// (a plugin's `config`) are merged field by field, anything else replaces.
fn merge(body: &mut Map<String, Value>, change: Map<String, Value>) {
    for (k, v) in change {
        match (body.get_mut(&k), v) {
            (_, Value::Null) => {
                body.remove(&k);
            }
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (_, v) => {
                body.insert(k, v);
            }
        }
    }
}

/// The id a URL's `{id or name}` names, if it is one: a UUID in its hyphenated form only, as
/// Kong's `is_valid_uuid` reads it, so a 32-hex-digit name (a generated client id or token)
/// stays a name.
pub fn uuid_key(key: &str) -> Option<Uuid> {
    (key.len() == 36)
        .then(|| Uuid::parse_str(key).ok())
        .flatten()
}

pub fn ref_id(r: &Option<EntityRef>) -> Option<Uuid> {
    r.as_ref().map(|r| r.id)
}

/// A reference to another entity, as Kong writes it: `{"id": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntityRef {
    pub id: Uuid,
}

/// Checks a name field: letters, digits and `.-_~` only, as Kong requires.
pub use tollgate_analytics::unix_now;

/// Tags as the store indexes them.
pub fn tags_of(tags: &Option<Vec<String>>) -> Vec<String> {
    tags.clone().unwrap_or_default()
}

/// Test helper: an entity's stored body from JSON input, or Kong's error message.
#[cfg(test)]
pub(crate) fn normalized_body(kind: Kind, input: Value) -> Result<Value, String> {
    let fields = input.as_object().cloned().unwrap_or_default();
    normalize(kind, fields, None, Source::Typed, 1)
        .map(|n| n.record.body)
        .map_err(|e| e.message())
}
