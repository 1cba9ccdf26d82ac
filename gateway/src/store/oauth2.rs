//! The oauth2 plugin's tokens and authorization codes in the store: written by the token
//! and authorize endpoints (and the admin API), read back by every node's token index
//! (`plugins::oauth2::tokens`). Only SHA-256 digests of tokens and codes are stored.
//!
//! Every change to a token takes the next `oauth2_clock` value as its `seq`, so a node
//! follows changes by asking for those above the last it saw (`token_changes`).
use super::{Store, StoreError, Tx};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A token as stored: digests, not the tokens themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub id: String,
    /// Hex SHA-256 of the access token.
    pub access_hash: String,
    pub refresh_hash: Option<String>,
    pub credential_id: String,
    /// `None` for a token of `global_credentials` instances, good on any such service.
    pub service_id: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    /// Seconds the access token lives after `created_at`; 0 for ever.
    pub expires_in: i64,
    pub created_at: i64,
    /// When the row goes (and its refresh token with it); `None` for never.
    pub purge_at: Option<i64>,
    /// Set once the token was revoked or replaced.
    pub revoked_at: Option<i64>,
    pub seq: i64,
}

/// An authorization code as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRow {
    pub code_hash: String,
    pub credential_id: String,
    pub service_id: Option<String>,
    pub plugin_id: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    pub challenge: Option<String>,
    pub challenge_method: Option<String>,
    pub expires_at: i64,
}

/// How long a revoked token's tombstone stays for nodes to see (seconds); a node that was
/// away longer reloads every token when it starts.
const TOMBSTONE_SECONDS: i64 = 3600;

/// At most this many changes are read per poll.
pub const CHANGES_PER_READ: i64 = 10_000;

const TOKEN_COLUMNS: &str = "id, access_hash, refresh_hash, credential_id, service_id, \
     authenticated_userid, scope, expires_in, created_at, purge_at, revoked_at, seq";

impl Store {
    /// Stores a new token; returns it with its `seq`.
    pub async fn insert_token(&self, mut row: TokenRow) -> Result<TokenRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        row.seq = next_seq(&mut tx).await?;
        insert_token(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The live (not revoked, not purged) token whose refresh token has digest `hash`.
    pub async fn token_by_refresh(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth2_tokens WHERE refresh_hash = $1 \
             AND revoked_at IS NULL AND (purge_at IS NULL OR purge_at > $2)"
        );
        let row = sqlx::query(&sql)
            .bind(hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_row(&r)).transpose()
    }

