//! A service: the upstream API that routes send traffic to.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{tags_of, Entity, Keys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub const PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs", "ws", "wss"];
/// The fields of a service's `portal` block.
const LISTING: &[Field] = &[
    field("title", Ty::Str),
    field("description", Ty::Str),
    field("visibility", Ty::Enum(&["public", "private"])),
    field("version", Ty::Str),
    // Checked by `api_version::check`.
    field("versions", Ty::Object),
];
/// The protocols whose upstream connections are TLS: only they take the TLS fields.
const TLS_PROTOCOLS: &[&str] = &["https", "grpcs", "wss"];
/// Kong's upstream TLS fields (services.lua), which its entity checks null for other protocols.
const TLS_FIELDS: [&str; 4] = [
    "client_certificate",
    "tls_verify",
    "tls_verify_depth",
    "ca_certificates",
];
const TIMEOUT: Ty = Ty::Int {
    min: 1,
    max: 2_147_483_646,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: Uuid,
    pub name: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    pub path: Option<String>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_timeout")]
    pub connect_timeout: u32,
    #[serde(default = "default_timeout")]
    pub write_timeout: u32,
    #[serde(default = "default_timeout")]
    pub read_timeout: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub tags: Option<Vec<String>>,
    /// Kong's upstream TLS fields: the certificate presented to the upstream (mTLS),
    /// whether its certificate is verified (null: yes, Tollgate's default), how many
    /// intermediates it may present, and the CA certificates (ids) trusted instead of the
    /// bundled web roots.
    #[serde(default)]
    pub client_certificate: Option<super::EntityRef>,
    #[serde(default)]
    pub tls_verify: Option<bool>,
    #[serde(default)]
    pub tls_verify_depth: Option<u8>,
    #[serde(default)]
    pub ca_certificates: Option<Vec<String>>,
    /// The developer portal's listing of this service; absent when it is not published.
    /// A Tollgate extension: Kong has no such field, so it is left out when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<Map<String, Value>>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn default_protocol() -> String {
    "http".into()
}
fn default_retries() -> u32 {
    5
}
fn default_timeout() -> u32 {
    60_000
}
fn yes() -> bool {
    true
}

impl Service {
    /// The port to connect to: the configured one, or the protocol's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.protocol.as_str() {
            "https" | "grpcs" | "wss" => 443,
            _ => 80,
        })
    }
}

impl Service {
    /// Kong's conditional checks: the TLS fields only with a TLS protocol; CA certificates
    /// named by id.
    fn check_tls_fields(&self, errors: &mut FieldErrors) {
        let set = [
            self.client_certificate.is_some(),
            self.tls_verify.is_some(),
            self.tls_verify_depth.is_some(),
            self.ca_certificates.is_some(),
        ];
        if !TLS_PROTOCOLS.contains(&self.protocol.as_str()) {
            for (field, _) in TLS_FIELDS.iter().zip(set).filter(|(_, set)| *set) {
                errors.add(
                    "@entity",
                    "failed conditional validation given value of field 'protocol'",
                );
                errors.set(field, "value must be null");
            }
        }
        for id in self.ca_certificates.iter().flatten() {
            if Uuid::parse_str(id).is_err() {
                errors.set("ca_certificates", "expected a valid UUID");
            }
        }
    }
}

