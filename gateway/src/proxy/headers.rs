//! Header rewriting between client and upstream: the upstream's request headers written with
//! hop-by-hop ones dropped and the `X-Forwarded-*` family, `Via` and `X-Kong-Request-Id` set
//! (the upstream's own hop-by-hop headers never leave `upstream::codec`), and the client's
//! host read.
use super::upstream::{connection_options, write_header};
use super::{Downstream, Exchange};
use crate::plugins::context::{consumer_headers, CONSUMER_HEADERS};
use crate::plugins::UpstreamHeaders;
use crate::snapshot::{RouteEntry, ServiceEntry};
use http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use std::sync::Arc;

// Header names parsed once, not per request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-kong-request-id");
pub(super) const UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-kong-upstream-latency");
pub(super) const PROXY_LATENCY: HeaderName = HeaderName::from_static("x-kong-proxy-latency");
pub(super) const RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-kong-response-latency");
pub(super) const UPSTREAM_STATUS: HeaderName = HeaderName::from_static("x-kong-upstream-status");

/// Request headers for this hop only. Unlike on responses, `Proxy-Authorization` and
/// `Proxy-Authenticate` pass (Kong keeps them: 03-upstream_headers_spec.lua:127), `Proxy` is
/// dropped (httpoxy), and `TE` is rewritten to `trailers` when it asks for them.
static REQUEST_HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The request headers the proxy itself reads, found in one pass over the client's headers
/// (each `HeaderMap::get` hashes the name and probes).
pub struct Seen<'a> {
    /// Bytes of all header names and values, as the client sent them.
    pub size: usize,
    pub user_agent: Option<&'a HeaderValue>,
    pub content_length: Option<&'a HeaderValue>,
    /// Whether any `Accept` came (error pages are JSON without one).
    pub accept: bool,
    /// The `Content-Type` says gRPC (`application/grpc...`, gRPC-Web's too).
    pub grpc_content: bool,
    /// An `Upgrade` came (a WebSocket handshake, perhaps).
    pub upgrade: bool,
}

/// Reads what `Seen` holds from the client's headers.
pub fn seen(h: &HeaderMap) -> Seen<'_> {
    let mut seen = Seen {
        size: 0,
        user_agent: None,
        content_length: None,
        accept: false,
        grpc_content: false,
        upgrade: false,
    };
    for (name, value) in h {
        seen.size += name.as_str().len() + value.len() + 4;
        if name == header::USER_AGENT {
            seen.user_agent.get_or_insert(value);
        } else if name == header::CONTENT_LENGTH {
            seen.content_length.get_or_insert(value);
        } else if name == header::ACCEPT {
            seen.accept = true;
        } else if name == header::UPGRADE {
            seen.upgrade = true;
        } else if name == header::CONTENT_TYPE {
            seen.grpc_content = value.as_bytes().starts_with(b"application/grpc");
        }
    }
    seen
}

/// A new request id, as text and as a header value: 128 random bits from the thread's
/// generator (no system call per request) in hex, like Kong's. Kong never takes the client's
/// (33-request-id-header_spec.lua: "overwrites client value if any").
pub fn new_request_id() -> (Arc<str>, HeaderValue) {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::from_u128(rand::random())
        .simple()
        .encode_lower(&mut buf);
    let header = HeaderValue::from_str(id).expect("hex digits are a valid header value");
    (Arc::from(&*id), header)
}

/// The body length a request declares (0 when it declares none).
pub fn content_length(declared: Option<&HeaderValue>) -> u64 {
    declared
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The text naming the host a request was sent to: HTTP/2 carries it in the `:authority`,
/// HTTP/1.1 in `Host`. A request with neither has no host to route on.
pub fn raw_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(a) => Some(a.as_str()),
        None => headers.get(header::HOST)?.to_str().ok(),
    }
}

/// The other headers that `Connection` names for this hop only. Its usual values,
/// `keep-alive` and `close`, name none that is not removed anyway.
fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| connection_options(v.as_bytes()))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect()
}

