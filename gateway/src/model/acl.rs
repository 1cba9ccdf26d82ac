//! An ACL group membership: a consumer belongs to a group the acl plugin allows or denies.
//!
//! Kong's entity (kong/plugins/acl/daos.lua): unique per consumer and group, which is how
//! `/consumers/{c}/acls/{group}` finds it.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{ref_id, tags_of, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub id: Uuid,
    pub consumer: Option<EntityRef>,
    pub group: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The store's unique key of a consumer's membership of `group`.
pub fn unique_key(consumer: Uuid, group: &str) -> String {
    format!("{consumer}:{group}")
}

impl Entity for Acl {
    const FIELDS: &'static [Field] = &[
        field("consumer", Ty::Ref),
        field("group", Ty::Str),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["consumer", "group"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        if self.group.is_empty() {
            errors.add("group", "length must be at least 1");
        }
    }

    fn keys(&self) -> Keys {
        let consumer_id = ref_id(&self.consumer);
        Keys {
            name_key: consumer_id.map(|c| unique_key(c, &self.group)),
            consumer_id,
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}
