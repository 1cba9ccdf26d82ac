//! The same traffic under Kong's Prometheus plugin's names and labels
//! (kong/plugins/prometheus/exporter.lua), so that Kong's Grafana dashboard and alerts work
//! unchanged: `kong_http_requests_total`, the `_ms` latency histograms with Kong's buckets,
//! `kong_bandwidth_bytes`, and the node's `kong_nginx_*`, `kong_datastore_reachable` and
//! `kong_node_info`. Tollgate has one workspace, `default`; the `consumer` label is empty, as
//! in Kong without `per_consumer` (per-consumer traffic is in the analytics instead).
use super::{esc, header, histogram, Labels, Latencies, StatusCounts, SCALES};
use std::collections::HashMap;
use std::fmt::Write;

const WORKSPACE: &str = ",workspace=\"default\"";

/// Requests by status and source, the three latency histograms and bandwidth.
pub(super) fn traffic(
    out: &mut String,
    requests: &[StatusCounts],
    latencies: &[(Labels, Latencies)],
    bytes: HashMap<Labels, (u64, u64)>,
) {
    let name = "kong_http_requests_total";
    header(
        out,
        name,
        "HTTP status codes per consumer/service/route in Kong",
        "counter",
    );
    for (((svc, route), (code, upstream)), n) in requests {
        let source = if *upstream { "service" } else { "kong" };
        let _ = writeln!(
            out,
            "{name}{{service=\"{}\",route=\"{}\",code=\"{code}\",source=\"{source}\"{WORKSPACE},consumer=\"\"}} {n}",
            esc(svc),
            esc(route)
        );
    }
    for (i, scale) in SCALES.iter().enumerate().skip(2) {
        histogram(out, scale, latencies, i, WORKSPACE);
    }
    let name = "kong_bandwidth_bytes";
    header(
        out,
        name,
        "Total bandwidth (ingress/egress) throughput in bytes",
        "counter",
    );
    let mut bytes: Vec<_> = bytes.into_iter().collect();
    bytes.sort();
    for ((svc, route), (ingress, egress)) in bytes {
        for (direction, n) in [("egress", egress), ("ingress", ingress)] {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",route=\"{}\",direction=\"{direction}\"{WORKSPACE},consumer=\"\"}} {n}",
                esc(&svc),
                esc(&route)
            );
        }
    }
}

/// What the node-level metrics say.
pub struct Node<'a> {
    pub node_id: &'a str,
    pub version: &'a str,
    /// Connections accepted since start, and open now.
    pub accepted: u64,
    pub active: u64,
    /// Requests served since start.
    pub requests: u64,
    pub datastore_reachable: bool,
}

/// Kong's node gauges. nginx's `reading`, `writing` and `waiting` connection states have no
/// counterpart here and are left out.
pub fn node(out: &mut String, n: &Node<'_>) {
    let id = esc(n.node_id);
    let name = "kong_nginx_connections_total";
    header(out, name, "Number of connections by subsystem", "gauge");
    for (state, v) in [
        ("accepted", n.accepted),
        ("active", n.active),
        ("handled", n.accepted),
        ("total", n.requests),
    ] {
        let _ = writeln!(
            out,
            "{name}{{node_id=\"{id}\",subsystem=\"http\",state=\"{state}\"}} {v}"
        );
    }
    let name = "kong_nginx_requests_total";
    header(out, name, "Number of requests total", "gauge");
    let _ = writeln!(
        out,
        "{name}{{node_id=\"{id}\",subsystem=\"http\"}} {}",
        n.requests
    );
    let name = "kong_datastore_reachable";
    header(
        out,
        name,
        "Datastore reachable from Kong, 0 is unreachable",
        "gauge",
    );
    let _ = writeln!(out, "{name} {}", u8::from(n.datastore_reachable));
    let name = "kong_node_info";
    header(out, name, "Kong Node metadata information", "gauge");
    let _ = writeln!(
        out,
        "{name}{{node_id=\"{id}\",version=\"{}\"}} 1",
        esc(n.version)
    );
}
