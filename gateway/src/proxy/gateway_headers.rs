//! The headers the gateway adds on its own account, chosen as Kong's `headers` and
//! `headers_upstream` settings choose them (kong/conf_loader/init.lua, "load headers
//! configuration"): `server_tokens` is `Server` (on answers the gateway writes) and `Via` (on
//! proxied ones); `latency_tokens` is `X-Kong-Proxy-Latency` and `X-Kong-Upstream-Latency` on
//! proxied answers and `X-Kong-Response-Latency` on the gateway's own; `X-Kong-Request-Id`
//! names the request both ways. Kong users' dashboards and log pipelines read these names.

/// `Via` and `Server` tokens: Kong's `kong/<version>` becomes `tollgate/<version>`.
pub const PRODUCT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));
/// The `Via` entry for a hop received over HTTP/1.1 (RFC 9110 §7.6.3: protocol version, name).
pub const VIA_HTTP1: &str = concat!("1.1 tollgate/", env!("CARGO_PKG_VERSION"));
/// The `Via` entry for a hop received over HTTP/2.
pub const VIA_HTTP2: &str = concat!("2 tollgate/", env!("CARGO_PKG_VERSION"));

/// Kong's defaults: `headers = server_tokens, latency_tokens, X-Kong-Request-Id` and
/// `headers_upstream = X-Kong-Request-Id`.
pub const DEFAULT_DOWNSTREAM: &str = "server_tokens, latency_tokens, X-Kong-Request-Id";
pub const DEFAULT_UPSTREAM: &str = "X-Kong-Request-Id";

/// Which gateway headers are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayHeaders {
    pub server: bool,
    pub via: bool,
    pub proxy_latency: bool,
    pub upstream_latency: bool,
    pub response_latency: bool,
    pub upstream_status: bool,
    pub request_id: bool,
    /// `X-Kong-Request-Id` on the request sent upstream.
    pub upstream_request_id: bool,
}

impl Default for GatewayHeaders {
    fn default() -> Self {
        GatewayHeaders::parse(DEFAULT_DOWNSTREAM, DEFAULT_UPSTREAM).expect("Kong's defaults parse")
    }
}

impl GatewayHeaders {
    /// Reads the two comma-separated lists; `off` (or an empty list) turns a side off. Names
    /// are case-insensitive, as in Kong; an unknown one is an error naming it.
    pub fn parse(downstream: &str, upstream: &str) -> Result<GatewayHeaders, String> {
        let mut h = GatewayHeaders {
            server: false,
            via: false,
            proxy_latency: false,
            upstream_latency: false,
            response_latency: false,
            upstream_status: false,
            request_id: false,
            upstream_request_id: false,
        };
        for token in tokens(downstream) {
            match token.as_str() {
                "server_tokens" => (h.server, h.via) = (true, true),
                "latency_tokens" => {
                    h.proxy_latency = true;
                    h.upstream_latency = true;
                    h.response_latency = true;
                }
                "server" => h.server = true,
                "via" => h.via = true,
                "x-kong-proxy-latency" => h.proxy_latency = true,
                "x-kong-upstream-latency" => h.upstream_latency = true,
                "x-kong-response-latency" => h.response_latency = true,
                "x-kong-upstream-status" => h.upstream_status = true,
                "x-kong-request-id" => h.request_id = true,
                other => return Err(format!("TOLLGATE_HEADERS: unknown header '{other}'")),
            }
        }
        for token in tokens(upstream) {
            match token.as_str() {
                "x-kong-request-id" => h.upstream_request_id = true,
                other => {
                    return Err(format!(
                        "TOLLGATE_HEADERS_UPSTREAM: unknown header '{other}'"
                    ))
                }
            }
        }
        Ok(h)
    }
}

/// The list's lower-cased names, none for `off`.
fn tokens(list: &str) -> Vec<String> {
    let names: Vec<String> = list
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if names.first().is_some_and(|t| t == "off") {
        return Vec::new();
    }
    names.into_iter().filter(|t| t != "off").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kong/conf_loader/init.lua: the token groups and `off`.
    #[test]
    fn kong_tokens_expand_and_off_disables() {
        let d = GatewayHeaders::default();
        assert!(d.server && d.via && d.proxy_latency && d.upstream_latency);
        assert!(d.response_latency && d.request_id && d.upstream_request_id);
        assert!(!d.upstream_status);
        let off = GatewayHeaders::parse("off", "off").unwrap();
        assert!(!off.server && !off.via && !off.request_id && !off.upstream_request_id);
        let one = GatewayHeaders::parse("X-Kong-Upstream-Latency", "").unwrap();
        assert!(one.upstream_latency && !one.proxy_latency && !one.response_latency);
        assert!(!one.upstream_request_id);
        let via = GatewayHeaders::parse("Via, X-Kong-Upstream-Status", "off").unwrap();
        assert!(via.via && !via.server && via.upstream_status);
        let err = GatewayHeaders::parse("server_tokens, X-Powered", "").unwrap_err();
        assert_eq!(err, "TOLLGATE_HEADERS: unknown header 'x-powered'");
    }
}
