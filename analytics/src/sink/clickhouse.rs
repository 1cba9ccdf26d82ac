//! The ClickHouse sink: one `INSERT` per batch into the events table; materialized views keep
//! the per-minute rollups.
//!
//! The schema (`migrations/clickhouse/`) is applied on the first write rather than at start-up,
//! so a gateway starts while ClickHouse is down and its events wait in the spill file.
//! The crate's row validation needs `RowBinaryWithNamesAndTypes`, which old servers (Debian's
//! 18.16) lack: `Validation::Auto` turns it on only for servers from 2023 on.
use super::{Batch, Sink, SinkError, WriteFuture};
use crate::event::EventRef;
use crate::ip_text::IpText;
use clickhouse::{Client, Row};
use serde::Serialize;
use tokio::sync::OnceCell;

const MIGRATIONS: &[&str] = &[include_str!(
    "../../../migrations/clickhouse/001_events.sql"
)];

/// Whether the client checks rows against the table's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Auto,
    On,
    Off,
}

/// Whether insert bodies are compressed. LZ4 costs the gateway about as much CPU per event
/// as the rest of the batcher together (callgrind: 1,430 instructions an event); it pays off
/// only when the link to ClickHouse, not the gateway's CPU, is the scarce resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
}

pub struct ClickHouse {
    url: String,
    database: String,
    validation: Validation,
    compression: Compression,
    client: OnceCell<Client>,
}

impl ClickHouse {
    pub fn new(url: &str, database: &str, validation: Validation) -> Result<ClickHouse, SinkError> {
        if database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SinkError(format!(
                "TOLLGATE_CLICKHOUSE_DATABASE '{database}': use letters, digits and '_'"
            )));
        }
        Ok(ClickHouse {
            url: url.trim_end_matches('/').to_string(),
            database: database.to_string(),
            validation,
            compression: Compression::None,
            client: OnceCell::new(),
        })
    }

    pub fn with_compression(self, compression: Compression) -> ClickHouse {
        ClickHouse {
            compression,
            ..self
        }
    }

    /// The client, once the database and tables exist.
    pub async fn client(&self) -> Result<&Client, SinkError> {
        self.client.get_or_try_init(|| self.prepare()).await
    }

    async fn prepare(&self) -> Result<Client, SinkError> {
        let compression = match self.compression {
            Compression::None => clickhouse::Compression::None,
            Compression::Lz4 => clickhouse::Compression::Lz4,
        };
        let base = Client::default()
            .with_url(&self.url)
            .with_validation(false)
            .with_compression(compression);
        let version: String = base
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(err)?;
        let validation = match self.validation {
            Validation::On => true,
            Validation::Off => false,
            Validation::Auto => major(&version) >= 23,
        };
        base.query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.database))
            .execute()
            .await
            .map_err(err)?;
        for file in MIGRATIONS {
            for statement in statements(file, &self.database) {
                base.query(&statement).execute().await.map_err(err)?;
            }
        }
        tracing::info!(version, validation, database = %self.database, "ClickHouse schema ready");
        Ok(base
            .with_database(&self.database)
            .with_validation(validation))
    }
}

fn err(e: clickhouse::error::Error) -> SinkError {
    SinkError(format!("ClickHouse: {e}"))
}

fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// The statements of a migration file, comments dropped, `{database}` filled in.
fn statements(file: &str, database: &str) -> Vec<String> {
    let sql: String = file
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{database}", database))
        .collect()
}

impl ClickHouse {
    /// Whether an earlier attempt stored `batch` (an insert of one batch is atomic: all or none).
    async fn stored(&self, client: &Client, batch: &Batch) -> Result<bool, SinkError> {
        let days: Vec<u16> = batch.events().map(|e| day(e.timestamp_us)).collect();
        let (first, last) = (days.iter().min(), days.iter().max());
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(true);
        };
        // Dates as the first second of the day: 18.16 cannot compare Date with a number.
        let found: u64 = client
            .query(
                "SELECT toUInt64(count()) FROM events WHERE date >= toDate(toDateTime(?)) \
                 AND date <= toDate(toDateTime(?)) AND batch_id = ?",
            )
            .bind(i64::from(*first) * 86_400)
            .bind(i64::from(*last) * 86_400)
            .bind(batch.id.to_string())
            .fetch_one()
            .await
            .map_err(err)?;
        Ok(found > 0)
    }
}

