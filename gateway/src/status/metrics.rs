//! Prometheus metrics of the traffic the proxy served.
//!
//! The proxy records each finished request here. Counters live in a few shards, each behind a
//! mutex held only for a map update (never across an await), so concurrent requests rarely
//! meet. Rendering walks the shards and writes Prometheus' text format.
pub mod kong;

use hashbrown::HashTable;
use std::collections::HashMap;
use std::fmt::Write;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tollgate_analytics::RequestEvent;

/// Upper bounds (seconds, Prometheus' base unit) of Tollgate's latency buckets; the last is +Inf.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
/// Kong's buckets (milliseconds) of `kong_kong_latency_ms` (kong/plugins/prometheus/exporter.lua).
const KONG_LATENCY_BUCKETS: [f64; 17] = [
    1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0,
    3000.0, 6000.0,
];
/// Kong's buckets (milliseconds) of `kong_upstream_latency_ms` and `kong_request_latency_ms`.
const UPSTREAM_LATENCY_BUCKETS: [f64; 13] = [
    25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0,
];
const SHARDS: usize = 16;

/// One latency histogram: its name, help, buckets and unit.
struct Scale {
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
    /// Microseconds per unit (1e6: seconds; 1e3: milliseconds).
    us_per_unit: f64,
}

const TOTAL_SECONDS: Scale = Scale {
    name: "tollgate_request_latency_seconds",
    help: "Total request latency seen by clients, in seconds.",
    buckets: &BUCKETS,
    us_per_unit: 1e6,
};
const UPSTREAM_SECONDS: Scale = Scale {
    name: "tollgate_upstream_latency_seconds",
    help: "Time to the upstream's response head, in seconds.",
    buckets: &BUCKETS,
    us_per_unit: 1e6,
};
const KONG_REQUEST_MS: Scale = Scale {
    name: "kong_request_latency_ms",
    help: "Total latency incurred during requests for each service/route in Kong",
    buckets: &UPSTREAM_LATENCY_BUCKETS,
    us_per_unit: 1e3,
};
const KONG_UPSTREAM_MS: Scale = Scale {
    name: "kong_upstream_latency_ms",
    help: "Latency added by upstream response for each service/route in Kong",
    buckets: &UPSTREAM_LATENCY_BUCKETS,
    us_per_unit: 1e3,
};
const KONG_KONG_MS: Scale = Scale {
    name: "kong_kong_latency_ms",
    help: "Latency added by Kong and enabled plugins for each service/route in Kong",
    buckets: &KONG_LATENCY_BUCKETS,
    us_per_unit: 1e3,
};

/// Counts by bucket (up to Kong's 17 and +Inf) and the sum, in a `Scale`'s unit.
#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; 18],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, us: u64, scale: &Scale) {
        let value = us as f64 / scale.us_per_unit;
        let i = scale
            .buckets
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(scale.buckets.len());
        self.counts[i] += 1;
        self.sum += value;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

/// The histograms of one service and route, in `SCALES` order.
type Latencies = [Histogram; 5];
/// Tollgate's and Kong's latency histograms; the upstream ones (1 and 3) only count requests
/// that reached the upstream.
const SCALES: [&Scale; 5] = [
    &TOTAL_SECONDS,
    &UPSTREAM_SECONDS,
    &KONG_REQUEST_MS,
    &KONG_UPSTREAM_MS,
    &KONG_KONG_MS,
];

/// Service and route.
type Labels = (Arc<str>, Arc<str>);
/// Requests of a service and route by status code and whether the upstream answered.
type StatusCounts = ((Labels, (u16, bool)), u64);

/// Everything counted for one service and route, so that a request takes one map lookup.
#[derive(Default)]
struct Series {
    /// Requests by status code and whether the upstream answered (Kong's `source`).
    statuses: Vec<((u16, bool), u64)>,
    latencies: Latencies,
    /// Bytes from and to the client (Kong's `ingress` and `egress`).
    bytes: (u64, u64),
}

#[derive(Default)]
struct Shard {
    /// Found with the hash that chose the shard, by the event's own texts: one hash and no
    /// label copies per request.
    series: HashTable<(Labels, Series)>,
    upstream_errors: HashMap<Arc<str>, u64>,
}

/// All shards merged, by metric, for rendering.
#[derive(Default)]
struct Totals {
    requests: HashMap<(Labels, (u16, bool)), u64>,
    latencies: HashMap<Labels, Latencies>,
    bytes: HashMap<Labels, (u64, u64)>,
    upstream_errors: HashMap<Arc<str>, u64>,
}

/// The gateway's traffic metrics.
pub struct Metrics {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::fast::RandomState,

