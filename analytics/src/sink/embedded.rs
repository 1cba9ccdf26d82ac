//! The embedded store, for one node without ClickHouse: per-minute and per-hour rollups (counts
//! and a latency histogram per service, route, consumer, upstream target and status) and the latest raw
//! requests, in a SQLite file in the data dir. Long ranges read the hourly rows and only their
//! ragged edges from the minute rows. Rollups older than the retention are deleted as new ones
//! arrive; the raw log keeps the newest `RECENT_KEPT` requests.
use super::{Batch, Sink, SinkError, WriteFuture};
use crate::event::EventRef;
use crate::histogram::Histogram;
use crate::query::aggregate::RollupRow;
use rustc_hash::FxHashMap;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::path::Path;
use std::time::Duration;

const ROLLUP_TABLE: &str = include_str!("../../../migrations/analytics-sqlite/001_rollups.sql");
const RECENT_TABLES: &str = include_str!("../../../migrations/analytics-sqlite/002_recent.sql");
const UPSTREAM_COLUMN: &str =
    include_str!("../../../migrations/analytics-sqlite/003_rollup_upstream.sql");
const CACHE_HITS_COLUMN: &str =
    include_str!("../../../migrations/analytics-sqlite/004_rollup_cache_hits.sql");
/// Raw requests kept for the log view.
pub const RECENT_KEPT: i64 = 10_000;
/// Raw requests kept from one batch: the newest 1,000 of each, so the log is complete for the
/// latest requests and thins out further back when traffic is heavy.
const RECENT_PER_BATCH: usize = 1000;

pub struct Embedded {
    pub(crate) pool: SqlitePool,
    retention: Duration,
}

