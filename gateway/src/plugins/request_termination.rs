//! request-termination: answers the client itself with a status and message, never calling
//! the upstream; with `trigger`, only requests that carry a header or query parameter of that
//! name. Kong's plugin, less its `body`, `content_type` and `echo` fields (answers are Kong's
//! `{"message": ...}` shape, negotiated by `Accept` like every gateway error).
use super::{get_str, get_u64, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use http::{HeaderName, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "request-termination",
    priority: 2,
    no_consumer: false,
    fields: &[
        field("status_code", Ty::Int { min: 100, max: 599 }),
        field("message", Ty::Str),
        field("trigger", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({"status_code": 503, "message": null, "trigger": null});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    if get_str(c, "trigger").is_some_and(|t| HeaderName::try_from(t).is_err()) {
        errors.add(
            "trigger",
            "bad header name: use letters, digits, '-' and '_'",
        );
    }
}

struct RequestTermination {
    status: StatusCode,
    message: String,
    trigger: Option<(HeaderName, String)>,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    Ok(Arc::new(from_config(c)?))
}

fn from_config(c: &Map<String, Value>) -> Result<RequestTermination, String> {
    let code =
        u16::try_from(get_u64(c, "status_code").unwrap_or(503)).map_err(|e| e.to_string())?;
    let status = StatusCode::from_u16(code).map_err(|e| e.to_string())?;
    let message = get_str(c, "message").map(String::from).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("Request terminated")
            .to_string()
    });
    let trigger = match get_str(c, "trigger") {
        Some(t) => Some((
            HeaderName::try_from(t).map_err(|e| e.to_string())?,
            t.to_string(),
        )),
        None => None,
    };
    Ok(RequestTermination {
        status,
        message,
        trigger,
    })
}

impl RequestTermination {
    /// Whether this request sets the plugin off: always, or when it names the trigger.
    fn triggered(&self, ctx: &Context<'_>) -> bool {
        let Some((header, name)) = &self.trigger else {
            return true;
        };
        ctx.header(header).is_some()
            || form_urlencoded::parse(ctx.query().unwrap_or("").as_bytes())
                .any(|(k, _)| k == name.as_str())
    }
}

impl Handler for RequestTermination {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        Access::Now(if self.triggered(ctx) {
            Flow::Respond(Reply::new(self.status, self.message.clone()))
        } else {
            Flow::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(config: Value) -> RequestTermination {
        let mut c = config.as_object().cloned().unwrap();
        crate::plugins::normalize_config("request-termination", &mut c).unwrap();
        from_config(&c).unwrap()
    }

    fn request(uri: &str, header: Option<&str>) -> Context<'static> {
        let mut b = http::Request::get(uri);
        if let Some(h) = header {
            b = b.header(h, "1");
        }
        Context::for_test(b.body(()).unwrap().into_parts().0)
    }

    #[test]
    fn without_a_trigger_every_request_is_answered() {
        let h = handler(json!({}));
        assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h.message, "Service Unavailable");
        assert!(h.triggered(&request("/x", None)));
    }

    #[test]
    fn with_a_trigger_only_requests_naming_it_are() {
        let h = handler(json!({"status_code": 403, "trigger": "x-stop"}));
        assert!(!h.triggered(&request("/x?a=1", None)));
        assert!(h.triggered(&request("/x", Some("X-Stop"))));
        assert!(h.triggered(&request("/x?x-stop", None)));
        let mut set_by_a_plugin = request("/x", None);
        set_by_a_plugin.set_upstream_header(
            HeaderName::from_static("x-stop"),
            Some("1".parse().unwrap()),
        );
        assert!(h.triggered(&set_by_a_plugin));
        let mut taken_off = request("/x", Some("X-Stop"));
        taken_off.set_upstream_header(HeaderName::from_static("x-stop"), None);
        assert!(!h.triggered(&taken_off));
    }

    #[test]
    fn bad_configs_are_refused_by_field() {
        for (config, field) in [
            (json!({"status_code": 42}), "status_code"),
            (json!({"trigger": "bad header"}), "trigger"),
        ] {
            let mut c = config.as_object().cloned().unwrap();
            match crate::plugins::normalize_config("request-termination", &mut c) {
                Err(crate::plugins::ConfigError::Fields(f)) => {
                    assert!(f.message().contains(field), "{}", f.message())
                }
                _ => panic!("{config} accepted"),
            }
        }
    }
}
