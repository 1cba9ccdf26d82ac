//! One proxied (or rejected) request, as the log phase saw it.
use std::net::IpAddr;
use std::sync::Arc;

/// Everything later stages need to know about a finished request, with its texts as `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    /// Unix time of arrival, in microseconds.
    pub timestamp_us: u64,
    pub request_id: T,
    pub service: Option<T>,
    pub route: Option<T>,
    pub consumer_id: Option<T>,
    /// The consumer's username (or its custom id, or id, when it has none).
    pub consumer: Option<T>,
    pub credential_id: Option<T>,
    pub method: T,
    pub host: T,
    pub path: T,
    /// The part of the path the route matched (`/api/get/`).
    pub route_path: Option<T>,
    pub status: u16,
    /// Arrival to the last byte of the response.
    pub total_latency_us: u64,
    /// Time from sending upstream to the upstream's response head; zero when never sent.
    pub upstream_latency_us: u64,
    /// Time the gateway itself spent (total minus upstream).
    pub gateway_latency_us: u64,
    /// Request header and body bytes as the client sent them (the body by `Content-Length`).
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    pub client_ip: IpAddr,
    pub user_agent: Option<T>,
    /// Refused by rate-limiting.
    pub rate_limited: bool,
    /// Refused by an authentication plugin.
    pub auth_failed: bool,
    /// The upstream answered with a connection or timeout failure.
    pub upstream_failed: bool,
    /// `host:port` the request was sent to.
    pub upstream_addr: Option<T>,
    /// A gRPC call's `grpc-status` (the upstream's, or the one the gateway answered with).
    pub grpc_status: Option<u16>,
    /// A WebSocket connection's close code (RFC 6455 §7.4; 1006 when it ended without one).
    pub ws_close_code: Option<u16>,
    /// Answered from proxy-cache's store, without the upstream.
    pub cache_hit: bool,
    /// The gateway node that served it.
    pub node: T,
}

/// The proxy's event. Its texts are shared (`Arc<str>`) because most repeat from request to
/// request (service, route, consumer) and the snapshot already holds them.
pub type RequestEvent = Event<Arc<str>>;

/// An event read in place from the batcher's packed bytes (see `packed`).
pub type EventRef<'a> = Event<&'a str>;

#[cfg(test)]
impl EventRef<'_> {
    /// The event with texts of its own.
    pub fn owned(&self) -> RequestEvent {
        let text = |s: &str| Arc::<str>::from(s);
        let optional = |s: Option<&str>| s.map(text);
        RequestEvent {
            timestamp_us: self.timestamp_us,
            request_id: text(self.request_id),
            service: optional(self.service),
            route: optional(self.route),
            consumer_id: optional(self.consumer_id),
            consumer: optional(self.consumer),
            credential_id: optional(self.credential_id),
            method: text(self.method),
            host: text(self.host),
            path: text(self.path),
            route_path: optional(self.route_path),
            status: self.status,
            total_latency_us: self.total_latency_us,
            upstream_latency_us: self.upstream_latency_us,
            gateway_latency_us: self.gateway_latency_us,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            client_ip: self.client_ip,
            user_agent: optional(self.user_agent),
            rate_limited: self.rate_limited,
            auth_failed: self.auth_failed,
            upstream_failed: self.upstream_failed,
            upstream_addr: optional(self.upstream_addr),
            grpc_status: self.grpc_status,
            ws_close_code: self.ws_close_code,
            cache_hit: self.cache_hit,
            node: text(self.node),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plausible event, different for each `i`.
    pub fn event(i: u64) -> RequestEvent {
        RequestEvent {
            timestamp_us: 1_795_000_000_000_000 + i * 1000,
            request_id: format!("req-{i}").into(),
            service: Some("pytbak".into()),
            route: Some(if i.is_multiple_of(2) { "get" } else { "post" }.into()),
            consumer_id: Some("3d45a73d-4024-4813-b356-43a14ecea702".into()),
            consumer: Some("slow_user".into()),
            credential_id: None,
            method: "GET".into(),
            host: "api.example.com".into(),
            path: format!("/api/get/context/{i}").into(),
            route_path: Some("/api/get/".into()),
            status: if i % 10 == 9 { 429 } else { 200 },
            total_latency_us: 1000 + i,
            upstream_latency_us: 800,
            gateway_latency_us: 200 + i,
            bytes_in: 120,
            bytes_out: 512,
            client_ip: "198.51.100.7".parse().unwrap(),
            user_agent: Some("curl/8.0".into()),
            rate_limited: i % 10 == 9,
            auth_failed: false,
            upstream_failed: false,
            upstream_addr: Some("127.0.0.1:5000".into()),
            grpc_status: None,
            ws_close_code: None,
            cache_hit: false,
            node: "node-1".into(),
        }
    }
}
