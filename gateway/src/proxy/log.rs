//! The log phase: when the response's last byte has gone (or the client went away), the
//! request becomes one `RequestEvent`, counted in the metrics and handed to the analytics
//! pipeline with a `try_send` that never waits.
use super::ProxyBody;
use crate::snapshot::ConsumerEntry;
use crate::status::metrics::Metrics;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tollgate_analytics::{Recorder, RequestEvent};

/// Where finished requests are recorded.
pub struct Logger {
    pub metrics: Arc<Metrics>,
    pub analytics: Option<Recorder>,
    /// This node's name in events.
    pub node: Arc<str>,
}

impl Logger {
    /// Hands the events this thread recorded to the analytics pipeline. Proxy workers call it
    /// on `tollgate_analytics::pipeline::HANDOFF_INTERVAL` and once more before they end.
    pub fn hand_over(&self) {
        if let Some(recorder) = &self.analytics {
            recorder.hand_over();
        }
    }
}

/// What the log phase needs to know about a request, filled in as it goes.
pub(super) struct Exchange {
    pub start: Instant,
    pub arrived_us: u64,
    pub request_id: Arc<str>,
    /// The same, ready for the `X-Kong-Request-Id` headers.
    pub request_id_header: http::HeaderValue,
    /// The gateway's `Via` entry for the client's protocol.
    pub via: &'static str,
    pub method: Arc<str>,
    pub host: Arc<str>,
    /// The same, as the `X-Forwarded-Host` value.
    pub host_header: http::HeaderValue,
    pub path: Arc<str>,
    /// The client as `ClientIp` resolved it (the peer unless a trusted proxy named another).
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy: its `X-Forwarded-*` headers are passed on (Kong's rule).
    pub trusted_peer: bool,
    /// The request came over TLS to this gateway.
    pub tls: bool,
    /// The connection it came on, for plugins.
    pub connection: crate::plugins::context::Connection,
    pub user_agent: Option<Arc<str>>,
    pub bytes_in: u64,
    pub service: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    pub route_path: Option<Arc<str>>,
    pub consumer: Option<Arc<ConsumerEntry>>,
    /// The credential it authenticated with.
    pub credential: Option<crate::snapshot::CredentialId>,
    /// The consumer is the anonymous fallback of an authentication plugin.
    pub anonymous: bool,
    /// The plugin that answered instead of the upstream.
    pub rejected_by: Option<&'static str>,
    /// Headers plugins add to the response.
    pub response_headers: crate::plugins::context::AddedHeaders,
    /// Plugins that act on the response or in the log phase.
    pub response_plugins: Vec<Arc<dyn crate::plugins::Handler>>,
    /// Values plugins added to the log entry.
    pub serialized: crate::plugins::context::Serialized,
    pub upstream_addr: Option<Arc<str>>,
    pub upstream_us: u64,
    /// The status the upstream answered, before plugins changed it.
    pub upstream_status: Option<http::StatusCode>,
    /// From arrival until the request went upstream (Kong's proxy latency); `None` until then.
    pub before_upstream_us: Option<u64>,
    pub upstream_failed: bool,
    /// Keeps the target that answered counted in flight until the response is sent.
    pub in_flight: Option<super::destination::InFlight>,
    /// A gRPC call's status, as it reached the client.
    pub grpc_status: Option<u16>,
    /// A WebSocket connection's close code, known when its tunnel closes.
    pub ws_close_code: Option<u16>,
    /// The client's side of a WebSocket handshake, until the upstream answers it.
    pub websocket: Option<hyper::upgrade::OnUpgrade>,
    /// The request carries an `Upgrade` header (only then is it checked for a handshake).
    pub upgrade_header: bool,
    /// Its `Content-Type` says gRPC (`headers::Seen::grpc_content`).
    pub grpc_content: bool,
    /// A switched WebSocket connection, for `handle` to run once the 101 is on its way.
    pub tunnel: Option<Box<super::websocket::Tunnel>>,
    /// Answered from proxy-cache's store.
    pub cache_hit: bool,
    /// The phases' timings on a traced route (see `plugins::context::Phases`).
    pub phases: Option<Arc<crate::plugins::context::Phases>>,
    /// The request is of a deprecated API version: the headers its response carries.
    pub deprecation: Option<Arc<crate::model::api_version::Headers>>,
}

impl Exchange {
    fn event(self, status: u16, bytes_out: u64, node: Arc<str>) -> RequestEvent {
        let total_us = self.start.elapsed().as_micros() as u64;
        RequestEvent {
            timestamp_us: self.arrived_us,
            request_id: self.request_id,
            service: self.service,
            route: self.route,
            consumer_id: self.consumer.as_ref().map(|c| c.id_text.clone()),
            consumer: self.consumer.as_ref().map(|c| c.name.clone()),
            credential_id: self.credential.map(|c| c.text),
            method: self.method,
            host: self.host,
            path: self.path,
            route_path: self.route_path,
            status,
            total_latency_us: total_us,
            upstream_latency_us: self.upstream_us,
            gateway_latency_us: total_us.saturating_sub(self.upstream_us),
            bytes_in: self.bytes_in,
            bytes_out,
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            rate_limited: self.rejected_by == Some("rate-limiting"),
            auth_failed: self.rejected_by.is_some_and(|p| p.ends_with("-auth")),
            upstream_failed: self.upstream_failed,
            upstream_addr: self.upstream_addr,
            grpc_status: self.grpc_status,
            ws_close_code: self.ws_close_code,
            cache_hit: self.cache_hit,
            node,
        }
    }
}

thread_local! {
    /// The standard methods' names and the empty text, made once per thread: each request's
    /// exchange starts from them without an allocation.
    static TEXTS: [Arc<str>; 10] = ["", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH",
        "CONNECT", "TRACE"].map(Arc::from);
}

/// `method` as the text events record.
pub(super) fn method_text(method: &http::Method) -> Arc<str> {
    let i = match method.as_str() {
        "GET" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "HEAD" => 5,
        "OPTIONS" => 6,
        "PATCH" => 7,
        "CONNECT" => 8,
        "TRACE" => 9,
        other => return Arc::from(other),
    };
    TEXTS.with(|t| t[i].clone())
}

/// The empty text, for fields not known yet.
pub(super) fn no_text() -> Arc<str> {
    TEXTS.with(|t| t[0].clone())
}

/// A response body that runs the log phase once it has been sent.
pub struct LoggedBody {
    inner: ProxyBody,
    sent: u64,
    pending: Option<(Box<Exchange>, u16, Arc<Logger>)>,
}

impl LoggedBody {
    pub(super) fn new(
        inner: ProxyBody,
        ex: Exchange,
        status: u16,
        logger: Arc<Logger>,
    ) -> LoggedBody {
        let mut body = LoggedBody {
            inner,
            sent: 0,
            pending: Some((Box::new(ex), status, logger)),
        };
        if body.inner.is_end_stream() {
            body.log();
        }
        body
    }

