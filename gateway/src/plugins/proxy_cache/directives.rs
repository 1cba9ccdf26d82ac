//! What proxy-cache reads from headers: `Cache-Control` directives and a resource's TTL
//! (Kong's `parse_directive_header` and `calculate_resource_ttl` in kong/tools/http.lua), and
//! media types compared as Kong's `parse_mime_type` parses them (kong/tools/mime_type.lua).
use http::header::GetAll;
use http::HeaderValue;

/// The `Cache-Control` directives proxy-cache acts on (RFC 9111 §5.2), of a request or a
/// response. A number that does not parse counts as absent.
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub only_if_cached: bool,
    pub max_age: Option<i64>,
    pub s_maxage: Option<i64>,
    /// `Some(None)`: `max-stale` without a value (any staleness is accepted).
    pub max_stale: Option<Option<i64>>,
    pub min_fresh: Option<i64>,
}

impl Directives {
    /// The directives of every `Cache-Control` header given, as one list.
    pub fn parse(values: GetAll<'_, HeaderValue>) -> Directives {
        let mut d = Directives::default();
        for value in values {
            let Ok(text) = value.to_str() else { continue };
            for piece in text.split(',') {
                d.add(piece);
            }
        }
        d
    }

    fn add(&mut self, piece: &str) {
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v.trim().trim_matches('"'))),
            None => (piece, None),
        };
        let number = value.and_then(|v| v.parse::<f64>().ok()).map(|n| n as i64);
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "only-if-cached" => self.only_if_cached = true,
            "max-age" => self.max_age = number,
            "s-maxage" => self.s_maxage = number,
            "max-stale" => self.max_stale = Some(number),
            "min-fresh" => self.min_fresh = number,
            _ => {}
        }
    }

    /// How long a response may be served from the cache, in seconds: `s-maxage`, else
    /// `max-age`, else until `Expires` (`now` in Unix seconds); 0 when none says.
    pub fn resource_ttl(&self, expires: Option<&HeaderValue>, now: u64) -> u64 {
        let from_expires = || {
            let text = expires?.to_str().ok()?;
            let at = httpdate::parse_http_date(text).ok()?;
            let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            Some(at as i64 - now as i64)
        };
        let ttl = self.s_maxage.or(self.max_age).or_else(from_expires);
        ttl.unwrap_or(0).max(0) as u64
    }
}

/// A media type: lowercase type and subtype (`*` for a lone `*`), parameters with lowercase
/// names, sorted.
#[derive(Debug, PartialEq)]
pub struct MediaType {
    kind: String,
    subtype: String,
    params: Vec<(String, String)>,
}

impl MediaType {
    /// `type/subtype *(; name=value)`, or `None` for anything else (Kong then caches nothing).
    pub fn parse(text: &str) -> Option<MediaType> {
        let mut pieces = text.split(';');
        let head = pieces.next()?.trim();
        let (kind, subtype) = match head.split_once('/') {
            Some((t, s)) if is_token(t) && is_token(s) => (t, s),
            None if head == "*" => ("*", "*"),
            _ => return None,
        };
        let mut params = Vec::new();
        for piece in pieces {
            let (name, value) = piece.trim().split_once('=')?;
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"')?,
                None if is_token(value) => value,
                None => return None,
            };
            if !is_token(name) {
                return None;
            }
            params.push((name.to_ascii_lowercase(), value.to_string()));
        }
        params.sort();
        Some(MediaType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            params,
        })
    }

    /// Whether `actual` (a response's type) is one this configured type caches: the same
    /// type and subtype, or `*` for either, and the very same parameters.
    pub fn accepts(&self, actual: &MediaType) -> bool {
        (self.kind == "*" || self.kind == actual.kind)
            && (self.subtype == "*" || self.subtype == actual.subtype)
            && self.params == actual.params
    }
}

/// RFC 2045's token: US-ASCII without controls, spaces or separators.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !br#"()<>@,;:\"/[]?={}"#.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn directives(values: &[&str]) -> Directives {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("cache-control", HeaderValue::from_str(v).unwrap());
        }
        Directives::parse(h.get_all("cache-control"))
    }

    #[test]
    fn directives_are_read_from_every_header_case_insensitively() {
        let d = directives(&["public, Max-Age=60", "no-cache", "max-stale"]);
        assert_eq!(d.max_age, Some(60));
        assert!(d.no_cache && !d.no_store);
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(directives(&["max-age=\"5\""]).max_age, Some(5));
        assert_eq!(directives(&["max-age=soon"]).max_age, None);
    }

    // spec/03-plugins/31-proxy-cache/02-access_spec.lua:668 (max-age without public),
    // :681 (s-maxage only), :692 (Expires without Cache-Control).
    #[test]
    fn a_resource_ttl_comes_from_s_maxage_max_age_or_expires() {
        let now = 1_800_000_000;
        assert_eq!(directives(&["max-age=10"]).resource_ttl(None, now), 10);
        assert_eq!(
            directives(&["s-maxage=20, max-age=10"]).resource_ttl(None, now),
            20
        );
        let expires = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(now + 30),
        );
        let expires = HeaderValue::from_str(&expires).unwrap();
        assert_eq!(directives(&[]).resource_ttl(Some(&expires), now), 30);
        assert_eq!(directives(&[]).resource_ttl(Some(&expires), now + 40), 0);
        assert_eq!(directives(&[]).resource_ttl(None, now), 0);
    }

    // spec/03-plugins/31-proxy-cache/02-access_spec.lua:1254-1317 (wildcards, parameters,
    // an invalid content type from the upstream or in the config).
    #[test]
    fn media_types_match_by_type_subtype_wildcards_and_exact_parameters() {
        let m = |s| MediaType::parse(s).unwrap();
        assert!(m("*/*").accepts(&m("application/xml")));
        assert!(m("*").accepts(&m("text/plain")));
        assert!(m("application/*").accepts(&m("Application/JSON")));
        assert!(m("application/json; charset=UTF-8").accepts(&m("application/json;charset=UTF-8")));
        assert!(!m("application/json; charset=UTF-8").accepts(&m("application/json")));
        assert!(!m("application/json").accepts(&m("application/json; charset=utf-8")));
        assert!(
            !m("application/json; charset=UTF-8").accepts(&m("application/json; charset=utf-8"))
        );
        assert_eq!(MediaType::parse("application/json; charset"), None);
        assert_eq!(MediaType::parse("text/plain, application/json"), None);
        assert_eq!(MediaType::parse(""), None);
    }
}
