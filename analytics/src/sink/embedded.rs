//! The embedded store, for one node without ClickHouse: per-minute rollups (counts and a
//! latency histogram per service, route, consumer and status) and the latest raw requests,
//! in a SQLite file in the data dir. Rollups older than the retention are deleted as new
//! ones arrive; the raw log keeps the newest `RECENT_KEPT` requests.
use super::{Sink, SinkError, WriteFuture};
use crate::histogram::Histogram;
use crate::query::aggregate::RollupRow;
use crate::RequestEvent;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const SCHEMA: &str = include_str!("../../../migrations/analytics-sqlite/001_rollups.sql");
/// Raw requests kept for the log view.
pub const RECENT_KEPT: i64 = 10_000;

pub struct Embedded {
    pub(crate) pool: SqlitePool,
    retention: Duration,
}

type Key = (i64, String, String, String, u16);

impl Embedded {
    /// Opens (creating) `analytics.db` in `data_dir`.
    pub async fn open(data_dir: &Path, retention: Duration) -> Result<Embedded, SinkError> {
        std::fs::create_dir_all(data_dir).map_err(|e| SinkError(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("analytics.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(err)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(err)?;
        Ok(Embedded { pool, retention })
    }

    async fn store(&self, batch: &[RequestEvent]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for ((minute, service, route, consumer, status), mut row) in rollups(batch) {
            let existing = sqlx::query(
                "SELECT requests, rate_limited, auth_failed, bytes_in, bytes_out, latency FROM rollup \
                 WHERE minute = ? AND service = ? AND route = ? AND consumer = ? AND status = ?",
            )
            .bind(minute)
            .bind(&service)
            .bind(&route)
            .bind(&consumer)
            .bind(status)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(e) = existing {
                row.requests += e.get::<i64, _>(0) as u64;
                row.rate_limited += e.get::<i64, _>(1) as u64;
                row.auth_failed += e.get::<i64, _>(2) as u64;
                row.bytes_in += e.get::<i64, _>(3) as u64;
                row.bytes_out += e.get::<i64, _>(4) as u64;
                row.latency.merge_bytes(&e.get::<Vec<u8>, _>(5));
            }
            sqlx::query(
                "INSERT OR REPLACE INTO rollup (minute, service, route, consumer, status, requests, \
                 rate_limited, auth_failed, bytes_in, bytes_out, latency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(minute)
            .bind(&service)
            .bind(&route)
            .bind(&consumer)
            .bind(status)
            .bind(row.requests as i64)
            .bind(row.rate_limited as i64)
            .bind(row.auth_failed as i64)
            .bind(row.bytes_in as i64)
            .bind(row.bytes_out as i64)
            .bind(row.latency.to_bytes())
            .execute(&mut *tx)
            .await?;
        }
        for e in batch.iter().rev().take(RECENT_KEPT as usize) {
            sqlx::query(
                "INSERT INTO recent (timestamp_us, request_id, service, route, consumer, method, path, \
                 status, latency_us, client_ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(e.timestamp_us as i64)
            .bind(&*e.request_id)
            .bind(e.service.as_deref().unwrap_or(""))
            .bind(e.route.as_deref().unwrap_or(""))
            .bind(e.consumer.as_deref().unwrap_or(""))
            .bind(&*e.method)
            .bind(&*e.path)
            .bind(e.status)
            .bind(e.total_latency_us as i64)
            .bind(e.client_ip.to_string())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM recent WHERE rowid <= (SELECT max(rowid) FROM recent) - ?")
            .bind(RECENT_KEPT)
            .execute(&mut *tx)
            .await?;
        let oldest = crate::unix_now() - self.retention.as_secs() as i64;
        sqlx::query("DELETE FROM rollup WHERE minute < ?")
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

fn err(e: sqlx::Error) -> SinkError {
    SinkError(format!("embedded analytics store: {e}"))
}

/// The batch folded into per-minute rows.
fn rollups(batch: &[RequestEvent]) -> HashMap<Key, RollupRow> {
    let mut rows: HashMap<Key, RollupRow> = HashMap::new();
    for e in batch {
        let secs = (e.timestamp_us / 1_000_000) as i64;
        let text = |v: &Option<std::sync::Arc<str>>| v.as_deref().unwrap_or("").to_string();
        let key = (
            secs - secs.rem_euclid(60),
            text(&e.service),
            text(&e.route),
            text(&e.consumer),
            e.status,
        );
        let row = rows.entry(key).or_insert_with(|| RollupRow {
            latency: Histogram::default(),
            ..RollupRow::default()
        });
        row.requests += 1;
        row.rate_limited += u64::from(e.rate_limited);
        row.auth_failed += u64::from(e.auth_failed);
        row.bytes_in += e.bytes_in;
        row.bytes_out += e.bytes_out;
        row.latency.record(e.total_latency_us);
    }
    rows
}

impl Sink for Embedded {
    fn write<'a>(&'a self, batch: &'a [RequestEvent]) -> WriteFuture<'a> {
        Box::pin(async move { self.store(batch).await.map_err(err) })
    }
}
