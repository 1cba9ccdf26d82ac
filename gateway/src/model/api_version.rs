//! API versions: which version of its service's API a route serves, and the deprecation an
//! operator marks on a version. A route serves a version by path (its paths begin with a
//! segment like `/v1/` or `/v2.1/`) or by header (it matches one of [`VERSION_HEADERS`] with
//! one plain value: `X-API-Version: 2`). The service's `portal.versions` block marks versions
//! deprecated; the proxy then answers their requests with `Deprecation` (RFC 9745), `Sunset`
//! (RFC 8594) and a `Link` with `rel="deprecation"`, and the portal shows the notice. One
//! definition for the gateway, the portal and the admin API's validation.
use super::route::Route;
use super::schema::{self, field, Field, FieldErrors, Ty};
use http::header::{HeaderName, HeaderValue, LINK};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The request headers a route can name its version by (lower case), as gateways and API
/// style guides name them.
pub const VERSION_HEADERS: [&str; 4] = [
    "x-api-version",
    "api-version",
    "accept-version",
    "x-version",
];

/// The fields of one version's entry in `portal.versions`.
const DEPRECATION_FIELDS: &[Field] = &[
    field("deprecated_at", Ty::Str),
    field("sunset_at", Ty::Str),
    field("link", Ty::Str),
    field("notice", Ty::Str),
];
const MAX_VERSIONS: usize = 64;
const MAX_LABEL: usize = 64;
const MAX_NOTICE: usize = 2000;

pub static DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
pub static SUNSET: HeaderName = HeaderName::from_static("sunset");

/// `/v2/pets` → `v2`; `/pets` → none.
pub fn of_path(path: &str) -> Option<&str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    let digits = first.strip_prefix('v')?;
    let valid = !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    valid.then_some(first)
}

/// How a route names the versions it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served<'a> {
    /// Every request it takes is of one version, named by a header.
    Header { name: &'a str, label: &'a str },
    /// Each of its paths is of the version its first segment names (or of none).
    Paths,
}

impl Served<'_> {
    /// The version a request to `path` on this route is of.
    pub fn label<'p>(&'p self, path: &'p str) -> Option<&'p str> {
        match self {
            Served::Header { label, .. } => Some(label),
            Served::Paths => of_path(path),
        }
    }

    /// The header that selects the version, when one does.
    pub fn header(&self) -> Option<&str> {
        match self {
            Served::Header { name, .. } => Some(name),
            Served::Paths => None,
        }
    }
}

/// The version header a route matches, with its one plain value; else its paths decide.
pub fn served(route: &Route) -> Served<'_> {
    let by_header = route.headers.iter().flatten().find_map(|(name, values)| {
        let known = VERSION_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name));
        match values.as_slice() {
            [one] if known && !one.starts_with("~*") => Some(Served::Header {
                name: name.as_str(),
                label: one.as_str(),
            }),
            _ => None,
        }
    });
    by_header.unwrap_or(Served::Paths)
}

/// The versions `route` serves: its version header's, or each one its paths name, once.
pub fn labels(route: &Route) -> Vec<&str> {
    match served(route) {
        Served::Header { label, .. } => vec![label],
        Served::Paths => {
            let mut out: Vec<&str> = Vec::new();
            for label in route.paths.iter().flatten().filter_map(|p| of_path(p)) {
                if !out.contains(&label) {
                    out.push(label);
                }
            }
            out
        }
    }
}

/// A version the operator marked deprecated, read from its (checked) `portal.versions` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Deprecation {
    pub label: String,
    /// As written: an RFC 3339 time or a date (midnight UTC).
    pub deprecated_at: String,
    pub sunset_at: Option<String>,
    pub link: Option<String>,
    pub notice: Option<String>,
}

impl Deprecation {
    /// The deprecated versions of a service's `portal` block, in label order.
    pub fn of_listing(portal: &Map<String, Value>) -> Vec<Deprecation> {
        let Some(Value::Object(versions)) = portal.get("versions") else {
            return Vec::new();
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        versions
            .iter()
            .filter_map(|(label, v)| {
                Some(Deprecation {
                    label: label.clone(),
                    deprecated_at: text(v, "deprecated_at")?,
                    sunset_at: text(v, "sunset_at"),
                    link: text(v, "link"),
                    notice: text(v, "notice"),
                })
            })
            .collect()
    }

    /// The response headers that say so.
    pub fn headers(&self) -> Option<Headers> {
        let since = unix_seconds(&self.deprecated_at)?;
        let sunset = match &self.sunset_at {
            Some(s) => {
                let at =
                    SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds(s)?.max(0) as u64);
                Some(HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()?)
            }
            None => None,
        };
        let link = match &self.link {
            Some(l) => Some(
                HeaderValue::from_str(&format!("<{l}>; rel=\"deprecation\"; type=\"text/html\""))
                    .ok()?,
            ),
            None => None,
        };
        Some(Headers {
            deprecation: HeaderValue::from_str(&format!("@{since}")).ok()?,
            sunset,
            link,
        })
    }
}

