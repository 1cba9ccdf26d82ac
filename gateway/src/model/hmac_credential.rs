//! An hmac-auth credential: a username and the shared secret its requests are signed with.
//!
//! Kong's entity (kong/plugins/hmac-auth/daos.lua): the secret is generated when not given.
//! It must stay readable to check signatures, so the store keeps it encrypted under the
//! keyring (`store::keyring`).
use super::credential::generate_key;
use super::schema::{field, Field, FieldErrors, Ty};
use super::{Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacCredential {
    pub id: Uuid,
    pub consumer: Option<EntityRef>,
    pub username: String,
    pub secret: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entity for HmacCredential {
    const FIELDS: &'static [Field] = &[
        field("consumer", Ty::Ref),
        field("username", Ty::Str),
        field("secret", Ty::Str),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["consumer", "username"];
    const FILLED: &'static [&'static str] = &["secret"];

    fn prepare(input: &mut Map<String, Value>, existing: Option<&Value>) -> Option<String> {
        if existing.is_none() && input.get("secret").is_none_or(Value::is_null) {
            input.insert("secret".into(), generate_key().into());
        }
        None
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        if self.username.is_empty() {
            errors.add("username", "length must be at least 1");
        }
    }

    fn keys(&self) -> Keys {
        Keys::credential(self.username.clone(), &self.consumer, &self.tags)
    }
}
