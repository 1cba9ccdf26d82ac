//! `Queries` over the embedded store: the matching rollup rows are read once and folded in
//! memory (`aggregate`); recent requests come from the raw log.
use super::aggregate::{self, RollupRow, SeriesRow};
use super::{
    Filter, Point, Queries, QueryError, QueryFuture, RecentEvent, StatusCount, Summary, TopBy,
    TopEntry,
};
use crate::sink::embedded::{Embedded, Period};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

fn err(e: sqlx::Error) -> QueryError {
    QueryError(e.to_string())
}

/// `WHERE` clauses for `f` on a table whose time column is `time` (in `scale` per second).
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, f: &Filter, time: &str, scale: i64) {
    q.push(format!(" WHERE {time} >= "))
        .push_bind(f.from * scale)
        .push(format!(" AND {time} < "))
        .push_bind(f.to * scale);
    for (column, value) in [
        ("service", &f.service),
        ("route", &f.route),
        ("consumer", &f.consumer),
    ] {
        if let Some(v) = value {
            q.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    if let Some(class) = f.status_class {
        let low = i64::from(class) * 100;
        q.push(" AND status >= ")
            .push_bind(low)
            .push(" AND status < ")
            .push_bind(low + 100);
    }
}

/// `WHERE` clauses for `f` on a rollup table, its time range replaced by `[from, to)`.
fn push_period_filter(q: &mut QueryBuilder<'_, Sqlite>, f: &Filter, from: i64, to: i64) {
    let period = Filter {
        from,
        to,
        ..f.clone()
    };
    push_filter(q, &period, "start", 1);
}

impl Embedded {
    /// Rollup rows of `table` whose period starts in `[from, to)`, with the filters of `f`,
    /// read as `read` says. sqlx copies every value it reads into an allocation of its own
    /// and hands every row from its SQLite thread to this task: what is not needed is not read.
    async fn scan(
        &self,
        table: &str,
        from: i64,
        to: i64,
        f: &Filter,
        read: Read,
    ) -> Result<Vec<RollupRow>, QueryError> {
        let mut q = QueryBuilder::new(format!(
            "SELECT start, {}status, requests, rate_limited, auth_failed, bytes_in, bytes_out, \
             latency, cache_hits FROM {table}",
            read.names()
        ));
        push_period_filter(&mut q, f, from, to);
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        let names = read == Read::Names;
        let name = |r: &SqliteRow, i: usize| if names { r.get(i) } else { String::new() };
        // Where the columns after the names are.
        let n = if names { 4 } else { 0 };
        Ok(rows
            .iter()
            .map(|r| RollupRow {
                start: r.get(0),
                service: name(r, 1),
                route: name(r, 2),
                consumer: name(r, 3),
                upstream: name(r, 4),
                status: r.get::<i64, _>(1 + n) as u16,
                requests: r.get::<i64, _>(2 + n) as u64,
                rate_limited: r.get::<i64, _>(3 + n) as u64,
                auth_failed: r.get::<i64, _>(4 + n) as u64,
                bytes_in: r.get::<i64, _>(5 + n) as u64,
                bytes_out: r.get::<i64, _>(6 + n) as u64,
                latency: r.get(7 + n),
                cache_hits: r.get::<i64, _>(8 + n) as u64,
            })
            .collect())
    }

    /// The time series' rows: one per period of `table` that starts in `[from, to)`, with the
    /// filters of `f`, its requests summed by status class and its rows' latency histograms
    /// concatenated (a stored histogram is a list of `(bucket, count)` pairs that
    /// `merge_bytes` adds up in any order, and SQLite's `group_concat` keeps a BLOB's bytes in
    /// a UTF-8 database). An unfiltered day by the minute is 1,440 rows this way instead of
    /// 11,520 (one per status code in the benchmark's traffic), each handed over by sqlx's
    /// SQLite thread on its own.
    async fn series_rows(
        &self,
        table: &str,
        from: i64,
        to: i64,
        f: &Filter,
    ) -> Result<Vec<SeriesRow>, QueryError> {
        let class = |c: u16| format!("sum(CASE WHEN status / 100 = {c} THEN requests ELSE 0 END)");
        let mut q = QueryBuilder::new(format!(
            "SELECT start, sum(requests), {}, {}, {}, {}, sum(rate_limited), \
             CAST(group_concat(latency, '') AS BLOB) FROM {table}",
            class(2),
            class(3),
            class(4),
            class(5)
        ));
        push_period_filter(&mut q, f, from, to);
        q.push(" GROUP BY start");
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        let count = |r: &SqliteRow, i: usize| r.get::<i64, _>(i) as u64;
        Ok(rows
            .iter()
            .map(|r| SeriesRow {
                counts: Point {
                    start: r.get(0),
                    requests: count(r, 1),
                    status_2xx: count(r, 2),
                    status_3xx: count(r, 3),
                    status_4xx: count(r, 4),
                    status_5xx: count(r, 5),
                    rate_limited: count(r, 6),
                    ..Point::default()
                },
                latency: r.get(7),
            })
            .collect())
    }

    /// Every rollup row for `f`: whole hours from the hourly table, the edges by the minute.
    /// Minute rows cover every minute that overlaps `[from, to)`.
    async fn rows(&self, f: &Filter, read: Read) -> Result<Vec<RollupRow>, QueryError> {
        let (minute, hour) = (minute_table(f, read), Period::Hour);
        let from = f.from - f.from.rem_euclid(60);
        let first_hour = from + (3600 - from.rem_euclid(3600)) % 3600;
        let last_hour = f.to - f.to.rem_euclid(3600);
        if first_hour >= last_hour {
            return self.scan(minute.table(), from, f.to, f, read).await;
        }
        let mut rows = self
            .scan(hour.table(), first_hour, last_hour, f, read)
            .await?;
        rows.extend(self.scan(minute.table(), from, first_hour, f, read).await?);
        rows.extend(self.scan(minute.table(), last_hour, f.to, f, read).await?);
        Ok(rows)
    }
}

/// How rollup rows are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Every row with its service, route, consumer and upstream target.
    Names,
    /// Every row, without the names (they come back empty).
    Counts,
}

impl Read {
    /// The name columns this read selects, each followed by `, `.
    fn names(self) -> &'static str {
        match self {
            Read::Names => "service, route, consumer, upstream, ",
            Read::Counts => "",
        }
    }
}

