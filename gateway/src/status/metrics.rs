//! Prometheus metrics of the traffic the proxy served.
//!
//! The proxy records each finished request here. Counters live in a few shards, each behind a
//! mutex held only for a map update (never across an await), so concurrent requests rarely
//! meet. Rendering walks the shards and writes Prometheus' text format.
use hashbrown::HashTable;
use std::collections::HashMap;
use std::fmt::Write;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tollgate_analytics::RequestEvent;

/// Upper bounds (seconds, Prometheus' base unit) of the latency buckets; the last is +Inf.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
const SHARDS: usize = 16;

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len() + 1],
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, us: u64) {
        let seconds = us as f64 / 1_000_000.0;
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_seconds += seconds;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
    }
}

/// Service and route.
type Labels = (Arc<str>, Arc<str>);

/// Everything counted for one service and route, so that a request takes one map lookup.
#[derive(Default)]
struct Series {
    /// Requests by status code.
    statuses: Vec<(u16, u64)>,
    total_latency: Histogram,
    /// Only once a request reached the upstream.
    upstream_latency: Option<Histogram>,
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
    requests: HashMap<(Labels, u16), u64>,
    total_latency: HashMap<Labels, Histogram>,
    upstream_latency: HashMap<Labels, Histogram>,
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
        match series
            .statuses
            .iter_mut()
            .find(|(code, _)| *code == e.status)
        {
            Some((_, n)) => *n += 1,
            None => series.statuses.push((e.status, 1)),
        }
        series.total_latency.observe(e.total_latency_us);
        if e.upstream_latency_us > 0 {
            series
                .upstream_latency
                .get_or_insert_default()
                .observe(e.upstream_latency_us);
        }
        if e.upstream_failed {
            *s.upstream_errors
                .entry(e.service.clone().unwrap_or_else(empty))
                .or_default() += 1;
        }
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
                let total = all.total_latency.entry(k.clone()).or_default();
                total.merge(&series.total_latency);
                if let Some(upstream) = &series.upstream_latency {
                    all.upstream_latency
                        .entry(k.clone())
                        .or_default()
                        .merge(upstream);
                }
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
        for (((svc, route), code), n) in requests {
            let _ = writeln!(
                out,
                "tollgate_http_requests_total{{service=\"{}\",route=\"{}\",code=\"{code}\"}} {n}",
                esc(&svc),
                esc(&route)
            );
        }
        histogram(
            &mut out,
            "tollgate_request_latency_seconds",
            "Total request latency seen by clients, in seconds.",
            all.total_latency,
        );
        histogram(
            &mut out,
            "tollgate_upstream_latency_seconds",
            "Time to the upstream's response head, in seconds.",
            all.upstream_latency,
        );
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

fn histogram(out: &mut String, name: &str, help: &str, data: HashMap<Labels, Histogram>) {
    header(out, name, help, "histogram");
    let mut data: Vec<_> = data.into_iter().collect();
    data.sort_by(|a, b| a.0.cmp(&b.0));
    for ((svc, route), h) in data {
        let labels = format!("service=\"{}\",route=\"{}\"", esc(&svc), esc(&route));
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_seconds);
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
    for b in balancers {
        for m in &b.members {
            let current = b.health_of(m);
            for h in [Health::Healthy, Health::Unhealthy, Health::HealthchecksOff] {
                let on = u8::from(h == current);
                let state = h.as_str().to_ascii_lowercase();
                let _ = writeln!(
                    out,
                    "tollgate_upstream_target_health{{{},state=\"{state}\"}} {on}",
                    labels(b, m)
                );
            }
        }
    }
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
