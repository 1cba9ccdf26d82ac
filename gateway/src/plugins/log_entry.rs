//! The log entry every log plugin writes (file-log, http-log, tcp-log, udp-log): the main
//! fields of Kong's basic serializer (kong/pdk/log.lua `serialize`), as far as the request's
//! analytics event knows them, and the values plugins added (correlation-id's `correlation_id`).
use super::context::Serialized;
use serde_json::{json, Value};
use tollgate_analytics::RequestEvent;

/// Kong's log entry for `e`, with `serialized` at its top level.
pub fn entry(e: &RequestEvent, serialized: &Serialized) -> Value {
    let ms = |us: u64| us / 1000;
    let mut entry = json!({
        "request": {
            "id": e.request_id,
            "method": e.method,
            "uri": e.path,
            "url": format!("http://{}{}", e.host, e.path),
            "size": e.bytes_in,
            "headers": {"host": e.host, "user-agent": e.user_agent},
        },
        "response": {"status": e.status, "size": e.bytes_out},
        "latencies": {
            "request": ms(e.total_latency_us),
            "proxy": ms(e.upstream_latency_us),
            "kong": ms(e.gateway_latency_us),
        },
        "client_ip": e.client_ip.to_string(),
        "started_at": e.timestamp_us / 1000,
        "upstream_addr": e.upstream_addr,
        "service": e.service.as_ref().map(|s| json!({"name": s})),
        "route": e.route.as_ref().map(|r| json!({"name": r})),
    });
    if let Some(id) = &e.consumer_id {
        entry["consumer"] = json!({"id": id, "username": e.consumer});
    }
    for (name, value) in serialized {
        entry[*name] = json!(value);
    }
    entry
}