/// What the gateway says on every upstream request, whatever the client sent.
pub(super) struct Forwarded<'a> {
    /// The `Host`, unless each attempt sends its target's (`upstream::send` adds it).
    pub host: Option<&'a [u8]>,
    /// The peer that connected, appended to the client's `X-Forwarded-For`.
    pub peer: &'a HeaderValue,
    /// The client it stands for (`X-Real-IP`) when it is not the peer itself, after the
    /// trusted proxies were applied.
    pub real_ip: Option<String>,
    /// `http` or `https`: how the client reached the gateway (or a trusted proxy).
    pub proto: &'a [u8],
    pub forwarded_host: &'a HeaderValue,
    pub port: &'a HeaderValue,
    /// The path prefix a route stripped, if any: part of a normalized path, so free of
    /// control bytes (a safe header value).
    pub prefix: Option<&'a str>,
    /// The path as the client sent it (`X-Forwarded-Path`).
    pub path: &'a str,
    /// `X-Kong-Request-Id`, unless `headers_upstream` turned it off.
    pub request_id: Option<&'a HeaderValue>,
    /// This hop's `Via` entry.
    pub via: &'static str,
    /// The values of `CONSUMER_HEADERS`, once a plugin identified the consumer.
    pub consumer: Option<[Option<&'a HeaderValue>; 5]>,
}

impl<'a> Forwarded<'a> {
    /// The values for a request on `route` to `service`.
    pub(super) fn new(
        client: &'a http::request::Parts,
        route: &RouteEntry,
        service: &'a ServiceEntry,
        ex: &'a Exchange,
        stripped_prefix: Option<&'a str>,
        conn: &'a Downstream,
        send_request_id: bool,
    ) -> Forwarded<'a> {
        let host = match raw_host(&client.uri, &client.headers) {
            Some(h) if route.preserve_host => Some(h.as_bytes()),
            _ => service.destination.fixed_host().map(HeaderValue::as_bytes),
        };
        // A trusted proxy's own values win, as in Kong (kong/runloop/handler.lua).
        let theirs = |name: &HeaderName| trusted_value(&client.headers, ex, name);
        let text = |name: &HeaderName| theirs(name).and_then(|v| v.to_str().ok());
        Forwarded {
            host,
            peer: &conn.peer_ip,
            // Nearly always the peer itself: no text to make then.
            real_ip: (ex.client_ip != conn.peer.ip()).then(|| ex.client_ip.to_string()),
            proto: forwarded_proto(&client.headers, ex, conn),
            forwarded_host: theirs(&X_FORWARDED_HOST).unwrap_or(&ex.host_header),
            port: theirs(&X_FORWARDED_PORT).unwrap_or(&conn.local_port_header),
            prefix: text(&X_FORWARDED_PREFIX)
                .or(stripped_prefix.filter(|p| !p.is_empty() && *p != "/")),
            path: text(&X_FORWARDED_PATH).unwrap_or(&ex.path),
            request_id: send_request_id.then_some(&ex.request_id_header),
            via: ex.via,
            consumer: ex
                .consumer
                .as_deref()
                .map(|c| consumer_headers(c, ex.credential.as_ref(), ex.anonymous)),
        }
    }
}

/// The client's value of `name` when the peer is a trusted proxy.
fn trusted_value<'a>(
    client: &'a HeaderMap,
    ex: &Exchange,
    name: &HeaderName,
) -> Option<&'a HeaderValue> {
    ex.trusted_peer.then(|| client.get(name)).flatten()
}

/// The scheme the request came by: a trusted proxy's `X-Forwarded-Proto`, else the listener's.
pub(super) fn forwarded_proto<'a>(
    client: &'a HeaderMap,
    ex: &Exchange,
    conn: &Downstream,
) -> &'a [u8] {
    match trusted_value(client, ex, &X_FORWARDED_PROTO) {
        Some(v) => v.as_bytes(),
        None => conn.scheme().as_bytes(),
    }
}

