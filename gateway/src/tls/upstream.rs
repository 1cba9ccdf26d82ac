//! How the gateway speaks TLS to an upstream, by a service's Kong settings (`tls_verify`,
//! `tls_verify_depth`, `ca_certificates`, `client_certificate`): which roots verify the
//! upstream's certificate (the system's, or the service's CA certificates), whether it is
//! verified at all, how long a chain it may present, the certificate the gateway presents
//! (mTLS), and the name it sends as SNI and verifies: the upstream's host name, not the
//! address a name resolved to.
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// A service's TLS settings, with the certificates they name read in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// `tls_verify`: false takes any certificate (signatures are still checked).
    pub verify: bool,
    /// `tls_verify_depth`: the most intermediate certificates the upstream may present.
    pub depth: Option<u8>,
    /// The CA certificates (PEM) trusted instead of the system's roots, when any are named.
    pub roots: Option<Vec<String>>,
    /// The client certificate chain and key (PEM) presented to the upstream.
    pub client: Option<(String, String)>,
}

/// TLS to one upstream address: the service's settings and the name to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    pub settings: Arc<Settings>,
    pub server_name: String,
}

impl UpstreamTls {
    /// The name sent as SNI and verified (brackets of an IPv6 literal removed).
    pub fn server_name(&self) -> Result<ServerName<'static>, String> {
        let name = self
            .server_name
            .trim_start_matches('[')
            .trim_end_matches(']');
        ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))
    }

    /// The rustls configuration these settings make.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let s = &self.settings;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if s.verify {
            let roots = Arc::new(roots(s.roots.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
            Arc::new(Depth {
                inner: webpki,
                max_intermediates: s.depth.map(usize::from),
            })
        } else {
            super::client::any_certificate(provider.clone())
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        // ALPN is left to the connector (HTTP/1.1), which refuses a configuration that has it.
        let config = match &s.client {
            Some((cert, key)) => {
                let (chain, key) = client_identity(cert, key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

fn client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = super::pem::chain(cert)?.certs;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
    Ok((chain, key))
}

/// The service's CA certificates, or the bundled web roots when it names none.
fn roots(cas: Option<&[String]>) -> Result<RootCertStore, String> {
    let Some(cas) = cas else {
        return Ok(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ));
    };
    let mut store = RootCertStore::empty();
    for pem in cas {
        for cert in super::pem::chain(pem)?.certs {
            store.add(cert).map_err(|e| e.to_string())?;
        }
    }
    Ok(store)
}

/// Kong's `tls_verify_depth`: a chain with more intermediates than that is refused, before
/// the usual verification.
#[derive(Debug)]
struct Depth {
    inner: Arc<WebPkiServerVerifier>,
    max_intermediates: Option<usize>,
}

impl ServerCertVerifier for Depth {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .max_intermediates
            .is_some_and(|max| intermediates.len() > max)
        {
            return Err(rustls::Error::General(
                "the upstream's certificate chain is longer than tls_verify_depth".into(),
            ));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
