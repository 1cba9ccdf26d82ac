//! What can go wrong in the store, in terms the admin API can answer with.
use crate::model::{Kind, Record};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unreachable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("UNIQUE violation detected on '{0}'")]
    Unique(String),
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

/// Kong's description of the values that collided: `{username="slow_user"}`.
pub fn unique_description(rec: &Record, column: &str) -> String {
    let s = |f: &str| match rec.body.get(f) {
        Some(Value::String(v)) => format!("\"{v}\""),
        Some(Value::Null) | None => "null".into(),
        Some(other) => other.to_string(),
    };
    match (rec.kind, column) {
        (Kind::Consumer, "alt_key") => format!("{{custom_id={}}}", s("custom_id")),
        (Kind::KeyAuth, _) => "{key=<hidden>}".into(),
        (Kind::Plugin, _) => {
            let r = |f: &str| match rec.body.get(f).and_then(|v| v.get("id")) {
                Some(Value::String(id)) => format!("{{id=\"{id}\"}}"),
                _ => "null".into(),
            };
            format!(
                "{{consumer={},name={},route={},service={}}}",
                r("consumer"),
                s("name"),
                r("route"),
                r("service")
            )
        }
        (kind, _) => {
            let f = kind.name_field().unwrap_or("name");
            format!("{{{f}={}}}", s(f))
        }
    }
}
