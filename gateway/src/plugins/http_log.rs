//! http-log: each finished request's log entry sent to an HTTP server, as Kong's plugin
//! does (kong/plugins/http-log): `POST` (or `PUT`, `PATCH`) of the entry as JSON, or of a JSON
//! array of entries when `queue.max_batch_size` is above 1, with `headers` of the operator's
//! and Basic authorization from the endpoint's user info. Entries wait in a bounded queue
//! (`log_queue`) and are retried there; the proxy never waits for the log server. The
//! certificate of an `https` endpoint is not verified (Kong's `ssl_verify = false`).
use super::log_queue::{self, Deliver, QUEUE_FIELDS};
use super::{get_str, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub const SPEC: PluginSpec = PluginSpec {
    name: "http-log",
    priority: 12,
    no_consumer: false,
    fields: &[
        field("http_endpoint", Ty::Str),
        field("method", Ty::Enum(&["POST", "PUT", "PATCH"])),
        field(
            "content_type",
            Ty::Enum(&["application/json", "application/json; charset=utf-8"]),
        ),
        field("timeout", MILLISECONDS),
        field("keepalive", MILLISECONDS),
        // Kong 2's settings, deprecated in Kong 3: `queue_size` and `flush_timeout` still
        // set the queue's batch size and delay, `retry_count` is read and ignored (as in Kong).
        field(
            "retry_count",
            Ty::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        field(
            "queue_size",
            Ty::Int {
                min: 1,
                max: 1_000_000,
            },
        ),
        field(
            "flush_timeout",
            Ty::Number {
                min: 0.0,
                max: 3600.0,
            },
        ),
        field("headers", Ty::Object),
        field("queue", Ty::Record(QUEUE_FIELDS)),
        field("custom_fields_by_lua", Ty::NullOnly(NO_LUA)),
    ],
    defaults,
    validate,
    build,
};

const MILLISECONDS: Ty = Ty::Number {
    min: 0.0,
    max: 2_147_483_646.0,
};

/// Why `custom_fields_by_lua` is refused (README "Differences").
pub const NO_LUA: &str = "custom_fields_by_lua runs Lua, which Tollgate does not run";

fn defaults() -> Map<String, Value> {
    let d = json!({
        "http_endpoint": null, "method": "POST", "content_type": "application/json",
        "timeout": 10000, "keepalive": 60000, "retry_count": null, "queue_size": null,
        "flush_timeout": null, "headers": null, "custom_fields_by_lua": null,
    });
    d.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let legacy = [
        ("queue_size", "max_batch_size"),
        ("flush_timeout", "max_coalescing_delay"),
    ];
    for (old, new) in legacy {
        if let Some(v) = c.get(old).filter(|v| !v.is_null()).cloned() {
            let queue = c.entry("queue").or_insert_with(|| json!({}));
            if let Value::Object(q) = queue {
                q.entry(new).or_insert(v);
            }
        }
    }
    log_queue::validate_queue(c, errors);
    let endpoint = match get_str(c, "http_endpoint") {
        None => return errors.add("http_endpoint", "required field missing"),
        Some(e) => e,
    };
    let Some(parsed) = endpoint_url(endpoint) else {
        return errors.add(
            "http_endpoint",
            "not a valid URL: give http:// or https://, a host and an optional path",
        );
    };
    match c.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            let userinfo = !parsed.username().is_empty();
            let problem = headers.iter().find_map(|(n, v)| check_header(n, v).err());
            if let Some(problem) = problem {
                errors.add("headers", problem);
            } else if userinfo
                && headers
                    .keys()
                    .any(|n| n.eq_ignore_ascii_case("authorization"))
            {
                errors.add(
                    "@entity",
                    "specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed",
                );
            }
        }
        Some(_) => errors.add("headers", "expected a map"),
    }
}

