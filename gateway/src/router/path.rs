//! Request paths: the normal form the router matches on, and Kong's upstream path joining.
//!
//! Normalizing before matching is what stops `/api/../admin`, `/api/%2e%2e/admin` or
//! `//admin` from reaching a route it should not, and a backend from reading the path
//! differently from the router: percent-escapes of unreserved characters are decoded, other
//! escapes are kept (so `%2F` never becomes a separator), runs of slashes are merged into one
//! (nginx's `merge_slashes`, which Kong's router applies too, and the merged path is what goes
//! upstream), and dot segments are refused, also where a backend that decodes `%2F` or `%5C`,
//! or reads `\` as a separator, would find one (`/open/..%2fsecure`, `/open\..\secure`), as is
//! an escaped separator that would make an empty segment there (`/%2fsecure`). Paths stay
//! case-sensitive, as in Kong: `/Secure` is another path than `/secure`.

/// Why a request path was refused (answered with 400).
#[derive(Debug, PartialEq, Eq)]
pub enum BadPath {
    NotAbsolute,
    BadEscape,
    DotSegment,
    ControlByte,
    /// An escaped slash or a backslash where a backend that reads it as a separator would
    /// see an empty segment (`/%2fadmin` is `//admin` there).
    HiddenSeparator,
}

/// The path the router matches and the upstream receives.
pub fn normalize(raw: &str) -> Result<std::borrow::Cow<'_, str>, BadPath> {
    use std::borrow::Cow;
    if !raw.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let mut path = if bytes.contains(&b'%') {
        Cow::Owned(decode_unreserved(bytes)?)
    } else {
        Cow::Borrowed(raw)
    };
    // One pass tells which of the rarer checks a path needs; most need none.
    let (mut dotted, mut hidden, mut doubled, mut prev) = (false, false, false, 0u8);
    for &b in path.as_bytes() {
        if b < 0x20 || b == 0x7f {
            return Err(BadPath::ControlByte);
        }
        dotted |= b == b'.';
        hidden |= b == b'\\' || b == b'%';
        doubled |= b == b'/' && prev == b'/';
        prev = b;
    }
    if doubled {
        path = Cow::Owned(merge_slashes(&path));
    }
    if dotted || hidden {
        check_segments(&path)?;
    }
    Ok(path)
}

/// Runs of slashes as one slash.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Refuses dot segments, counting escaped slashes and backslashes as separators too (a
/// backend may decode or read them so), and escaped separators that would make an empty
/// segment (a trailing one, `/dir%2F`, is let through).
fn check_segments(path: &str) -> Result<(), BadPath> {
    for segment in path.split('/') {
        let mut pieces = segment
            .split('\\')
            .flat_map(|p| p.split("%2F"))
            .flat_map(|p| p.split("%5C"))
            .peekable();
        while let Some(piece) = pieces.next() {
            if piece == "." || piece == ".." {
                return Err(BadPath::DotSegment);
            }
            if piece.is_empty() && pieces.peek().is_some() {
                return Err(BadPath::HiddenSeparator);
            }
        }
    }
    Ok(())
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

/// The path sent upstream, by Kong's `path_handling` rules (`get_upstream_uri_v0` and the v1
/// branch of `kong/router/traditional.lua`): the service's path `base` joined with the request
/// path `req`, or with what follows the route's matched prefix when `strip` is set.
/// `matched_len` is that prefix's length (0 for a route without paths, whose "prefix" is then
/// the leading slash, as in Kong). Returned as pieces to write one after the other, so the
/// request line is written without a new string.
pub fn upstream_path<'a>(
    base: &'a str,
    req: &'a str,
    matched_len: usize,
    strip: bool,
    v1: bool,
) -> [&'a str; 3] {
    let without_slash = &req[1.min(req.len())..];
    let base_slash = base.ends_with('/');
    // `base` without its trailing slash, where a postfix brings its own.
    let trimmed = &base[..base.len() - usize::from(base_slash)];
    if !strip {
        return if base_slash || v1 {
            [base, without_slash, ""]
        } else if req == "/" {
            [base, "", ""]
        } else {
            [base, req, ""]
        };
    }
    let postfix = sanitize_postfix(req.get(matched_len.max(1)..).unwrap_or(""));
    if v1 {
        return if base_slash && postfix.starts_with('/') {
            [trimmed, postfix, ""]
        } else {
            [base, postfix, ""]
        };
    }
    match (base_slash, postfix) {
        (true, "") if base == "/" => ["/", "", ""],
        (true, "") if req.ends_with('/') => [base, "", ""],
        (true, "") => [trimmed, "", ""],
        (true, p) if p.starts_with('/') => [trimmed, p, ""],
        (true, p) => [base, p, ""],
        (false, "") if req.len() > 1 && req.ends_with('/') => [base, "/", ""],
        (false, "") => [base, "", ""],
        (false, p) if p.starts_with('/') => [base, p, ""],
        (false, p) => [base, "/", p],
    }
}

