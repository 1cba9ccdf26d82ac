//! What Kong's authentication plugins (key-auth, basic-auth, jwt, hmac-auth) share: naming the
//! consumer a credential belongs to, and on failure either refusing with a challenge or, when
//! the plugin has an `anonymous` consumer, letting the request on as that consumer.
//!
//! With `anonymous` set, plugins combine as Kong's "logical OR": a plugin that runs after
//! another one authenticated the request does nothing.
use super::{get_str, Context, Flow, Reply};
use crate::snapshot::{ConsumerEntry, CredentialEntry, CredentialId};
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// A plugin's `anonymous` setting and the `WWW-Authenticate` challenge its refusals carry.
pub struct Fallback {
    pub anonymous: Option<String>,
    pub challenge: HeaderValue,
}

impl Fallback {
    /// A plugin config's `anonymous`, and its challenge for `scheme` with the config's `realm`.
    pub fn of(config: &Map<String, Value>, scheme: &str) -> Result<Fallback, String> {
        Ok(Fallback {
            anonymous: get_str(config, "anonymous").map(String::from),
            challenge: challenge(scheme, get_str(config, "realm"))?,
        })
    }

    /// Whether an earlier plugin already authenticated the request with a credential, so
    /// this one (configured with `anonymous`) has nothing to do.
    pub fn already_authenticated(&self, ctx: &Context<'_>) -> bool {
        self.anonymous.is_some() && ctx.credential.is_some()
    }

    /// A 401 with `message` and the challenge, or the anonymous consumer when there is one.
    pub fn unauthorized(
        &self,
        ctx: &mut Context<'_>,
        message: impl Into<Cow<'static, str>>,
    ) -> Flow {
        let reply = challenged(StatusCode::UNAUTHORIZED, message, self.challenge.clone());
        self.refuse(ctx, reply)
    }

    /// `reply`, or the anonymous consumer when there is one.
    pub fn refuse(&self, ctx: &mut Context<'_>, reply: Reply) -> Flow {
        let Some(anonymous) = &self.anonymous else {
            return Flow::Respond(reply);
        };
        match ctx.snapshot.consumer(anonymous) {
            Some(consumer) => {
                set(ctx, consumer, None, true);
                Flow::Continue
            }
            None => Flow::Respond(Reply::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("anonymous consumer {anonymous} is configured but doesn't exist"),
            )),
        }
    }
}

/// A refusal with a `WWW-Authenticate` challenge.
pub fn challenged(
    status: StatusCode,
    message: impl Into<Cow<'static, str>>,
    challenge: HeaderValue,
) -> Reply {
    let mut reply = Reply::new(status, message);
    reply
        .headers
        .insert(http::header::WWW_AUTHENTICATE, challenge);
    reply
}

/// Who a verified credential names: its consumer and its id.
pub type Owner = (Arc<ConsumerEntry>, CredentialId);

/// The owner of a verified credential.
pub fn owner(credential: &CredentialEntry) -> Owner {
    (credential.consumer.clone(), credential.id.clone())
}

/// Records the consumer a verified credential belongs to, as `owner` gave it (the proxy tells
/// the upstream who it is, replacing anything the client sent: `context::CONSUMER_HEADERS`).
pub fn identify(ctx: &mut Context<'_>, (consumer, credential): Owner) {
    set(ctx, consumer, Some(credential), false);
}

fn set(
    ctx: &mut Context<'_>,
    consumer: Arc<ConsumerEntry>,
    credential: Option<CredentialId>,
    anonymous: bool,
) {
    ctx.credential = credential;
    ctx.consumer = Some(consumer);
    ctx.anonymous = anonymous;
}

/// A challenge header for `scheme` with an optional `realm` (quotes in the realm dropped).
fn challenge(scheme: &str, realm: Option<&str>) -> Result<HeaderValue, String> {
    let text = match realm {
        Some(realm) => format!("{scheme} realm=\"{}\"", realm.replace('"', "")),
        None => scheme.to_string(),
    };
    HeaderValue::from_str(&text).map_err(|e| e.to_string())
}
