//! Answers computed from rollup rows (the embedded store's), in one pass each.
use super::{Point, StatusCount, Summary, TopBy, TopEntry};
use crate::histogram::Histogram;
use std::collections::{BTreeMap, HashMap};

/// Requests of one minute (or hour) with the same service, route, consumer and status.
#[derive(Debug, Clone, Default)]
pub struct RollupRow {
    /// The period's first second (a minute or an hour).
    pub start: i64,
    pub service: String,
    pub route: String,
    pub consumer: String,
    /// The upstream target that served the requests (`host:port`), or empty.
    pub upstream: String,
    pub status: u16,
    pub requests: u64,
    pub rate_limited: u64,
    pub auth_failed: u64,
    pub cache_hits: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The latency histogram as stored (`Histogram::to_bytes`).
    pub latency: Vec<u8>,
}

/// Microseconds to milliseconds, kept to the microsecond.
fn ms(us: f64) -> f64 {
    us.round() / 1000.0
}

pub fn summary(rows: &[RollupRow]) -> Summary {
    let mut s = Summary::default();
    let mut latency = Histogram::default();
    for r in rows {
        s.count(r.status, r.requests, r.rate_limited, r.auth_failed);
        s.cache_hits += r.cache_hits;
        s.bytes_in += r.bytes_in;
        s.bytes_out += r.bytes_out;
        latency.merge_bytes(&r.latency);
    }
    (s.p50_ms, s.p95_ms, s.p99_ms) = percentiles(&latency);
    s
}

fn percentiles(h: &Histogram) -> (f64, f64, f64) {
    let [p50, p95, p99] = h.quantiles([0.5, 0.95, 0.99]);
    (ms(p50), ms(p95), ms(p99))
}

/// One period's traffic as the time series reads it (see `Queries::timeseries`): its requests
/// by status class and the rate-limited ones in `counts`, and its latency histogram's bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesRow {
    pub counts: Point,
    pub latency: Vec<u8>,
}

pub fn timeseries(rows: &[SeriesRow], step: i64) -> Vec<Point> {
    let mut buckets: BTreeMap<i64, (Point, Histogram)> = BTreeMap::new();
    for r in rows {
        let start = r.counts.start - r.counts.start.rem_euclid(step);
        let (p, h) = buckets.entry(start).or_insert_with(|| {
            (
                Point {
                    start,
                    ..Point::default()
                },
                Histogram::default(),
            )
        });
        p.add(&r.counts);
        h.merge_bytes(&r.latency);
    }
    buckets
        .into_values()
        .map(|(mut p, h)| {
            (p.p50_ms, p.p95_ms, p.p99_ms) = percentiles(&h);
            p
        })
        .collect()
}

pub fn status_codes(rows: &[RollupRow]) -> Vec<StatusCount> {
    let mut by: HashMap<u16, u64> = HashMap::new();
    for r in rows {
        *by.entry(r.status).or_default() += r.requests;
    }
    let mut out: Vec<StatusCount> = by
        .into_iter()
        .map(|(status, requests)| StatusCount { status, requests })
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.status.cmp(&b.status)));
    out
}

pub fn top(rows: &[RollupRow], by: TopBy, limit: usize) -> Vec<TopEntry> {
    let mut groups: HashMap<&str, (TopEntry, Histogram)> = HashMap::new();
    for r in rows {
        let name = match by {
            TopBy::Route => &r.route,
            TopBy::Consumer => &r.consumer,
            // Requests that never reached a target are no target's.
            TopBy::Upstream if r.upstream.is_empty() => continue,
            TopBy::Upstream => &r.upstream,
        };
        let (e, h) = groups.entry(name).or_insert_with(|| {
            let entry = TopEntry {
                name: name.clone(),
                requests: 0,
                errors: 0,
                rate_limited: 0,
                p95_ms: 0.0,
            };
            (entry, Histogram::default())
        });
        e.requests += r.requests;
        if r.status >= 400 {
            e.errors += r.requests;
        }
        e.rate_limited += r.rate_limited;
        h.merge_bytes(&r.latency);
    }
    let mut out: Vec<TopEntry> = groups
        .into_values()
        .map(|(mut e, h)| {
            e.p95_ms = ms(h.quantile(0.95));
            e
        })
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.name.cmp(&b.name)));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: i64, route: &str, status: u16, requests: u64, latency_us: u64) -> RollupRow {
        let mut h = Histogram::default();
        (0..requests).for_each(|_| h.record(latency_us));
        let latency = h.to_bytes();
        RollupRow {
            start: minute,
            route: route.into(),
            consumer: "ann".into(),
            status,
            requests,
            rate_limited: if status == 429 { requests } else { 0 },
            latency,
            ..RollupRow::default()
        }
    }

    fn rows() -> Vec<RollupRow> {
        vec![
            row(0, "get", 200, 90, 1000),
            row(0, "get", 429, 5, 100),
            row(60, "post", 500, 5, 20_000),
            row(300, "get", 200, 10, 1000),
        ]
    }

    #[test]
    fn a_summary_adds_up_rows_and_merges_latency() {
        let s = summary(&rows());
        assert_eq!(
            (s.requests, s.client_errors, s.server_errors, s.rate_limited),
            (110, 5, 5, 5)
        );
        assert!((s.p50_ms - 1.0).abs() < 0.05, "{}", s.p50_ms);
        assert!((s.p99_ms - 20.0).abs() < 1.0, "{}", s.p99_ms);
    }

    /// `rows()` by minute, as the embedded store's series reads them.
    fn series() -> Vec<SeriesRow> {
        let minute = |start, ok, client_errors, server_errors, latency: &[&RollupRow]| {
            let mut h = Histogram::default();
            latency.iter().for_each(|r| h.merge_bytes(&r.latency));
            SeriesRow {
                counts: Point {
                    start,
                    requests: ok + client_errors + server_errors,
                    status_2xx: ok,
                    status_4xx: client_errors,
                    status_5xx: server_errors,
                    rate_limited: client_errors,
                    ..Point::default()
                },
                latency: h.to_bytes(),
            }
        };
        let r = rows();
        vec![
            minute(0, 90, 5, 0, &[&r[0], &r[1]]),
            minute(60, 0, 0, 5, &[&r[2]]),
            minute(300, 10, 0, 0, &[&r[3]]),
        ]
    }

    #[test]
    fn timeseries_buckets_by_step_and_status_class() {
        let five = timeseries(&series(), 300);
        assert_eq!(five.len(), 2);
        assert_eq!(
            (
                five[0].start,
                five[0].requests,
                five[0].status_4xx,
                five[0].status_5xx
            ),
            (0, 100, 5, 5)
        );
        assert!((five[0].p50_ms - 1.0).abs() < 0.05, "{}", five[0].p50_ms);
        assert!((five[0].p99_ms - 20.0).abs() < 1.0, "{}", five[0].p99_ms);
        assert_eq!(timeseries(&series(), 60).len(), 3);
    }

    #[test]
    fn codes_and_tops_sort_busiest_first() {
        let codes = status_codes(&rows());
        assert_eq!(
            codes[0],
            StatusCount {
                status: 200,
                requests: 100
            }
        );
        let top = top(&rows(), TopBy::Route, 1);
        assert_eq!(
            (top.len(), top[0].name.as_str(), top[0].errors),
            (1, "get", 5)
        );
    }
}
