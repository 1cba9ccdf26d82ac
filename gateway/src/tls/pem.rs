//! Reading the PEM text of Kong's `certificates` and `ca_certificates` entities: a certificate
//! chain, a private key, and the facts validation needs (expiry, CA flag, key type, whether a
//! key belongs to a certificate). The admin API validates with these, and the listeners build
//! their rustls keys from the same functions, so what was accepted is what is served.
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::SignatureAlgorithm;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// PEM text beyond this is refused: a chain of a few certificates fits many times over.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// A parsed certificate chain and what is known of its first (leaf) certificate.
pub struct Chain {
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
    /// The leaf's subjectPublicKeyInfo (DER), to compare with a key's public half.
    pub public_key: Vec<u8>,
    /// Whether the leaf carries the basic constraint `CA:TRUE`.
    pub is_ca: bool,
}

/// The certificates in `pem`, leaf first; an error for text that holds none or is malformed.
pub fn chain(pem: &str) -> Result<Chain, String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("longer than {MAX_PEM_BYTES} bytes"));
    }
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PEM: {e}"))?;
    let Some(leaf) = certs.first() else {
        return Err("no PEM certificate found".into());
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let is_ca = matches!(parsed.basic_constraints(), Ok(Some(b)) if b.value.ca);
    let (not_after, public_key) = (
        parsed.validity().not_after.timestamp(),
        parsed.public_key().raw.to_vec(),
    );
    for other in &certs[1..] {
        x509_parser::parse_x509_certificate(other).map_err(|e| e.to_string())?;
    }
    Ok(Chain {
        certs,
        not_after,
        public_key,
        is_ca,
    })
}

/// The private key in `pem` (PKCS#8, PKCS#1 RSA or SEC1 EC), ready to sign handshakes.
pub fn key(pem: &str) -> Result<Arc<dyn SigningKey>, String> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(format!("longer than {MAX_PEM_BYTES} bytes"));
    }
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("PEM: {e}"))?;
    any_supported_type(&der).map_err(|e| e.to_string())
}

/// Whether `key` is the private half of the leaf's public key.
pub fn matches(chain: &Chain, key: &dyn SigningKey) -> bool {
    key.public_key()
        .is_some_and(|spki| spki.as_ref() == chain.public_key.as_slice())
}

/// The key's family (RSA, ECDSA, Ed25519): a certificate's alternative must be of another.
pub fn family(key: &dyn SigningKey) -> SignatureAlgorithm {
    key.algorithm()
}

/// What a listener serves: the chain with its key, which must match.
pub fn certified_key(cert: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain = chain(cert)?;
    let key = key(key_pem)?;
    if !matches(&chain, key.as_ref()) {
        return Err("certificate does not match key".into());
    }
    Ok(Arc::new(CertifiedKey::new(chain.certs, key)))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A self-signed certificate for `names` and its key, as PEM.
    pub fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_chain_and_its_key_match_and_another_key_does_not() {
        let (cert, key_pem) = self_signed(&["a.test"]);
        let (_, other) = self_signed(&["b.test"]);
        let c = chain(&cert).unwrap();
        assert!(!c.is_ca);
        assert!(c.not_after > crate::model::unix_now());
        assert!(matches(&c, key(&key_pem).unwrap().as_ref()));
        assert!(!matches(&c, key(&other).unwrap().as_ref()));
        assert!(certified_key(&cert, &key_pem).is_ok());
        assert_eq!(
            certified_key(&cert, &other).err().unwrap(),
            "certificate does not match key"
        );
    }

    #[test]
    fn malformed_or_empty_pem_is_refused() {
        assert!(chain("").is_err());
        assert!(chain("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n").is_err());
        assert!(key("not a key").is_err());
        let huge = "x".repeat(MAX_PEM_BYTES + 1);
        assert!(chain(&huge).err().unwrap().starts_with("longer than"));
    }
}
