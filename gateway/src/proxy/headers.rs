//! Header rewriting between client and upstream: hop-by-hop headers dropped, the
//! `X-Forwarded-*` family, `Via` and `X-Request-Id` set, and the client's host read.
use super::{Downstream, Exchange, VIA};
use crate::snapshot::{RouteEntry, ServiceEntry};
use http::{header, HeaderMap, HeaderName, HeaderValue, Request};
use std::sync::Arc;

/// Headers that describe one connection and must not be forwarded (RFC 9110 §7.6.1), and
/// `Upgrade`, which the proxy does not pass on either. `Connection` comes first.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

// Header names parsed once, not per request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const UPSTREAM_LATENCY: HeaderName =
    HeaderName::from_static("x-tollgate-upstream-latency");
pub(super) const PROXY_LATENCY: HeaderName = HeaderName::from_static("x-tollgate-proxy-latency");

/// How many headers `for_upstream` may add: `Host`, `Via`, `X-Request-Id`, `X-Real-IP` and
/// `X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `-Prefix`.
const ADDED_UPSTREAM: usize = 9;

/// The client's request id when it sent a sane one, or a new one (128 random bits from the
/// thread's generator: no system call per request), as text and as a header value.
pub fn request_id(h: &HeaderMap) -> (Arc<str>, HeaderValue) {
    let sent = h
        .get(X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 200);
    if let Some((v, text)) = sent.and_then(|v| Some((v, v.to_str().ok()?))) {
        return (Arc::from(text), v.clone());
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::from_u128(rand::random())
        .simple()
        .encode_lower(&mut buf);
    let header = HeaderValue::from_str(id).expect("hex digits are a valid header value");
    (Arc::from(&*id), header)
}

/// The body length a request declares (0 when it declares none).
pub fn content_length(h: &HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Bytes of all header names and values, as a client sent them.
pub fn total_size(h: &HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// The text naming the host a request was sent to: HTTP/2 carries it in the `:authority`,
/// HTTP/1.1 in `Host`. A request with neither has no host to route on.
pub fn raw_host<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(header::HOST)?.to_str().ok(),
    }
}

fn remove_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry one at most (`Connection: keep-alive`): one pass over the names
    // finds those present, and only they are removed (each removal is a hash and a probe).
    let mut present = 0u16;
    for name in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == name) {
            present |= 1 << i;
        }
    }
    if present & 1 != 0 {
        for named in connection_named(h) {
            h.remove(named);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(name);
        }
    }
}

/// The other headers that `Connection` names for this hop only. Its usual values,
/// `keep-alive` and `close`, name none that is not removed anyway.
fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|t| HeaderName::try_from(t).ok())
        .collect()
}

/// The request headers the upstream gets, made from the client's (which are moved out).
pub(super) fn for_upstream(
    parts: &mut http::request::Parts,
    route: &RouteEntry,
    service: &ServiceEntry,
    ex: &Exchange,
    stripped_prefix: Option<&str>,
    conn: &Downstream,
) -> HeaderMap {
    let mut h = std::mem::take(&mut parts.headers);
    remove_hop_by_hop(&mut h);
    // Room for the headers added below at once, not a regrowth (and rehash) for each.
    h.reserve(ADDED_UPSTREAM);
    let client_host = h.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if !route.preserve_host || client_host.is_none() {
        h.insert(header::HOST, service.host_header.clone());
    } else if let Some(v) = client_host {
        h.insert(header::HOST, v);
    }
    // The chain grows by the peer that connected; X-Real-IP is the client it stands for.
    let peer = &conn.peer_ip;
    match h.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) => {
            let xff = [prev, b", ", peer.as_bytes()].concat();
            if let Ok(v) = HeaderValue::from_bytes(&xff) {
                h.insert(X_FORWARDED_FOR, v);
            }
        }
        None => {
            h.insert(X_FORWARDED_FOR, peer.clone());
        }
    }
    if ex.client_ip == conn.peer.ip() {
        h.insert(X_REAL_IP, peer.clone());
    } else {
        set(&mut h, X_REAL_IP, &ex.client_ip.to_string());
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    h.insert(X_FORWARDED_HOST, ex.host_header.clone());
    h.insert(X_FORWARDED_PORT, conn.local_port_header.clone());
    match stripped_prefix {
        Some(p) if !p.is_empty() && p != "/" => set(&mut h, X_FORWARDED_PREFIX, p),
        _ => {
            h.remove(X_FORWARDED_PREFIX);
        }
    }
    h.insert(X_REQUEST_ID, ex.request_id_header.clone());
    append_via(&mut h);
    h
}

/// Removes the upstream's connection-level headers before the client gets the response.
pub(super) fn clean_response(h: &mut HeaderMap) {
    remove_hop_by_hop(h);
}

/// Adds Tollgate to the `Via` chain.
pub(super) fn append_via(h: &mut HeaderMap) {
    match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            let v = format!("{prev}, {VIA}");
            set(h, header::VIA, &v);
        }
        None => {
            h.insert(header::VIA, HeaderValue::from_static(VIA));
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
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn a_keep_alive_connection_header_goes_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Keep-Alive".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn host_comes_from_authority_or_header() {
        let req = Request::get("http://Api.Example.com:8000/x")
            .header("host", "other.test")
            .body(())
            .unwrap();
        assert_eq!(raw_host(&req), Some("Api.Example.com:8000"));
        let req = Request::get("/x")
            .header("host", "h.local")
            .body(())
            .unwrap();
        assert_eq!(raw_host(&req), Some("h.local"));
        let req = Request::get("/x").body(()).unwrap();
        assert_eq!(raw_host(&req), None);
    }
}
