//! Login sessions (console and portal) kept in the config store: tower-sessions' `SessionStore`
//! over it, so a login survives a restart and is shared by nodes on one PostgreSQL.
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

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for StoreSessions {
    async fn save(&self, record: &Record) -> Result<()> {
        let data = serde_json::to_string(record).map_err(|e| Error::Encode(e.to_string()))?;
        let expires = record.expiry_date.unix_timestamp();
        self.0
            .save_console_session(&record.id.to_string(), &data, expires, unix_now())
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let data = self
            .0
            .console_session(&id.to_string(), unix_now())
            .await
            .map_err(backend)?;
        data.map(|d| serde_json::from_str(&d).map_err(|e| Error::Decode(e.to_string())))
            .transpose()
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.0
            .delete_console_session(&id.to_string())
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
