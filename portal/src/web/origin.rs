//! Cross-site request forgery defence for form posts: a post must come from a page of the
//! site it is sent to, checked on `Origin` (or `Referer` when a browser sends no Origin).
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: any request but GET and HEAD from another origin gets 403 and goes no further.
pub async fn refuse_cross_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(&req) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused").into_response();
    }
    next.run(req).await
}

/// Whether the request's `Origin` (or `Referer`) names the host it was sent to.
pub fn same_origin(req: &Request) -> bool {
    let h = req.headers();
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = h
        .get(header::ORIGIN)
        .or_else(|| h.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    source.is_some_and(|s| {
        let rest = s.split_once("://").map_or("", |(_, r)| r);
        rest.split('/').next() == Some(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::post("/logout");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn only_posts_from_the_console_itself_pass() {
        assert!(same_origin(&post(&[
            ("host", "127.0.0.1:8002"),
            ("origin", "http://127.0.0.1:8002")
        ])));
        assert!(same_origin(&post(&[
            ("host", "c.example"),
            ("referer", "https://c.example/login?x")
        ])));
        assert!(!same_origin(&post(&[
            ("host", "c.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&post(&[
            ("host", "c.example"),
            ("origin", "https://c.example.evil.example")
        ])));
        assert!(!same_origin(&post(&[("host", "c.example")])));
    }
}
