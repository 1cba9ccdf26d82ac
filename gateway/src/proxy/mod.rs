//! The proxy: the request path from a client to an upstream and back.
//!
//! One straight line per request: normalize and route against the current snapshot, rewrite
//! the request for the upstream, stream it there through a pooled client, stream the answer
//! back with Tollgate's headers, and record the request. Nothing here touches the store or
//! holds a lock across an await.
mod client_ip;
mod coarse_timer;
mod destination;
mod downstream;
pub use downstream::connection_counts;
mod drain;
mod error_page;
pub mod gateway_headers;
mod grpc;
mod headers;
mod log;
pub mod server;
mod upstream;
mod websocket;

use crate::header_numbers;
use crate::plugins::context::{Connection, Shape};
use crate::plugins::{Context, Flow, Reply, RequestBody, UpstreamHeaders};
use crate::router::{path, RequestInfo};
use crate::snapshot::{RouteEntry, ServiceEntry, Snapshot};
use arc_swap::ArcSwap;
use bytes::Bytes;
pub use client_ip::{ip_network, ClientIp};
pub use destination::{Destination, Endpoint};
pub use downstream::{Downstream, Host};
use error_page::Format;
use gateway_headers::{GatewayHeaders, PRODUCT, VIA_HTTP1, VIA_HTTP2};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use log::Exchange;
pub use log::{LoggedBody, Logger};
use std::sync::Arc;
use std::time::Instant;
pub use upstream::Target;
use upstream::UpstreamBody;

/// A response body: the upstream's, streamed, or one the gateway wrote.
pub type ProxyBody = Either<upstream::UpstreamBody, Full<Bytes>>;

/// Headers larger than this in total are refused with 400.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Request targets (path and query) longer than this are refused with 414, as Kong's nginx
/// does with its default `large_client_header_buffers 4 8k`.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Room for a typical upstream request head, so that writing it does not regrow the buffer.
const UPSTREAM_HEAD_CAPACITY: usize = 1024;

/// How many headers the gateway adds to a response: the two latencies, `Via`,
/// `X-Kong-Request-Id`.
const GATEWAY_HEADERS: usize = 4;

/// Shared state of the data plane.
pub struct Proxy {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub logger: Arc<Logger>,
    pub client_ip: ClientIp,
    /// Which of its own headers the gateway adds (Kong's `headers`, `headers_upstream`).
    pub headers: GatewayHeaders,
}

