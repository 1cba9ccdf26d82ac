//! request-size-limiting: refuses request bodies over `allowed_payload_size`, as Kong's plugin
//! does (kong/plugins/request-size-limiting/handler.lua): by the `Content-Length` header when
//! there is one (the body is never read), else by reading the body (chunked). Over the limit:
//! 413, or 417 when the client waits for `Expect: 100-continue` (it then sends nothing).
//!
//! A body without `Content-Length` is measured in memory, as other plugins read bodies, up to
//! `context::MAX_BUFFERED_BODY` (8 MiB); a larger one is refused with 413 whatever the limit
//! (the README lists this).
use super::context::MAX_BUFFERED_BODY;
use super::{get_bool, get_str, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use http::StatusCode;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "request-size-limiting",
    priority: 951,
    no_consumer: false,
    fields: &[
        field(
            "allowed_payload_size",
            Ty::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        field("size_unit", Ty::Enum(&["megabytes", "kilobytes", "bytes"])),
        field("require_content_length", Ty::Bool),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({"allowed_payload_size": 128, "size_unit": "megabytes",
        "require_content_length": false});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(_: &mut Map<String, Value>, _: &mut FieldErrors) {}

const EXCEEDED: &str = "Request size limit exceeded";

struct RequestSizeLimiting {
    allowed_bytes: u64,
    require_content_length: bool,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let unit: u64 = match get_str(c, "size_unit") {
        Some("bytes") => 1,
        Some("kilobytes") => 1024,
        _ => 1024 * 1024,
    };
    let size = c
        .get("allowed_payload_size")
        .and_then(Value::as_u64)
        .unwrap_or(128);
    Ok(Arc::new(RequestSizeLimiting {
        allowed_bytes: size.saturating_mul(unit),
        require_content_length: get_bool(c, "require_content_length"),
    }))
}

impl Handler for RequestSizeLimiting {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let headers = &ctx.parts.headers;
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(length) = declared {
            return Access::Now(self.judge(expects_continue(headers), length));
        }
        let chunked = headers
            .get(http::header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if self.require_content_length && !chunked {
            return Access::Now(Flow::Respond(Reply::new(
                StatusCode::LENGTH_REQUIRED,
                "A valid Content-Length header is required",
            )));
        }
        let expects = expects_continue(headers);
        Access::Later(Box::pin(async move {
            match ctx.body().await {
                Ok(body) => self.judge(expects, body.len() as u64),
                // Past what is read into memory: over any limit below that.
                Err(reply)
                    if reply.status == StatusCode::PAYLOAD_TOO_LARGE
                        && self.allowed_bytes < MAX_BUFFERED_BODY as u64 =>
                {
                    self.judge(expects, u64::MAX)
                }
                Err(reply) => Flow::Respond(reply),
            }
        }))
    }
}

impl RequestSizeLimiting {
    /// Lets a body of `length` bytes through, or refuses it as Kong does.
    fn judge(&self, expects_continue: bool, length: u64) -> Flow {
        if length <= self.allowed_bytes {
            return Flow::Continue;
        }
        let status = if expects_continue {
            StatusCode::EXPECTATION_FAILED
        } else {
            StatusCode::PAYLOAD_TOO_LARGE
        };
        Flow::Respond(Reply::new(status, EXCEEDED))
    }
}

/// Whether the client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::EXPECT).is_some_and(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    })
}
