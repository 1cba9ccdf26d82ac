//! The certificate a TLS listener serves when no configured one matches the client's SNI:
//! self-signed, made at first start and kept in the data dir so that it stays the same across
//! restarts (Kong keeps its `kong-default.crt` in its prefix the same way).
use super::pem;
use anyhow::Context;
use rustls::sign::CertifiedKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

const CERT_FILE: &str = "tls-default.crt";
const KEY_FILE: &str = "tls-default.key";
/// The names the default certificate carries (Kong's default says `localhost`).
const NAMES: [&str; 1] = ["localhost"];

/// The default certificate in `dir`, made there first when missing (the key with mode 0600).
pub fn load_or_create(dir: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
        let (cert, key) = generate().context("cannot generate the default TLS certificate")?;
        write_private(&key_path, key.as_bytes())?;
        std::fs::write(&cert_path, cert)
            .with_context(|| format!("cannot write {}", cert_path.display()))?;
        tracing::info!(path = %cert_path.display(), "made the default TLS certificate");
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let (cert, key) = (read(&cert_path)?, read(&key_path)?);
    pem::certified_key(&cert, &key)
        .map_err(|e| anyhow::anyhow!("the default TLS certificate in {}: {e}", dir.display()))
}

/// A new self-signed certificate (ECDSA P-256) for `NAMES`, and its key, as PEM.
fn generate() -> Result<(String, String), rcgen::Error> {
    let names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, NAMES[0]);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Tollgate");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.cert, again.cert);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
    }
}
