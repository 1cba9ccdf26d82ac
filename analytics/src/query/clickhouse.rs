//! `Queries` in ClickHouse SQL over the events table and its per-minute rollups, in the subset
//! both 18.16 and current servers accept. Result columns are cast to fixed types (`toFloat64`
//! before `quantile`, the t-digest's Float32 results to Float64, `UInt64` counts), because with
//! row validation off a type mismatch would decode as garbage.
use super::{
    Filter, Point, Queries, QueryError, QueryFuture, RecentEvent, StatusCount, Summary, TopBy,
    TopEntry,
};
use crate::sink::clickhouse::ClickHouse;
use clickhouse::{Row, RowOwned, RowRead};
use serde::Deserialize;

fn err(e: impl std::fmt::Display) -> QueryError {
    QueryError(format!("ClickHouse: {e}"))
}

/// A `WHERE` clause for `f` over the events table, with `?` placeholders and their values.
fn filter(f: &Filter) -> (String, Vec<Bind>) {
    filter_on(f, "timestamp", f.from)
}

/// The same over the per-minute rollups: every minute that overlaps `[from, to)`.
fn rollup_filter(f: &Filter) -> (String, Vec<Bind>) {
    filter_on(f, "minute", f.from - f.from.rem_euclid(60))
}

fn filter_on(f: &Filter, time: &str, from: i64) -> (String, Vec<Bind>) {
    let mut sql = format!(
        " WHERE date >= toDate(toDateTime(?)) AND date <= toDate(toDateTime(?)) \
         AND {time} >= toDateTime(?) AND {time} < toDateTime(?)"
    );
    let mut binds = vec![
        Bind::Int(from),
        Bind::Int(f.to),
        Bind::Int(from),
        Bind::Int(f.to),
    ];
    for (column, value) in [
        ("service", &f.service),
        ("route", &f.route),
        ("consumer", &f.consumer),
    ] {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            binds.push(Bind::Text(v.clone()));
        }
    }
    if let Some(class) = f.status_class {
        sql.push_str(" AND intDiv(status, 100) = ?");
        binds.push(Bind::Int(i64::from(class)));
    }
    (sql, binds)
}

enum Bind {
    Int(i64),
    Text(String),
}

fn ms(us: f64) -> f64 {
    us.round() / 1000.0
}

fn quantiles(q: &[f64]) -> (f64, f64, f64) {
    let at = |i: usize| q.get(i).copied().filter(|v| v.is_finite()).map_or(0.0, ms);
    (at(0), at(1), at(2))
}

impl ClickHouse {
    /// Cache hits from the raw events (the minute rollups predate the column, and a
    /// materialized view's query cannot be changed in place on older servers): one UInt8
    /// column read over the range.
    async fn cache_hits(&self, f: &Filter) -> Result<u64, QueryError> {
        let (clause, binds) = filter_on(f, "timestamp", f.from);
        let sql = format!("SELECT toUInt64(countIf(cache_hit = 1)) AS n FROM events{clause}");
        let counted: Vec<Count> = self.fetch(&sql, binds).await?;
        Ok(counted.first().map_or(0, |c| c.n))
    }

    async fn fetch<T>(&self, sql: &str, binds: Vec<Bind>) -> Result<Vec<T>, QueryError>
    where
        T: RowOwned + RowRead,
    {
        let client = self.client().await.map_err(err)?;
        let mut q = client.query(sql);
        for b in binds {
            q = match b {
                Bind::Int(v) => q.bind(v),
                Bind::Text(v) => q.bind(v),
            };
        }
        q.fetch_all::<T>().await.map_err(err)
    }
}

#[derive(Row, Deserialize)]
struct StatusTotals {
    status: u16,
    requests: u64,
    rate_limited: u64,
    auth_failed: u64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Row, Deserialize)]
struct Count {
    n: u64,
}

#[derive(Row, Deserialize)]
struct Latency {
    q: Vec<f64>,
}

#[derive(Row, Deserialize)]
struct BucketCount {
    start: u64,
    status: u16,
    requests: u64,
    rate_limited: u64,
}

#[derive(Row, Deserialize)]
struct BucketLatency {
    start: u64,
    q: Vec<f64>,
}

#[derive(Row, Deserialize)]
struct CodeRow {
    status: u16,
    requests: u64,
}

#[derive(Row, Deserialize)]
struct TopRow {
    name: String,
    requests: u64,
    errors: u64,
    rate_limited: u64,
    p95: f64,
}

#[derive(Row, Deserialize)]
struct EventRow {
    timestamp_us: u64,
    request_id: String,
    service: String,
    route: String,
    consumer: String,
    method: String,
    path: String,
    status: u16,
    latency_us: u32,
    client_ip: String,
}

/// The p50, p95 and p99 of the rollups' latency digests, as Float64.
const DIGEST_QUANTILES: &str =
    "arrayMap(x -> toFloat64(x), quantilesTDigestMerge(0.5, 0.95, 0.99)(latency))";