/// What follows the matched prefix, less a leading `.`/`..` segment remnant (`/route./req`
/// matched by `/route` leaves `req`), as Kong's `sanitize_uri_postfix` does.
fn sanitize_postfix(postfix: &str) -> &str {
    match postfix {
        "." | ".." => "",
        p => p
            .strip_prefix("./")
            .or_else(|| p.strip_prefix("../"))
            .unwrap_or(p),
    }
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

    /// Issue 22, item 1: what a backend that merges slashes, decodes `%2F` or reads `\` as a
    /// separator would resolve differently from the router.
    #[test]
    fn slashes_are_merged_and_hidden_separators_refused() {
        assert_eq!(normalize("//secure").unwrap(), "/secure");
        assert_eq!(normalize("///secure//x/").unwrap(), "/secure/x/");
        assert_eq!(normalize("/%2fsecure"), Err(BadPath::HiddenSeparator));
        assert_eq!(normalize("/a/%2F%2Fb"), Err(BadPath::HiddenSeparator));
        assert_eq!(normalize("/open/..%2fsecure"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/open/%2e%2e%5csecure"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/open\\..\\secure"), Err(BadPath::DotSegment));
        assert_eq!(normalize("/open\\\\secure"), Err(BadPath::HiddenSeparator));
        // Escaped slashes inside a segment are data (GitLab's `group%2Fproject`).
        assert_eq!(
            normalize("/projects/group%2fproject").unwrap(),
            "/projects/group%2Fproject"
        );
        assert_eq!(normalize("/files/dir%2F").unwrap(), "/files/dir%2F");
        assert_eq!(normalize("/Secure").unwrap(), "/Secure");
    }

    /// A few rows of Kong's path-handling table (spec/fixtures/router_path_handling_tests.lua,
    /// line numbers below); tests/kong_paths.rs runs the whole table through the proxy.
    #[test]
    fn kong_path_handling_rows() {
        // (line, service path, route path, strip, v1, request, expected)
        let rows = [
            (42, "/srv", Some("/rou"), true, false, "/roureq", "/srv/req"),
            (43, "/srv", Some("/rou"), true, true, "/roureq", "/srvreq"),
            (46, "/srv/", Some("/rou"), true, false, "/rou", "/srv"),
            (47, "/srv/", Some("/rou"), true, true, "/rou", "/srv/"),
            (
                109,
                "/service",
                None,
                true,
                true,
                "/route/",
                "/serviceroute/",
            ),
            (
                115,
                "/service",
                Some("/route"),
                true,
                false,
                "/route./req",
                "/service/req",
            ),
            (
                121,
                "/service/",
                Some("/route"),
                true,
                true,
                "/route%2E/req",
                "/service/req",
            ),
            (
                141,
                "/service",
                Some("/route"),
                false,
                false,
                "/route%2E/req",
                "/service/route./req",
            ),
        ];
        for (line, service, route, strip, v1, request, expected) in rows {
            let norm = normalize(request).unwrap();
            let matched = route.map_or(0, str::len);
            let got = upstream_path(service, &norm, matched, strip, v1).concat();
            assert_eq!(got, expected, "Kong's table line {line}");
        }
    }
}