fn endpoint_url(text: &str) -> Option<url::Url> {
    let parsed = url::Url::parse(text).ok()?;
    let scheme_ok = matches!(parsed.scheme(), "http" | "https");
    (scheme_ok && parsed.host_str().is_some_and(|h| !h.is_empty())).then_some(parsed)
}

/// Kong's rules for `headers`: a header name, a non-empty string value, none of the headers
/// the plugin writes itself (Kong's messages name them in their usual case).
fn check_header(name: &str, value: &Value) -> Result<(), String> {
    for own in ["Host", "Content-Length", "Content-Type"] {
        if name.eq_ignore_ascii_case(own) {
            return Err(format!("cannot contain '{own}' header"));
        }
    }
    if HeaderName::try_from(name).is_err() {
        return Err(format!(
            "bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ));
    }
    match value.as_str() {
        None => Err("expected a string".into()),
        Some("") => Err("length must be at least 1".into()),
        Some(text) if HeaderValue::from_str(text).is_err() => {
            Err("not a valid header value".into())
        }
        Some(_) => Ok(()),
    }
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let endpoint = get_str(c, "http_endpoint").ok_or("http_endpoint is required")?;
    let url = endpoint_url(endpoint).ok_or("http_endpoint is not a URL")?;
    let policy = log_queue::policy(c);
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let batch = policy.max_batch_size;
    log_queue::shipper(shared, ("http-log", c), shown.to_string(), &policy, || {
        Ok(Box::new(Delivery::new(c, &url, batch)?))
    })
}

/// Sends batches to one endpoint over a kept-alive connection.
struct Delivery {
    client: log_queue::HttpsClient,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    /// One entry per request, sent as an object (Kong, when `max_batch_size` is 1).
    single: bool,
}

impl Delivery {
    fn new(c: &Map<String, Value>, url: &url::Url, batch: usize) -> Result<Delivery, String> {
        let millis = |k: &str, default: f64| {
            Duration::from_secs_f64(c.get(k).and_then(Value::as_f64).unwrap_or(default) / 1000.0)
        };
        let client =
            log_queue::https_client(millis("timeout", 10_000.0), millis("keepalive", 60_000.0));
        let mut bare = url.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let method = get_str(c, "method").unwrap_or("POST");
        Ok(Delivery {
            client,
            method: Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?,
            uri: bare.as_str().parse().map_err(|e| format!("{e}"))?,
            headers: request_headers(c, url)?,
            timeout: millis("timeout", 10_000.0),
            single: batch == 1,
        })
    }
}

/// `Content-Type`, Basic authorization from the URL's user info, then the operator's.
fn request_headers(c: &Map<String, Value>, url: &url::Url) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    let content_type = get_str(c, "content_type").unwrap_or("application/json");
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).map_err(|e| e.to_string())?,
    );
    if !url.username().is_empty() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let userinfo = format!(
            "{}:{}",
            decode(url.username()),
            decode(url.password().unwrap_or(""))
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(userinfo);
        let value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|e| e.to_string())?;
        h.insert(http::header::AUTHORIZATION, value);
    }
    if let Some(Value::Object(extra)) = c.get("headers") {
        for (name, value) in extra {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?;
            let value =
                HeaderValue::from_str(value.as_str().unwrap_or("")).map_err(|e| e.to_string())?;
            h.entry(name).or_insert(value);
        }
    }
    Ok(h)
}

/// JSON documents as one JSON array.
fn json_array(documents: &[Bytes]) -> Bytes {
    let mut array = Vec::with_capacity(documents.iter().map(|d| d.len() + 1).sum::<usize>() + 2);
    array.push(b'[');
    for (i, d) in documents.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(d);
    }
    array.push(b']');
    Bytes::from(array)
}

/// How much of a log server's answer is read (it is only logged when the delivery failed).
const MAX_ANSWER: usize = 4096;