impl Proxy {
    /// Serves one request; always answers (errors become gateway responses).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &Arc<Downstream>,
    ) -> Response<LoggedBody> {
        let seen = headers::seen(req.headers());
        let header_bytes = seen.size;
        let (request_id, request_id_header) = headers::new_request_id();
        let start = Instant::now();
        let mut ex = Exchange {
            start,
            arrived_us: coarse_timer::unix_micros(start),
            request_id,
            request_id_header,
            via: if req.version() == http::Version::HTTP_2 {
                VIA_HTTP2
            } else {
                VIA_HTTP1
            },
            method: log::method_text(req.method()),
            host: log::no_text(),
            host_header: HeaderValue::from_static(""),
            path: req.uri().path().into(),
            client_ip: self.client_ip.resolve(conn.peer.ip(), req.headers()),
            trusted_peer: self.client_ip.is_trusted(conn.peer.ip()),
            tls: conn.tls.is_some(),
            connection: Connection {
                local: (conn.local_ip, conn.local_port),
                serial: conn.serial,
                request: conn.next_request(),
            },
            user_agent: conn.user_agent(seen.user_agent),
            // For the log: headers as sent, plus the body's declared length.
            bytes_in: header_bytes as u64 + headers::content_length(seen.content_length),
            service: None,
            route: None,
            route_path: None,
            consumer: None,
            credential: None,
            anonymous: false,
            rejected_by: None,
            response_headers: Vec::new(),
            response_plugins: Vec::new(),
            serialized: Vec::new(),
            upstream_addr: None,
            upstream_us: 0,
            upstream_status: None,
            before_upstream_us: None,
            upstream_failed: false,
            in_flight: None,
            grpc_status: None,
            ws_close_code: None,
            websocket: None,
            upgrade_header: seen.upgrade,
            grpc_content: seen.grpc_content,
            tunnel: None,
            cache_hit: false,
            phases: None,
            deprecation: None,
        };
        let format = if seen.grpc_content && req.version() == http::Version::HTTP_2 {
            Format::Grpc
        } else if seen.accept {
            Format::from_accept(req.headers())
        } else {
            Format::Json
        };
        let answer = if header_bytes > MAX_HEADER_BYTES {
            Err(Reply::new(
                StatusCode::BAD_REQUEST,
                "Request header or cookie too large",
            ))
        } else if target_len(req.uri()) > MAX_URI_BYTES {
            Err(Reply::new(
                StatusCode::URI_TOO_LONG,
                "Request-URI Too Large",
            ))
        } else {
            self.route_and_forward(req, &mut ex, conn).await
        };
        let mut resp = match answer {
            Ok(r) => r,
            Err(reply) => reply_response(reply, &ex.request_id, format),
        };
        if format == Format::Grpc {
            ex.grpc_status = grpc::status_in(resp.headers());
        }
        if !ex.response_plugins.is_empty() {
            resp = filter_response(resp, &ex.response_plugins, &ex.request_id, format).await;
        }
        add_gateway_headers(&mut resp, &mut ex, &self.headers);
        if let Some(tunnel) = ex.tunnel.take() {
            websocket::spawn(*tunnel, ex, self.logger.clone(), conn.clone());
            return resp.map(LoggedBody::unlogged);
        }
        let status = resp.status().as_u16();
        resp.map(|body| LoggedBody::new(body, ex, status, self.logger.clone()))
    }

    async fn route_and_forward(
        &self,
        mut req: Request<Incoming>,
        ex: &mut Exchange,
        conn: &Downstream,
    ) -> Result<Response<ProxyBody>, Reply> {
        let bad = || Reply::new(StatusCode::BAD_REQUEST, "Bad request");
        let norm_path = path::normalize(req.uri().path())
            .map_err(|_| bad())?
            .into_owned();
        let host = headers::raw_host(req.uri(), req.headers()).and_then(|raw| conn.host(raw));
        let Host { name, port, header } = host.ok_or_else(bad)?;
        ex.host = name;
        ex.host_header = header;
        let snapshot = self.snapshot.load_full();
        let found = snapshot.router.find(&RequestInfo {
            method: req.method().as_str(),
            host: &ex.host,
            port: port.unwrap_or(conn.local_port),
            path: &norm_path,
            headers: req.headers(),
            tls: conn.tls.is_some(),
            sni: conn.tls.as_ref().and_then(|t| t.sni.as_deref()),
        });
        let Some(m) = found else {
            return Err(Reply::new(
                StatusCode::NOT_FOUND,
                "no Route matched with those values",
            ));
        };
        let route = &snapshot.routes[m.route];
        ex.route = Some(route.label.clone());
        ex.route_path = Some(norm_path[..m.matched_len].into());
        if let Some(d) = &route.deprecation {
            ex.deprecation = d.for_path(&norm_path).cloned();
        }
        if !route.allows_http && headers::forwarded_proto(req.headers(), ex, conn) != b"https" {
            return Err(https_required(
                route.https_redirect_status_code,
                &ex.host,
                req.uri(),
            ));
        }
        if route.grpc {
            let over_tls = headers::forwarded_proto(req.headers(), ex, conn) == b"https";
            let call = (ex.grpc_content, req.version());
            if let Some(refused) = grpc::refusal(call, route.grpc_cleartext, over_tls) {
                return Err(refused);
            }
        }
        let upgrade = ex.upgrade_header && websocket::requested(&req);
        if upgrade {
            ex.websocket = Some(hyper::upgrade::on(&mut req));
        } else if route.websocket_only {
            return Err(websocket_required());
        }
        let Some(service) = route.service.map(|i| &snapshot.services[i]) else {
            return Err(Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no Service found with those values",
            ));
        };
        ex.service = Some(service.label.clone());
        let (mut parts, body) = req.into_parts();
        let mut body = RequestBody::Streaming(body);
        let mut rewrites = Rewrites::default();
        if !route.plugins.is_empty() {
            let matched = (m.route, norm_path.as_str());
            rewrites = self
                .run_plugins(
                    &mut parts,
                    &mut body,
                    &snapshot,
                    (route, matched),
                    service.id,
                    ex,
                )
                .await?;
        }
        // gRPC calls keep the client's path (nginx's `grpc_pass`, which Kong uses, sends it
        // whatever the route stripped), unless a plugin asked for the rewritten one.
        let rewrite = !service.http2 || rewrites.grpc_stripped_path;
        let upstream_path = if let Some(p) = &rewrites.path {
            [p.as_str(), "", ""]
        } else if rewrite {
            path::upstream_path(
                service.path.as_deref().unwrap_or("/"),
                &norm_path,
                m.matched_len,
                route.strip_path,
                route.path_handling_v1,
            )
        } else {
            [norm_path.as_str(), "", ""]
        };
        let stripped = (rewrite && route.strip_path).then(|| &norm_path[..m.matched_len]);
        let mut head = Vec::with_capacity(UPSTREAM_HEAD_CAPACITY);
        let query = match &rewrites.query {
            Some(q) => (!q.is_empty()).then_some(q.as_str()),
            None => parts.uri.query(),
        };
        if !upstream::request_line(&parts.method, &upstream_path, query, &mut head) {
            return Err(bad());
        }
        let captures = |name: &str| snapshot.router.capture(m.route, &norm_path, name);
        let hash = balance_hash(service, (&parts, query), &norm_path, &captures, ex);
        let send_id = self.headers.upstream_request_id;
        let mut ours = headers::Forwarded::new(&parts, route, service, ex, stripped, conn, send_id);
        if let Some(host) = &rewrites.host {
            ours.host = Some(host.as_bytes());
        }
        let host_in_head = ours.host.is_some();
        headers::write_for_upstream(&parts.headers, &rewrites.headers, &ours, &mut head);
        if upgrade {
            websocket::write_upgrade_headers(&mut head);
        }
        let req = upstream::Outgoing {
            upgrade,
            declared_length: parts.headers.contains_key(header::CONTENT_LENGTH),
            method: parts.method,
            head,
            body,
            response_room: GATEWAY_HEADERS + ex.response_headers.len(),
        };
        let picks = destination::Picks::new(&service.destination, hash, host_in_head);
        self.forward(req, picks, service, ex).await
    }

    /// The access phase: leaves the request as plugins changed it and returns what else they
    /// changed about the upstream request, or the reply one wrote. `matched` is the route's
    /// index in the router and the normalized path it matched.
    async fn run_plugins(
        &self,
        parts: &mut http::request::Parts,
        body: &mut RequestBody,
        snapshot: &Arc<Snapshot>,
        (route, matched): (&RouteEntry, (usize, &str)),
        service_id: uuid::Uuid,
        ex: &mut Exchange,
    ) -> Result<Rewrites, Reply> {
        let on = (route.id, Some(service_id));
        let now_ms = ex.arrived_us / 1000;
        let mut ctx = Context::new(parts, body, snapshot.clone(), on, ex.client_ip, now_ms);
        (ctx.tls, ctx.trusted_peer) = (ex.tls, ex.trusted_peer);
        (ctx.route_index, ctx.path) = matched;
        ctx.connection = ex.connection;
        ctx.started = ex.start;
        let flow = snapshot.plugins.access(&route.plugins, &mut ctx).await;
        ex.phases = ctx.phases.take();
        ex.consumer = ctx.consumer;
        ex.credential = ctx.credential;
        ex.anonymous = ctx.anonymous;
        ex.rejected_by = ctx.rejected_by;
        ex.response_headers = ctx.response_headers;
        ex.response_plugins = ctx.response_plugins;
        ex.serialized = ctx.serialized;
        if ctx.cache_hit {
            // Kong counts a cached answer as proxied (its latency headers, not `Server`).
            ex.cache_hit = true;
            ex.before_upstream_us = Some(ex.start.elapsed().as_micros() as u64);
        }
        match flow {
            Flow::Continue => Ok(Rewrites {
                headers: ctx.upstream_headers,
                grpc_stripped_path: ctx.grpc_stripped_path,
                path: ctx.upstream_path,
                host: ctx.upstream_host,
                query: ctx.upstream_query,
            }),
            Flow::Respond(reply) => Err(reply),
        }
    }

    /// Sends the request upstream (the service's `retries` apply to failed attempts).
    async fn forward(
        &self,
        req: upstream::Outgoing,
        mut picks: destination::Picks<'_>,
        service: &ServiceEntry,
        ex: &mut Exchange,
    ) -> Result<Response<ProxyBody>, Reply> {
        let limits = upstream::Limits {
            read_timeout: service.read_timeout,
            retries: service.retries,
        };
        let sent = Instant::now();
        ex.before_upstream_us = Some(sent.duration_since(ex.start).as_micros() as u64);
        let outcome = if service.http2 {
            // Boxed: the HTTP/2 handshake's future would otherwise grow every request's.
            Box::pin(upstream::http2::send(req, &mut picks, &limits)).await
        } else {
            upstream::send(req, &mut picks, &limits).await
        };
        if let Some(phases) = &ex.phases {
            phases.record(crate::plugins::context::UPSTREAM_PHASE, sent);
        }
        ex.upstream_us = sent.elapsed().as_micros() as u64;
        ex.upstream_addr = picks.address();
        match outcome {
            Ok(resp) => {
                ex.in_flight = picks.answered(resp.status().as_u16(), ex.upstream_us);
                let (mut parts, body) = resp.into_parts();
                // The upstream's version (HTTP/1.0 from some servers) belongs to that hop; the
                // client is answered in its connection's own (hyper writes the one given here,
                // and an HTTP/1.0 status line ends a keep-alive connection).
                parts.version = http::Version::default();
                ex.upstream_status = Some(parts.status);
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    return switch(parts, body, service, ex).ok_or_else(invalid_response);
                }
                Ok(Response::from_parts(parts, Either::Left(body)))
            }
            Err(upstream::UpstreamError::ClientBody(e)) => {
                tracing::debug!(service = %service.label, error = %e, "the client's request body was malformed");
                Err(Reply::new(StatusCode::BAD_REQUEST, "Bad request"))
            }
            Err(upstream::UpstreamError::NoTarget) => {
                ex.upstream_failed = true;
                tracing::warn!(service = %service.label, "no upstream target available");
                Err(Reply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "failure to get a peer from the ring-balancer",
                ))
            }
            Err(e) => {
                ex.upstream_failed = true;
                tracing::warn!(service = %service.label, error = %error_chain(&e), "upstream request failed");
                if is_timeout(&e) {
                    Err(Reply::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The upstream server is timing out",
                    ))
                } else {
                    Err(invalid_response())
                }
            }
        }
    }
}

