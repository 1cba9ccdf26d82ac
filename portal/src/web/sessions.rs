//! Login sessions (console and portal) kept in the config store: tower-sessions' `SessionStore`
//! over it, so a login survives a restart and is shared by nodes on one PostgreSQL. The store
//! keeps the SHA-256 of each session id, not the id: a copy of the database (a backup, a
//! replica) holds no cookie that would log anyone in.
use async_trait::async_trait;
use tollgate_analytics::unix_now;
use tollgate_gateway::store::Store;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result};
use tower_sessions::SessionStore;

#[derive(Clone)]
pub struct StoreSessions(pub Store);

impl std::fmt::Debug for StoreSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSessions")
    }
}

/// The key a session is stored under.
fn stored_key(id: &Id) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for StoreSessions {
    async fn save(&self, record: &Record) -> Result<()> {
        // The stored key is the id's hash, and the data must not hold the id either.
        let without_id = Record {
            id: Id(0),
            ..record.clone()
        };
        let data = serde_json::to_string(&without_id).map_err(|e| Error::Encode(e.to_string()))?;
        let expires = record.expiry_date.unix_timestamp();
        self.0
            .save_console_session(&stored_key(&record.id), &data, expires, unix_now())
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let data = self
            .0
            .console_session(&stored_key(id), unix_now())
            .await
            .map_err(backend)?;
        let Some(data) = data else { return Ok(None) };
        let record: Record =
            serde_json::from_str(&data).map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(Record { id: *id, ..record }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.0
            .delete_console_session(&stored_key(id))
            .await
            .map_err(backend)
    }
}

/// Logs `value` in under `key` with a new session id: an id planted before the login is worth
/// nothing after it (no session fixation). `Err` when the session store failed.
pub async fn log_in(
    session: &tower_sessions::Session,
    key: &str,
    value: &str,
) -> std::result::Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(key, value).await
}