    pub config_reloads: AtomicU64,
    pub config_reload_failures: AtomicU64,
    /// The analytics pipeline's own health, once it runs.
    pub analytics: std::sync::OnceLock<Arc<tollgate_analytics::pipeline::Metrics>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            config_reloads: AtomicU64::new(0),
            config_reload_failures: AtomicU64::new(0),
            analytics: std::sync::OnceLock::new(),
        }
    }
}

fn empty() -> Arc<str> {
    Arc::from("")
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, e: &RequestEvent) {
        let (service, route) = (e.service.as_deref(), e.route.as_deref());
        let key = (service.unwrap_or(""), route.unwrap_or(""));
        let hash = self.hasher.hash_one(key);
        // Bits the table does not use for its slots or tags pick the shard.
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let (_, series) = s
            .series
            .entry(
                hash,
                |((service, route), _)| (&**service, &**route) == key,
                |((service, route), _)| self.hasher.hash_one((&**service, &**route)),
            )
            .or_insert_with(|| {
                let labels = (
                    e.service.clone().unwrap_or_else(empty),
                    e.route.clone().unwrap_or_else(empty),
                );
                (labels, Series::default())
            })
            .into_mut();
        let upstream = e.upstream_latency_us > 0 && !e.upstream_failed;
        let key = (e.status, upstream);
        match series.statuses.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => series.statuses.push((key, 1)),
        }
        let l = &mut series.latencies;
        l[0].observe(e.total_latency_us, SCALES[0]);
        l[2].observe(e.total_latency_us, SCALES[2]);
        l[4].observe(e.gateway_latency_us, SCALES[4]);
        if e.upstream_latency_us > 0 {
            l[1].observe(e.upstream_latency_us, SCALES[1]);
            l[3].observe(e.upstream_latency_us, SCALES[3]);
        }
        series.bytes.0 += e.bytes_in;
        series.bytes.1 += e.bytes_out;
        if e.upstream_failed {
            *s.upstream_errors
                .entry(e.service.clone().unwrap_or_else(empty))
                .or_default() += 1;
        }
    }

    /// Requests counted so far.
    pub fn requests_total(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| {
                let s = shard.lock().unwrap_or_else(|p| p.into_inner());
                let counts = s.series.iter().flat_map(|(_, series)| &series.statuses);
                counts.map(|(_, n)| n).sum::<u64>()
            })
            .sum()
    }

    /// Everything, merged across shards, in Prometheus' text exposition format.
    /// `counters` and `gauges` are extra `(name, help, value)` lines from the rest of the gateway.
    pub fn render(&self, counters: &[(&str, &str, u64)], gauges: &[(&str, &str, f64)]) -> String {
        let mut all = Totals::default();
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (k, series) in s.series.iter() {
                for (code, n) in &series.statuses {
                    *all.requests.entry((k.clone(), *code)).or_default() += n;
                }
                let merged = all.latencies.entry(k.clone()).or_default();
                for (m, h) in merged.iter_mut().zip(&series.latencies) {
                    m.merge(h);
                }
                let bytes = all.bytes.entry(k.clone()).or_default();
                bytes.0 += series.bytes.0;
                bytes.1 += series.bytes.1;
            }
            for (k, v) in &s.upstream_errors {
                *all.upstream_errors.entry(k.clone()).or_default() += v;
            }
        }
        let mut out = String::new();
        header(
            &mut out,
            "tollgate_http_requests_total",
            "Requests served, by service, route and status code.",
            "counter",
        );
        let mut requests: Vec<_> = all.requests.into_iter().collect();
        requests.sort();
        // Tollgate's counter has no `source`: both sources of a code add up.
        let mut by_code: std::collections::BTreeMap<(&Labels, u16), u64> = Default::default();
        for ((labels, (code, _)), n) in &requests {
            *by_code.entry((labels, *code)).or_default() += n;
        }
        for (((svc, route), code), n) in by_code {
            let _ = writeln!(
                out,
                "tollgate_http_requests_total{{service=\"{}\",route=\"{}\",code=\"{code}\"}} {n}",
                esc(svc),
                esc(route)
            );
        }
        let mut latencies: Vec<_> = all.latencies.into_iter().collect();
        latencies.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, scale) in SCALES.iter().enumerate().take(2) {
            histogram(&mut out, scale, &latencies, i, "");
        }
        header(
            &mut out,
            "tollgate_upstream_errors_total",
            "Requests whose upstream could not be reached or timed out.",
            "counter",
        );
        let mut errors: Vec<_> = all.upstream_errors.into_iter().collect();
        errors.sort();
        for (svc, n) in errors {
            let _ = writeln!(
                out,
                "tollgate_upstream_errors_total{{service=\"{}\"}} {n}",
                esc(&svc)
            );
        }
        let own = [
            (
                "tollgate_config_reloads_total",
                "Snapshots built and swapped in.",
                self.config_reloads.load(Ordering::Relaxed),
            ),
            (
                "tollgate_config_reload_failures_total",
                "Configuration changes that failed to build and were not applied.",
                self.config_reload_failures.load(Ordering::Relaxed),
            ),
        ];
        unlabelled(&mut out, "counter", &own);
        unlabelled(&mut out, "counter", counters);
        if let Some(a) = self.analytics.get() {
            pipeline_metrics(&mut out, a);
        }
        unlabelled(&mut out, "gauge", gauges);
        kong::traffic(&mut out, &requests, &latencies, all.bytes);
        out
    }
}

