//! A basic-auth credential: a username and password that identify a consumer.
//!
//! Tollgate differs from Kong on purpose: the password is stored as an argon2id hash (Kong
//! stores SHA-1 of the password and consumer id), so a copy of the store reveals no password.
//! A write that gives an argon2id hash keeps it, so an exported file reads back unchanged.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{password, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthCredential {
    pub id: Uuid,
    pub consumer: Option<EntityRef>,
    pub username: String,
    /// The argon2id hash of the password, in the PHC string format.
    pub password: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entity for BasicAuthCredential {
    const FIELDS: &'static [Field] = &[
        field("consumer", Ty::Ref),
        field("username", Ty::Str),
        field("password", Ty::Str),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["consumer", "username", "password"];

    /// Replaces a clear password with its hash.
    fn prepare(input: &mut Map<String, Value>, _: Option<&Value>) -> Option<String> {
        if let Some(Value::String(clear)) = input.get("password") {
            if !clear.is_empty() && !password::is_hash(clear) {
                let hashed = password::hash(clear).expect("argon2 hashes any password");
                input.insert("password".into(), hashed.into());
            }
        }
        None
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        if self.username.is_empty() {
            errors.add("username", "length must be at least 1");
        }
        if !password::is_hash(&self.password) {
            errors.add("password", "length must be at least 1");
        }
    }

    fn keys(&self) -> Keys {
        Keys::credential(self.username.clone(), &self.consumer, &self.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{normalized_body, Kind};
    use serde_json::json;

    const CONSUMER: &str = "3d45a73d-4024-4813-b356-43a14ecea702";

    // spec/03-plugins/10-basic-auth/02-api_spec.lua:86 "hashes the password": the stored
    // password is not the clear one (argon2id here, SHA-1 in Kong).
    #[test]
    fn the_password_is_stored_as_an_argon2id_hash() {
        let body = normalized_body(
            Kind::BasicAuth,
            json!({"consumer": {"id": CONSUMER}, "username": "bob", "password": "kong"}),
        )
        .unwrap();
        let stored = body["password"].as_str().unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(super::password::verify("kong", stored));
        let again = normalized_body(
            Kind::BasicAuth,
            json!({"consumer": {"id": CONSUMER}, "username": "bob", "password": stored}),
        )
        .unwrap();
        assert_eq!(
            again["password"], stored,
            "an exported hash reads back as itself"
        );
    }

    // 02-api_spec.lua:129 "returns bad request": username and password are required.
    #[test]
    fn username_and_password_are_required() {
        let err =
            normalized_body(Kind::BasicAuth, json!({"consumer": {"id": CONSUMER}})).unwrap_err();
        assert!(err.contains("username: required field missing"), "{err}");
        assert!(err.contains("password: required field missing"), "{err}");
    }
}
