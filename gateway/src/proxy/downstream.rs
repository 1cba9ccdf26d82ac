//! What the proxy knows about the connection a request arrived on, worked out once per
//! connection rather than for each of the requests a keep-alive connection carries.
use http::HeaderValue;
use std::net::SocketAddr;

pub struct Downstream {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's address as header text (`X-Forwarded-For`, `X-Real-IP`).
    pub peer_ip: HeaderValue,
    /// The port the connection came in on: routes match on it, `X-Forwarded-Port` says it.
    pub local_port: u16,
    pub local_port_header: HeaderValue,
}

impl Downstream {
    pub fn new(peer: SocketAddr, local_port: u16) -> Downstream {
        Downstream {
            peer,
            peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                .expect("an IP address is a valid header value"),
            local_port,
            local_port_header: HeaderValue::from(local_port),
        }
    }
}