/// The minute rows to read: without filters or names, the table by status alone.
fn minute_table(f: &Filter, read: Read) -> Period {
    let unfiltered = f.service.is_none() && f.route.is_none() && f.consumer.is_none();
    if unfiltered && read != Read::Names {
        Period::MinuteTotal
    } else {
        Period::Minute
    }
}

impl Queries for Embedded {
    fn summary<'a>(&'a self, f: &'a Filter) -> QueryFuture<'a, Summary> {
        Box::pin(async move { Ok(aggregate::summary(&self.rows(f, Read::Counts).await?)) })
    }

    fn timeseries<'a>(&'a self, f: &'a Filter, step: i64) -> QueryFuture<'a, Vec<Point>> {
        Box::pin(async move {
            let from = f.from - f.from.rem_euclid(step.min(3600));
            let period = if step >= 3600 {
                Period::Hour
            } else {
                minute_table(f, Read::Counts)
            };
            let rows = self.series_rows(period.table(), from, f.to, f).await?;
            Ok(aggregate::timeseries(&rows, step))
        })
    }

    fn status_codes<'a>(&'a self, f: &'a Filter) -> QueryFuture<'a, Vec<StatusCount>> {
        Box::pin(async move { Ok(aggregate::status_codes(&self.rows(f, Read::Counts).await?)) })
    }