/// A rollup row's key: start, service, route, consumer, upstream target, status. Its texts are
/// borrowed from the batch being folded: no reference count touched per event.
type Key<'a> = (i64, &'a str, &'a str, &'a str, &'a str, u16);
type Rows<'a> = FxHashMap<Key<'a>, (RollupRow, Histogram)>;

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
        for period in Period::ALL {
            create_rollup_table(&pool, period.table())
                .await
                .map_err(err)?;
        }
        sqlx::raw_sql(RECENT_TABLES)
            .execute(&pool)
            .await
            .map_err(err)?;
        Ok(Embedded { pool, retention })
    }

    /// Stores `batch` in one transaction, unless it was stored before.
    async fn store(&self, batch: &Batch) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let id = batch.id.to_string();
        let now = crate::unix_now();
        let fresh = sqlx::query("INSERT OR IGNORE INTO batches (id, stored_at) VALUES (?, ?)")
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if fresh == 0 {
            return Ok(());
        }
        // Hours and the totals are folded from the minutes, not from every event again.
        let (minutes, newest) = minute_rollups(batch);
        let hours = coarser(&minutes, Period::Hour);
        let totals = coarser(&minutes, Period::MinuteTotal);
        for (period, rows) in [
            (Period::Minute, minutes),
            (Period::Hour, hours),
            (Period::MinuteTotal, totals),
        ] {
            for (key, (row, latency)) in rows {
                add_rollup(&mut tx, period.table(), key, row, latency).await?;
            }
        }
        // 1,000 rows per statement (10 values each) stay under SQLite's limit of bound values.
        for chunk in newest.chunks(1000) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO recent (timestamp_us, request_id, service, route, consumer, method, path, \
                 status, latency_us, client_ip) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.timestamp_us as i64)
                    .push_bind(e.request_id)
                    .push_bind(e.service.unwrap_or(""))
                    .push_bind(e.route.unwrap_or(""))
                    .push_bind(e.consumer.unwrap_or(""))
                    .push_bind(e.method)
                    .push_bind(e.path)
                    .push_bind(i64::from(e.status))
                    .push_bind(e.total_latency_us as i64)
                    .push_bind(e.client_ip.to_string());
            });
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM recent WHERE rowid <= (SELECT max(rowid) FROM recent) - ?")
            .bind(RECENT_KEPT)
            .execute(&mut *tx)
            .await?;
        let oldest = now - self.retention.as_secs() as i64;
        sqlx::query("DELETE FROM batches WHERE stored_at < ?")
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        for period in Period::ALL {
            sqlx::query(&format!("DELETE FROM {} WHERE start < ?", period.table()))
                .bind(oldest)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// Creates a rollup table, or moves one made before rollups kept the upstream target to the
/// table's present shape (its primary key changed, which SQLite changes only by a new table).
async fn create_rollup_table(pool: &SqlitePool, table: &str) -> Result<(), sqlx::Error> {
    let columns: Vec<String> =
        sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    let ddl = ROLLUP_TABLE.replace("{rollup}", table);
    if columns.is_empty() || columns.iter().any(|c| c == "upstream") {
        sqlx::raw_sql(&ddl).execute(pool).await?;
        if !columns.is_empty() && !columns.iter().any(|c| c == "cache_hits") {
            let add = CACHE_HITS_COLUMN.replace("{rollup}", table);
            sqlx::raw_sql(&add).execute(pool).await?;
        }
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(&format!("ALTER TABLE {table} RENAME TO {table}_old"))
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(&ddl).execute(&mut *tx).await?;
    sqlx::raw_sql(&UPSTREAM_COLUMN.replace("{rollup}", table))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

fn err(e: sqlx::Error) -> SinkError {
    SinkError(format!("embedded analytics store: {e}"))
}

/// Adds one period's counts and latencies to its stored row.
async fn add_rollup(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    table: &str,
    (start, service, route, consumer, upstream, status): Key<'_>,
    mut row: RollupRow,
    mut latency: Histogram,
) -> Result<(), sqlx::Error> {
    let existing = sqlx::query(&format!(
        "SELECT requests, rate_limited, auth_failed, bytes_in, bytes_out, latency, cache_hits \
         FROM {table} \
         WHERE start = ? AND service = ? AND route = ? AND consumer = ? AND upstream = ? \
         AND status = ?"
    ))
    .bind(start)
    .bind(service)
    .bind(route)
    .bind(consumer)
    .bind(upstream)
    .bind(status)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(e) = existing {
        row.requests += e.get::<i64, _>(0) as u64;
        row.rate_limited += e.get::<i64, _>(1) as u64;
        row.auth_failed += e.get::<i64, _>(2) as u64;
        row.bytes_in += e.get::<i64, _>(3) as u64;
        row.bytes_out += e.get::<i64, _>(4) as u64;
        latency.merge_bytes(&e.get::<Vec<u8>, _>(5));
        row.cache_hits += e.get::<i64, _>(6) as u64;
    }
    sqlx::query(&format!(
        "INSERT OR REPLACE INTO {table} (start, service, route, consumer, upstream, status, \
         requests, rate_limited, auth_failed, bytes_in, bytes_out, latency, cache_hits) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(start)
    .bind(service)
    .bind(route)
    .bind(consumer)
    .bind(upstream)
    .bind(status)
    .bind(row.requests as i64)
    .bind(row.rate_limited as i64)
    .bind(row.auth_failed as i64)
    .bind(row.bytes_in as i64)
    .bind(row.bytes_out as i64)
    .bind(latency.to_bytes())
    .bind(row.cache_hits as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The rollup tables: per minute and per hour by service, route, consumer, upstream target and
/// status, and
/// per minute by status alone (what an unfiltered dashboard reads: far fewer rows).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Minute,
    Hour,
    MinuteTotal,
}

impl Period {
    pub(crate) const ALL: [Period; 3] = [Period::Minute, Period::Hour, Period::MinuteTotal];

    pub(crate) fn seconds(self) -> i64 {
        match self {
            Period::Minute | Period::MinuteTotal => 60,
            Period::Hour => 3600,
        }
    }

    pub(crate) fn table(self) -> &'static str {
        match self {
            Period::Minute => "rollup_minute",
            Period::Hour => "rollup_hour",
            Period::MinuteTotal => "rollup_minute_total",
        }
    }

    /// Whether rows keep service, route, consumer and upstream target.
    fn by_name(self) -> bool {
        self != Period::MinuteTotal
    }
}

/// The batch folded into per-minute rows, each with its latency histogram, and its newest
/// `RECENT_PER_BATCH` events (only they can survive the raw log's trim), in one pass.
fn minute_rollups(batch: &Batch) -> (Rows<'_>, Vec<EventRef<'_>>) {
    let mut rows = Rows::default();
    let first_kept = batch.len().saturating_sub(RECENT_PER_BATCH);
    let mut newest = Vec::with_capacity(batch.len() - first_kept);
    for (i, e) in batch.events().enumerate() {
        let secs = (e.timestamp_us / 1_000_000) as i64;
        let key = (
            secs - secs.rem_euclid(60),
            e.service.unwrap_or(""),
            e.route.unwrap_or(""),
            e.consumer.unwrap_or(""),
            e.upstream_addr.unwrap_or(""),
            e.status,
        );
        let (row, latency) = rows.entry(key).or_default();
        row.requests += 1;
        row.rate_limited += u64::from(e.rate_limited);
        row.auth_failed += u64::from(e.auth_failed);
        row.cache_hits += u64::from(e.cache_hit);
        row.bytes_in += e.bytes_in;
        row.bytes_out += e.bytes_out;
        latency.record(e.total_latency_us);
        if i >= first_kept {
            newest.push(e);
        }
    }
    (rows, newest)
}

/// Minute rows folded into `period`'s rows (hours, or minutes without names).
fn coarser<'a>(minutes: &Rows<'a>, period: Period) -> Rows<'a> {
    let mut rows = Rows::default();
    for (&(start, service, route, consumer, upstream, status), (m, latency)) in minutes {
        let names = if period.by_name() {
            (service, route, consumer, upstream)
        } else {
            ("", "", "", "")
        };
        let key = (
            start - start.rem_euclid(period.seconds()),
            names.0,
            names.1,
            names.2,
            names.3,
            status,
        );
        let (row, h) = rows.entry(key).or_default();
        row.requests += m.requests;
        row.rate_limited += m.rate_limited;
        row.auth_failed += m.auth_failed;
        row.cache_hits += m.cache_hits;
        row.bytes_in += m.bytes_in;
        row.bytes_out += m.bytes_out;
        h.merge(latency);
    }
    rows
}

impl Sink for Embedded {
    fn write<'a>(&'a self, batch: &'a Batch, _retry: bool) -> WriteFuture<'a> {
        Box::pin(async move { self.store(batch).await.map_err(err) })
    }
}
