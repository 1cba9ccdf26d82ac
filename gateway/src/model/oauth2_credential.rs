//! An oauth2 credential: an application a consumer registered, which the oauth2 plugin's
//! token endpoint authenticates by its `client_id` and `client_secret`.
//!
//! Kong's entity (kong/plugins/oauth2/daos.lua). Tollgate differs on purpose: the client
//! secret is always stored as an argon2id hash (Kong keeps it in clear unless `hash_secret`
//! is set, and then with its own KDF), so `hash_secret` always reads `true`. A generated
//! secret is shown once, in the response that created it; a given argon2id hash is kept, so
//! an exported file reads back unchanged.
use super::credential::generate_key;
use super::schema::{field, Field, FieldErrors, Ty};
use super::{password, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Credential {
    pub id: Uuid,
    pub consumer: Option<EntityRef>,
    pub name: String,
    pub client_id: String,
    /// The argon2id hash of the client secret, in the PHC string format.
    pub client_secret: String,
    pub hash_secret: bool,
    pub redirect_uris: Option<Vec<String>>,
    /// `confidential` (authenticates with its secret) or `public` (PKCE instead).
    pub client_type: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl OAuth2Credential {
    pub fn is_public(&self) -> bool {
        self.client_type == "public"
    }
}

impl Entity for OAuth2Credential {
    const FIELDS: &'static [Field] = &[
        field("consumer", Ty::Ref),
        field("name", Ty::Str),
        field("client_id", Ty::Str),
        field("client_secret", Ty::Str),
        field("hash_secret", Ty::Bool),
        field("redirect_uris", Ty::StrArray),
        field("client_type", Ty::Enum(&["confidential", "public"])),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["consumer", "name"];
    const FILLED: &'static [&'static str] = &["client_id", "client_secret", "client_type"];
    const REVEALED: &'static str = "client_secret";

    /// Generates what a new credential was not given (`client_id`, `client_secret`: the
    /// generated secret is revealed once) and replaces a clear secret with its hash.
    fn prepare(input: &mut Map<String, Value>, existing: Option<&Value>) -> Option<String> {
        let missing = |input: &Map<String, Value>, k: &str| input.get(k).is_none_or(Value::is_null);
        let mut revealed = None;
        if existing.is_none() {
            if missing(input, "client_id") {
                input.insert("client_id".into(), generate_key().into());
            }
            if missing(input, "client_secret") {
                let secret = generate_key();
                input.insert("client_secret".into(), secret.clone().into());
                revealed = Some(secret);
            }
            if missing(input, "client_type") {
                input.insert("client_type".into(), "confidential".into());
            }
        }
        if let Some(Value::String(clear)) = input.get("client_secret") {
            if !clear.is_empty() && !password::is_hash(clear) {
                let hashed = password::hash(clear).expect("argon2 hashes any secret");
                input.insert("client_secret".into(), hashed.into());
            }
        }
        // Secrets are always hashed; a value of another type is left for the schema to refuse.
        if input
            .get("hash_secret")
            .is_none_or(|v| v.is_boolean() || v.is_null())
        {
            input.insert("hash_secret".into(), true.into());
        }
        revealed
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        if self.name.is_empty() {
            errors.add("name", "length must be at least 1");
        }
        if self.client_id.is_empty() {
            errors.add("client_id", "length must be at least 1");
        }
        if !password::is_hash(&self.client_secret) {
            errors.add("client_secret", "length must be at least 1");
        }
        if let Some(uris) = &self.redirect_uris {
            let checked: Vec<Option<String>> = uris.iter().map(|u| redirect_uri_error(u)).collect();
            if checked.iter().any(Option::is_some) {
                errors.elements("redirect_uris", checked);
            }
        }
    }

    fn keys(&self) -> Keys {
        Keys::credential(self.client_id.clone(), &self.consumer, &self.tags)
    }
}

/// Kong's check of a redirect URI: an absolute URL with a host and no fragment.
fn redirect_uri_error(uri: &str) -> Option<String> {
    match url::Url::parse(uri) {
        Ok(u) if u.fragment().is_some() => Some(format!("fragment not allowed in '{uri}'")),
        Ok(u) if u.host().is_some() => None,
        _ => Some(format!("cannot parse '{uri}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{normalize, normalized_body, Kind, Source};
    use serde_json::json;

    const CONSUMER: &str = "3d45a73d-4024-4813-b356-43a14ecea702";

    // spec/03-plugins/25-oauth2/02-api_spec.lua:152 "creates oauth2 credential with a hashed
    // auto-generated client_secret": here every secret is hashed, and the generated one is
    // shown once.
    #[test]
    fn a_generated_secret_is_revealed_once_and_stored_hashed() {
        let input = json!({"consumer": {"id": CONSUMER}, "name": "Test APP",
            "redirect_uris": ["http://google.test/"]});
        let n = normalize(
            Kind::OAuth2Credential,
            input.as_object().cloned().unwrap(),
            None,
            Source::Typed,
            1,
        )
        .unwrap();
        let (field, secret) = n.revealed.unwrap();
        assert_eq!(field, "client_secret");
        let stored = n.record.body["client_secret"].as_str().unwrap();
        assert!(super::password::verify(&secret, stored));
        assert_eq!(n.record.body["hash_secret"], true);
        assert_eq!(n.record.body["client_type"], "confidential");
        assert_eq!(n.record.body["client_id"].as_str().unwrap().len(), 32);
    }

    // 02-api_spec.lua:170 "creates oauth2 credential with a hashed client_secret".
    #[test]
    fn a_given_secret_is_hashed_and_a_given_hash_kept() {
        let body = normalized_body(
            Kind::OAuth2Credential,
            json!({"consumer": {"id": CONSUMER}, "name": "a", "client_secret": "test"}),
        )
        .unwrap();
        let stored = body["client_secret"].as_str().unwrap().to_string();
        assert!(super::password::verify("test", &stored));
        assert!(!super::password::verify("invalid", &stored));
        let again = normalized_body(
            Kind::OAuth2Credential,
            json!({"consumer": {"id": CONSUMER}, "name": "a", "client_secret": stored}),
        )
        .unwrap();
        assert_eq!(again["client_secret"], stored);
    }

    // 02-api_spec.lua:226 "returns bad request", :239 "returns bad request with invalid
    // redirect_uris".
    #[test]
    fn kong_refuses_what_is_refused_here() {
        let err = normalized_body(
            Kind::OAuth2Credential,
            json!({"consumer": {"id": CONSUMER}}),
        )
        .unwrap_err();
        assert!(err.contains("name: required field missing"), "{err}");
        let err = normalized_body(
            Kind::OAuth2Credential,
            json!({"consumer": {"id": CONSUMER}, "name": "a",
                "redirect_uris": ["http://valid.test", "http://test.test/#with-fragment"]}),
        )
        .unwrap_err();
        assert!(
            err.contains("fragment not allowed in 'http://test.test/#with-fragment'"),
            "{err}"
        );
        let err = normalized_body(
            Kind::OAuth2Credential,
            json!({"consumer": {"id": CONSUMER}, "name": "a", "redirect_uris": ["not-valid"]}),
        )
        .unwrap_err();
        assert!(err.contains("cannot parse 'not-valid'"), "{err}");
        let err = normalized_body(
            Kind::OAuth2Credential,
            json!({"consumer": {"id": CONSUMER}, "name": "a", "client_type": "secret"}),
        )
        .unwrap_err();
        assert!(err.contains("client_type"), "{err}");
    }
}
