//! A plugin instance: a plugin's name, its config, and the scope it applies to.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{ref_id, tags_of, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    pub id: Uuid,
    pub name: String,
    pub instance_name: Option<String>,
    #[serde(default)]
    pub config: Map<String, Value>,
    pub service: Option<EntityRef>,
    pub route: Option<EntityRef>,
    pub consumer: Option<EntityRef>,
    /// Kong Enterprise's consumer-group scope: the instance applies to the group's members.
    #[serde(default)]
    pub consumer_group: Option<EntityRef>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn yes() -> bool {
    true
}
fn default_protocols() -> Vec<String> {
    ["grpc", "grpcs", "http", "https"]
        .map(String::from)
        .to_vec()
}

impl Entity for Plugin {
    const FIELDS: &'static [Field] = &[
        field("name", Ty::Str),
        field("instance_name", Ty::Str),
        field("config", Ty::Object),
        field("service", Ty::Ref),
        field("route", Ty::Ref),
        field("consumer", Ty::Ref),
        field("consumer_group", Ty::Ref),
        field("enabled", Ty::Bool),
        field("protocols", Ty::StrSet),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["name"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        if self.consumer.is_some()
            && crate::plugins::spec(&self.name).is_some_and(|s| s.no_consumer)
        {
            errors.add("consumer", "value must be null");
        }
        if self.consumer_group.is_some() {
            if crate::plugins::spec(&self.name).is_some_and(|s| s.no_consumer) {
                errors.add("consumer_group", "value must be null");
            } else if self.consumer.is_some() {
                errors.add(
                    "@entity",
                    "only one of these fields must be non-empty: 'consumer', 'consumer_group'",
                );
            }
        }
        if let Err(e) = crate::plugins::normalize_config(&self.name, &mut self.config) {
            match e {
                crate::plugins::ConfigError::UnknownPlugin => {
                    // Kong's words, then what a Kong user needs to know instead of Kong's
                    // "add it to the 'plugins' configuration property".
                    let available: Vec<&str> =
                        crate::plugins::registry().iter().map(|p| p.name).collect();
                    errors.add(
                        "name",
                        format!(
                            "plugin '{}' not enabled; Tollgate does not have it (it has {})",
                            self.name,
                            available.join(", ")
                        ),
                    )
                }
                crate::plugins::ConfigError::Fields(f) => errors.nest("config", f),
            }
        }
    }

    fn keys(&self) -> Keys {
        let id = |r: &Option<EntityRef>| ref_id(r).map(|u| u.to_string()).unwrap_or_default();
        Keys {
            // One instance of a plugin per scope, as in Kong.
            name_key: Some(format!(
                "{}:{}:{}:{}{}",
                self.name,
                id(&self.service),
                id(&self.route),
                id(&self.consumer),
                // A group scope only when there is one, so existing keys stay as they were.
                ref_id(&self.consumer_group).map_or(String::new(), |g| format!(":group:{g}"))
            )),
            // Unique too, and what `/plugins/{instance_name}` finds it by.
            alt_key: self.instance_name.clone(),
            service_id: ref_id(&self.service),
            route_id: ref_id(&self.route),
            consumer_id: ref_id(&self.consumer),
            consumer_group_id: ref_id(&self.consumer_group),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{normalize, normalized_body, Kind, Source};
    use serde_json::json;

    #[test]
    fn a_patch_merges_into_the_config_as_kong_does() {
        let stored = normalized_body(
            Kind::Plugin,
            json!({"name": "rate-limiting", "config": {"second": 7, "hour": 100}}),
        )
        .unwrap();
        let change = json!({"config": {"minute": 60, "hour": null}});
        let patched = normalize(
            Kind::Plugin,
            change.as_object().unwrap().clone(),
            Some(&stored),
            Source::Typed,
            2,
        )
        .unwrap()
        .record
        .body;
        assert_eq!(patched["config"]["second"], 7, "kept");
        assert_eq!(patched["config"]["minute"], 60, "added");
        assert!(patched["config"]["hour"].is_null(), "removed by null");
        assert_eq!(
            patched["config"]["policy"], "local",
            "defaults still filled"
        );
        // A change that breaks a rule of the merged config is refused.
        let bad = json!({"config": {"minute": 2}});
        assert!(normalize(
            Kind::Plugin,
            bad.as_object().unwrap().clone(),
            Some(&stored),
            Source::Typed,
            2
        )
        .is_err());
    }
}