/// What the access phase changed about the upstream request besides its method, headers,
/// query and body (which plugins change in place).
#[derive(Default)]
struct Rewrites {
    /// Headers set or taken off (`Context::set_upstream_header`).
    headers: UpstreamHeaders,
    /// A gRPC call takes the path as the route rewrote it.
    grpc_stripped_path: bool,
    /// The path the upstream gets, in place of the route's and service's.
    path: Option<String>,
    /// The `Host` the upstream gets.
    host: Option<HeaderValue>,
    /// The query string the upstream gets (encoded; empty: none).
    query: Option<String>,
}

/// The upstream accepted a WebSocket handshake: the 101 goes to the client with the switch's
/// headers, and both connections wait in `ex.tunnel` for `handle` to join them. `None` when
/// the request asked for no switch (which the upstream codec already refuses).
fn switch(
    mut parts: http::response::Parts,
    body: UpstreamBody,
    service: &ServiceEntry,
    ex: &mut Exchange,
) -> Option<Response<ProxyBody>> {
    let (client, upstream) = (ex.websocket.take()?, body.into_switched()?);
    ex.tunnel = Some(Box::new(websocket::Tunnel {
        client,
        upstream,
        idle_timeout: service.read_timeout,
    }));
    websocket::set_upgrade_headers(&mut parts.headers);
    Some(Response::from_parts(parts, Either::Right(Full::default())))
}

