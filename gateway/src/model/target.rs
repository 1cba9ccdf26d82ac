//! A target: one `host:port` an upstream balances over, with its weight.
//!
//! Kong's entity (kong/db/schema/entities/targets.lua, kong/db/dao/targets.lua): a target
//! given without a port gets 8000, an IPv6 address is written in brackets, and one upstream
//! cannot hold the same target twice.
use super::schema::{field, Field, FieldErrors, Ty};
use super::service::valid_host;
use super::{tags_of, Entity, EntityRef, Keys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The port of a target given without one (kong/db/dao/targets.lua `DEFAULT_PORT`).
pub const DEFAULT_PORT: u16 = 8000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub id: Uuid,
    pub upstream: EntityRef,
    pub target: String,
    #[serde(default = "default_weight")]
    pub weight: u16,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn default_weight() -> u16 {
    100
}

impl Target {
    /// The host (without brackets) and the port.
    pub fn host_port(&self) -> (String, u16) {
        split(&self.target).unwrap_or_else(|| (self.target.clone(), DEFAULT_PORT))
    }
}

/// `host[:port]` or `[v6][:port]` or a bare IPv6 address → host and port (8000 when none).
pub fn split(target: &str) -> Option<(String, u16)> {
    if let Ok(ip) = target.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), DEFAULT_PORT));
    }
    if let Some(rest) = target.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((ip.to_string(), port));
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (target, DEFAULT_PORT),
    };
    valid_host(host).then(|| (host.to_ascii_lowercase(), port))
}

/// The form Kong stores and shows: `host:port`, `[v6]:port`.
pub fn format(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Kong's normal form of a target, or its message for one that is not `host[:port]`.
pub fn normal(target: &str) -> Result<String, String> {
    split(target)
        .map(|(h, p)| format(&h, p))
        .ok_or_else(|| "Invalid target; not a valid hostname or ip address".to_string())
}

/// The store's unique key of a target: one upstream holds a `host:port` once.
pub fn unique_key(upstream: Uuid, target: &str) -> String {
    format!("{upstream} {target}")
}

impl Entity for Target {
    const FIELDS: &'static [Field] = &[
        field("upstream", Ty::Ref),
        field("target", Ty::Str),
        field("weight", Ty::Int { min: 0, max: 65535 }),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["upstream", "target"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        match normal(&self.target) {
            Ok(t) => self.target = t,
            Err(e) => errors.add("target", e),
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: Some(unique_key(self.upstream.id, &self.target)),
            upstream_id: Some(self.upstream.id),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_get_kongs_normal_form() {
        assert_eq!(normal("konghq.test").unwrap(), "konghq.test:8000");
        assert_eq!(normal("konghq.test:123").unwrap(), "konghq.test:123");
        assert_eq!(normal("::1").unwrap(), "[::1]:8000");
        assert_eq!(normal("[::1]:81").unwrap(), "[::1]:81");
        assert_eq!(normal("10.0.0.1:80").unwrap(), "10.0.0.1:80");
        assert_eq!(
            normal("a b:80").unwrap_err(),
            "Invalid target; not a valid hostname or ip address"
        );
        assert!(normal("h:99999").is_err());
    }
}
