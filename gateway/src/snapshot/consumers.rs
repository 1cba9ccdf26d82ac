//! Consumers and their API keys as the proxy looks them up: by id or username, and by the
//! SHA-256 digest of a presented key (the store never holds the clear key).
use crate::model::{ref_id, Consumer, KeyAuthCredential};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A consumer, with the texts each of its requests needs made once per snapshot.
pub struct ConsumerEntry {
    pub id: Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// The id as text (rate-limit counters, analytics).
    pub id_text: Arc<str>,
    /// What analytics call the consumer: its username, else its custom id, else its id.
    pub name: Arc<str>,
    /// The `X-Consumer-*` header values (none for a text a header cannot carry).
    pub id_header: HeaderValue,
    pub username_header: Option<HeaderValue>,
    pub custom_id_header: Option<HeaderValue>,
}

impl ConsumerEntry {
    pub fn new(id: Uuid, username: Option<String>, custom_id: Option<String>) -> ConsumerEntry {
        let (id_text, id_header) = uuid_texts(id);
        let header = |s: &Option<String>| s.as_deref().and_then(|s| HeaderValue::from_str(s).ok());
        ConsumerEntry {
            name: username
                .as_deref()
                .or(custom_id.as_deref())
                .map_or_else(|| id_text.clone(), Arc::from),
            id_header,
            username_header: header(&username),
            custom_id_header: header(&custom_id),
            id_text,
            id,
            username,
            custom_id,
        }
    }
}

pub struct CredentialEntry {
    pub id: CredentialId,
    pub consumer: Arc<ConsumerEntry>,
    /// Unix milliseconds after which the key no longer authenticates.
    pub expires_at_ms: Option<u64>,
}

/// A credential's id as each request that presents it needs it.
#[derive(Clone)]
pub struct CredentialId {
    pub text: Arc<str>,
    /// For `X-Credential-Identifier`.
    pub header: HeaderValue,
}

impl CredentialId {
    fn new(id: Uuid) -> CredentialId {
        let (text, header) = uuid_texts(id);
        CredentialId { text, header }
    }
}

/// An id as text and as a header value.
fn uuid_texts(id: Uuid) -> (Arc<str>, HeaderValue) {
    let text = id.to_string();
    let header = HeaderValue::from_str(&text).expect("a UUID is a valid header value");
    (text.into(), header)
}

#[derive(Default)]
pub struct Consumers {
    by_id: HashMap<Uuid, Arc<ConsumerEntry>>,
    by_username: HashMap<String, Arc<ConsumerEntry>>,
    /// By SHA-256 digest, probed once per request: foldhash, not SipHash.
    keys: HashMap<[u8; 32], CredentialEntry, foldhash::fast::RandomState>,
}

impl Consumers {
    pub fn add_consumer(&mut self, c: Consumer) {
        let entry = Arc::new(ConsumerEntry::new(c.id, c.username, c.custom_id));
        if let Some(u) = &entry.username {
            self.by_username.insert(u.clone(), entry.clone());
        }
        self.by_id.insert(entry.id, entry);
    }

    /// Adds a key; call after every consumer was added. A key of an unknown consumer is an error.
    pub fn add_key(&mut self, k: &KeyAuthCredential) -> Result<(), String> {
        let consumer = ref_id(&k.consumer)
            .and_then(|id| self.by_id.get(&id))
            .ok_or_else(|| format!("key-auth credential {} has no consumer", k.id))?;
        let digest = parse_digest(&k.key_hash)
            .ok_or_else(|| format!("key-auth credential {} has a malformed hash", k.id))?;
        self.keys.insert(
            digest,
            CredentialEntry {
                id: CredentialId::new(k.id),
                consumer: consumer.clone(),
                expires_at_ms: k.expires_at().map(|t| t.max(0) as u64 * 1000),
            },
        );
        Ok(())
    }

    /// The credential of a presented key, unless it expired.
    pub fn credential(&self, key: &str, now_ms: u64) -> Option<&CredentialEntry> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.keys
            .get(&digest)
            .filter(|c| c.expires_at_ms.is_none_or(|t| now_ms < t))
    }

    /// A consumer by id or username (how `anonymous` names one).
    pub fn consumer(&self, id_or_username: &str) -> Option<Arc<ConsumerEntry>> {
        Uuid::parse_str(id_or_username)
            .ok()
            .and_then(|id| self.by_id.get(&id))
            .or_else(|| self.by_username.get(id_or_username))
            .cloned()
    }
}

fn parse_digest(hash: &str) -> Option<[u8; 32]> {
    let hex = hash.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}
