//! The client's address: the TCP peer, unless the peer is a trusted proxy (a load balancer, a
//! CDN such as Cloudflare) that says who its client was in the real-IP header.
//!
//! `TOLLGATE_TRUSTED_IPS` lists the trusted networks; `TOLLGATE_REAL_IP_HEADER` names the header
//! (`X-Forwarded-For`, `CF-Connecting-IP`, ...). As nginx's `real_ip_recursive`, the header is
//! read from the right, skipping trusted addresses, so a client cannot spoof its address by
//! sending the header itself: an untrusted peer's header is ignored.
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::IpAddr;

/// An address (`10.0.0.1`, `::1`) or a CIDR range (`10.0.0.0/8`, `fe80::/10`), as the trusted
/// proxies and ip-restriction's lists take them.
pub fn ip_network(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

#[derive(Debug, Default)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: Option<HeaderName>,
}

impl ClientIp {
    /// `trusted`: comma-separated CIDRs or addresses; `header`: the real-IP header, if any.
    pub fn new(trusted: &str, header: Option<&str>) -> Result<ClientIp, String> {
        let trusted = trusted
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                ip_network(s).ok_or_else(|| {
                    format!("TOLLGATE_TRUSTED_IPS: '{s}' is not an address or a CIDR")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = header
            .filter(|h| !h.is_empty())
            .map(|h| {
                HeaderName::try_from(h)
                    .map_err(|_| format!("TOLLGATE_REAL_IP_HEADER: '{h}' is not a header name"))
            })
            .transpose()?;
        Ok(ClientIp { trusted, header })
    }

    /// Whether `ip` is a trusted proxy (in `TOLLGATE_TRUSTED_IPS`).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for this request.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let Some(name) = &self.header else {
            return peer;
        };
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HeaderName::try_from(name).unwrap(), value.parse().unwrap());
        h
    }

    #[test]
    fn a_trusted_peer_is_believed_from_the_right() {
        let c = ClientIp::new("10.0.0.0/8, 127.0.0.1", Some("X-Forwarded-For")).unwrap();
        let h = headers("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.1.2.3");
        assert_eq!(
            c.resolve("127.0.0.1".parse().unwrap(), &h),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof() {
        let c = ClientIp::new("10.0.0.0/8", Some("CF-Connecting-IP")).unwrap();
        let h = headers("cf-connecting-ip", "198.51.100.1");
        let peer: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(c.resolve(peer, &h), peer);
        assert_eq!(
            c.resolve("10.0.0.5".parse().unwrap(), &h),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(ClientIp::new("10.0.0.0/33", None)
            .unwrap_err()
            .contains("10.0.0.0/33"));
        assert!(ClientIp::new("", Some("bad header")).is_err());
    }
}
