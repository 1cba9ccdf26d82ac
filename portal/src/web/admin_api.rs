//! The console's and the portal's writes and reads of entities go through the admin API's own
//! handlers, called in process: the same validation, the same field errors, the same store
//! and reload, and no second copy of any of it.
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// What the admin API answered.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// Field errors as `(dotted.field, message)`, for showing next to each input.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        flatten(&self.body["fields"], "", &mut out);
        out
    }

    pub fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .unwrap_or("the admin API refused this")
            .to_string()
    }
}

fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Form bodies (`a=b&c.d=e`, Kong's dotted keys) or JSON.
pub enum Payload {
    None,
    Form(Vec<(String, String)>),
    Json(Value),
    /// A document sent as it is (an OpenAPI document in YAML or JSON).
    Text(String),
}

pub async fn call(admin: &Router, method: Method, path: &str, payload: Payload) -> Answer {
    let builder = Request::builder().method(method).uri(path);
    let request = match payload {
        Payload::None => builder.body(Body::empty()),
        Payload::Form(pairs) => {
            let body = form_urlencoded_pairs(&pairs);
            builder
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
        }
        Payload::Json(v) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        Payload::Text(t) => builder
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(t)),
    };
    let Ok(request) = request else {
        return failure("the request could not be built");
    };
    let Ok(response) = admin.clone().oneshot(request).await;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, body }
}

/// Like `call`, but an answer other than 2xx becomes the response to send back as it is.
pub async fn call_ok(
    admin: &Router,
    method: Method,
    path: &str,
    payload: Payload,
) -> Result<Answer, axum::response::Response> {
    use axum::response::IntoResponse;
    let answer = call(admin, method, path, payload).await;
    if answer.status.is_success() {
        Ok(answer)
    } else {
        Err((answer.status, answer.message()).into_response())
    }
}

fn failure(message: &str) -> Answer {
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: serde_json::json!({ "message": message }),
    }
}

fn form_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