    /// A token by id or by the digest of its access token, revoked ones included.
    pub async fn token(&self, id_or_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth2_tokens WHERE (id = $1 OR access_hash = $1) \
             AND revoked_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id_or_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_row(&r)).transpose()
    }

    /// One page of live tokens in id order, after `offset`.
    pub async fn tokens(
        &self,
        offset: Option<&str>,
        size: usize,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth2_tokens WHERE revoked_at IS NULL AND id > $1 \
             ORDER BY id LIMIT {size}"
        );
        let rows = sqlx::query(&sql)
            .bind(offset.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_row).collect()
    }

    /// Replaces token `old` (still live) with `new` in one transaction: a refresh. `false`
    /// when `old` was revoked or replaced meanwhile (a refresh token is good once).
    pub async fn replace_token(
        &self,
        old: &str,
        mut new: TokenRow,
        now: i64,
    ) -> Result<Option<TokenRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_seq(&mut tx).await?;
        if !revoke(&mut tx, old, now, seq).await? {
            return Ok(None);
        }
        new.seq = next_seq(&mut tx).await?;
        insert_token(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(Some(new))
    }

    /// Gives live token `id` a new access token (a refresh that keeps its refresh token):
    /// returns the changed row, or `None` if it was revoked meanwhile.
    pub async fn renew_token(
        &self,
        id: &str,
        access_hash: &str,
        created_at: i64,
        expires_in: i64,
    ) -> Result<Option<TokenRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_seq(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE oauth2_tokens SET access_hash = $1, created_at = $2, expires_in = $3, \
             seq = $4 WHERE id = $5 AND revoked_at IS NULL",
        )
        .bind(access_hash)
        .bind(created_at)
        .bind(expires_in)
        .bind(seq)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM oauth2_tokens WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
        let row = token_row(&row)?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Revokes live token `id`: `false` if there was none.
    pub async fn revoke_token(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_seq(&mut tx).await?;
        let revoked = revoke(&mut tx, id, now, seq).await?;
        if revoked {
            tx.commit().await?;
        }
        Ok(revoked)
    }

    /// Token changes after `seq`, oldest first, at most `CHANGES_PER_READ`.
    pub async fn token_changes(&self, seq: i64) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth2_tokens WHERE seq > $1 ORDER BY seq \
             LIMIT {CHANGES_PER_READ}"
        );
        let rows = sqlx::query(&sql).bind(seq).fetch_all(&self.pool).await?;
        rows.iter().map(token_row).collect()
    }

    /// Stores a new authorization code.
    pub async fn insert_code(&self, c: &CodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth2_authorization_codes (code_hash, credential_id, service_id, \
             plugin_id, authenticated_userid, scope, challenge, challenge_method, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.code_hash)
        .bind(&c.credential_id)
        .bind(&c.service_id)
        .bind(&c.plugin_id)
        .bind(&c.authenticated_userid)
        .bind(&c.scope)
        .bind(&c.challenge)
        .bind(&c.challenge_method)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired code with digest `hash`.
    pub async fn code(&self, hash: &str, now: i64) -> Result<Option<CodeRow>, StoreError> {
        let row = sqlx::query(
            "SELECT code_hash, credential_id, service_id, plugin_id, authenticated_userid, \
             scope, challenge, challenge_method, expires_at FROM oauth2_authorization_codes \
             WHERE code_hash = $1 AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| code_row(&r)).transpose()
    }

    /// Redeems code `hash` for token `new` in one transaction; `None` when the code was
    /// redeemed meanwhile (a code is good once, whichever node is asked).
    pub async fn redeem_code(
        &self,
        hash: &str,
        mut new: TokenRow,
    ) -> Result<Option<TokenRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM oauth2_authorization_codes WHERE code_hash = $1")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(None);
        }
        new.seq = next_seq(&mut tx).await?;
        insert_token(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(Some(new))
    }

    /// Deletes expired codes, tokens past their `purge_at`, and tombstones every node saw.
    pub async fn purge_oauth2(&self, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM oauth2_authorization_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth2_tokens WHERE purge_at <= $1 OR revoked_at <= $2")
            .bind(now)
            .bind(now - TOMBSTONE_SECONDS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The next `seq`, taken in `tx` (which holds the clock's row until it ends).
async fn next_seq(tx: &mut Tx) -> Result<i64, StoreError> {
    sqlx::query("UPDATE oauth2_clock SET seq = seq + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT seq FROM oauth2_clock WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

async fn insert_token(tx: &mut Tx, t: &TokenRow) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO oauth2_tokens ({TOKEN_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    sqlx::query(&sql)
        .bind(&t.id)
        .bind(&t.access_hash)
        .bind(&t.refresh_hash)
        .bind(&t.credential_id)
        .bind(&t.service_id)
        .bind(&t.authenticated_userid)
        .bind(&t.scope)
        .bind(t.expires_in)
        .bind(t.created_at)
        .bind(t.purge_at)
        .bind(t.revoked_at)
        .bind(t.seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks live token `id` revoked at `now` (its refresh token gone): `false` if none was live.
async fn revoke(tx: &mut Tx, id: &str, now: i64, seq: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE oauth2_tokens SET revoked_at = $1, refresh_hash = NULL, seq = $2 \
         WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(seq)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn token_row(r: &AnyRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.try_get(0)?,
        access_hash: r.try_get(1)?,
        refresh_hash: r.try_get(2)?,
        credential_id: r.try_get(3)?,
        service_id: r.try_get(4)?,
        authenticated_userid: r.try_get(5)?,
        scope: r.try_get(6)?,
        expires_in: r.try_get(7)?,
        created_at: r.try_get(8)?,
        purge_at: r.try_get(9)?,
        revoked_at: r.try_get(10)?,
        seq: r.try_get(11)?,
    })
}

fn code_row(r: &AnyRow) -> Result<CodeRow, StoreError> {
    Ok(CodeRow {
        code_hash: r.try_get(0)?,
        credential_id: r.try_get(1)?,
        service_id: r.try_get(2)?,
        plugin_id: r.try_get(3)?,
        authenticated_userid: r.try_get(4)?,
        scope: r.try_get(5)?,
        challenge: r.try_get(6)?,
        challenge_method: r.try_get(7)?,
        expires_at: r.try_get(8)?,
    })
}