impl Queries for ClickHouse {
    /// From the per-minute rollups, as the embedded store answers it: counts by status, then
    /// latency (a scan of the raw events took 150-190 ms over 10 M events).
    fn summary<'a>(&'a self, f: &'a Filter) -> QueryFuture<'a, Summary> {
        Box::pin(async move {
            let (clause, binds) = rollup_filter(f);
            let totals: Vec<StatusTotals> = self
                .fetch(
                    &format!(
                        "SELECT status, toUInt64(countMerge(requests)), \
                         toUInt64(sumMerge(rate_limited)), toUInt64(sumMerge(auth_failed)), \
                         toUInt64(sumMerge(bytes_in)), toUInt64(sumMerge(bytes_out)) \
                         FROM events_minute{clause} GROUP BY status"
                    ),
                    binds,
                )
                .await?;
            let mut s = Summary::default();
            for t in totals {
                s.count(t.status, t.requests, t.rate_limited, t.auth_failed);
                s.bytes_in += t.bytes_in;
                s.bytes_out += t.bytes_out;
            }
            if s.requests > 0 {
                s.cache_hits = self.cache_hits(f).await?;
                let (clause, binds) = rollup_filter(f);
                let sql = format!("SELECT {DIGEST_QUANTILES} FROM events_minute{clause}");
                let latency: Vec<Latency> = self.fetch(&sql, binds).await?;
                if let Some(l) = latency.first() {
                    (s.p50_ms, s.p95_ms, s.p99_ms) = quantiles(&l.q);
                }
            }
            Ok(s)
        })
    }

    /// From the per-minute rollups: counts by bucket and status, then latency by bucket.
    fn timeseries<'a>(&'a self, f: &'a Filter, step: i64) -> QueryFuture<'a, Vec<Point>> {
        Box::pin(async move {
            let bucket = format!("toUInt64(intDiv(toUInt32(minute), {step}) * {step}) AS start");
            let (clause, binds) = rollup_filter(f);
            let counts: Vec<BucketCount> = self
                .fetch(
                    &format!(
                        "SELECT {bucket}, status, toUInt64(countMerge(requests)), \
                         toUInt64(sumMerge(rate_limited)) FROM events_minute{clause} \
                         GROUP BY start, status"
                    ),
                    binds,
                )
                .await?;
            let (clause, binds) = rollup_filter(f);
            let latency: Vec<BucketLatency> = self
                .fetch(
                    &format!(
                        "SELECT {bucket}, {DIGEST_QUANTILES} FROM events_minute{clause} GROUP BY start"
                    ),
                    binds,
                )
                .await?;
            let mut points: std::collections::BTreeMap<u64, Point> = Default::default();
            for c in counts {
                let p = points.entry(c.start).or_insert_with(|| Point {
                    start: c.start as i64,
                    ..Point::default()
                });
                p.count(c.status, c.requests, c.rate_limited);
            }
            for l in latency {
                if let Some(p) = points.get_mut(&l.start) {
                    (p.p50_ms, p.p95_ms, p.p99_ms) = quantiles(&l.q);
                }
            }
            Ok(points.into_values().collect())
        })
    }

    fn status_codes<'a>(&'a self, f: &'a Filter) -> QueryFuture<'a, Vec<StatusCount>> {
        Box::pin(async move {
            let (clause, binds) = filter(f);
            let sql = format!(
                "SELECT status, toUInt64(count()) AS n FROM events{clause} GROUP BY status ORDER BY n DESC, status"
            );
            let rows: Vec<CodeRow> = self.fetch(&sql, binds).await?;
            Ok(rows
                .into_iter()
                .map(|r| StatusCount {
                    status: r.status,
                    requests: r.requests,
                })
                .collect())
        })
    }

    fn top<'a>(&'a self, f: &'a Filter, by: TopBy, limit: usize) -> QueryFuture<'a, Vec<TopEntry>> {
        Box::pin(async move {
            let (clause, binds) = filter(f);
            let (column, only) = match by {
                TopBy::Route => ("route", ""),
                TopBy::Consumer => ("consumer", ""),
                // Requests that never reached a target are no target's.
                TopBy::Upstream => ("upstream_addr", "upstream_addr != ''"),
            };
            // `filter` always starts the clause with its time range.
            let clause = if only.is_empty() {
                clause
            } else {
                format!("{clause} AND {only}")
            };
            let sql = format!(
                "SELECT {column} AS name, toUInt64(count()) AS n, toUInt64(countIf(status >= 400)), \
                 toUInt64(sum(rate_limited)), toFloat64(quantile(0.95)(toFloat64(latency_us))) \
                 FROM events{clause} GROUP BY name ORDER BY n DESC, name LIMIT {limit}"
            );
            let rows: Vec<TopRow> = self.fetch(&sql, binds).await?;
            Ok(rows
                .into_iter()
                .map(|r| TopEntry {
                    name: r.name,
                    requests: r.requests,
                    errors: r.errors,
                    rate_limited: r.rate_limited,
                    p95_ms: ms(r.p95),
                })
                .collect())
        })
    }

    fn events<'a>(&'a self, f: &'a Filter, limit: usize) -> QueryFuture<'a, Vec<RecentEvent>> {
        Box::pin(async move {
            let (clause, binds) = filter(f);
            let sql = format!(
                "SELECT toUInt64(timestamp) * 1000000 + timestamp_us AS t, request_id, service, route, \
                 consumer, method, path, status, latency_us, client_ip \
                 FROM events{clause} ORDER BY t DESC LIMIT {limit}"
            );
            let rows: Vec<EventRow> = self.fetch(&sql, binds).await?;
            Ok(rows
                .into_iter()
                .map(|r| RecentEvent {
                    timestamp_us: r.timestamp_us,
                    request_id: r.request_id,
                    service: r.service,
                    route: r.route,
                    consumer: r.consumer,
                    method: r.method,
                    path: r.path,
                    status: r.status,
                    latency_ms: f64::from(r.latency_us) / 1000.0,
                    client_ip: r.client_ip,
                })
                .collect())
        })
    }
}
