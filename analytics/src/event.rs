//! One proxied (or rejected) request, as the log phase saw it.
use std::net::IpAddr;
use std::sync::Arc;

/// Everything later stages need to know about a finished request.
#[derive(Debug, Clone)]
pub struct RequestEvent {
    /// Unix time of arrival, in microseconds.
    pub timestamp_us: u64,
    pub request_id: Arc<str>,
    pub service: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    pub method: Arc<str>,
    pub host: Arc<str>,
    pub path: Arc<str>,
    pub status: u16,
    /// Whole request as seen by the client, gateway work and upstream wait included.
    pub total_latency_us: u64,
    /// Time from sending upstream to the upstream's response head; zero when never sent.
    pub upstream_latency_us: u64,
    pub client_ip: IpAddr,
    /// The upstream answered with a connection or timeout failure.
    pub upstream_failed: bool,
}
