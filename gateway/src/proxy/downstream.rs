//! What the proxy knows about the connection a request arrived on, worked out once per
//! connection rather than for each of the requests a keep-alive connection carries.
use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// Connections accepted so far by this process, and open now (`/metrics`).
static SERIALS: AtomicU64 = AtomicU64::new(0);
static OPEN: AtomicU64 = AtomicU64::new(0);

/// Connections accepted since start, and open now.
pub fn connection_counts() -> (u64, u64) {
    (
        SERIALS.load(Ordering::Relaxed),
        OPEN.load(Ordering::Relaxed),
    )
}

pub struct Downstream {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's address as header text (`X-Forwarded-For`, `X-Real-IP`).
    pub peer_ip: HeaderValue,
    /// The port the connection came in on: routes match on it, `X-Forwarded-Port` says it.
    pub local_port: u16,
    /// The address the connection came in on (correlation-id's `tracker`).
    pub local_ip: IpAddr,
    /// The connection's number in this process and how many requests it carried so far, as
    /// nginx's `$connection` and `$connection_requests` (correlation-id's `tracker`).
    pub serial: u64,
    requests: AtomicU64,
    pub local_port_header: HeaderValue,
    /// Set on a TLS connection: what its handshake settled.
    pub tls: Option<Tls>,
    /// The connection's place in its worker's connection limit, freed when the last holder
    /// of this connection goes: its server, or a WebSocket tunnel that outlives the server.
    _slot: Option<OwnedSemaphorePermit>,
    /// The last `Host` and `User-Agent` sent here, with what was made of them: a keep-alive
    /// connection's requests nearly always repeat both, and each costs allocations to work out.
    last: Mutex<Last>,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a TLS handshake settled that requests look at.
#[derive(Debug, Default)]
pub struct Tls {
    /// The server name the client asked for (routes match on it).
    pub sni: Option<Box<str>>,
}

#[derive(Default)]
struct Last {
    host: Option<(String, Host)>,
    user_agent: Option<(HeaderValue, Arc<str>)>,
}

/// The host a request was sent to, as the proxy uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Lower-cased, without the port: what routes match and events record.
    pub name: Arc<str>,
    /// The port, when the request named one.
    pub port: Option<u16>,
    /// The name as the `X-Forwarded-Host` value.
    pub header: HeaderValue,
}

impl Host {
    /// `raw` is the `Host` header or the HTTP/2 `:authority`; `None` when it names no host.
    pub fn parse(raw: &str) -> Option<Host> {
        let (name, port) = crate::router::strip_port(raw);
        if name.is_empty() {
            return None;
        }
        let name = name.to_ascii_lowercase();
        Some(Host {
            header: HeaderValue::from_str(&name).ok()?,
            name: name.into(),
            port,
        })
    }
}

impl Downstream {
    pub fn new(peer: SocketAddr, local_port: u16, tls: Option<Tls>) -> Downstream {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Downstream {
            peer,
            peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                .expect("an IP address is a valid header value"),
            local_port,
            local_port_header: HeaderValue::from(local_port),
            local_ip: IpAddr::from([0, 0, 0, 0]),
            serial: SERIALS.fetch_add(1, Ordering::Relaxed) + 1,
            requests: AtomicU64::new(0),
            tls,
            _slot: None,
            last: Mutex::default(),
        }
    }

    /// The same, come in on `local_ip`.
    #[must_use]
    pub fn on(mut self, local_ip: IpAddr) -> Downstream {
        self.local_ip = local_ip;
        self
    }

    /// Counts a request on this connection; its number on it (from 1).
    pub fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The same, holding `slot` for as long as the connection lives.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Downstream {
        self._slot = Some(slot);
        self
    }

    /// The request's scheme, as `X-Forwarded-Proto` says it.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `Host::parse(raw)`, from memory when the last request here sent the same.
    pub fn host(&self, raw: &str) -> Option<Host> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, host)) = &last.host {
            if seen == raw {
                return Some(host.clone());
            }
        }
        let host = Host::parse(raw)?;
        last.host = Some((raw.to_string(), host.clone()));
        Some(host)
    }

    /// The `User-Agent` as text, if readable; from memory when the last request sent the same.
    pub fn user_agent(&self, value: Option<&HeaderValue>) -> Option<Arc<str>> {
        let value = value?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, text)) = &last.user_agent {
            if seen == value {
                return Some(text.clone());
            }
        }
        let text: Arc<str> = value.to_str().ok()?.into();
        last.user_agent = Some((value.clone(), text.clone()));
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lower_cased_without_the_port() {
        let h = Host::parse("Api.Example.com:8000").unwrap();
        assert_eq!(
            (&*h.name, h.port, h.header.as_bytes()),
            ("api.example.com", Some(8000), &b"api.example.com"[..])
        );
        assert_eq!(Host::parse("[::1]:9").unwrap().name.as_ref(), "[::1]");
        assert_eq!(Host::parse(":80"), None);
    }

    #[test]
    fn a_repeated_host_or_user_agent_is_remembered_and_a_new_one_replaces_it() {
        let conn = Downstream::new("127.0.0.1:5000".parse().unwrap(), 8000, None);
        let first = conn.host("a.test").unwrap();
        assert!(Arc::ptr_eq(&first.name, &conn.host("a.test").unwrap().name));
        assert_eq!(conn.host("B.test:81").unwrap().name.as_ref(), "b.test");
        assert_eq!(conn.host("").map(|h| h.name), None);
        let ua = HeaderValue::from_static("curl/8");
        let text = conn.user_agent(Some(&ua)).unwrap();
        assert!(Arc::ptr_eq(&text, &conn.user_agent(Some(&ua)).unwrap()));
        assert_eq!(conn.user_agent(None), None);
        let other = HeaderValue::from_static("wrk");
        assert_eq!(conn.user_agent(Some(&other)).unwrap().as_ref(), "wrk");
    }
}
