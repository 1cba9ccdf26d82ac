//! Consumer groups (Kong Enterprise 3.4+): a named set of consumers that plugins can be scoped
//! to, so one rate-limiting instance limits every member (Kong's "Gold" and "Silver" tiers).
//! A membership is an entity of its own, which the store deletes with either side.
use super::schema::{field, Field, Ty};
use super::{ref_id, tags_of, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroup {
    pub id: Uuid,
    pub name: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entity for ConsumerGroup {
    const FIELDS: &'static [Field] = &[field("name", Ty::Name), field("tags", Ty::StrSet)];
    const REQUIRED: &'static [&'static str] = &["name"];

    fn keys(&self) -> Keys {
        Keys {
            name_key: Some(self.name.clone()),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

/// A consumer's membership of a consumer group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroupMember {
    pub id: Uuid,
    pub consumer_group: Option<EntityRef>,
    pub consumer: Option<EntityRef>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The store's unique key of `consumer`'s membership of `group`.
pub fn membership_key(group: Uuid, consumer: Uuid) -> String {
    format!("{group}:{consumer}")
}

impl Entity for ConsumerGroupMember {
    const FIELDS: &'static [Field] =
        &[field("consumer_group", Ty::Ref), field("consumer", Ty::Ref)];
    const REQUIRED: &'static [&'static str] = &["consumer_group", "consumer"];

    fn keys(&self) -> Keys {
        let (group, consumer) = (ref_id(&self.consumer_group), ref_id(&self.consumer));
        Keys {
            name_key: group.zip(consumer).map(|(g, c)| membership_key(g, c)),
            consumer_id: consumer,
            consumer_group_id: group,
            ..Keys::default()
        }
    }
}