    fn top<'a>(&'a self, f: &'a Filter, by: TopBy, limit: usize) -> QueryFuture<'a, Vec<TopEntry>> {
        Box::pin(async move { Ok(aggregate::top(&self.rows(f, Read::Names).await?, by, limit)) })
    }

    fn events<'a>(&'a self, f: &'a Filter, limit: usize) -> QueryFuture<'a, Vec<RecentEvent>> {
        Box::pin(async move {
            let mut q = QueryBuilder::new(
                "SELECT timestamp_us, request_id, service, route, consumer, method, path, status, \
                 latency_us, client_ip FROM recent",
            );
            push_filter(&mut q, f, "timestamp_us", 1_000_000);
            q.push(" ORDER BY timestamp_us DESC LIMIT ")
                .push_bind(limit as i64);
            let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
            Ok(rows
                .iter()
                .map(|r| RecentEvent {
                    timestamp_us: r.get::<i64, _>(0) as u64,
                    request_id: r.get(1),
                    service: r.get(2),
                    route: r.get(3),
                    consumer: r.get(4),
                    method: r.get(5),
                    path: r.get(6),
                    status: r.get::<i64, _>(7) as u16,
                    latency_ms: r.get::<i64, _>(8) as f64 / 1000.0,
                    client_ip: r.get(9),
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;
    use crate::sink::{Batch, Sink};

    #[tokio::test]
    async fn batches_roll_up_by_minute_and_answer_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(
            dir.path(),
            std::time::Duration::from_secs(86_400 * 365 * 100),
        )
        .await
        .unwrap();
        // Three codes: 200, 429 and, for every tenth request, a slow 204 (a second 2xx code
        // in the same minute, which the series reads together with the 200s).
        let events: Vec<_> = (0..100)
            .map(|i| {
                let mut e = event(i);
                if i % 10 == 4 {
                    (e.status, e.total_latency_us) = (204, 50_000 + i);
                }
                e.cache_hit = i % 5 == 0;
                e
            })
            .collect();
        let first_part = Batch::new(&events[..60]);
        store.write(&first_part, false).await.unwrap();
        store
            .write(&Batch::new(&events[60..]), false)
            .await
            .unwrap();
        // A retried batch that was stored already is not counted again.
        store.write(&first_part, true).await.unwrap();
        let first = (events[0].timestamp_us / 1_000_000) as i64;
        let all = Filter {
            from: first,
            to: first + 3600,
            ..Filter::default()
        };
        let s = store.summary(&all).await.unwrap();
        assert_eq!((s.requests, s.rate_limited, s.client_errors), (100, 10, 10));
        assert_eq!(s.cache_hits, 20);
        assert!((s.p50_ms - 1.05).abs() / 1.05 < 0.05, "{}", s.p50_ms);
        let limited = Filter {
            status_class: Some(4),
            ..all.clone()
        };
        assert_eq!(store.summary(&limited).await.unwrap().requests, 10);
        let gets = Filter {
            route: Some("get".into()),
            ..all.clone()
        };
        assert_eq!(store.summary(&gets).await.unwrap().requests, 50);
        let recent = store.events(&all, 5).await.unwrap();
        assert_eq!(recent.len(), 5);
        assert_eq!(recent[0].request_id, "req-99");
        let codes = store.status_codes(&all).await.unwrap();
        assert_eq!(
            codes,
            [
                StatusCount {
                    status: 200,
                    requests: 80
                },
                StatusCount {
                    status: 204,
                    requests: 10
                },
                StatusCount {
                    status: 429,
                    requests: 10
                }
            ]
        );
        // The series by status class: its minute's percentiles are those of the summary,
        // which merges the codes' histograms one by one.
        let series = store.timeseries(&all, 60).await.unwrap();
        assert_eq!(series.len(), 1);
        let p = &series[0];
        assert_eq!(
            (p.requests, p.status_2xx, p.status_4xx, p.rate_limited),
            (100, 90, 10, 10)
        );
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms),
            (s.p50_ms, s.p95_ms, s.p99_ms)
        );
        assert!(s.p95_ms > 45.0 && s.p50_ms < 1.1, "{s:?}");
    }

    /// Rollups keep the target that served each request; a store made before they did
    /// keeps its rows (with no target) when it is opened again.
    #[tokio::test]
    async fn rollups_answer_by_upstream_target_and_old_stores_are_moved_over() {
        let dir = tempfile::tempdir().unwrap();
        let old = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.path().join("analytics.db"))
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE rollup_minute (start INTEGER NOT NULL, service TEXT NOT NULL, \
             route TEXT NOT NULL, consumer TEXT NOT NULL, status INTEGER NOT NULL, \
             requests INTEGER NOT NULL, rate_limited INTEGER NOT NULL, auth_failed INTEGER NOT NULL, \
             bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, latency BLOB NOT NULL, \
             PRIMARY KEY (start, service, route, consumer, status)) WITHOUT ROWID; \
             INSERT INTO rollup_minute VALUES (1795000000 - 60, 'pytbak', 'get', '', 200, 7, 0, 0, 0, 0, x'');",
        )
        .execute(&old)
        .await
        .unwrap();
        old.close().await;
        let year = std::time::Duration::from_secs(86_400 * 365);
        let store = Embedded::open(dir.path(), year).await.unwrap();
        let events: Vec<_> = (0..30)
            .map(|i| {
                let mut e = event(i);
                e.upstream_addr = match i % 3 {
                    0 => None,
                    1 => Some("10.0.0.1:80".into()),
                    _ => Some("10.0.0.2:80".into()),
                };
                e
            })
            .collect();
        store.write(&Batch::new(&events), false).await.unwrap();
        let first = (events[0].timestamp_us / 1_000_000) as i64;
        let all = Filter {
            from: first - 120,
            to: first + 3600,
            ..Filter::default()
        };
        let top = store.top(&all, TopBy::Upstream, 10).await.unwrap();
        let names: Vec<(&str, u64)> = top.iter().map(|t| (t.name.as_str(), t.requests)).collect();
        assert_eq!(names, [("10.0.0.1:80", 10), ("10.0.0.2:80", 10)]);
        // By service: the per-minute rows by name, where the old row was.
        let pytbak = Filter {
            service: Some("pytbak".into()),
            ..all
        };
        let s = store.summary(&pytbak).await.unwrap();
        assert_eq!(s.requests, 37, "the old row kept");
    }

    /// A store whose rollups predate the cache-hit count gains the column (its rows count
    /// none) and counts hits from then on.
    #[tokio::test]
    async fn old_rollups_gain_the_cache_hit_count() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("analytics.db"))
            .create_if_missing(true);
        let old = sqlx::sqlite::SqlitePool::connect_with(options)
            .await
            .unwrap();
        let ddl = include_str!("../../../migrations/analytics-sqlite/001_rollups.sql")
            .replace("{rollup}", "rollup_minute");
        let kept: Vec<&str> = ddl.lines().filter(|l| !l.contains("cache_hits")).collect();
        let without = kept.join("\n");
        sqlx::raw_sql(&without).execute(&old).await.unwrap();
        old.close().await;
        let year = std::time::Duration::from_secs(86_400 * 365);
        let store = Embedded::open(dir.path(), year).await.unwrap();
        let events: Vec<_> = (0..10)
            .map(|i| {
                let mut e = event(i);
                e.cache_hit = i < 3;
                e
            })
            .collect();
        store.write(&Batch::new(&events), false).await.unwrap();
        let first = (events[0].timestamp_us / 1_000_000) as i64;
        let route = Filter {
            from: first,
            to: first + 60,
            route: Some("get".into()),
            ..Filter::default()
        };
        let s = store.summary(&route).await.unwrap();
        assert_eq!((s.requests, s.cache_hits), (5, 2));
    }
}