/// A deprecated version's response headers, made once per configuration.
#[derive(Debug, Clone)]
pub struct Headers {
    /// `@<unix seconds>`, RFC 9745's structured date.
    pub deprecation: HeaderValue,
    /// An HTTP date, RFC 8594.
    pub sunset: Option<HeaderValue>,
    /// `<url>; rel="deprecation"`, added beside any `Link` the upstream sent.
    pub link: Option<HeaderValue>,
}

impl Headers {
    pub fn apply(&self, to: &mut http::HeaderMap) {
        to.insert(DEPRECATION.clone(), self.deprecation.clone());
        if let Some(s) = &self.sunset {
            to.insert(SUNSET.clone(), s.clone());
        }
        if let Some(l) = &self.link {
            to.append(LINK, l.clone());
        }
    }
}

/// What the proxy adds to the responses of a route's deprecated versions.
#[derive(Debug)]
pub enum RouteDeprecation {
    /// Every request the route takes is of one deprecated version (named by a header).
    All(Arc<Headers>),
    /// Requests whose path begins with a deprecated version's segment.
    ByPath(Vec<(Box<str>, Arc<Headers>)>),
}

impl RouteDeprecation {
    /// The deprecations, of the service's `deprecated` ones, that `route` serves.
    pub fn of(route: &Route, deprecated: &[(String, Arc<Headers>)]) -> Option<RouteDeprecation> {
        let find = |label: &str| deprecated.iter().find(|(l, _)| l == label).map(|(_, h)| h);
        let mut mine = labels(route)
            .into_iter()
            .filter_map(|label| Some((label, find(label)?.clone())));
        match served(route) {
            Served::Header { .. } => mine.next().map(|(_, h)| RouteDeprecation::All(h)),
            Served::Paths => {
                let by_path: Vec<(Box<str>, Arc<Headers>)> =
                    mine.map(|(label, h)| (label.into(), h)).collect();
                (!by_path.is_empty()).then_some(RouteDeprecation::ByPath(by_path))
            }
        }
    }

    /// The headers for a request to `path` (normalized), if its version is deprecated.
    pub fn for_path(&self, path: &str) -> Option<&Arc<Headers>> {
        match self {
            RouteDeprecation::All(h) => Some(h),
            RouteDeprecation::ByPath(labels) => {
                let label = of_path(path)?;
                labels.iter().find(|(l, _)| &**l == label).map(|(_, h)| h)
            }
        }
    }
}

/// The deprecated versions of a service's `portal` block with their headers, for the snapshot.
pub fn deprecated_headers(portal: Option<&Map<String, Value>>) -> Vec<(String, Arc<Headers>)> {
    let all = portal.map(Deprecation::of_listing).unwrap_or_default();
    all.into_iter()
        .filter_map(|d| Some((d.label.clone(), Arc::new(d.headers()?))))
        .collect()
}

/// An RFC 3339 time (`2027-01-31T12:00:00Z`) or a date (`2027-01-31`, midnight UTC) in unix
/// seconds.
pub fn unix_seconds(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &date_only).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// Checks `portal.versions`: an object of version labels, each with `deprecated_at` (required),
/// `sunset_at` (not before it), `link` (an http(s) URL) and `notice`.
pub fn check(map: &mut Map<String, Value>) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if map.len() > MAX_VERSIONS {
        errors.add("@entity", format!("at most {MAX_VERSIONS} versions"));
    }
    for (label, entry) in map.iter_mut() {
        errors.nest(label, check_entry(label, entry));
    }
    errors
}

fn check_entry(label: &str, entry: &mut Value) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if label.is_empty() || label.len() > MAX_LABEL || !label.bytes().all(|b| b.is_ascii_graphic()) {
        errors.add(
            "@entity",
            format!("a version label is 1 to {MAX_LABEL} visible characters"),
        );
    }
    let Value::Object(fields) = entry else {
        errors.add("@entity", "expected a record");
        return errors;
    };
    errors.absorb(schema::check(DEPRECATION_FIELDS, fields, false));
    let text = |k: &str| fields.get(k).and_then(Value::as_str);
    let since = match text("deprecated_at") {
        None => {
            errors.add("deprecated_at", "required field missing");
            None
        }
        Some(s) => date_field(&mut errors, "deprecated_at", s),
    };
    if let Some(s) = text("sunset_at") {
        let sunset = date_field(&mut errors, "sunset_at", s);
        if let (Some(since), Some(sunset)) = (since, sunset) {
            if sunset < since {
                errors.add("sunset_at", "must not be before deprecated_at");
            }
        }
    }
    if let Some(link) = text("link") {
        let ok = url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            && HeaderValue::from_str(link).is_ok()
            && !link.contains(['<', '>']);
        if !ok {
            errors.add("link", "expected an http or https URL");
        }
    }
    if text("notice").is_some_and(|n| n.chars().count() > MAX_NOTICE) {
        errors.add("notice", format!("length must be at most {MAX_NOTICE}"));
    }
    errors
}

