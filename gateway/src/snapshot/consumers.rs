//! Consumers and their credentials as the proxy looks them up: by id or username, an API key
//! by the SHA-256 digest of the presented key (the store never holds the clear key), the other
//! credentials by the name a request presents (basic-auth and hmac-auth username, jwt `key`),
//! and each consumer's ACL groups.
use crate::model::jwt_secret::{self, is_asymmetric};
use crate::model::{
    ref_id, Acl, BasicAuthCredential, Consumer, ConsumerGroup, ConsumerGroupMember, EntityRef,
    HmacCredential, JwtSecret, KeyAuthCredential, Kind, OAuth2Credential,
};
use http::HeaderValue;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
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

    /// A credential Kong identifies upstream by a name (a basic-auth username, a jwt key)
    /// rather than its id; a name a header cannot carry falls back to the id.
    fn named(id: Uuid, name: &str) -> CredentialId {
        let mut c = CredentialId::new(id);
        if let Ok(header) = HeaderValue::from_str(name) {
            c.header = header;
        }
        c
    }
}

/// A basic-auth credential: its consumer and the argon2id hash a password must match.
pub struct BasicEntry {
    pub credential: CredentialEntry,
    pub password_hash: String,
}

/// A jwt secret: its consumer, the algorithm its tokens must name, and what verifies them.
pub struct JwtEntry {
    pub credential: CredentialEntry,
    pub algorithm: Algorithm,
    /// The shared secret of an HS algorithm, as stored (the plugin may base64-decode it).
    pub secret: Option<String>,
    /// The public key of an asymmetric algorithm, parsed once per snapshot.
    pub public_key: Option<DecodingKey>,
}

/// An hmac-auth credential: its consumer and the secret its signatures are made with.
pub struct HmacEntry {
    pub credential: CredentialEntry,
    pub secret: String,
}

/// An oauth2 credential (a client application): its consumer (identified upstream by the
/// `client_id`), and what the token endpoint checks.
pub struct OAuth2Entry {
    pub credential: CredentialEntry,
    pub id: Uuid,
    pub client_id: String,
    /// The argon2id hash of the client secret.
    pub secret_hash: String,
    pub redirect_uris: Vec<String>,
    /// A public client proves itself with PKCE, not a secret.
    pub public: bool,
}

/// A consumer's ACL groups, sorted by name (Kong's order is the database's), and as
/// `X-Consumer-Groups` says them.
pub struct Groups {
    pub names: Vec<String>,
    pub header: Option<HeaderValue>,
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
    basic: HashMap<String, BasicEntry>,
    jwts: HashMap<String, JwtEntry>,
    hmacs: HashMap<String, HmacEntry>,
    /// oauth2 credentials by id (what a token names), and their ids by `client_id`.
    oauth2: HashMap<Uuid, OAuth2Entry>,
    oauth2_ids: HashMap<String, Uuid>,
    groups: HashMap<Uuid, Groups>,
    /// Consumer groups' names, by id.
    group_names: HashMap<Uuid, String>,
    /// Each consumer's consumer groups, in the order their plugins are tried: by name, as
    /// Kong Enterprise tries them.
    memberships: HashMap<Uuid, Vec<Uuid>>,
}

impl Consumers {
    pub fn add_consumer(&mut self, c: Consumer) {
        let entry = Arc::new(ConsumerEntry::new(c.id, c.username, c.custom_id));
        if let Some(u) = &entry.username {
            self.by_username.insert(u.clone(), entry.clone());
        }
        self.by_id.insert(entry.id, entry);
    }

    /// Adds a credential or ACL group of `kind`; call after every consumer was added. One of
    /// an unknown consumer is an error.
    pub fn add_credential(&mut self, kind: Kind, body: &Value) -> Result<(), String> {
        match kind {
            Kind::KeyAuth => self.add_key(parse(kind, body)?),
            Kind::BasicAuth => {
                let c: BasicAuthCredential = parse(kind, body)?;
                let credential = self.entry(kind, c.id, &c.consumer, Some(&c.username))?;
                let entry = BasicEntry {
                    credential,
                    password_hash: c.password,
                };
                self.basic.insert(c.username, entry);
                Ok(())
            }
            Kind::JwtSecret => self.add_jwt(parse(kind, body)?),
            Kind::HmacAuth => {
                let c: HmacCredential = parse(kind, body)?;
                let credential = self.entry(kind, c.id, &c.consumer, Some(&c.username))?;
                let entry = HmacEntry {
                    credential,
                    secret: c.secret,
                };
                self.hmacs.insert(c.username, entry);
                Ok(())
            }
            Kind::Acl => {
                let a: Acl = parse(kind, body)?;
                let consumer = self.entry(kind, a.id, &a.consumer, None)?.consumer.id;
                let groups = self.groups.entry(consumer).or_insert_with(|| Groups {
                    names: Vec::new(),
                    header: None,
                });
                groups.names.push(a.group);
                groups.names.sort();
                groups.header = HeaderValue::from_str(&groups.names.join(", ")).ok();
                Ok(())
            }
            Kind::OAuth2Credential => {
                let c: OAuth2Credential = parse(kind, body)?;
                let credential = self.entry(kind, c.id, &c.consumer, Some(&c.client_id))?;
                self.oauth2_ids.insert(c.client_id.clone(), c.id);
                let entry = OAuth2Entry {
                    credential,
                    id: c.id,
                    public: c.is_public(),
                    client_id: c.client_id,
                    secret_hash: c.client_secret,
                    redirect_uris: c.redirect_uris.unwrap_or_default(),
                };
                self.oauth2.insert(c.id, entry);
                Ok(())
            }
            Kind::ConsumerGroupMember => self.add_member(parse(kind, body)?),
            other => Err(format!("{} are not credentials", other.collection())),
        }
    }

