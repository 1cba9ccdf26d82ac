//! Request paths: the normal form the router matches on, and Kong's upstream path joining.
//!
//! Normalizing before matching is what stops `/api/../admin` or `/api/%2e%2e/admin` from
//! reaching a route it should not: percent-escapes of unreserved characters are decoded,
//! other escapes are kept (so `%2F` never becomes a separator), and dot segments are refused.

/// Why a request path was refused (answered with 400).
#[derive(Debug, PartialEq, Eq)]
pub enum BadPath {
    NotAbsolute,
    BadEscape,
    DotSegment,
    ControlByte,
}

/// The path the router matches and the upstream receives.
pub fn normalize(raw: &str) -> Result<std::borrow::Cow<'_, str>, BadPath> {
    if !raw.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let decoded = if bytes.contains(&b'%') {
        std::borrow::Cow::Owned(decode_unreserved(bytes)?)
    } else {
        std::borrow::Cow::Borrowed(raw)
    };
    if decoded.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(BadPath::ControlByte);
    }
    // Most paths hold no dot at all: one byte scan, and the segments are looked at only then.
    let dotted = decoded.bytes().any(|b| b == b'.');
    if dotted && decoded.split('/').any(|s| s == "." || s == "..") {
        return Err(BadPath::DotSegment);
    }
    Ok(decoded)
}

fn decode_unreserved(bytes: &[u8]) -> Result<String, BadPath> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(BadPath::BadEscape)?;
        let v = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(BadPath::BadEscape)?;
        if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
            out.push(v as char);
        } else if v == 0 {
            return Err(BadPath::ControlByte);
        } else {
            out.push('%');
            out.push_str(&format!("{v:02X}"));
        }
        i += 3;
    }
    Ok(out)
}

/// The path sent upstream: the service's path joined with what is left of the request path
/// once the matched prefix is stripped (Kong's `path_handling` v0 and v1). Given as the pieces
/// to write one after the other, so that the request line is written without a new string.
pub fn upstream_path<'a>(service_path: Option<&'a str>, rest: &'a str, v1: bool) -> [&'a str; 3] {
    let base = service_path.unwrap_or("/");
    if base == "/" {
        let slash = if rest.starts_with('/') { "" } else { "/" };
        return [slash, rest, ""];
    }
    if base.ends_with('/') {
        return [base, rest.strip_prefix('/').unwrap_or(rest), ""];
    }
    if v1 && !rest.is_empty() && !rest.starts_with('/') {
        return [base, "/", rest];
    }
    [base, rest, ""]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_escapes() {
        assert_eq!(normalize("/api/../admin"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/api/%2e%2E/admin"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/api/%2e"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/api/%zz"), Err(BadPath::BadEscape));
        assert_eq!(normalize("/api/%"), Err(BadPath::BadEscape));
        assert_eq!(normalize("/api/%00"), Err(BadPath::ControlByte));
        assert_eq!(normalize("api"), Err(BadPath::NotAbsolute));
        assert_eq!(normalize("/%61pi/a%2fb").unwrap(), "/api/a%2Fb");
        assert_eq!(normalize("/api/..data/.x").unwrap(), "/api/..data/.x");
    }

    #[test]
    fn kong_v0_joining_table() {
        // service path, rest after stripping, upstream path (Kong's path_handling v0 table).
        let cases = [
            (None, "/req", "/req"),
            (None, "", "/"),
            (Some("/srv"), "req", "/srvreq"),
            (Some("/srv"), "/req", "/srv/req"),
            (Some("/srv"), "", "/srv"),
            (Some("/srv/"), "/req", "/srv/req"),
            (Some("/srv/"), "req", "/srv/req"),
        ];
        for (base, rest, want) in cases {
            assert_eq!(
                upstream_path(base, rest, false).concat(),
                want,
                "{base:?} + {rest}"
            );
        }
        assert_eq!(
            upstream_path(Some("/srv"), "req", true).concat(),
            "/srv/req"
        );
    }
}
