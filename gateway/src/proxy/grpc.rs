//! gRPC through the proxy (gRPC over HTTP/2, PROTOCOL-HTTP2.md in grpc/grpc): which requests
//! are gRPC calls, the route checks Kong makes for `grpc` / `grpcs` routes
//! (kong/runloop/handler.lua), answers the gateway writes itself as Trailers-Only gRPC
//! responses (kong/pdk/response.lua), and the call's `grpc-status` for analytics.
use http::{HeaderMap, HeaderValue, StatusCode};

/// The `grpc-status` an answer of the gateway's HTTP `status` carries: Kong's table
/// (kong/pdk/response.lua `HTTP_TO_GRPC_STATUS`), except that no route (404) is
/// UNIMPLEMENTED and a bad gateway (502) UNAVAILABLE, as gRPC's own HTTP mapping has them
/// (doc/http-grpc-status-mapping.md).
pub fn status_for(status: StatusCode) -> u16 {
    match status.as_u16() {
        200..=299 => 0,
        401 => 16,
        403 => 7,
        404 | 501 => 12,
        409 => 6,
        429 => 8,
        499 => 1,
        502 | 503 => 14,
        504 => 4,
        400..=499 => 3,
        500..=599 => 13,
        _ => 2,
    }
}

/// Kong's `grpc-message` when the gateway has no message of its own.
pub fn message_for(code: u16) -> &'static str {
    const MESSAGES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    MESSAGES
        .get(usize::from(code))
        .copied()
        .unwrap_or("Unknown")
}

/// The headers that make a gateway answer a Trailers-Only gRPC response: the status (unless
/// the answer set its own), the message percent-encoded as gRPC requires, the gRPC content
/// type. Returns the status.
pub fn trailers_only(status: StatusCode, message: &str, headers: &mut HeaderMap) -> u16 {
    let code = status_in(headers).unwrap_or_else(|| status_for(status));
    let message = if message.is_empty() {
        message_for(code)
    } else {
        message
    };
    headers.insert("grpc-status", HeaderValue::from(code));
    headers.insert(
        "grpc-message",
        HeaderValue::from_str(&percent_encode(message)).expect("percent-encoded is ASCII"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    code
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Kong's checks of a request on a gRPC route (kong/runloop/handler.lua): a gRPC call over
/// HTTP/2, and over TLS when the route takes only `grpcs`; the answer to anything else.
/// `(grpc_content, version)`: whether the request's `Content-Type` says gRPC, and its HTTP version.
pub fn refusal(
    (grpc_content, version): (bool, http::Version),
    cleartext_allowed: bool,
    over_tls: bool,
) -> Option<crate::plugins::Reply> {
    use crate::plugins::Reply;
    if !grpc_content {
        let message = "Non-gRPC request matched gRPC route";
        return Some(Reply::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    if version != http::Version::HTTP_2 {
        let mut reply = Reply::new(StatusCode::UPGRADE_REQUIRED, "Please use HTTP2 protocol");
        let h = &mut reply.headers;
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        h.insert(http::header::UPGRADE, HeaderValue::from_static("HTTP/2"));
        return Some(reply);
    }
    if !cleartext_allowed && !over_tls {
        let mut reply = Reply::new(StatusCode::OK, "gRPC request matched gRPCs route");
        reply
            .headers
            .insert("grpc-status", HeaderValue::from_static("1"));
        return Some(reply);
    }
    None
}

/// The `grpc-status` in `headers` (trailers, or a Trailers-Only response's head).
pub fn status_in(headers: &HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_statuses_map_to_the_issues_and_kongs_grpc_codes() {
        let code = |s: u16| status_for(StatusCode::from_u16(s).unwrap());
        let cases = [
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 8),
            (502, 14),
            (503, 14),
            (504, 4),
            (400, 3),
            (413, 3),
            (500, 13),
            (200, 0),
        ];
        for (http, grpc) in cases {
            assert_eq!(code(http), grpc, "HTTP {http}");
        }
    }

    #[test]
    fn a_trailers_only_answer_carries_status_message_and_content_type() {
        let mut h = HeaderMap::new();
        let code = trailers_only(
            StatusCode::TOO_MANY_REQUESTS,
            "API rate limit exceeded",
            &mut h,
        );
        assert_eq!(code, 8);
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(h["grpc-message"], "API rate limit exceeded");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(status_in(&h), Some(8));
        let mut h = HeaderMap::new();
        trailers_only(StatusCode::UNAUTHORIZED, "100% été\n", &mut h);
        assert_eq!(h["grpc-message"], "100%25 %C3%A9t%C3%A9%0A");
        // A status the answer set stays; an empty message is the status's name.
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("1"));
        assert_eq!(trailers_only(StatusCode::OK, "", &mut h), 1);
        assert_eq!(h["grpc-message"], "Canceled");
        let mut h = HeaderMap::new();
        trailers_only(StatusCode::FORBIDDEN, "", &mut h);
        assert_eq!(h["grpc-message"], "PermissionDenied");
    }
}
