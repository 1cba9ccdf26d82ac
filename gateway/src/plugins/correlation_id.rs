//! correlation-id: gives each request an id in a header (`Kong-Request-ID` by default) that
//! the upstream gets and, with `echo_downstream`, the client too, as Kong's plugin does
//! (kong/plugins/correlation-id/handler.lua). An id the client sent is kept (unless empty or
//! blank). It runs first of all plugins (priority 100001), so the id is there for every
//! other plugin and on the replies they write. Generators: `uuid` (a random UUID),
//! `uuid#counter` (this process's UUID and a counter: cheaper, still unique) and `tracker`
//! (where the request came from: `server_addr-server_port-pid-connection-connection_requests-time`).
use super::{get_bool, get_str, Access, Context, Flow, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

pub const SPEC: PluginSpec = PluginSpec {
    name: "correlation-id",
    priority: 100_001,
    no_consumer: false,
    fields: &[
        field("header_name", Ty::Str),
        field("generator", Ty::Enum(&["uuid", "uuid#counter", "tracker"])),
        field("echo_downstream", Ty::Bool),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let d = json!({"header_name": "Kong-Request-ID", "generator": "uuid#counter",
        "echo_downstream": false});
    d.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    if let Some(name) = get_str(c, "header_name") {
        if HeaderName::try_from(name).is_err() {
            errors.add("header_name", format!("'{name}' is not a valid header"));
        }
    }
}

#[derive(Clone, Copy)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo_downstream: bool,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let name = get_str(c, "header_name").unwrap_or("Kong-Request-ID");
    let generator = match get_str(c, "generator") {
        Some("uuid") => Generator::Uuid,
        Some("tracker") => Generator::Tracker,
        _ => Generator::UuidCounter,
    };
    Ok(Arc::new(CorrelationId {
        header: HeaderName::try_from(name).map_err(|e| e.to_string())?,
        generator,
        echo_downstream: get_bool(c, "echo_downstream"),
    }))
}

/// `uuid#counter`'s UUID, made once per process (Kong: once per worker), and its counter.
static PROCESS_UUID: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().to_string());
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl CorrelationId {
    fn generate(&self, ctx: &Context<'_>) -> String {
        match self.generator {
            Generator::Uuid => uuid::Uuid::new_v4().to_string(),
            Generator::UuidCounter => {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}#{n}", *PROCESS_UUID)
            }
            Generator::Tracker => {
                let c = ctx.connection;
                let (addr, port) = c.local;
                let now = ctx.now_ms;
                format!(
                    "{addr}-{port}-{}-{}-{}-{}.{:03}",
                    std::process::id(),
                    c.serial,
                    c.request,
                    now / 1000,
                    now % 1000
                )
            }
        }
    }
}

impl Handler for CorrelationId {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let sent = ctx
            .header(&self.header)
            .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
            .cloned();
        let id = match sent {
            Some(id) => id,
            None => {
                let made = HeaderValue::from_str(&self.generate(ctx))
                    .expect("generated ids are header-safe");
                ctx.set_upstream_header(self.header.clone(), Some(made.clone()));
                made
            }
        };
        if let Ok(text) = id.to_str() {
            ctx.serialized.push(("correlation_id", text.into()));
        }
        if self.echo_downstream {
            ctx.response_headers.push((self.header.clone(), id));
        }
        Access::Now(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::checked_config;

    fn run(config: Value, sent: Option<&str>) -> Context<'static> {
        let c = checked_config("correlation-id", config).unwrap();
        let h = build(&c, &Default::default(), &Arc::new(Default::default())).unwrap();
        let mut b = http::Request::get("/");
        if let Some(v) = sent {
            b = b.header("kong-request-id", v);
        }
        let mut ctx = Context::for_test(b.body(()).unwrap().into_parts().0);
        assert!(matches!(h.access(&mut ctx), Access::Now(Flow::Continue)));
        ctx
    }

    fn upstream(ctx: &Context<'_>) -> String {
        let name = HeaderName::from_static("kong-request-id");
        ctx.header(&name).unwrap().to_str().unwrap().to_string()
    }

    fn is_uuid(s: &str) -> bool {
        uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
    }

    // spec/03-plugins/11-correlation-id/01-access_spec.lua:204 (the counter grows), :272, :301
    #[test]
    fn each_generator_makes_a_new_id_per_request() {
        let first = upstream(&run(json!({}), None));
        let second = upstream(&run(json!({}), None));
        let (uuid1, n1) = first.split_once('#').unwrap();
        let (uuid2, n2) = second.split_once('#').unwrap();
        assert!(is_uuid(uuid1) && uuid1 == uuid2, "{first} {second}");
        assert!(n2.parse::<u64>().unwrap() > n1.parse::<u64>().unwrap());
        let a = upstream(&run(json!({"generator": "uuid"}), None));
        let b = upstream(&run(json!({"generator": "uuid"}), None));
        assert!(is_uuid(&a) && is_uuid(&b) && a != b);
        let tracker = upstream(&run(json!({"generator": "tracker"}), None));
        // Kong's TRACKER_PATTERN: addr-port-pid-connection-requests-seconds.millis
        let fields: Vec<&str> = tracker.split('-').collect();
        assert_eq!(fields.len(), 6, "{tracker}");
        assert!(fields[0].parse::<std::net::IpAddr>().is_ok());
        assert!(
            fields[1..5].iter().all(|f| f.parse::<u64>().is_ok()),
            "{tracker}"
        );
        let (secs, millis) = fields[5].split_once('.').unwrap();
        assert_eq!((secs, millis.len()), ("1000", 3));
    }

    // 01-access_spec.lua:330, :367, :378, :393, :408 and the space-only case after it
    #[test]
    fn sent_ids_are_kept_unless_blank_and_echoed_when_asked() {
        let echoed = run(json!({"generator": "uuid", "echo_downstream": true}), None);
        let (name, value) = &echoed.response_headers[0];
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("kong-request-id", upstream(&echoed).as_str())
        );
        assert!(run(json!({}), None).response_headers.is_empty());
        assert_eq!(upstream(&run(json!({}), Some("foobar"))), "foobar");
        assert_ne!(upstream(&run(json!({}), Some(""))), "");
        assert_ne!(upstream(&run(json!({}), Some("   "))).trim(), "");
        let custom =
            checked_config("correlation-id", json!({"header_name": "Foo-Bar-Id"})).unwrap();
        let h = build(&custom, &Default::default(), &Arc::new(Default::default())).unwrap();
        let mut ctx = Context::for_test(http::Request::get("/").body(()).unwrap().into_parts().0);
        let _ = h.access(&mut ctx);
        assert!(ctx.header(&HeaderName::from_static("foo-bar-id")).is_some());
    }

    // 02-schema_spec.lua: the generator is one of three; bad header names and types refused
    #[test]
    fn config_is_checked_in_kongs_shape() {
        let err = checked_config("correlation-id", json!({"generator": "snowflake"})).unwrap_err();
        assert!(
            err["generator"].as_str().unwrap().contains("uuid#counter"),
            "{err}"
        );
        let err =
            checked_config("correlation-id", json!({"header_name": "bad header"})).unwrap_err();
        assert_eq!(err["header_name"], "'bad header' is not a valid header");
        let err = checked_config(
            "correlation-id",
            json!({"echo_downstream": "maybe", "x": 1}),
        )
        .unwrap_err();
        assert!(
            err["echo_downstream"].is_string() && err["x"] == "unknown field",
            "{err}"
        );
    }
}