impl Deliver for Delivery {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let body = if self.single && batch.len() == 1 {
                batch[0].clone()
            } else {
                json_array(batch)
            };
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = self.method.clone();
            *req.uri_mut() = self.uri.clone();
            *req.headers_mut() = self.headers.clone();
            let exchange = async {
                let resp = self
                    .client
                    .request(req)
                    .await
                    .map_err(|e| format!("failed request to {}: {e}", self.uri))?;
                let status = resp.status();
                let answer = Limited::new(resp.into_body(), MAX_ANSWER).collect().await;
                let answer = answer.map(|b| b.to_bytes()).unwrap_or_default();
                if status.as_u16() < 300 {
                    Ok(())
                } else {
                    Err(format!(
                        "request to {} returned status code {status} and body {}",
                        self.uri,
                        String::from_utf8_lossy(&answer)
                    ))
                }
            };
            tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| format!("request to {} timed out", self.uri))?
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::checked_config;
    use serde_json::json;

    // spec/03-plugins/03-http-log/02-schema_spec.lua.
    #[test]
    fn schema_follows_kong() {
        let ok = |c| checked_config("http-log", c).unwrap();
        let c = ok(json!({"http_endpoint": "http://myservice.test/path"}));
        assert_eq!(c["method"], "POST");
        assert_eq!(c["queue"]["max_batch_size"], 1);
        assert_eq!(c["queue"]["max_entries"], 10000);
        let c = ok(json!({"http_endpoint": "http://x.test", "headers": {"X-My-Header": "123"}}));
        assert_eq!(c["headers"]["X-My-Header"], "123");
        // :167 Kong 2's settings still set the queue.
        let c = ok(
            json!({"http_endpoint": "http://x.test", "retry_count": 23, "queue_size": 5, "flush_timeout": 2}),
        );
        assert_eq!(
            (
                c["queue"]["max_batch_size"].as_u64(),
                c["queue"]["max_coalescing_delay"].as_f64()
            ),
            (Some(5), Some(2.0))
        );
        let err = |c| checked_config("http-log", c).unwrap_err();
        assert_eq!(err(json!({}))["http_endpoint"], "required field missing");
        assert!(err(json!({"http_endpoint": "ftp://x.test"}))["http_endpoint"].is_string());
        // 02-schema_spec.lua:94-165.
        for (name, value, message) in [
            ("X-My-Header", "", "length must be at least 1"),
            ("Host", "MyHost", "cannot contain 'Host' header"),
            (
                "coNTEnt-Length",
                "123",
                "cannot contain 'Content-Length' header",
            ),
            (
                "coNTEnt-Type",
                "bad",
                "cannot contain 'Content-Type' header",
            ),
        ] {
            let e = err(json!({"http_endpoint": "http://x.test", "headers": {name: value}}));
            assert_eq!(e["headers"], message);
        }
        let e = err(json!({"http_endpoint": "http://x.test", "headers": {"x-a": ["1", "2"]}}));
        assert_eq!(e["headers"], "expected a string");
        let e = err(json!({"http_endpoint": "http://hi:there@x.test",
            "headers": {"AuthoRIZATion": "bad"}}));
        assert_eq!(
            e["@entity"],
            json!(["specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed"])
        );
        // :63 user info without headers is fine.
        assert!(checked_config("http-log", json!({"http_endpoint": "http://a:b@x.test"})).is_ok());
        let e = err(json!({"http_endpoint": "http://x.test", "method": "GET"}));
        assert_eq!(e["method"], "expected one of: POST, PUT, PATCH");
        let e = err(json!({"http_endpoint": "http://x.test", "queue": {"max_batch_size": 0}}));
        assert_eq!(
            e["queue"]["max_batch_size"],
            "value should be between 1 and 1000000"
        );
        let e = err(
            json!({"http_endpoint": "http://x.test", "custom_fields_by_lua": {"a": "return 1"}}),
        );
        assert_eq!(e["custom_fields_by_lua"], super::NO_LUA);
    }
}
