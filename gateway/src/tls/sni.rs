//! Which certificate a TLS handshake gets, by the name the client asked for (SNI), as Kong
//! picks it (kong/runloop/certificate.lua): the exact name, then the name with its first
//! label as a wildcard (`*.example.com`), then with its last (`example.*`), then a `*` SNI,
//! then the default certificate. A certificate with an alternative (`cert_alt`, another key
//! type) serves the one whose key the client can verify.
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// A certificate entity as served: its main key and its alternative.
#[derive(Debug)]
pub struct Served {
    pub main: Arc<CertifiedKey>,
    pub alt: Option<Arc<CertifiedKey>>,
}

impl Served {
    /// The main key if the client accepts one of its signature schemes, else the alternative
    /// if it does, else the main one (the handshake then fails as it must).
    fn for_client(&self, hello: &ClientHello) -> Arc<CertifiedKey> {
        let schemes = hello.signature_schemes();
        let usable = |k: &CertifiedKey| k.key.choose_scheme(schemes).is_some();
        match &self.alt {
            Some(alt) if !usable(&self.main) && usable(alt) => alt.clone(),
            _ => self.main.clone(),
        }
    }
}

/// The SNI names of every certificate, lower-cased, wildcards as written.
#[derive(Debug, Default)]
pub struct SniTable {
    names: HashMap<String, Arc<Served>>,
}

impl SniTable {
    pub fn insert(&mut self, name: &str, served: Arc<Served>) {
        self.names.insert(name.to_ascii_lowercase(), served);
    }

    /// The certificate for `sni` (none given: only a `*` SNI applies).
    pub fn find(&self, sni: Option<&str>) -> Option<&Arc<Served>> {
        let by = |name: &str| self.names.get(name);
        let named = sni.and_then(|sni| {
            let sni = sni.to_ascii_lowercase();
            by(&sni)
                .or_else(|| {
                    let (_, rest) = sni.split_once('.')?;
                    by(&format!("*.{rest}"))
                })
                .or_else(|| {
                    let (head, _) = sni.rsplit_once('.')?;
                    by(&format!("{head}.*"))
                })
        });
        named.or_else(|| by("*"))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// rustls's certificate choice for a listener: the current snapshot's table (swapped whole
/// when the configuration changes, so the next handshake sees the change and open
/// connections keep what they negotiated), else the default certificate.
pub struct Resolver {
    snapshot: Arc<ArcSwap<Snapshot>>,
    default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, default: Arc<CertifiedKey>) -> Resolver {
        Resolver { snapshot, default }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot.load();
        Some(match snapshot.certificates.find(hello.server_name()) {
            Some(served) => served.for_client(&hello),
            None => self.default.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pem::{certified_key, tests::self_signed};

    fn served(name: &str) -> Arc<Served> {
        let (c, k) = self_signed(&[name]);
        Arc::new(Served {
            main: certified_key(&c, &k).unwrap(),
            alt: None,
        })
    }

    #[test]
    fn exact_then_leading_then_trailing_wildcard_then_star() {
        // kong/runloop/certificate.lua: find_certificate tries sni, then the wildcards.
        let (exact, lead, trail, star) = (
            served("a.example.com"),
            served("*.example.com"),
            served("example.*"),
            served("*"),
        );
        let mut t = SniTable::default();
        t.insert("a.example.com", exact.clone());
        t.insert("*.example.com", lead.clone());
        t.insert("example.*", trail.clone());
        let is = |t: &SniTable, sni: Option<&str>, s: &Arc<Served>| {
            assert!(Arc::ptr_eq(t.find(sni).unwrap(), s), "{sni:?}");
        };
        is(&t, Some("A.example.com"), &exact);
        is(&t, Some("b.example.com"), &lead);
        is(&t, Some("example.org"), &trail);
        assert!(t.find(Some("x.b.example.com")).is_none());
        assert!(t.find(None).is_none());
        t.insert("*", star.clone());
        is(&t, Some("other.test"), &star);
        is(&t, None, &star);
    }
}
