//! The ClickHouse sink: one `INSERT` per batch into the events table (one per day when a batch
//! spans midnight), the batch as blocks of the Native format (see `native`) that the server
//! joins into one; materialized views keep the per-minute rollups.
//!
//! The schema (`migrations/clickhouse/`) is applied on the first write rather than at start-up,
//! so a gateway starts while ClickHouse is down and its events wait in the spill file.
//! The crate's row validation (for the queries' results, `query::clickhouse`) needs
//! `RowBinaryWithNamesAndTypes`, which old servers (Debian's 18.16) lack: `Validation::Auto`
//! turns it on only for servers from 2023 on. Inserts need none: a Native block names and
//! types its columns, and the server converts or refuses what does not fit the table.
use super::native::{day, Block, BLOCK_ROWS, COLUMNS};
use super::{Batch, Sink, SinkError, WriteFuture};
use clickhouse::Client;
use tokio::sync::OnceCell;

const MIGRATIONS: &[&str] = &[include_str!(
    "../../../migrations/clickhouse/001_events.sql"
)];

/// Columns the events table gained later, one `ADD COLUMN` each, run when the column is missing.
const ADDED_COLUMNS: &str = include_str!("../../../migrations/clickhouse/002_added_columns.sql");

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
        self.add_columns(&base).await?;
        tracing::info!(version, validation, database = %self.database, "ClickHouse schema ready");
        Ok(base
            .with_database(&self.database)
            .with_validation(validation))
    }
}

impl ClickHouse {
    /// Runs the `ADD COLUMN` statements of the columns an older events table lacks.
    async fn add_columns(&self, base: &Client) -> Result<(), SinkError> {
        let present: Vec<String> = base
            .query("SELECT name FROM system.columns WHERE database = ? AND table = 'events'")
            .bind(&self.database)
            .fetch_all()
            .await
            .map_err(err)?;
        for statement in statements(ADDED_COLUMNS, &self.database) {
            let column = added_column(&statement)
                .ok_or_else(|| SinkError(format!("not an ADD COLUMN: {statement}")))?;
            if !present.iter().any(|p| p == column) {
                base.query(&statement).execute().await.map_err(err)?;
            }
        }
        Ok(())
    }
}

/// The column an `ALTER TABLE ... ADD COLUMN name type ...` statement adds.
fn added_column(statement: &str) -> Option<&str> {
    let (_, rest) = statement.split_once(" ADD COLUMN ")?;
    rest.split_whitespace().next()
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
    /// The days of `batch` an earlier attempt stored: each day goes in an `INSERT` of its own,
    /// all or nothing (see `insert_day`), so a retry writes only the others.
    async fn landed_days(&self, client: &Client, batch: &Batch) -> Result<Vec<u16>, SinkError> {
        let (first, last) = batch
            .events()
            .map(|e| day(e.timestamp_us))
            .fold((u16::MAX, u16::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
        // Dates as the first second of the day: 18.16 cannot compare Date with a number.
        client
            .query(
                "SELECT DISTINCT toUInt16(date) FROM events WHERE date >= toDate(toDateTime(?)) \
                 AND date <= toDate(toDateTime(?)) AND batch_id = ?",
            )
            .bind(i64::from(first) * 86_400)
            .bind(i64::from(last) * 86_400)
            .bind(batch.id.to_string())
            .fetch_all()
            .await
            .map_err(err)
    }
}

/// `INSERT INTO events (date, timestamp, ...) FORMAT Native`.
fn insert_statement() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    format!("INSERT INTO events ({}) FORMAT Native", names.join(", "))
}

impl Sink for ClickHouse {
    fn write<'a>(&'a self, batch: &'a Batch, retry: bool) -> WriteFuture<'a> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            let client = self.client().await?;
            let mut done = if retry {
                self.landed_days(client, batch).await?
            } else {
                Vec::new()
            };
            if !done.is_empty() {
                tracing::info!(batch = %batch.id, days_since_1970 = ?done, "analytics batch was stored, on those days, by an earlier attempt");
            }
            // One `INSERT` per day: a batch covers more than one only around midnight, or with
            // a long request (a WebSocket, say), whose event carries the time it arrived.
            loop {
                match insert_day(client, batch, &done).await? {
                    Some((day, true)) => done.push(day),
                    _ => return Ok(()),
                }
            }
        })
    }
}

/// Inserts the events of `batch` from its first day not in `done`, in one `INSERT`: the server
/// joins the blocks until the input ends (its profile cannot make it write sooner) and
/// writes them as one part, all or nothing. Returns that day, and whether events of other
/// days not done were passed over; `None` when every event's day is done.
async fn insert_day(
    client: &Client,
    batch: &Batch,
    done: &[u16],
) -> Result<Option<(u16, bool)>, SinkError> {
    let id = batch.id.to_string();
    let mut insert = client
        .insert_formatted_with(insert_statement())
        .with_setting("min_insert_block_size_rows", batch.len().to_string())
        .with_setting("min_insert_block_size_bytes", "0");
    let mut block = Block::default();
    let (mut first, mut others) = (None, false);
    for e in batch.events() {
        let d = day(e.timestamp_us);
        if done.contains(&d) {
            continue;
        }
        if *first.get_or_insert(d) != d {
            others = true;
            continue;
        }
        block.add(&e, &id);
        if block.rows() == BLOCK_ROWS {
            send(&mut insert, &mut block).await?;
        }
    }
    let Some(first) = first else {
        return Ok(None);
    };
    send(&mut insert, &mut block).await?;
    insert.end().await.map_err(err)?;
    Ok(Some((first, others)))
}

/// Sends what `block` holds, if anything, and empties it.
async fn send(
    insert: &mut clickhouse::insert_formatted::InsertFormatted,
    block: &mut Block,
) -> Result<(), SinkError> {
    if block.rows() == 0 {
        return Ok(());
    }
    for chunk in block.take_chunks() {
        insert.send(chunk).await.map_err(err)?;
    }
    Ok(())
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
    fn each_added_column_is_named_and_declared_for_new_tables() {
        let added: Vec<String> = statements(ADDED_COLUMNS, "tg")
            .iter()
            .map(|s| added_column(s).unwrap().to_string())
            .collect();
        assert_eq!(added, ["grpc_status", "ws_close_code", "cache_hit"]);
        for column in &added {
            assert!(super::super::native::COLUMNS
                .iter()
                .any(|(c, _)| c == column));
        }
    }

    #[test]
    fn versions_and_database_names_are_checked() {
        assert_eq!(major("18.16.1"), 18);
        assert_eq!(major("24.3.2.23"), 24);
        assert!(ClickHouse::new("http://x", "tollgate", Validation::Auto).is_ok());
        assert!(ClickHouse::new("http://x", "a;drop", Validation::Auto).is_err());
    }
}
