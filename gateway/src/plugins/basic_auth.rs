//! basic-auth: identifies the consumer by a username and password in the `Authorization` (or
//! `Proxy-Authorization`) header, as Kong's plugin does (kong/plugins/basic-auth/access.lua).
//!
//! Passwords are stored as argon2id hashes, which cost milliseconds of CPU to check. The
//! check runs on the blocking pool, a few at a time (`Verifier`), never on a proxy worker; a
//! password that verified is remembered (`Verified`, by a digest of the credential, its hash
//! and the password) so a client's later requests cost one map probe.
use super::auth::{identify, owner, Fallback};
use super::{get_bool, Access, Context, Flow, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use base64::Engine;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub const SPEC: PluginSpec = PluginSpec {
    name: "basic-auth",
    priority: 1100,
    no_consumer: true,
    fields: &[
        field("anonymous", Ty::Str),
        field("hide_credentials", Ty::Bool),
        field("realm", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({"anonymous": null, "hide_credentials": false, "realm": "service"});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(_: &mut Map<String, Value>, _: &mut FieldErrors) {}

const UNAUTHORIZED: &str = "Unauthorized";

struct BasicAuth {
    hide_credentials: bool,
    fallback: Fallback,
    verifier: Arc<Verifier>,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    Ok(Arc::new(BasicAuth {
        hide_credentials: get_bool(c, "hide_credentials"),
        fallback: Fallback::of(c, "Basic")?,
        verifier: shared.passwords.clone(),
    }))
}

/// A username and password as a request presented them.
struct Presented {
    username: String,
    password: String,
}

impl Handler for BasicAuth {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        if self.fallback.already_authenticated(ctx) {
            return Access::Now(Flow::Continue);
        }
        let proxy = self.presented(ctx, http::header::PROXY_AUTHORIZATION);
        let plain = self.presented(ctx, http::header::AUTHORIZATION);
        if proxy.is_none() && plain.is_none() {
            return Access::Now(self.fallback.unauthorized(ctx, UNAUTHORIZED));
        }
        // Kong tries Proxy-Authorization first, then Authorization when the first names no
        // credential.
        let consumers = &ctx.snapshot.consumers;
        let named = |p: Presented| Some((consumers.basic(&p.username)?, p));
        let found = proxy
            .flatten()
            .and_then(named)
            .or_else(|| plain.flatten().and_then(named));
        let Some((entry, presented)) = found else {
            return Access::Now(self.fallback.unauthorized(ctx, UNAUTHORIZED));
        };
        let owner = owner(&entry.credential);
        let proof = proof(&owner.1.text, &entry.password_hash, &presented.password);
        if self.verifier.remembers(&proof) {
            identify(ctx, owner);
            return Access::Now(Flow::Continue);
        }
        let hash = entry.password_hash.clone();
        Access::Later(Box::pin(async move {
            if self.verifier.check(proof, presented.password, hash).await {
                identify(ctx, owner);
                Flow::Continue
            } else {
                self.fallback.unauthorized(ctx, UNAUTHORIZED)
            }
        }))
    }
}

impl BasicAuth {
    /// The credentials in header `name`: `None` when it is absent, `Some(None)` when it does
    /// not hold Basic credentials. With `hide_credentials` the header is taken off.
    fn presented(&self, ctx: &mut Context<'_>, name: HeaderName) -> Option<Option<Presented>> {
        let value = ctx.parts.headers.get(&name)?;
        let found = parse(value);
        if self.hide_credentials {
            ctx.set_upstream_header(name, None);
        }
        Some(found)
    }
}

/// `Basic <base64 of user:password>`, read as Kong reads it: the scheme anywhere in the value,
/// any case of its first letter; the username is what comes before the first `:` and may not
/// be empty.
fn parse(value: &HeaderValue) -> Option<Presented> {
    let text = value.to_str().ok()?;
    let at = text.find("Basic").or_else(|| text.find("basic"))?;
    let encoded = text[at + 5..].trim();
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = String::from_utf8(engine.decode(encoded).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    if username.is_empty() {
        return None;
    }
    // Kong's pattern stops the password at a line break.
    let password = password.split('\n').next().unwrap_or_default();
    Some(Presented {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// What a verified password is remembered by: a digest, never the password itself.
fn proof(credential: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut d = Sha256::new();
    for part in [credential, hash, password] {
        d.update((part.len() as u64).to_le_bytes());
        d.update(part.as_bytes());
    }
    d.finalize().into()
}

/// Checks passwords against argon2id hashes off the proxy's workers and remembers those that
/// matched. Lives across snapshots (in `Shared`); a changed password has another hash, so
/// what was remembered for the old one no longer matches anything.
pub struct Verifier {
    verified: Mutex<HashSet<[u8; 32]>>,
    /// At most this many checks run at once; the rest wait their turn.
    running: Semaphore,
}

/// Remembered passwords, at most; when full the memory starts afresh.
const REMEMBERED: usize = 65_536;

impl Default for Verifier {
    fn default() -> Verifier {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Verifier {
            verified: Mutex::new(HashSet::new()),
            running: Semaphore::new(cores),
        }
    }
}

impl Verifier {
    /// Whether `password` matches credential `credential`'s `hash`: remembered, or checked on
    /// the blocking pool (oauth2's client secrets).
    pub async fn verify(&self, credential: &str, hash: &str, password: &str) -> bool {
        let proof = proof(credential, hash, password);
        self.remembers(&proof) || self.check(proof, password.into(), hash.into()).await
    }

    fn remembers(&self, proof: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .map(|v| v.contains(proof))
            .unwrap_or(false)
    }

    /// Whether `password` matches `hash`, checked on the blocking pool.
    async fn check(&self, proof: [u8; 32], password: String, hash: String) -> bool {
        let Ok(_turn) = self.running.acquire().await else {
            return false;
        };
        let matched =
            tokio::task::spawn_blocking(move || crate::model::password::verify(&password, &hash))
                .await
                .unwrap_or(false);
        if matched {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= REMEMBERED {
                    v.clear();
                }
                v.insert(proof);
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(credentials: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn credentials_are_read_as_kong_reads_them() {
        let p = parse(&header("bob:kong:with:colons")).unwrap();
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("bob", "kong:with:colons")
        );
        let p = parse(&header("bob:")).unwrap();
        assert_eq!(p.password, "");
        // 03-access_spec.lua:171 "returns 401 Unauthorized on password only".
        assert!(parse(&header(":kong")).is_none());
        // 03-access_spec.lua:150 "returns 401 Unauthorized on invalid credentials in Authorization".
        assert!(parse(&HeaderValue::from_static("foobar")).is_none());
        assert!(parse(&HeaderValue::from_static("Basic %%%")).is_none());
        let lower = HeaderValue::from_str(&format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode("a:b")
        ))
        .unwrap();
        assert_eq!(parse(&lower).unwrap().username, "a");
    }

    #[tokio::test]
    async fn a_verified_password_is_remembered_and_a_wrong_one_is_not() {
        let hash = crate::model::password::hash("kong").unwrap();
        let v = Verifier::default();
        let right = proof("c1", &hash, "kong");
        let wrong = proof("c1", &hash, "nope");
        assert!(!v.remembers(&right));
        assert!(v.check(right, "kong".into(), hash.clone()).await);
        assert!(v.remembers(&right));
        assert!(!v.check(wrong, "nope".into(), hash).await);
        assert!(!v.remembers(&wrong));
    }
}
