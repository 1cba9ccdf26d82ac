//! A jwt secret: what verifies the tokens of one issuer (`key`) and names their consumer.
//!
//! Kong's entity (kong/plugins/jwt/daos.lua): `key` and `secret` are generated when not given;
//! asymmetric algorithms need a public key that parses. The secret must stay readable to check
//! HMAC signatures, so the store keeps it encrypted under the keyring (`store::keyring`).
//! ES512 is not offered: the jsonwebtoken crate that verifies tokens does not implement it.
use super::credential::generate_key;
use super::schema::{field, Field, FieldErrors, Ty};
use super::{Entity, EntityRef, Keys};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::str::FromStr;
use uuid::Uuid;

/// The algorithms a secret may verify, as tokens name them in their `alg`.
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384",
    "PS512", "EdDSA",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSecret {
    pub id: Uuid,
    pub consumer: Option<EntityRef>,
    pub key: String,
    pub secret: Option<String>,
    pub rsa_public_key: Option<String>,
    pub algorithm: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl JwtSecret {
    /// The algorithm, parsed (validation admitted only those jsonwebtoken knows).
    pub fn algorithm(&self) -> Option<Algorithm> {
        Algorithm::from_str(&self.algorithm).ok()
    }
}

/// Whether `alg` is checked with a public key rather than the shared secret.
pub fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The key that verifies `alg` signatures, from a PEM public key.
pub fn public_key(alg: Algorithm, pem: &str) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
    let pem = pem.as_bytes();
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    }
}

impl Entity for JwtSecret {
    const FIELDS: &'static [Field] = &[
        field("consumer", Ty::Ref),
        field("key", Ty::Str),
        field("secret", Ty::Str),
        field("rsa_public_key", Ty::Str),
        field("algorithm", Ty::Enum(ALGORITHMS)),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["consumer"];
    const FILLED: &'static [&'static str] = &["key", "algorithm"];

    /// A new secret gets Kong's defaults: a random key and secret, HS256.
    fn prepare(input: &mut Map<String, Value>, existing: Option<&Value>) -> Option<String> {
        if existing.is_none() {
            for f in ["key", "secret"] {
                if input.get(f).is_none_or(Value::is_null) {
                    input.insert(f.into(), generate_key().into());
                }
            }
            if input.get("algorithm").is_none_or(Value::is_null) {
                input.insert("algorithm".into(), "HS256".into());
            }
        }
        None
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        let Some(alg) = self.algorithm().filter(|a| is_asymmetric(*a)) else {
            return;
        };
        let problem = match &self.rsa_public_key {
            None => "required field missing",
            Some(pem) if public_key(alg, pem).is_err() => "invalid key",
            Some(_) => return,
        };
        errors.add("rsa_public_key", problem);
        errors.add(
            "@entity",
            "failed conditional validation given value of field 'algorithm'",
        );
    }

    fn keys(&self) -> Keys {
        Keys::credential(self.key.clone(), &self.consumer, &self.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{normalized_body, Kind};
    use serde_json::{json, Value};

    const CONSUMER: &str = "3d45a73d-4024-4813-b356-43a14ecea702";

    fn secret(extra: Value) -> Result<Value, String> {
        let mut input = json!({"consumer": {"id": CONSUMER}});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        normalized_body(Kind::JwtSecret, input)
    }

    // spec/03-plugins/16-jwt/02-api_spec.lua:224 "does not fail when `secret` parameter for
    // HS256 algorithms is missing": a 32-character alphanumeric secret is made.
    #[test]
    fn key_and_secret_are_generated_when_missing() {
        let body = secret(json!({"key": "bob5", "algorithm": "HS256"})).unwrap();
        let s = body["secret"].as_str().unwrap();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        let body = secret(json!({})).unwrap();
        assert_eq!(body["key"].as_str().unwrap().len(), 32);
        assert_eq!(body["algorithm"], "HS256");
    }

    // 02-api_spec.lua:87 "accepts any given `secret` and `key` parameters".
    #[test]
    fn a_given_key_and_secret_are_kept() {
        let body = secret(json!({"key": "bob2", "secret": "tooshort"})).unwrap();
        assert_eq!(
            (body["key"].as_str(), body["secret"].as_str()),
            (Some("bob2"), Some("tooshort"))
        );
    }

    // 02-api_spec.lua:181 and :202: an RS256 secret without a public key, or with one that
    // does not parse.
    #[test]
    fn an_asymmetric_algorithm_needs_a_public_key_that_parses() {
        let conditional = "failed conditional validation given value of field 'algorithm'";
        let err = secret(json!({"key": "bob5", "algorithm": "RS256"})).unwrap_err();
        assert!(
            err.contains("rsa_public_key: required field missing"),
            "{err}"
        );
        assert!(err.contains(conditional), "{err}");
        let err = secret(json!({"key": "bob5", "algorithm": "RS256", "rsa_public_key": "test"}))
            .unwrap_err();
        assert!(err.contains("rsa_public_key: invalid key"), "{err}");
        let err = secret(json!({"algorithm": "none"})).unwrap_err();
        assert!(err.contains("algorithm: expected one of: HS256"), "{err}");
    }
}
