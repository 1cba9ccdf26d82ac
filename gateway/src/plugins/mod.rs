//! Plugins: the registry of plugins this build knows, and their config schemas.
//!
//! A plugin instance's `config` is checked here when it is created or changed, so the admin
//! API can reject an unknown plugin or a bad config with field errors before anything is stored.
use crate::model::schema::{self, Field, FieldErrors};
use serde_json::{Map, Value};

/// Why a plugin config was refused.
#[derive(Debug)]
pub enum ConfigError {
    UnknownPlugin,
    Fields(FieldErrors),
}

/// A plugin's config schema: its fields, their defaults, and cross-field rules.
pub struct ConfigSchema {
    pub name: &'static str,
    pub fields: &'static [Field],
    pub defaults: fn() -> Map<String, Value>,
    pub validate: fn(&Map<String, Value>, &mut FieldErrors),
}

/// Every plugin this build can run.
pub fn registry() -> &'static [ConfigSchema] {
    &[]
}

/// Checks `config` for plugin `name` and fills in its defaults. Values given as strings (form
/// bodies) are coerced to the field's type.
pub fn normalize_config(name: &str, config: &mut Map<String, Value>) -> Result<(), ConfigError> {
    let schema = registry()
        .iter()
        .find(|s| s.name == name)
        .ok_or(ConfigError::UnknownPlugin)?;
    let mut errors = schema::check(schema.fields, config, true);
    if errors.is_empty() {
        for (k, v) in (schema.defaults)() {
            match config.get(&k) {
                Some(Value::Null) | None => {
                    config.insert(k, v);
                }
                Some(_) => {}
            }
        }
        (schema.validate)(config, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Fields(errors))
    }
}