/// Kong's 502 for an upstream answer the gateway cannot pass on.
fn invalid_response() -> Reply {
    Reply::new(
        StatusCode::BAD_GATEWAY,
        "An invalid response was received from the upstream server",
    )
}

/// A request that is no WebSocket handshake on a route that serves only `ws` / `wss`.
fn websocket_required() -> Reply {
    let mut reply = Reply::new(
        StatusCode::UPGRADE_REQUIRED,
        "Please use WebSocket protocol",
    );
    reply
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    reply
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    reply
}

/// The consistent-hashing value of a request to a service balanced that way (a cookie the
/// gateway made up for it is set on the response); `query` is the query string as it goes
/// upstream.
fn balance_hash(
    service: &ServiceEntry,
    (parts, query): (&http::request::Parts, Option<&str>),
    path: &str,
    captures: &dyn Fn(&str) -> Option<String>,
    ex: &mut Exchange,
) -> Option<u64> {
    let Destination::Upstream { balancer, .. } = &service.destination else {
        return None;
    };
    let (hash, cookie) = crate::balancer::request_hash(
        balancer,
        &crate::balancer::HashRequest {
            consumer: ex.consumer.as_ref().map(|c| &*c.id_text),
            ip: ex.client_ip,
            headers: &parts.headers,
            path,
            query,
            captures,
        },
    );
    if let Some(cookie) = cookie {
        ex.response_headers.push((header::SET_COOKIE, cookie));
    }
    hash
}

