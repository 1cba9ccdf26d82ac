//! A key-auth credential: an API key that identifies a consumer.
//!
//! Tollgate differs from Kong on purpose: the key is stored as a SHA-256 hash and shown in
//! clear only in the response that created it. Keys are long random strings (or chosen by an
//! operator), so a fast hash is what lets the proxy find a key with one map lookup.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthCredential {
    pub id: Uuid,
    pub consumer: Option<EntityRef>,
    /// `sha256:<hex>` of the key.
    pub key_hash: String,
    /// Seconds the key lives after creation; `null` for ever.
    pub ttl: Option<u32>,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl KeyAuthCredential {
    /// Unix time after which the key no longer authenticates: `ttl` seconds after its last
    /// write (a `ttl` of 0 is none).
    pub fn expires_at(&self) -> Option<i64> {
        self.ttl
            .filter(|t| *t > 0)
            .map(|t| self.updated_at + i64::from(t))
    }
}

/// The stored form of an API key.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new key: 128 random bits, as 32 hex characters (the shape of Kong's generated keys).
pub fn generate_key() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Entity for KeyAuthCredential {
    const FIELDS: &'static [Field] = &[
        field("consumer", Ty::Ref),
        field("key_hash", Ty::Str),
        field(
            "ttl",
            Ty::Int {
                min: 0,
                max: 100_000_000,
            },
        ),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["consumer", "key_hash"];
    const INPUT: &'static [Field] = &[field("key", Ty::Str)];
    const FILLED: &'static [&'static str] = &["key_hash"];

    /// Replaces a clear `key` with its hash (generating one when a new credential has none)
    /// and hands the key back to be shown once, in the response to this write.
    fn prepare(input: &mut Map<String, Value>, existing: Option<&Value>) -> Option<String> {
        if input
            .get("key_hash")
            .is_some_and(|h| h.as_str().is_none_or(str::is_empty))
        {
            // Left for the schema to refuse, rather than replaced by the key's hash.
            return None;
        }
        match input.remove("key").filter(|k| !k.is_null()) {
            Some(Value::String(key)) if !key.is_empty() => {
                input.insert("key_hash".into(), hash_key(&key).into());
                Some(key)
            }
            Some(other) => {
                // Leave it for the schema to reject under its own name.
                input.insert("key".into(), other);
                None
            }
            None if existing.is_none() && !input.contains_key("key_hash") => {
                let key = generate_key();
                input.insert("key_hash".into(), hash_key(&key).into());
                Some(key)
            }
            None => None,
        }
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        let hex = self.key_hash.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            errors.add("key_hash", "expected sha256:<64 hex digits>");
        }
    }

    fn keys(&self) -> Keys {
        Keys::credential(self.key_hash.clone(), &self.consumer, &self.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{normalize, Kind, Source};
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }
    const CONSUMER: &str = "3d45a73d-4024-4813-b356-43a14ecea702";

    #[test]
    fn a_given_key_is_stored_hashed_and_only_echoed_once() {
        let key = "332d05445a560ee65a76aeaa372d8904";
        let n = normalize(
            Kind::KeyAuth,
            input(json!({"key": key, "consumer": {"id": CONSUMER}})),
            None,
            Source::Form,
            1,
        )
        .unwrap();
        assert_eq!(n.revealed.map(|(_, s)| s).as_deref(), Some(key));
        assert_eq!(n.record.body["key_hash"], hash_key(key));
        assert!(!n.record.body.to_string().contains(key));
    }

    #[test]
    fn a_missing_key_is_generated_with_128_bits() {
        let n = normalize(
            Kind::KeyAuth,
            input(json!({"consumer": {"id": CONSUMER}})),
            None,
            Source::Typed,
            1,
        )
        .unwrap();
        let key = n.revealed.unwrap().1;
        assert_eq!(key.len(), 32);
        assert_eq!(n.record.body["key_hash"], hash_key(&key));
        assert_ne!(key, generate_key());
    }
}
