//! Encryption of the secrets the store must keep readable: certificates' private keys
//! (`key`, `key_alt`), which the listeners load, and the jwt and hmac-auth secrets that verify
//! signatures; Kong's admin API shows them back. Each value is
//! sealed with AES-256-GCM under the node's keyring key and a fresh nonce before it is written,
//! and opened when read, so a copy of the database alone reveals no key.
//!
//! The key lives in a file (`TOLLGATE_KEYRING_FILE`, by default `keyring` in the data dir,
//! made at first start with mode 0600); nodes sharing a PostgreSQL store share that file.
use super::StoreError;
use crate::model::Kind;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a sealed value starts with; a value without it was written before encryption.
const SEALED: &str = "$tollgate-aes256gcm$";

pub struct Keyring {
    key: LessSafeKey,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

/// The fields of a kind's bodies that are kept sealed.
fn sealed_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Certificate => &["key", "key_alt"],
        Kind::JwtSecret | Kind::HmacAuth => &["secret"],
        _ => &[],
    }
}

impl Keyring {
    fn from_key(bytes: &[u8; 32]) -> Keyring {
        let key = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte key suits AES-256");
        Keyring {
            key: LessSafeKey::new(key),
        }
    }

    /// A key that lives as long as the process: for a store that does too (in memory).
    pub fn ephemeral() -> Keyring {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system has randomness");
        Keyring::from_key(&bytes)
    }

    /// The key in `path` (base64 of 32 bytes), made there first when the file is missing.
    pub fn load_or_create(path: &Path) -> std::io::Result<Keyring> {
        let invalid =
            |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
        if !path.exists() {
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| invalid("no randomness"))?;
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(text.as_bytes())?;
        }
        let text = std::fs::read_to_string(path)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| invalid("the keyring file is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid("the keyring file does not hold 32 bytes"))?;
        Ok(Keyring::from_key(&bytes))
    }

    fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system has randomness");
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .expect("AES-GCM seals any length the store holds");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    fn open(&self, stored: &str) -> Result<String, StoreError> {
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_string());
        };
        let wrong = || StoreError::Corrupt("a sealed value does not open with this keyring".into());
        let mut data = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| wrong())?;
        if data.len() < NONCE_LEN {
            return Err(wrong());
        }
        let rest = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| wrong())?;
        let mut rest = rest;
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut rest)
            .map_err(|_| wrong())?;
        String::from_utf8(plain.to_vec()).map_err(|_| wrong())
    }

    /// `body` as stored: its secret fields sealed.
    pub(super) fn sealed(&self, kind: Kind, body: &Value) -> Value {
        let mut body = body.clone();
        for field in sealed_fields(kind) {
            if let Some(Value::String(plain)) = body.get_mut(*field) {
                *plain = self.seal(plain);
            }
        }
        body
    }

    /// A stored body as the rest of the gateway sees it: its secret fields opened.
    pub(super) fn opened(&self, kind: Kind, mut body: Value) -> Result<Value, StoreError> {
        for field in sealed_fields(kind) {
            if let Some(Value::String(stored)) = body.get_mut(*field) {
                *stored = self.open(stored)?;
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sealed_with_fresh_nonces_and_open_only_with_their_keyring() {
        let ring = Keyring::ephemeral();
        let body = json!({"cert": "C", "key": "PRIVATE", "key_alt": null});
        let stored = ring.sealed(Kind::Certificate, &body);
        let text = stored["key"].as_str().unwrap();
        assert!(text.starts_with(SEALED) && !text.contains("PRIVATE"));
        assert_ne!(ring.sealed(Kind::Certificate, &body)["key"], stored["key"]);
        assert_eq!(stored["cert"], "C");
        assert_eq!(
            ring.opened(Kind::Certificate, stored.clone()).unwrap(),
            body
        );
        assert!(Keyring::ephemeral()
            .opened(Kind::Certificate, stored)
            .is_err());
        // Written before encryption: read as it is.
        assert_eq!(ring.opened(Kind::Certificate, body.clone()).unwrap(), body);
    }

    #[test]
    fn the_keyring_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let first = Keyring::load_or_create(&path).unwrap();
        let sealed = first.sealed(Kind::Certificate, &json!({"key": "k"}));
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(again.opened(Kind::Certificate, sealed).unwrap()["key"], "k");
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
    }
}
