//! What can go wrong in the store, in terms the admin API can answer with.
use crate::model::{Kind, Record};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unreachable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("UNIQUE violation detected on '{description}'")]
    Unique {
        /// The key as Kong prints it: `{username="slow_user"}`.
        description: String,
        /// The same as the error's `fields`: `{"username": "slow_user"}`.
        fields: Value,
    },
    /// A new entity given the id of one that exists.
    #[error("primary key violation on key '{{id=\"{id}\"}}'")]
    PrimaryKey { id: String },
    #[error(
        "the foreign key '{{id=\"{id}\"}}' does not reference an existing '{collection}' entity."
    )]
    MissingReference {
        field: &'static str,
        id: String,
        collection: &'static str,
    },
    #[error("an existing '{child}' entity references this '{parent}' entity")]
    Referenced {
        child: &'static str,
        parent: &'static str,
    },
    #[error("Not found")]
    NotFound,
    #[error("a stored entity is not valid JSON: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e)
    }
}

/// The unique key `rec` collides on (`column` of the store), as Kong's unique violation
/// names it: printed (`{username="slow_user"}`) and as the error's `fields`.
pub fn unique_key(rec: &Record, column: &str) -> (String, Value) {
    let v = |f: &str| rec.body.get(f).cloned().unwrap_or(Value::Null);
    let r = |f: &str| match rec.body.get(f).and_then(|v| v.get("id")) {
        Some(id) => serde_json::json!({"id": id}),
        None => Value::Null,
    };
    let fields: Vec<(&str, Value)> = match (rec.kind, column) {
        (Kind::Consumer, "alt_key") => vec![("custom_id", v("custom_id"))],
        (Kind::Plugin, "alt_key") => vec![("instance_name", v("instance_name"))],
        (Kind::KeyAuth, _) => vec![("key", Value::String("<hidden>".into()))],
        (Kind::Acl, _) => vec![("consumer", r("consumer")), ("group", v("group"))],
        (Kind::Target, _) => vec![("target", v("target")), ("upstream", r("upstream"))],
        (Kind::Plugin, _) => vec![
            ("consumer", r("consumer")),
            ("name", v("name")),
            ("route", r("route")),
            ("service", r("service")),
        ],
        (kind, _) => {
            let f = kind.name_field();
            vec![(f, v(f))]
        }
    };
    let map: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let map = Value::Object(map);
    (crate::penlight::write(&map), map)
}
