//! Kong's TLS entities: `certificates` (a chain and its key, optionally an alternative pair of
//! another key type), `snis` (the names a certificate is served for) and `ca_certificates`
//! (trust anchors for verifying upstreams and clients). kong/db/schema/entities/
//! certificates.lua, snis.lua, ca_certificates.lua.
//!
//! A certificate's `snis` is Kong's transient field: given on writes, it is kept as `snis`
//! entities (one name, one certificate), so a name can belong to one certificate only.
use super::schema::{field, Field, FieldErrors, Ty};
use super::{tags_of, unix_now, Entity, EntityRef, Keys};
use crate::tls::pem;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub id: Uuid,
    pub cert: String,
    pub key: String,
    pub cert_alt: Option<String>,
    pub key_alt: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Transient: checked here, stored as `snis` entities, never in the certificate's body.
    #[serde(default, skip_serializing)]
    pub snis: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Kong's message for a certificate whose `notAfter` has passed (ca_certificates.lua); Tollgate
/// refuses an expired server certificate with it too, since no client would accept it.
const EXPIRED: &str = "certificate expired, \"Not After\" time is in the past";

impl Entity for Certificate {
    const FIELDS: &'static [Field] = &[
        field("cert", Ty::Str),
        field("key", Ty::Str),
        field("cert_alt", Ty::Str),
        field("key_alt", Ty::Str),
        field("tags", Ty::StrSet),
        field("snis", Ty::StrArray),
    ];
    const REQUIRED: &'static [&'static str] = &["cert", "key"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        let main = pair(&self.cert, &self.key, ("cert", "key"), errors);
        if !main.matched {
            errors.add("@entity", "certificate does not match key");
        }
        match (&self.cert_alt, &self.key_alt) {
            (Some(cert), Some(key)) => {
                let alt = pair(cert, key, ("cert_alt", "key_alt"), errors);
                if !alt.matched {
                    errors.add("@entity", "alternative certificate does not match key");
                } else if main.family.is_some() && main.family == alt.family {
                    errors.add(
                        "@entity",
                        "certificate and alternative certificate need to have different type \
                         (e.g. RSA and ECDSA), the provided certificates were both of the same type",
                    );
                }
            }
            (None, None) => {}
            _ => errors.add(
                "@entity",
                "all or none of these fields must be set: 'cert_alt', 'key_alt'",
            ),
        }
        if let Some(snis) = &mut self.snis {
            check_sni_list(snis, errors);
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

/// What checking one certificate/key pair found: whether both parsed and match, and the key type.
struct Pair {
    matched: bool,
    family: Option<rustls::SignatureAlgorithm>,
}

fn pair(
    cert: &str,
    key: &str,
    (cert_field, key_field): (&str, &str),
    errors: &mut FieldErrors,
) -> Pair {
    let chain = match pem::chain(cert) {
        Ok(c) if c.not_after < unix_now() => {
            errors.add(cert_field, EXPIRED);
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            errors.add(cert_field, format!("invalid certificate: {e}"));
            None
        }
    };
    let key = pem::key(key)
        .map_err(|e| errors.add(key_field, format!("invalid key: {e}")))
        .ok();
    match (chain, key) {
        (Some(chain), Some(key)) => Pair {
            matched: pem::matches(&chain, key.as_ref()),
            family: Some(pem::family(key.as_ref())),
        },
        // A field error says what is wrong; no entity-level message on top.
        _ => Pair {
            matched: true,
            family: None,
        },
    }
}

/// Lower-cases each name, checks it as Kong's `wildcard_host`, and refuses repeats
/// (Kong's "snis: NAME is duplicated").
fn check_sni_list(snis: &mut [String], errors: &mut FieldErrors) {
    let mut seen = std::collections::HashSet::new();
    for name in snis.iter_mut() {
        *name = name.to_ascii_lowercase();
        if let Err(e) = wildcard_host(name) {
            errors.add("snis", e);
        } else if !seen.insert(name.clone()) {
            errors.add("snis", format!("{name} is duplicated"));
        }
    }
}

/// Kong's `wildcard_host` check (kong/db/schema/typedefs.lua `validate_wildcard_host`): a
/// host name, not an IP, no port, at most one `*` as its leftmost or rightmost character.
pub fn wildcard_host(name: &str) -> Result<(), String> {
    let stars = name.matches('*').count();
    if stars > 0 && !(name.starts_with('*') || name.ends_with('*')) {
        return Err("wildcard must be leftmost or rightmost character".into());
    }
    if stars > 1 {
        return Err("only one wildcard must be specified".into());
    }
    if name == "*" {
        return Ok(());
    }
    let host = name.replace('*', "wildcard");
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("must not be an IP".into());
    }
    if crate::router::strip_port(&host).1.is_some() {
        return Err("must not have a port".into());
    }
    if !super::service::valid_host(&host) {
        return Err(format!("invalid value: {host}"));
    }
    Ok(())
}

/// A name a certificate is served for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sni {
    pub id: Uuid,
    pub name: String,
    pub certificate: EntityRef,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entity for Sni {
    const FIELDS: &'static [Field] = &[
        field("name", Ty::Str),
        field("certificate", Ty::Ref),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["certificate", "name"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        self.name = self.name.to_ascii_lowercase();
        if let Err(e) = wildcard_host(&self.name) {
            errors.add("name", e);
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: Some(self.name.clone()),
            certificate_id: Some(self.certificate.id),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

/// A trust anchor: one CA certificate, unique by its SHA-256 digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCertificate {
    pub id: Uuid,
    pub cert: String,
    /// Hex SHA-256 of the certificate's DER, set from `cert` (Kong's transformation).
    #[serde(default)]
    pub cert_digest: String,
    pub tags: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

const CERT_TAG: &str = "-----BEGIN CERTIFICATE-----";

impl Entity for CaCertificate {
    const FIELDS: &'static [Field] = &[
        field("cert", Ty::Str),
        field("cert_digest", Ty::Str),
        field("tags", Ty::StrSet),
    ];
    const REQUIRED: &'static [&'static str] = &["cert"];

    fn validate(&mut self, errors: &mut FieldErrors) {
        let chain = match pem::chain(&self.cert) {
            Ok(c) => c,
            Err(e) => return errors.add("cert", format!("invalid certificate: {e}")),
        };
        // Kong's entity checks (ca_certificates.lua), with its messages.
        let message = if self.cert.matches(CERT_TAG).count() > 1 {
            Some("please submit only one certificate at a time")
        } else if chain.not_after < unix_now() {
            Some(EXPIRED)
        } else if !chain.is_ca {
            Some("certificate does not appear to be a CA because it is missing the \"CA\" basic constraint")
        } else {
            None
        };
        if let Some(m) = message {
            return errors.add("@entity", m);
        }
        self.cert_digest = hex(&sha2::Sha256::digest(&chain.certs[0]));
    }

    fn keys(&self) -> Keys {
        Keys {
            name_key: Some(self.cert_digest.clone()),
            tags: tags_of(&self.tags),
            ..Keys::default()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{normalized_body, Kind};
    use super::*;
    use crate::tls::pem::tests::self_signed;
    use serde_json::json;

    #[test]
    fn snis_are_kongs_wildcard_hosts() {
        // kong/db/schema/typedefs.lua validate_wildcard_host.
        for ok in ["example.com", "*.example.com", "example.*", "*"] {
            assert_eq!(wildcard_host(ok), Ok(()), "{ok}");
        }
        let err = |n: &str| wildcard_host(n).unwrap_err();
        assert_eq!(
            err("a.*.com"),
            "wildcard must be leftmost or rightmost character"
        );
        assert_eq!(err("*.example.*"), "only one wildcard must be specified");
        assert_eq!(err("10.0.0.1"), "must not be an IP");
        assert_eq!(err("example.com:80"), "must not have a port");
    }

    #[test]
    fn a_certificate_must_match_its_key_and_snis_are_not_repeated() {
        // spec/02-integration/04-admin_api/06-certificates_routes_spec.lua:155, :526.
        let (cert, key) = self_signed(&["a.test"]);
        let (_, other) = self_signed(&["b.test"]);
        let e = normalized_body(Kind::Certificate, json!({"cert": cert, "key": other}));
        assert_eq!(
            e.unwrap_err(),
            "schema violation (certificate does not match key)"
        );
        let e = normalized_body(
            Kind::Certificate,
            json!({"cert": cert, "key": key, "snis": ["a.test", "b.test", "A.test"]}),
        );
        assert_eq!(
            e.unwrap_err(),
            "schema violation (snis: a.test is duplicated)"
        );
        let e = normalized_body(Kind::Certificate, json!({"cert": "nope", "key": key}));
        assert!(e.unwrap_err().contains("cert: invalid certificate"));
        let ok = normalized_body(
            Kind::Certificate,
            json!({"cert": cert, "key": key, "snis": ["a.test"]}),
        );
        assert!(
            ok.unwrap().get("snis").is_none(),
            "snis are kept as their own entities"
        );
    }

    #[test]
    fn a_ca_certificate_must_be_a_ca() {
        // spec/02-integration/04-admin_api/16-ca_certificates_routes_spec.lua.
        let (cert, _) = self_signed(&["leaf.test"]);
        let e = normalized_body(Kind::CaCertificate, json!({"cert": cert}));
        assert_eq!(
            e.unwrap_err(),
            "schema violation (certificate does not appear to be a CA because it is missing the \"CA\" basic constraint)"
        );
    }
}