impl Entity for Service {
    const FIELDS: &'static [Field] = &[
        field("name", Ty::Name),
        field("protocol", Ty::Enum(PROTOCOLS)),
        field("host", Ty::Host),
        field("port", Ty::Int { min: 0, max: 65535 }),
        field("path", Ty::Path),
        field("retries", Ty::Int { min: 0, max: 32767 }),
        field("connect_timeout", TIMEOUT),
        field("write_timeout", TIMEOUT),
        field("read_timeout", TIMEOUT),
        field("enabled", Ty::Bool),
        field("tags", Ty::StrSet),
        field("client_certificate", Ty::Ref),
        field("tls_verify", Ty::Bool),
        field("tls_verify_depth", Ty::Int { min: 0, max: 64 }),
        field("ca_certificates", Ty::StrArray),
        field("url", Ty::Str),
        field("portal", Ty::Object),
    ];
    const REQUIRED: &'static [&'static str] = &["host"];
    const INPUT: &'static [Field] = &[field("url", Ty::Str)];
    const FILLED: &'static [&'static str] = &["host"];
    const ANY_OF: &'static [&'static str] = &["host", "url"];

    /// Expands Kong's `url` shorthand into protocol, host, port and path.
    fn prepare(input: &mut Map<String, Value>, _existing: Option<&Value>) -> Option<String> {
        if let Some(Value::String(url)) = input.get("url").cloned() {
            if let Some(parts) = split_url(&url) {
                input.remove("url");
                input.insert("protocol".into(), parts.0.clone().into());
                input.insert("host".into(), parts.1.into());
                // Kong's shorthand: the URL's port, else 80 for http, 443 for https, else 80.
                let port = parts.2.unwrap_or(if parts.0 == "https" { 443 } else { 80 });
                input.insert("port".into(), port.into());
                input.insert(
                    "path".into(),
                    parts.3.map(Value::from).unwrap_or(Value::Null),
                );
            }
        }
        None
    }

    fn validate(&mut self, errors: &mut FieldErrors) {
        // Kong's `port` default.
        self.port.get_or_insert(80);
        self.check_tls_fields(errors);
        if let Some(listing) = &mut self.portal {
            errors.nest("portal", check_listing(listing));
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: self.name.clone(),
            client_certificate_id: super::ref_id(&self.client_certificate),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

/// Checks a `portal` block: known fields only, a non-empty title, `visibility` defaulting to
/// public, deprecated versions as `api_version` reads them.
fn check_listing(listing: &mut Map<String, Value>) -> FieldErrors {
    let mut errors = super::schema::check(LISTING, listing, false);
    if let Some(Value::Object(versions)) = listing.get_mut("versions") {
        errors.nest("versions", super::api_version::check(versions));
    }
    let title = listing.get("title").and_then(Value::as_str).unwrap_or("");
    if title.trim().is_empty() {
        errors.add("title", "required field missing");
    }
    listing
        .entry("visibility")
        .or_insert_with(|| Value::from("public"));
    errors
}

/// `https://host:8443/base` → ("https", "host", Some(8443), Some("/base")).
type UrlParts = (String, String, Option<u16>, Option<String>);

fn split_url(url: &str) -> Option<UrlParts> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_string();
    let host = uri.host()?.trim_matches(['[', ']']).to_string();
    let path = match uri.path() {
        "" | "/" if !url.trim_end().ends_with('/') => None,
        p => Some(p.to_string()),
    };
    Some((scheme, host, uri.port_u16(), path))
}

/// A DNS name or an IP address.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::super::{normalized_body, Kind};
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Result<serde_json::Value, String> {
        normalized_body(Kind::Service, v)
    }

    #[test]
    fn url_shorthand_fills_fields_and_defaults() {
        let b = svc(json!({"name": "pytbak", "url": "http://127.0.0.1:5000/v1"})).unwrap();
        assert_eq!(b["host"], "127.0.0.1");
        assert_eq!(b["port"], 5000);
        assert_eq!(b["path"], "/v1");
        assert_eq!(b["retries"], 5);
        assert_eq!(b["read_timeout"], 60000);
        assert_eq!(b["protocol"], "http");
    }

    #[test]
    fn bad_fields_are_each_reported() {
        let e = svc(json!({"host": "a b", "path": "x", "protocol": "ftp"})).unwrap_err();
        assert_eq!(
            e,
            "3 schema violations (host: invalid hostname; path: should start with: /; \
             protocol: expected one of: http, https, grpc, grpcs, ws, wss)"
        );
        let e = svc(json!({"host": "h", "path": "/a//b"})).unwrap_err();
        assert!(
            e.contains("path: must not contain empty or dot segments"),
            "{e}"
        );
        let e = svc(json!({"host": "a b", "path": "x"})).unwrap_err();
        assert!(e.contains("host: invalid hostname") && e.contains("path: should start with: /"));
    }

    #[test]
    fn a_portal_listing_is_checked_and_defaults_to_public() {
        let b = svc(json!({"host": "h", "portal": {"title": "Pets"}})).unwrap();
        assert_eq!(
            b["portal"],
            json!({"title": "Pets", "visibility": "public"})
        );
        let e = svc(json!({"host": "h", "portal": {"visibility": "hidden", "x": 1}})).unwrap_err();
        assert!(e.contains("portal.title: required field missing"), "{e}");
        assert!(
            e.contains("portal.visibility: expected one of: public, private"),
            "{e}"
        );
        assert!(e.contains("portal.x: unknown field"), "{e}");
        let plain = svc(json!({"host": "h"})).unwrap();
        assert!(
            plain.get("portal").is_none(),
            "Kong's shape when unpublished"
        );
    }

    #[test]
    fn host_is_required() {
        let e = svc(json!({"name": "x"})).unwrap_err();
        assert_eq!(e, "schema violation (host: required field missing)");
    }
}