    /// A body whose exchange is logged elsewhere (a WebSocket's, when its tunnel closes).
    pub(super) fn unlogged(inner: ProxyBody) -> LoggedBody {
        LoggedBody {
            inner,
            sent: 0,
            pending: None,
        }
    }

    fn log(&mut self) {
        if let Some((ex, status, logger)) = self.pending.take() {
            record(ex, status, self.sent, &logger);
        }
    }
}

/// The log phase of a finished exchange: metrics, the plugins' log handlers, analytics.
pub(super) fn record(mut ex: Box<Exchange>, status: u16, bytes_out: u64, logger: &Logger) {
    let plugins = std::mem::take(&mut ex.response_plugins);
    let serialized = std::mem::take(&mut ex.serialized);
    let event = ex.event(status, bytes_out, logger.node.clone());
    logger.metrics.record(&event);
    for p in &plugins {
        p.log(&event, &serialized);
    }
    if let Some(recorder) = &logger.analytics {
        recorder.record(&event);
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                this.sent += f.data_ref().map_or(0, |d| d.len() as u64);
                if let (Some(t), Some((ex, ..))) = (f.trailers_ref(), this.pending.as_mut()) {
                    ex.grpc_status = super::grpc::status_in(t).or(ex.grpc_status);
                }
                if this.inner.is_end_stream() {
                    this.log();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.log(),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    /// A client that went away before the end is logged too.
    fn drop(&mut self) {
        self.log();
    }
}