/// Headers the gateway sets itself (or frames itself, for the body): the client's never pass.
static REPLACED: [HeaderName; 10] = [
    header::HOST,
    header::CONTENT_LENGTH,
    X_REAL_IP,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    X_FORWARDED_PREFIX,
    X_FORWARDED_PATH,
    REQUEST_ID,
    header::VIA,
];

/// Writes the request headers the upstream gets as `name: value` lines: the client's, less the
/// hop-by-hop ones and those plugins or the gateway replace, then the plugins', the
/// consumer's, and the gateway's own. The client's `X-Forwarded-For` and `Via` chains grow by
/// one entry each.
pub(super) fn write_for_upstream(
    client: &HeaderMap,
    set_by_plugins: &UpstreamHeaders,
    ours: &Forwarded,
    out: &mut Vec<u8>,
) {
    let named = if client.contains_key(header::CONNECTION) {
        connection_named(client)
    } else {
        Vec::new()
    };
    // The client's values of the two chains, joined when written: no buffer of their own.
    let (mut xff, mut via, mut trailers) = (Chain::new(), Chain::new(), false);
    for (name, value) in client {
        if name == X_FORWARDED_FOR {
            xff.push(value.as_bytes());
        } else if name == header::VIA {
            via.push(value.as_bytes());
        } else if name == header::TE {
            trailers |=
                connection_options(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        } else if !gives_way(name, &named, set_by_plugins, ours) {
            write_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let plugins = set_by_plugins
        .iter()
        .map(|(name, value)| (name, value.as_ref()));
    let consumer = ours
        .consumer
        .into_iter()
        .flat_map(|values| CONSUMER_HEADERS.iter().zip(values));
    for (name, value) in plugins.chain(consumer) {
        if let Some(value) = value {
            write_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(host) = ours.host {
        write_header(out, b"host", host);
    }
    write_chain(out, b"x-forwarded-for", &xff, ours.peer.as_bytes());
    let real_ip = ours.real_ip.as_ref().map(String::as_bytes);
    write_header(out, b"x-real-ip", real_ip.unwrap_or(ours.peer.as_bytes()));
    write_header(out, b"x-forwarded-proto", ours.proto);
    write_header(out, b"x-forwarded-host", ours.forwarded_host.as_bytes());
    write_header(out, b"x-forwarded-port", ours.port.as_bytes());
    write_header(out, b"x-forwarded-path", ours.path.as_bytes());
    if let Some(prefix) = ours.prefix {
        write_header(out, b"x-forwarded-prefix", prefix.as_bytes());
    }
    if let Some(id) = ours.request_id {
        write_header(out, b"x-kong-request-id", id.as_bytes());
    }
    if trailers {
        write_header(out, b"te", b"trailers");
    }
    write_chain(out, b"via", &via, ours.via.as_bytes());
}

/// Whether a client's header stays off the upstream request: hop-by-hop (or named by its
/// `Connection`), or replaced by the gateway's own, a plugin's, or the consumer's.
fn gives_way(
    name: &HeaderName,
    named: &[HeaderName],
    set_by_plugins: &UpstreamHeaders,
    ours: &Forwarded,
) -> bool {
    REPLACED.contains(name)
        || REQUEST_HOP_BY_HOP.contains(name)
        || named.contains(name)
        || set_by_plugins.iter().any(|(set, _)| set == name)
        || (ours.consumer.is_some() && CONSUMER_HEADERS.contains(name))
}

/// The values a client sent for a list header, usually none or one.
type Chain<'a> = smallvec::SmallVec<[&'a [u8]; 2]>;

/// A list header's line: the client's values, then the gateway's entry.
fn write_chain(out: &mut Vec<u8>, name: &[u8], theirs: &Chain, ours: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for value in theirs {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ours);
    out.extend_from_slice(b"\r\n");
}

/// Adds the gateway's entry `via` to the response's `Via` chain.
pub(super) fn append_via(h: &mut HeaderMap, via: &'static str) {
    match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            let v = format!("{prev}, {via}");
            set(h, header::VIA, &v);
        }
        None => {
            h.insert(header::VIA, HeaderValue::from_static(via));
        }
    }
}

fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::super::gateway_headers::VIA_HTTP1;
    use super::*;
    use http::Request;

    #[test]
    fn the_upstream_gets_the_clients_headers_less_hop_by_hop_with_the_plugins_consumers_and_gateways(
    ) {
        let mut client = HeaderMap::new();
        for (k, v) in [
            ("host", "client.test"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "6.6.6.6"),
            ("te", "trailers, deflate;q=0.5"),
            ("proxy", "httpoxy"),
            ("proxy-authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
            ("x-kong-request-id", "spoofed"),
            ("via", "1.1 edge"),
            ("x-kept", "a"),
            ("x-request-id", "client-trace"),
            ("x-consumer-id", "spoofed"),
            ("apikey", "secret"),
            ("x-kept", "b"),
        ] {
            client.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let value = |s: &'static str| HeaderValue::from_static(s);
        let (peer, fhost, port, id) = (
            value("127.0.0.1"),
            value("api.test"),
            value("8000"),
            value("abc"),
        );
        let (consumer_id, username, credential) = (value("c-1"), value("ann"), value("k-1"));
        let ours = Forwarded {
            host: Some(b"backend:8080"),
            peer: &peer,
            real_ip: Some("203.0.113.9".into()),
            proto: b"http",
            forwarded_host: &fhost,
            port: &port,
            prefix: Some("/api"),
            path: "/api/x",
            request_id: Some(&id),
            via: VIA_HTTP1,
            consumer: Some([
                Some(&consumer_id),
                None,
                Some(&username),
                Some(&credential),
                None,
            ]),
        };
        let set_by_plugins = vec![
            (HeaderName::from_static("x-set"), Some(value("by a plugin"))),
            (HeaderName::from_static("apikey"), None),
        ];
        let mut out = Vec::new();
        write_for_upstream(&client, &set_by_plugins, &ours, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "proxy-authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\nx-kept: a\r\n\
                 x-kept: b\r\nx-request-id: client-trace\r\nx-set: by a plugin\r\nx-consumer-id: c-1\r\n\
                 x-consumer-username: ann\r\nx-credential-identifier: k-1\r\nhost: backend:8080\r\n\
                 x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.1\r\nx-real-ip: 203.0.113.9\r\n\
                 x-forwarded-proto: http\r\nx-forwarded-host: api.test\r\n\
                 x-forwarded-port: 8000\r\nx-forwarded-path: /api/x\r\n\
                 x-forwarded-prefix: /api\r\nx-kong-request-id: abc\r\nte: trailers\r\n\
                 via: 1.1 edge, {VIA_HTTP1}\r\n"
            )
        );
    }

    #[test]
    fn one_pass_finds_the_headers_the_proxy_reads() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "curl/8".parse().unwrap());
        h.append("x-other", "first".parse().unwrap());
        h.append("x-other", "second".parse().unwrap());
        h.insert("content-length", "12".parse().unwrap());
        let s = seen(&h);
        assert_eq!(
            s.size,
            "user-agent".len()
                + 6
                + 4
                + 2 * ("x-other".len() + 4)
                + 11
                + "content-length".len()
                + 2
                + 4
        );
        assert_eq!(s.user_agent.unwrap(), "curl/8");
        assert_eq!(content_length(s.content_length), 12);
        assert!(!s.accept);
        h.insert("accept", "text/html".parse().unwrap());
        assert!(seen(&h).accept);
        assert_eq!(content_length(None), 0);
    }

    #[test]
    fn host_comes_from_authority_or_header() {
        let req = Request::get("http://Api.Example.com:8000/x")
            .header("host", "other.test")
            .body(())
            .unwrap();
        assert_eq!(
            raw_host(req.uri(), req.headers()),
            Some("Api.Example.com:8000")
        );
        let req = Request::get("/x")
            .header("host", "h.local")
            .body(())
            .unwrap();
        assert_eq!(raw_host(req.uri(), req.headers()), Some("h.local"));
        let req = Request::get("/x").body(()).unwrap();
        assert_eq!(raw_host(req.uri(), req.headers()), None);
    }
}
