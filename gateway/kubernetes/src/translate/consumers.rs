//! KongConsumers into consumers, with the credentials their Secrets hold (KIC's
//! `FillConsumersAndCredentials`). A Secret's credential type is its `konghq.com/credential`
//! label, or the older `kongCredType` data key KIC 1.x and 2.x read (the seed's Secret has it).
use super::objects::{api_version, secret_data, KongConsumer, ObjectRef};
use super::{Failures, Index};
use serde_json::{json, Map, Value};

const CREDENTIAL_LABEL: &str = "konghq.com/credential";
const LEGACY_TYPE_KEY: &str = "kongCredType";

/// A consumer made from a KongConsumer: its decK entry and the name plugins refer to it by.
pub struct KongConsumerEntity {
    pub origin: ObjectRef,
    pub identifier: String,
    pub fields: Map<String, Value>,
}

pub fn consumers(
    list: &[&KongConsumer],
    index: &Index,
    failures: &mut Failures,
) -> Vec<KongConsumerEntity> {
    let mut out = Vec::new();
    for c in list {
        let origin = ObjectRef::new("KongConsumer", api_version("KongConsumer"), &c.metadata);
        let identifier = match (non_empty(&c.username), non_empty(&c.custom_id)) {
            (Some(u), _) => u,
            (None, Some(id)) => id,
            (None, None) => {
                failures.push(&origin, "no username or custom_id specified");
                continue;
            }
        };
        let mut fields = Map::new();
        if let Some(u) = non_empty(&c.username) {
            fields.insert("username".into(), json!(u));
        }
        if let Some(id) = non_empty(&c.custom_id) {
            fields.insert("custom_id".into(), json!(id));
        }
        fields.insert("tags".into(), json!(origin.tags()));
        if !c.consumer_groups.is_empty() {
            failures.push(
                &origin,
                "consumer groups are not supported by Tollgate yet; consumerGroups ignored",
            );
        }
        fields.insert("keyauth_credentials".into(), Value::Array(Vec::new()));
        for name in &c.credentials {
            match credential(&origin, name, index) {
                Ok((list, cred)) => {
                    let entry = fields
                        .entry(list)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = entry {
                        items.push(cred);
                    }
                }
                Err(e) => failures.push(&origin, format!("credential {name:?} failure: {e}")),
            }
        }
        out.push(KongConsumerEntity {
            origin,
            identifier,
            fields,
        });
    }
    out
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// The credential types KIC reads from a Secret (each by its short and its schema name), the
/// decK list it goes to, and the Secret keys that are its fields (key-auth's are read below).
const CREDENTIAL_TYPES: [(&str, &str, &str, &[&str]); 4] = [
    (
        "basic-auth",
        "basicauth_credential",
        "basicauth_credentials",
        &["username", "password"],
    ),
    (
        "hmac-auth",
        "hmacauth_credential",
        "hmacauth_credentials",
        &["username", "secret"],
    ),
    (
        "jwt",
        "jwt_secret",
        "jwt_secrets",
        &["key", "secret", "algorithm", "rsa_public_key"],
    ),
    ("acl", "acl", "acls", &["group"]),
];

/// The credential a KongConsumer's Secret holds: the decK list it belongs to, and its entry.
fn credential(consumer: &ObjectRef, name: &str, index: &Index) -> Result<(String, Value), String> {
    let ns = consumer.namespace.as_deref().unwrap_or_default();
    let secret = index
        .secrets
        .get(&(ns, name))
        .ok_or_else(|| format!("Failed to fetch secret: Secret {ns}/{name} not found"))?;
    let data = secret_data(secret);
    let label = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CREDENTIAL_LABEL))
        .cloned();
    let legacy = data
        .get(LEGACY_TYPE_KEY)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let Some(kind) = label.or(legacy) else {
        return Err(format!(
            "Secret {ns}/{name} used as credential, but lacks {CREDENTIAL_LABEL} label"
        ));
    };
    let origin = ObjectRef::new("Secret", api_version("Secret"), &secret.metadata);
    if let Some((_, _, list, keys)) = CREDENTIAL_TYPES
        .iter()
        .find(|(short, schema, _, _)| kind == *short || kind == *schema)
    {
        let mut cred = Map::new();
        for key in *keys {
            if let Some(v) = data.get(*key) {
                cred.insert(key.to_string(), json!(String::from_utf8_lossy(v)));
            }
        }
        cred.insert("tags".into(), json!(origin.tags()));
        return Ok((list.to_string(), Value::Object(cred)));
    }
    if !matches!(kind.as_str(), "key-auth" | "keyauth_credential") {
        return Err(format!(
            "failed to provision credential: unsupported credential type: {kind:?}"
        ));
    }
    let key = data
        .get("key")
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("Secret {ns}/{name} holds no key"))?;
    let mut cred = json!({"key": key, "tags": origin.tags()});
    if let Some(ttl) = data.get("ttl") {
        let ttl = String::from_utf8_lossy(ttl);
        let ttl: u32 = ttl
            .trim()
            .parse()
            .map_err(|_| format!("Failed to parse ttl to int: {ttl:?}"))?;
        cred["ttl"] = json!(ttl);
    }
    Ok(("keyauth_credentials".into(), cred))
}
