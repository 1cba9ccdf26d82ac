//! The access tokens this node honours, in memory, so a request with a bearer token costs a
//! digest and a map probe and never a store query.
//!
//! Tokens this node issues enter at once; those other nodes issue (or revoke) arrive by
//! following the store's token changes (`Store::token_changes`) every `POLL`. The index
//! lives across snapshots (in `plugins::Shared`), and is loaded whole when the node starts.
use crate::store::oauth2::{TokenRow, CHANGES_PER_READ};
use crate::store::{Store, StoreError};
use http::HeaderValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use uuid::Uuid;

/// How often changes made by other nodes are read.
const POLL: Duration = Duration::from_secs(1);
/// How often expired rows are purged from the store and expired tokens from memory.
const PURGE_EVERY: u32 = 60;

/// A live access token, as each request presenting it needs it.
pub struct Token {
    pub id: Uuid,
    pub credential: Uuid,
    /// The service it was issued on; `None` for a global one.
    pub service: Option<Uuid>,
    pub scope: Option<HeaderValue>,
    pub authenticated_userid: Option<HeaderValue>,
    /// Unix seconds.
    pub created_at: i64,
    /// Seconds after `created_at` it stops working; 0 for never.
    pub expires_in: i64,
}

impl Token {
    /// Kong's rule: expired once more than `expires_in` seconds have passed.
    pub fn expired(&self, now_ms: u64) -> bool {
        let age_ms = now_ms as i64 - self.created_at * 1000;
        self.expires_in > 0 && age_ms > self.expires_in * 1000
    }

    fn from_row(row: &TokenRow) -> Option<Token> {
        let header = |s: &Option<String>| s.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
        Some(Token {
            id: Uuid::parse_str(&row.id).ok()?,
            credential: Uuid::parse_str(&row.credential_id).ok()?,
            service: match &row.service_id {
                Some(s) => Some(Uuid::parse_str(s).ok()?),
                None => None,
            },
            scope: header(&row.scope),
            authenticated_userid: header(&row.authenticated_userid),
            created_at: row.created_at,
            expires_in: row.expires_in,
        })
    }
}

/// The digest a token (or code) is stored and looked up by.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `digest` as the store's hex text.
pub fn hex_digest(token: &str) -> String {
    crate::hex::encode(&digest(token))
}

#[derive(Default)]
struct Index {
    by_digest: HashMap<[u8; 32], Arc<Token>>,
    /// Each token's access digest, to replace it when the token is renewed or revoked.
    digest_of: HashMap<Uuid, [u8; 32]>,
}

impl Index {
    fn apply(&mut self, row: &TokenRow) {
        let Ok(id) = Uuid::parse_str(&row.id) else {
            return;
        };
        self.forget(id);
        if row.revoked_at.is_some() {
            return;
        }
        let (Some(token), Some(d)) = (Token::from_row(row), parse_hex(&row.access_hash)) else {
            return;
        };
        self.digest_of.insert(id, d);
        self.by_digest.insert(d, Arc::new(token));
    }

    fn forget(&mut self, id: Uuid) {
        if let Some(d) = self.digest_of.remove(&id) {
            self.by_digest.remove(&d);
        }
    }
}

/// The tokens index and its link to the store.
#[derive(Default)]
pub struct Tokens {
    store: OnceLock<Store>,
    index: RwLock<Index>,
    /// The last change read from the store.
    seen: AtomicI64,
}

impl Tokens {
    /// Links the index to the store the endpoints write to and loads every live token.
    pub async fn attach(&self, store: Store) -> Result<(), StoreError> {
        let _ = self.store.set(store);
        self.follow().await
    }

    /// The store, once attached.
    pub fn store(&self) -> Option<&Store> {
        self.store.get()
    }

    /// The live token presented as `token`.
    pub fn find(&self, token: &str) -> Option<Arc<Token>> {
        let d = digest(token);
        self.index.read().ok()?.by_digest.get(&d).cloned()
    }

    /// Takes in a row this node wrote (issued, renewed or revoked), before other nodes see it.
    pub fn apply(&self, row: &TokenRow) {
        if let Ok(mut index) = self.index.write() {
            index.apply(row);
        }
    }

    /// Drops token `id` (revoked here).
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut index) = self.index.write() {
            index.forget(id);
        }
    }

    /// Follows the store's token changes until `stop`, purging what expired now and then.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.follow().await {
                tracing::warn!(error = %e, "oauth2 tokens: cannot read changes");
            }
            ticks += 1;
            if ticks.is_multiple_of(PURGE_EVERY) {
                self.purge().await;
            }
        }
    }

    /// Reads every change since the last one seen.
    async fn follow(&self) -> Result<(), StoreError> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        loop {
            let changes = store
                .token_changes(self.seen.load(Ordering::Acquire))
                .await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            if let Ok(mut index) = self.index.write() {
                for row in &changes {
                    index.apply(row);
                }
            }
            self.seen.store(last, Ordering::Release);
            if (changes.len() as i64) < CHANGES_PER_READ {
                return Ok(());
            }
        }
    }

    async fn purge(&self) {
        let now_ms = crate::model::unix_now() as u64 * 1000;
        if let Ok(mut index) = self.index.write() {
            let Index {
                by_digest,
                digest_of,
            } = &mut *index;
            by_digest.retain(|_, t| {
                let keep = !t.expired(now_ms);
                if !keep {
                    digest_of.remove(&t.id);
                }
                keep
            });
        }
        if let Some(store) = self.store.get() {
            if let Err(e) = store.purge_oauth2(crate::model::unix_now()).await {
                tracing::warn!(error = %e, "oauth2 tokens: cannot purge expired rows");
            }
        }
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: Uuid, token: &str, seq: i64) -> TokenRow {
        TokenRow {
            id: id.to_string(),
            access_hash: hex_digest(token),
            refresh_hash: None,
            credential_id: Uuid::nil().to_string(),
            service_id: None,
            authenticated_userid: Some("id123".into()),
            scope: Some("email".into()),
            expires_in: 5,
            created_at: 1000,
            purge_at: None,
            revoked_at: None,
            seq,
        }
    }

    #[test]
    fn a_renewed_token_replaces_its_old_access_token_and_a_revoked_one_goes() {
        let tokens = Tokens::default();
        let id = Uuid::new_v4();
        tokens.apply(&row(id, "first", 1));
        assert_eq!(tokens.find("first").unwrap().id, id);
        tokens.apply(&row(id, "second", 2));
        assert!(tokens.find("first").is_none());
        assert!(tokens.find("second").is_some());
        let mut revoked = row(id, "second", 3);
        revoked.revoked_at = Some(1001);
        tokens.apply(&revoked);
        assert!(tokens.find("second").is_none());
    }

    // spec/03-plugins/25-oauth2/03-access_spec.lua:3548 "returns 401 Unauthorized when token
    // has expired": more than `expires_in` seconds after creation.
    #[test]
    fn a_token_expires_after_expires_in_seconds_and_zero_is_never() {
        let mut t = Token::from_row(&row(Uuid::nil(), "t", 1)).unwrap();
        assert!(!t.expired(1_005_000));
        assert!(t.expired(1_005_001));
        t.expires_in = 0;
        assert!(!t.expired(u64::MAX / 2));
    }
}