    /// The entry of credential `id` of `kind`, naming its consumer.
    fn entry(
        &self,
        kind: Kind,
        id: Uuid,
        consumer: &Option<EntityRef>,
        name: Option<&str>,
    ) -> Result<CredentialEntry, String> {
        let consumer = ref_id(consumer)
            .and_then(|c| self.by_id.get(&c))
            .ok_or_else(|| format!("{} {id} has no consumer", kind.schema_name()))?;
        Ok(CredentialEntry {
            id: name.map_or_else(|| CredentialId::new(id), |n| CredentialId::named(id, n)),
            consumer: consumer.clone(),
            expires_at_ms: None,
        })
    }

    /// A consumer group; add them before their memberships.
    pub fn add_group(&mut self, g: ConsumerGroup) {
        self.group_names.insert(g.id, g.name);
    }

    fn add_member(&mut self, m: ConsumerGroupMember) -> Result<(), String> {
        let consumer = self
            .entry(Kind::ConsumerGroupMember, m.id, &m.consumer, None)?
            .consumer
            .id;
        let group = ref_id(&m.consumer_group)
            .filter(|g| self.group_names.contains_key(g))
            .ok_or_else(|| format!("consumer group membership {} has no group", m.id))?;
        let groups = self.memberships.entry(consumer).or_default();
        groups.push(group);
        let names = &self.group_names;
        groups.sort_by(|a, b| names.get(a).cmp(&names.get(b)));
        Ok(())
    }

    /// The consumer groups of consumer `id`, by name.
    pub fn consumer_groups(&self, id: Uuid) -> &[Uuid] {
        self.memberships.get(&id).map_or(&[], Vec::as_slice)
    }

    fn add_key(&mut self, k: KeyAuthCredential) -> Result<(), String> {
        let mut entry = self.entry(Kind::KeyAuth, k.id, &k.consumer, None)?;
        let digest = parse_digest(&k.key_hash)
            .ok_or_else(|| format!("key-auth credential {} has a malformed hash", k.id))?;
        entry.expires_at_ms = k.expires_at().map(|t| t.max(0) as u64 * 1000);
        self.keys.insert(digest, entry);
        Ok(())
    }

    /// A jwt secret; an asymmetric one whose stored public key no longer parses is left out
    /// (it was checked when written, so only a damaged store does this).
    fn add_jwt(&mut self, j: JwtSecret) -> Result<(), String> {
        let credential = self.entry(Kind::JwtSecret, j.id, &j.consumer, Some(&j.key))?;
        let Some(algorithm) = j.algorithm() else {
            return Err(format!("jwt secret {} has an unknown algorithm", j.id));
        };
        let public_key = match (&j.rsa_public_key, is_asymmetric(algorithm)) {
            (Some(pem), true) => match jwt_secret::public_key(algorithm, pem) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::error!(jwt_secret = %j.id, error = %e, "a stored public key does not load");
                    return Ok(());
                }
            },
            _ => None,
        };
        let entry = JwtEntry {
            credential,
            algorithm,
            secret: j.secret,
            public_key,
        };
        self.jwts.insert(j.key, entry);
        Ok(())
    }

    /// The basic-auth credential named `username`.
    pub fn basic(&self, username: &str) -> Option<&BasicEntry> {
        self.basic.get(username)
    }

    /// The jwt secret a token's `key` claim names.
    pub fn jwt(&self, key: &str) -> Option<&JwtEntry> {
        self.jwts.get(key)
    }

    /// The hmac-auth credential named `username`.
    pub fn hmac(&self, username: &str) -> Option<&HmacEntry> {
        self.hmacs.get(username)
    }

    /// The oauth2 credential with `client_id`.
    pub fn oauth2_client(&self, client_id: &str) -> Option<&OAuth2Entry> {
        self.oauth2_ids
            .get(client_id)
            .and_then(|id| self.oauth2.get(id))
    }

    /// The oauth2 credential with id `id` (the one a token was issued to).
    pub fn oauth2_credential(&self, id: Uuid) -> Option<&OAuth2Entry> {
        self.oauth2.get(&id)
    }

    /// The ACL groups of consumer `id`, if it has any.
    pub fn groups(&self, id: Uuid) -> Option<&Groups> {
        self.groups.get(&id)
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

fn parse<T: serde::de::DeserializeOwned>(kind: Kind, body: &Value) -> Result<T, String> {
    serde_json::from_value(body.clone())
        .map_err(|e| format!("a stored {} does not read: {e}", kind.schema_name()))
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
