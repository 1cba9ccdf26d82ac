//! Defences against web pages an operator happens to open: cross-site request forgery (a
//! page posting a form to a Tollgate listener) and DNS rebinding (a page whose own host name
//! is made to resolve to 127.0.0.1, so that its requests are same-origin to the browser).
//! The console and the portal refuse posts that do not come from their own pages, checked on
//! `Origin` (or `Referer` when a browser sends no Origin); the admin API, which no page of
//! its own calls, refuses every request a browser marks as cross-site and, when it has no
//! token, every `Host` that is not an address or a name the operator gave.
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: any request but GET and HEAD from another origin gets 403 and goes no further.
pub async fn refuse_cross_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(&req) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused").into_response();
    }
    next.run(req).await
}

/// Whether a browser sent the request from a page of another origin: `Sec-Fetch-Site` says
/// so, or an `Origin` names another host than the one the request went to. Requests from
/// non-browser clients (curl, decK, scripts) carry neither and pass.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    match text(header::ORIGIN) {
        Some(origin) => text(header::HOST).is_none_or(|host| !names_host(origin, host)),
        None => false,
    }
}

/// Whether `Host` is one a DNS-rebinding page cannot send: an IP address, `localhost`, or a
/// name in `names`. (Such a page's requests carry the attacker's own host name.) A request
/// without `Host` (HTTP/1.0, in-process calls) passes.
pub fn trusted_host(headers: &HeaderMap, names: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return headers.get(header::HOST).is_none();
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether `source` (an `Origin` or `Referer`) is on `host`.
fn names_host(source: &str, host: &str) -> bool {
    let rest = source.split_once("://").map_or("", |(_, r)| r);
    rest.split('/').next() == Some(host)
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
    source.is_some_and(|s| names_host(s, host))
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

    #[test]
    fn browsers_cross_site_marks_and_rebound_hosts_are_told_apart() {
        let headers = |pairs: &[(&str, &str)]| post(pairs).headers().clone();
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:8001")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8001"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[("origin", "null")])));
        let names = vec!["admin.internal".to_string()];
        for ok in [
            "127.0.0.1:8001",
            "localhost:8001",
            "[::1]:8001",
            "10.0.0.5",
            "Admin.Internal:8001",
        ] {
            assert!(trusted_host(&headers(&[("host", ok)]), &names), "{ok}");
        }
        for bad in [
            "evil.example:8001",
            "evil.example",
            "127.0.0.1.evil.example",
            "[evil]",
        ] {
            assert!(!trusted_host(&headers(&[("host", bad)]), &names), "{bad}");
        }
        assert!(trusted_host(&headers(&[]), &names));
    }
}
