//! A consumer: someone who calls the APIs, identified by a username or a custom id.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{tags_of, Entity, Keys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub id: Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entity for Consumer {
    const FIELDS: &'static [Field] = &[
        field("username", Ty::Str),
        field("custom_id", Ty::Str),
        field("tags", Ty::StrSet),
    ];
    const ANY_OF: &'static [&'static str] = &["username", "custom_id"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        if self.username.is_none() && self.custom_id.is_none() {
            errors.add(
                "@entity",
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            );
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| Uuid::parse_str(u).is_ok())
        {
            errors.add("username", "a username cannot be a UUID");
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: self.username.clone(),
            alt_key: self.custom_id.clone(),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}