/// The analytics pipeline: what went in, out, to disk and back, and what was lost.
fn pipeline_metrics(out: &mut String, m: &tollgate_analytics::pipeline::Metrics) {
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    let counters = [
        (
            "tollgate_analytics_events_enqueued_total",
            "Events the proxy queued.",
            load(&m.enqueued),
        ),
        (
            "tollgate_analytics_events_dropped_total",
            "Events lost: the queue was full or the spill file failed.",
            load(&m.dropped),
        ),
        (
            "tollgate_analytics_events_flushed_total",
            "Events the sink acknowledged.",
            load(&m.flushed),
        ),
        (
            "tollgate_analytics_events_spilled_total",
            "Events written to the spill file while the sink failed.",
            load(&m.spilled),
        ),
        (
            "tollgate_analytics_events_replayed_total",
            "Spilled events the sink later acknowledged.",
            load(&m.replayed),
        ),
        (
            "tollgate_analytics_sink_errors_total",
            "Batch writes the sink failed.",
            load(&m.sink_errors),
        ),
        (
            "tollgate_analytics_wal_errors_total",
            "Events that could not be written ahead (TOLLGATE_ANALYTICS_DURABILITY=wal).",
            load(&m.wal_errors),
        ),
    ];
    unlabelled(out, "counter", &counters);
    let gauges = [
        (
            "tollgate_analytics_events_queued",
            "Events waiting for the batcher.",
            m.queued(),
        ),
        (
            "tollgate_analytics_spill_batches",
            "Batches waiting in the spill file.",
            load(&m.spill_pending),
        ),
    ];
    unlabelled(out, "gauge", &gauges);
    let name = "tollgate_analytics_batch_write_seconds";
    header(out, name, "Time the sink took per batch.", "summary");
    let _ = writeln!(out, "{name}_sum {}", load(&m.batch_micros) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", load(&m.batches));
}

/// Metrics without labels, one value each: `(name, help, value)`.
fn unlabelled(out: &mut String, ty: &str, metrics: &[(&str, &str, impl std::fmt::Display)]) {
    for (name, help, v) in metrics {
        header(out, name, help, ty);
        let _ = writeln!(out, "{name} {v}");
    }
}

fn header(out: &mut String, name: &str, help: &str, ty: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
}

/// Histogram `i` of every series, as `scale` says; `extra` labels follow service and route.
fn histogram(out: &mut String, scale: &Scale, data: &[(Labels, Latencies)], i: usize, extra: &str) {
    let name = scale.name;
    header(out, name, scale.help, "histogram");
    for ((svc, route), hs) in data {
        let h = &hs[i];
        let labels = format!("service=\"{}\",route=\"{}\"{extra}", esc(svc), esc(route));
        let mut cumulative = 0;
        for (b, n) in h.counts.iter().take(scale.buckets.len() + 1).enumerate() {
            cumulative += n;
            let le = scale
                .buckets
                .get(b)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Escapes a label value for the text format.
/// Each upstream target's health and circuit breaker, one series per state with the
/// current one at 1 (as Kong's `kong_upstream_target_health` does), and its attempts.
pub fn render_targets(balancers: &[Arc<crate::balancer::Balancer>], out: &mut String) {
    use crate::balancer::health::{now_ms, BreakerState, Health};
    let now = now_ms();
    header(
        out,
        "tollgate_upstream_target_health",
        "Health of each upstream target as this node sees it (1 for its current state).",
        "gauge",
    );
    let labels = |b: &crate::balancer::Balancer, m: &crate::balancer::Member| {
        format!(
            "upstream=\"{}\",target=\"{}\",address=\"{}\"",
            esc(&b.name),
            esc(&m.target.target),
            esc(&crate::model::target::format(&m.host, m.port))
        )
    };
    // Kong's name for the same, with its `subsystem` label, written after Tollgate's.
    let mut kong = String::new();
    header(
        &mut kong,
        "kong_upstream_target_health",
        "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated.",
        "gauge",
    );
    for b in balancers {
        for m in &b.members {
            let current = b.health_of(m);
            for h in [Health::Healthy, Health::Unhealthy, Health::HealthchecksOff] {
                let on = u8::from(h == current);
                let state = h.as_str().to_ascii_lowercase();
                let with_state = format!("{},state=\"{state}\"", labels(b, m));
                let _ = writeln!(out, "tollgate_upstream_target_health{{{with_state}}} {on}");
                let _ = writeln!(
                    kong,
                    "kong_upstream_target_health{{{with_state},subsystem=\"http\"}} {on}"
                );
            }
        }
    }
    out.push_str(&kong);
    header(
        out,
        "tollgate_upstream_target_circuit_breaker",
        "Circuit breaker of each upstream target (1 for its current state).",
        "gauge",
    );
    for b in balancers {
        for m in &b.members {
            let current = m.health.breaker(now);
            for s in [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
            ] {
                let on = u8::from(s == current);
                let _ = writeln!(
                    out,
                    "tollgate_upstream_target_circuit_breaker{{{},state=\"{}\"}} {on}",
                    labels(b, m),
                    s.as_str()
                );
            }
        }
    }
    header(
        out,
        "tollgate_upstream_target_attempts_total",
        "Attempts the proxy sent to each upstream target.",
        "counter",
    );
    for b in balancers {
        for m in &b.members {
            let n = m.health.attempts.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tollgate_upstream_target_attempts_total{{{}}} {n}",
                labels(b, m)
            );
        }
    }
}

/// What became of the log plugins' entries, by plugin and destination: sent, dropped (the
/// queue was full), failed (given up after retries), and how many wait now.
pub fn render_log_deliveries(all: &[Arc<crate::plugins::log_queue::Counts>], out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let labels = |c: &crate::plugins::log_queue::Counts| {
        format!(
            "plugin=\"{}\",destination=\"{}\"",
            c.plugin,
            esc(&c.destination)
        )
    };
    header(
        out,
        "tollgate_log_entries_total",
        "Log plugins' entries by outcome: sent, dropped (queue full), failed (retries given up).",
        "counter",
    );
    for c in all {
        for (outcome, n) in [
            ("sent", &c.sent),
            ("dropped", &c.dropped),
            ("failed", &c.failed),
        ] {
            let _ = writeln!(
                out,
                "tollgate_log_entries_total{{{},outcome=\"{outcome}\"}} {}",
                labels(c),
                n.load(Relaxed)
            );
        }
    }
    header(
        out,
        "tollgate_log_queue_entries",
        "Log plugins' entries waiting to be sent.",
        "gauge",
    );
    for c in all {
        let _ = writeln!(
            out,
            "tollgate_log_queue_entries{{{}}} {}",
            labels(c),
            c.waiting.load(Relaxed)
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: u16, us: u64) -> RequestEvent {
        RequestEvent {
            timestamp_us: 0,
            request_id: "r".into(),
            service: Some("svc".into()),
            route: Some("ro\"ute".into()),
            consumer_id: None,
            consumer: None,
            credential_id: None,
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            route_path: None,
            status,
            total_latency_us: us,
            upstream_latency_us: us,
            gateway_latency_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            client_ip: [127, 0, 0, 1].into(),
            user_agent: None,
            rate_limited: false,
            auth_failed: false,
            upstream_failed: status == 502,
            upstream_addr: None,
            grpc_status: None,
            ws_close_code: None,
            cache_hit: false,
            node: "n".into(),
        }
    }

    #[test]
    fn counts_and_histograms_add_up() {
        let m = Metrics::default();
        m.record(&event(200, 500));
        m.record(&event(200, 3_000));
        m.record(&event(502, 70_000_000));
        let text = m.render(&[], &[("tollgate_up", "Up.", 1.0)]);
        assert!(text.contains(
            "tollgate_http_requests_total{service=\"svc\",route=\"ro\\\"ute\",code=\"200\"} 2"
        ));
        assert!(text.contains(
            "tollgate_request_latency_seconds_bucket{service=\"svc\",route=\"ro\\\"ute\",le=\"0.001\"} 1"
        ));
        assert!(text.contains(
            "tollgate_request_latency_seconds_bucket{service=\"svc\",route=\"ro\\\"ute\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "tollgate_request_latency_seconds_bucket{service=\"svc\",route=\"ro\\\"ute\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("tollgate_upstream_errors_total{service=\"svc\"} 1"));
        assert!(text.contains("tollgate_up 1"));
    }
}