/// The header and body filter phases of the plugins that asked for them.
async fn filter_response(
    resp: Response<ProxyBody>,
    plugins: &[Arc<dyn crate::plugins::Handler>],
    request_id: &str,
    format: Format,
) -> Response<ProxyBody> {
    let (mut parts, mut body) = resp.into_parts();
    for p in plugins {
        p.header_filter(&mut parts);
    }
    for p in plugins {
        if let Some(map) = p.body_stream(&parts) {
            let mapped = upstream::Mapped::new(body, map);
            body = Either::Left(UpstreamBody::Mapped(Box::new(mapped)));
        }
    }
    if !plugins.iter().any(|p| p.wants_body(&parts)) {
        return Response::from_parts(parts, body);
    }
    let limited = http_body_util::Limited::new(body, crate::plugins::context::MAX_BUFFERED_BODY);
    let mut bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(error = %e, "response body not read for a body filter");
            return reply_response(invalid_response(), request_id, format);
        }
    };
    for p in plugins {
        if p.wants_body(&parts) {
            bytes = p.body_filter(&parts, bytes);
        }
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, Either::Right(Full::new(bytes)))
}

/// The gateway's own headers, as `chosen` (Kong's `header_filter`): on a proxied answer (the
/// request went upstream, whatever came back) `Via` and the proxy and upstream latencies; on
/// one the gateway wrote without the upstream, `Server` and the response latency; on both
/// `X-Kong-Request-Id`, replacing any a plugin set. Then the headers plugins added, and a
/// deprecated API version's `Deprecation`, `Sunset` and `Link` (`model::api_version`).
fn add_gateway_headers(resp: &mut Response<ProxyBody>, ex: &mut Exchange, chosen: &GatewayHeaders) {
    let h = resp.headers_mut();
    crate::plugins::context::apply(ex.response_headers.drain(..), h);
    if let Some(proxy_us) = ex.before_upstream_us {
        if chosen.proxy_latency {
            h.insert(
                headers::PROXY_LATENCY,
                header_numbers::value(proxy_us / 1000),
            );
        }
        if chosen.upstream_latency {
            let ms = ex.upstream_us / 1000;
            h.insert(headers::UPSTREAM_LATENCY, header_numbers::value(ms));
        }
        if chosen.upstream_status {
            if let Some(status) = ex.upstream_status {
                h.insert(
                    headers::UPSTREAM_STATUS,
                    header_numbers::value(status.as_u16().into()),
                );
            }
        }
        if chosen.via {
            headers::append_via(h, ex.via);
        }
    } else {
        if chosen.response_latency {
            let ms = ex.start.elapsed().as_millis() as u64;
            h.insert(headers::RESPONSE_LATENCY, header_numbers::value(ms));
        }
        if chosen.server {
            h.insert(header::SERVER, HeaderValue::from_static(PRODUCT));
        }
    }
    if chosen.request_id {
        h.insert(headers::REQUEST_ID, ex.request_id_header.clone());
    }
    if let Some(d) = &ex.deprecation {
        d.apply(h);
    }
}

/// The answer to a cleartext request on an https-only route (kong/runloop/handler.lua): 426
/// naming the protocols to switch to (RFC 9110 §15.5.22), or a redirect to the same URL over
/// HTTPS.
fn https_required(status: u16, host: &str, uri: &Uri) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UPGRADE_REQUIRED);
    let mut reply = Reply::new(status, "Please use HTTPS protocol");
    let h = &mut reply.headers;
    if status == StatusCode::UPGRADE_REQUIRED {
        h.insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    } else {
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(location) = HeaderValue::from_str(&format!("https://{host}{target}")) {
            h.insert(header::LOCATION, location);
        }
    }
    reply
}

/// The length of the request target as the client sent it (origin form: path and query).
fn target_len(uri: &Uri) -> usize {
    uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

/// A gateway-written response in Kong's shape: `{"message": "...", "request_id": "..."}`, or
/// its HTML or text form when the client asked for one.
fn reply_response(reply: Reply, request_id: &str, format: Format) -> Response<ProxyBody> {
    let (body, content_type) = match reply.shape {
        Shape::Empty => return as_given(reply.status, reply.headers, Bytes::new()),
        Shape::Body(body) => return as_given(reply.status, reply.headers, body),
        Shape::Json(document) => (
            document.to_string(),
            HeaderValue::from_static("application/json; charset=utf-8"),
        ),
        Shape::Message => format.render(&reply.message, request_id),
    };
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    h.extend(reply.headers);
    h.insert(header::CONTENT_TYPE, content_type);
    if format == Format::Grpc {
        grpc::trailers_only(reply.status, &reply.message, h);
    }
    resp
}

/// A response of `status`, `headers` and `body` just as a plugin gave them.
fn as_given(status: StatusCode, headers: http::HeaderMap, body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().extend(headers);
    resp
}

pub(crate) fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if err.to_string().contains("timed out") {
            return true;
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}