fn day(timestamp_us: u64) -> u16 {
    (timestamp_us / 1_000_000 / 86_400) as u16
}

impl Sink for ClickHouse {
    fn write<'a>(&'a self, batch: &'a Batch, retry: bool) -> WriteFuture<'a> {
        Box::pin(async move {
            let client = self.client().await?;
            if retry && self.stored(client, batch).await? {
                tracing::info!(batch = %batch.id, "analytics batch was already stored by an earlier attempt");
                return Ok(());
            }
            let id = batch.id.to_string();
            let mut insert = client.insert::<EventRow>("events").await.map_err(err)?;
            for e in batch.events() {
                insert.write(&EventRow::new(e, &id)).await.map_err(err)?;
            }
            insert.end().await.map_err(err)
        })
    }
}

/// A row of the events table, in its column order.
#[derive(Row, Serialize)]
struct EventRow<'a> {
    date: u16,
    timestamp: u32,
    timestamp_us: u32,
    request_id: &'a str,
    service: &'a str,
    route: &'a str,
    consumer_id: &'a str,
    consumer: &'a str,
    credential_id: &'a str,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    route_path: &'a str,
    status: u16,
    latency_us: u32,
    upstream_latency_us: u32,
    gateway_latency_us: u32,
    bytes_in: u64,
    bytes_out: u64,
    client_ip: IpText,
    user_agent: &'a str,
    rate_limited: u8,
    auth_failed: u8,
    upstream_failed: u8,
    upstream_addr: &'a str,
    node: &'a str,
    batch_id: &'a str,
}

impl<'a> EventRow<'a> {
    fn new(e: EventRef<'a>, batch_id: &'a str) -> EventRow<'a> {
        let text = |v: Option<&'a str>| v.unwrap_or("");
        let secs = e.timestamp_us / 1_000_000;
        let micros = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        EventRow {
            date: day(e.timestamp_us),
            timestamp: secs as u32,
            timestamp_us: (e.timestamp_us % 1_000_000) as u32,
            request_id: e.request_id,
            service: text(e.service),
            route: text(e.route),
            consumer_id: text(e.consumer_id),
            consumer: text(e.consumer),
            credential_id: text(e.credential_id),
            method: e.method,
            host: e.host,
            path: e.path,
            route_path: text(e.route_path),
            status: e.status,
            latency_us: micros(e.total_latency_us),
            upstream_latency_us: micros(e.upstream_latency_us),
            gateway_latency_us: micros(e.gateway_latency_us),
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            client_ip: IpText::new(e.client_ip),
            user_agent: text(e.user_agent),
            rate_limited: u8::from(e.rate_limited),
            auth_failed: u8::from(e.auth_failed),
            upstream_failed: u8::from(e.upstream_failed),
            upstream_addr: text(e.upstream_addr),
            node: e.node,
            batch_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements_for_the_database() {
        let s = statements(MIGRATIONS[0], "tg");
        assert_eq!(s.len(), 3);
        assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS tg.events ("));
        assert!(s
            .iter()
            .all(|s| !s.contains("{database}") && !s.contains("--")));
    }

    #[test]
    fn versions_and_database_names_are_checked() {
        assert_eq!(major("18.16.1"), 18);
        assert_eq!(major("24.3.2.23"), 24);
        assert!(ClickHouse::new("http://x", "tollgate", Validation::Auto).is_ok());
        assert!(ClickHouse::new("http://x", "a;drop", Validation::Auto).is_err());
    }
}