fn date_field(errors: &mut FieldErrors, name: &str, text: &str) -> Option<i64> {
    let at = unix_seconds(text).filter(|s| *s >= 0);
    if at.is_none() {
        errors.add(
            name,
            "expected a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)",
        );
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(headers: Value, paths: &[&str]) -> Route {
        serde_json::from_value(json!({
            "id": "7d6b5b4e-1f7e-4e61-9a53-4e5d35f8d001",
            "paths": paths,
            "headers": headers,
            "created_at": 0,
            "updated_at": 0,
        }))
        .unwrap()
    }

    #[test]
    fn versions_come_from_the_first_path_segment() {
        assert_eq!(of_path("/v2/pets"), Some("v2"));
        assert_eq!(of_path("/v2.1"), Some("v2.1"));
        assert_eq!(of_path("/vx/pets"), None);
        assert_eq!(of_path("/pets/v1"), None);
        assert_eq!(of_path("/v"), None);
    }

    #[test]
    fn a_version_header_with_one_plain_value_names_the_routes_version() {
        let r = route(json!({"X-API-Version": ["2"]}), &["/pets"]);
        assert_eq!(
            served(&r),
            Served::Header {
                name: "X-API-Version",
                label: "2"
            }
        );
        assert_eq!(served(&r).label("/v1/pets"), Some("2"));
        let regex = route(json!({"x-api-version": ["~*^2"]}), &["/v1/pets"]);
        assert_eq!(served(&regex), Served::Paths);
        assert_eq!(served(&regex).label("/v1/pets"), Some("v1"));
        let other = route(json!({"x-tenant": ["a"]}), &["/pets"]);
        assert_eq!(served(&other).label("/pets"), None);
    }

    #[test]
    fn headers_follow_rfc_9745_and_rfc_8594() {
        let d = Deprecation {
            label: "v1".into(),
            deprecated_at: "2026-01-01".into(),
            sunset_at: Some("2027-06-30T12:00:00Z".into()),
            link: Some("https://developer.example.com/v1".into()),
            notice: None,
        };
        let h = d.headers().unwrap();
        assert_eq!(h.deprecation, "@1767225600");
        assert_eq!(h.sunset.unwrap(), "Wed, 30 Jun 2027 12:00:00 GMT");
        assert_eq!(
            h.link.unwrap(),
            "<https://developer.example.com/v1>; rel=\"deprecation\"; type=\"text/html\""
        );
    }

    #[test]
    fn a_route_gets_the_headers_of_the_deprecated_versions_it_serves() {
        let d = |label: &str| Deprecation {
            label: label.into(),
            deprecated_at: "2026-01-01".into(),
            sunset_at: None,
            link: None,
            notice: None,
        };
        let portal = json!({"versions": {"v1": {"deprecated_at": "2026-01-01"}, "1": {"deprecated_at": "2026-01-01"}}});
        let deprecated = deprecated_headers(portal.as_object());
        assert_eq!(deprecated.len(), 2);
        let both = route(Value::Null, &["/v1/pets", "/v2/pets"]);
        let by_path = RouteDeprecation::of(&both, &deprecated).unwrap();
        assert!(by_path.for_path("/v1/pets/3").is_some());
        assert!(by_path.for_path("/v2/pets").is_none());
        let header = route(json!({"Accept-Version": ["1"]}), &["/pets"]);
        assert!(RouteDeprecation::of(&header, &deprecated)
            .unwrap()
            .for_path("/pets")
            .is_some());
        let current = route(json!({"Accept-Version": ["2"]}), &["/v1/pets"]);
        assert!(RouteDeprecation::of(&current, &deprecated).is_none());
        assert_eq!(
            Deprecation::of_listing(portal.as_object().unwrap())[0],
            d("1")
        );
    }

    #[test]
    fn entries_are_checked_field_by_field() {
        let Value::Object(mut v) = json!({
            "v1": {"deprecated_at": "yesterday", "link": "ftp://x", "extra": 1},
            "v2": {"deprecated_at": "2027-01-01", "sunset_at": "2026-01-01"},
            "v3": {"sunset_at": "2027-01-01"},
            "v4": {"deprecated_at": "2027-01-01T00:00:00+02:00", "sunset_at": "2027-02-01"},
        }) else {
            unreachable!()
        };
        let e = check(&mut v).to_value();
        assert_eq!(
            e["v1"]["deprecated_at"],
            "expected a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)"
        );
        assert_eq!(e["v1"]["link"], "expected an http or https URL");
        assert_eq!(e["v1"]["extra"], "unknown field");
        assert_eq!(e["v2"]["sunset_at"], "must not be before deprecated_at");
        assert_eq!(e["v3"]["deprecated_at"], "required field missing");
        assert!(e.get("v4").is_none(), "{e}");
    }
}
