//! ip-restriction: refuses clients by address, Kong's plugin (kong/plugins/ip-restriction).
//! `deny` is checked first and wins over `allow`; with `allow`, every other address is refused.
//! The address is the client's after the trusted proxies (`TOLLGATE_TRUSTED_IPS`,
//! `TOLLGATE_REAL_IP_HEADER`), as Kong's `remote_addr` is after `trusted_ips` and
//! `real_ip_header`. Refusals are 403 `IP address not allowed: <address>` unless `status` and
//! `message` say otherwise. `status` is checked as an HTTP status (100-599), where Kong takes any
//! number.
use super::{get_str, get_strings, get_u64, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use crate::proxy::ip_network;
use http::StatusCode;
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "ip-restriction",
    priority: 990,
    no_consumer: false,
    fields: &[
        field("allow", Ty::StrArray),
        field("deny", Ty::StrArray),
        field("status", Ty::Int { min: 100, max: 599 }),
        field("message", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({"allow": null, "deny": null, "status": null, "message": null});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    for list in ["allow", "deny"] {
        let bad = get_strings(c, list)
            .iter()
            .map(|s| {
                ip_network(s)
                    .is_none()
                    .then(|| format!("invalid ip or cidr range: '{s}'"))
            })
            .collect();
        errors.elements(list, bad);
    }
    if get_strings(c, "allow").is_empty() && get_strings(c, "deny").is_empty() {
        errors.add(
            "@entity",
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        );
    }
}

struct IpRestriction {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    status: StatusCode,
    message: Option<String>,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let networks = |list: &str| -> Result<Vec<IpNet>, String> {
        get_strings(c, list)
            .iter()
            .map(|s| ip_network(s).ok_or_else(|| format!("invalid ip or cidr range: '{s}'")))
            .collect()
    };
    let code = u16::try_from(get_u64(c, "status").unwrap_or(403)).map_err(|e| e.to_string())?;
    Ok(Arc::new(IpRestriction {
        allow: networks("allow")?,
        deny: networks("deny")?,
        status: StatusCode::from_u16(code).map_err(|e| e.to_string())?,
        message: get_str(c, "message").map(String::from),
    }))
}

impl IpRestriction {
    /// Whether `ip` may pass: not denied, and allowed when there is an allow list. An IPv4
    /// client seen through a dual-stack socket (`::ffff:10.0.0.1`) is its IPv4 address.
    fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let within = |list: &[IpNet]| list.iter().any(|n| n.contains(&ip));
        !within(&self.deny) && (self.allow.is_empty() || within(&self.allow))
    }
}

impl Handler for IpRestriction {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        if self.admits(ctx.client_ip) {
            return Access::Now(Flow::Continue);
        }
        let message = match &self.message {
            Some(m) => m.clone(),
            None => format!("IP address not allowed: {}", ctx.client_ip),
        };
        Access::Now(Flow::Respond(Reply::new(self.status, message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: Value) -> Result<Map<String, Value>, Value> {
        crate::plugins::checked_config("ip-restriction", config)
    }

    /// spec/03-plugins/17-ip-restriction/01-schema_spec.lua:6-27: valid lists (addresses,
    /// CIDRs, both lists, status and message).
    #[test]
    fn kongs_valid_configs_are_accepted() {
        for config in [
            json!({"allow": ["127.0.0.1/32", "127.0.0.2/32"]}),
            json!({"allow": ["127.0.0.1/32", "127.0.0.2/32"], "status": 403, "message": "Forbidden"}),
            json!({"allow": ["127.0.0.1/8"]}),
            json!({"deny": ["127.0.0.1/32", "127.0.0.2/32"]}),
            json!({"deny": ["127.0.0.2/32"], "allow": ["127.0.0.1/32"]}),
            // :101 valid IPv6 ranges.
            json!({"allow": ["::/0", "::/1", "::/128"]}),
        ] {
            assert!(check(config.clone()).is_ok(), "{config}");
        }
    }

    /// 01-schema_spec.lua:30-98: Kong's messages, element by element.
    #[test]
    fn kongs_invalid_configs_get_kongs_messages() {
        let err = |config: Value| check(config).unwrap_err();
        assert_eq!(err(json!({"allow": 12}))["allow"], "expected an array");
        assert_eq!(err(json!({"deny": 12}))["deny"], "expected an array");
        assert_eq!(
            err(json!({"allow": ["hello"]}))["allow"],
            json!(["invalid ip or cidr range: 'hello'"])
        );
        assert_eq!(
            err(json!({"deny": ["127.0.0.1/32", "127.0.0.2/32", "hello"]}))["deny"],
            json!([null, null, "invalid ip or cidr range: 'hello'"])
        );
        assert_eq!(
            err(json!({"deny": [], "allow": []}))["@entity"],
            json!([
                "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
            ])
        );
        let ranges = [
            "0.0.0.0/a",
            "0.0.0.0/-1",
            "0.0.0.0/33",
            "::/a",
            "::/-1",
            "::/129",
            "::1/a",
            "::1/-1",
            "::1/129",
        ];
        let expected: Vec<String> = ranges
            .iter()
            .map(|r| format!("invalid ip or cidr range: '{r}'"))
            .collect();
        assert_eq!(err(json!({"allow": ranges}))["allow"], json!(expected));
    }

    fn admits(config: Value, ip: &str) -> bool {
        let c = check(config).unwrap();
        let scope = crate::plugins::chain::Scope::default();
        let handler = build(&c, &scope, &Arc::default()).unwrap();
        let parts = http::Request::get("/").body(()).unwrap().into_parts().0;
        let mut ctx = Context::for_test(parts);
        ctx.client_ip = ip.parse().unwrap();
        let admitted = matches!(handler.access(&mut ctx), Access::Now(Flow::Continue));
        admitted
    }

    /// 02-access_spec.lua:130-270 and :690-770 (the plugins of the access cases, for IPv4 and
    /// IPv6): deny wins over allow, CIDRs, 0.0.0.0/0 and ::/0.
    #[test]
    fn deny_wins_and_allow_lists_close_everything_else() {
        for (line, config, ip, admitted) in [
            (
                138,
                json!({"deny": ["127.0.0.1", "127.0.0.2"]}),
                "127.0.0.1",
                false,
            ),
            (146, json!({"deny": ["127.0.0.2"]}), "127.0.0.1", true),
            (154, json!({"allow": ["127.0.0.2"]}), "127.0.0.1", false),
            (162, json!({"allow": ["127.0.0.1"]}), "127.0.0.1", true),
            (170, json!({"deny": ["127.0.0.0/24"]}), "127.0.0.1", false),
            (194, json!({"allow": ["0.0.0.0/0"]}), "127.0.0.1", true),
            (
                202,
                json!({"allow": ["127.0.0.1"], "deny": ["127.0.0.1"]}),
                "127.0.0.1",
                false,
            ),
            (
                211,
                json!({"allow": ["127.0.0.0/24"], "deny": ["127.0.0.1"]}),
                "127.0.0.1",
                false,
            ),
            (
                220,
                json!({"allow": ["127.0.0.0/24"], "deny": ["127.0.0.0/24"]}),
                "127.0.0.1",
                false,
            ),
            (697, json!({"deny": ["::1", "::2"]}), "::1", false),
            (705, json!({"deny": ["::2"]}), "::1", true),
            (713, json!({"deny": ["fe80::/8"]}), "fe80::1", false),
            (722, json!({"allow": ["::2"]}), "::1", false),
            (738, json!({"allow": ["::/0"]}), "::1", true),
            (
                755,
                json!({"allow": ["::1/128"], "deny": ["::1"]}),
                "::1",
                false,
            ),
        ] {
            assert_eq!(admits(config, ip), admitted, "02-access_spec.lua:{line}");
        }
        // Not Kong's: an IPv4 client through a dual-stack socket is its IPv4 address.
        assert!(admits(json!({"allow": ["127.0.0.1"]}), "::ffff:127.0.0.1"));
    }
}
