//! key-auth: identifies the consumer by an API key sent in a header or the query string.
//!
//! Keys are looked up by their SHA-256 digest in the snapshot (one map probe, no store access);
//! the clear key is never stored or logged. Messages, headers and config follow Kong's plugin.
use super::{
    get_bool, get_str, get_strings, AccessFuture, Context, Flow, Handler, PluginSpec, Reply,
};
use crate::model::schema::{field, FieldErrors, Ty};
use crate::snapshot::ConsumerEntry;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "key-auth",
    priority: 1250,
    no_consumer: true,
    fields: &[
        field("key_names", Ty::StrArray),
        field("key_in_header", Ty::Bool),
        field("key_in_query", Ty::Bool),
        field("key_in_body", Ty::Bool),
        field("hide_credentials", Ty::Bool),
        field("anonymous", Ty::Str),
        field("run_on_preflight", Ty::Bool),
        field("realm", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({
        "key_names": ["apikey"], "key_in_header": true, "key_in_query": true,
        "key_in_body": false, "hide_credentials": false, "anonymous": null,
        "run_on_preflight": true, "realm": null,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let names = get_strings(c, "key_names");
    if names.is_empty() {
        errors.add("key_names", "length must be at least 1");
    }
    if names
        .iter()
        .any(|n| HeaderName::try_from(n.as_str()).is_err())
    {
        errors.add(
            "key_names",
            "bad header name: use letters, digits, '-' and '_'",
        );
    }
    if get_bool(c, "key_in_body") {
        errors.add(
            "key_in_body",
            "keys in the request body are not supported by this build; send them in a header or the query",
        );
    }
}

const NO_KEY: &str = "No API key found in request";
const BAD_KEY: &str = "Unauthorized";
const DUPLICATE: &str = "Duplicate API key found";

const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

struct KeyAuth {
    key_names: Vec<HeaderName>,
    in_header: bool,
    in_query: bool,
    hide_credentials: bool,
    anonymous: Option<String>,
    run_on_preflight: bool,
    www_authenticate: HeaderValue,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let challenge = match get_str(c, "realm") {
        Some(realm) => format!("Key realm=\"{}\"", realm.replace('"', "")),
        None => "Key".into(),
    };
    Ok(Arc::new(KeyAuth {
        key_names: get_strings(c, "key_names")
            .iter()
            .filter_map(|n| HeaderName::try_from(n.as_str()).ok())
            .collect(),
        in_header: get_bool(c, "key_in_header"),
        in_query: get_bool(c, "key_in_query"),
        hide_credentials: get_bool(c, "hide_credentials"),
        anonymous: get_str(c, "anonymous").map(String::from),
        run_on_preflight: get_bool(c, "run_on_preflight"),
        www_authenticate: HeaderValue::from_str(&challenge).map_err(|e| e.to_string())?,
    }))
}

/// Where a key was found, so `hide_credentials` can remove it.
enum Found {
    Header(HeaderName, String),
    Query(String, String),
}

impl Handler for KeyAuth {
    fn access<'a>(&'a self, ctx: &'a mut Context) -> AccessFuture<'a> {
        Box::pin(std::future::ready(self.authenticate(ctx)))
    }
}

impl KeyAuth {
    fn authenticate(&self, ctx: &mut Context) -> Flow {
        if !self.run_on_preflight && ctx.parts.method == http::Method::OPTIONS {
            return Flow::Continue;
        }
        let found = match self.find_key(&ctx.parts) {
            Ok(found) => found,
            Err(()) => return self.reject(DUPLICATE),
        };
        let Some(found) = found else {
            return self.anonymous_or(ctx, NO_KEY);
        };
        let key = match &found {
            Found::Header(_, k) | Found::Query(_, k) => k.clone(),
        };
        if self.hide_credentials {
            hide(&mut ctx.parts, &found);
        }
        let Some(cred) = ctx.snapshot.credential(&key, ctx.now_ms) else {
            return self.anonymous_or(ctx, BAD_KEY);
        };
        let (consumer, id) = (cred.consumer.clone(), cred.id);
        identify(ctx, consumer, Some(id), false);
        Flow::Continue
    }

    /// The key, if one was sent; `Err` when a name was sent more than once.
    fn find_key(&self, parts: &http::request::Parts) -> Result<Option<Found>, ()> {
        for name in &self.key_names {
            if self.in_header {
                let mut values = parts.headers.get_all(name).iter();
                if let Some(v) = values.next() {
                    if values.next().is_some() {
                        return Err(());
                    }
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    return Ok(Some(Found::Header(name.clone(), v)));
                }
            }
            if self.in_query {
                let query = parts.uri.query().unwrap_or("");
                let mut values = form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_str()));
                if let Some((k, v)) = values.next() {
                    if values.next().is_some() {
                        return Err(());
                    }
                    return Ok(Some(Found::Query(k.into_owned(), v.into_owned())));
                }
            }
        }
        Ok(None)
    }

    fn anonymous_or(&self, ctx: &mut Context, message: &'static str) -> Flow {
        let Some(anonymous) = &self.anonymous else {
            return self.reject(message);
        };
        match ctx.snapshot.consumer(anonymous) {
            Some(consumer) => {
                identify(ctx, consumer, None, true);
                Flow::Continue
            }
            None => Flow::Respond(Reply::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("anonymous consumer {anonymous} is configured but doesn't exist"),
            )),
        }
    }

    fn reject(&self, message: &'static str) -> Flow {
        let mut reply = Reply::new(StatusCode::UNAUTHORIZED, message);
        reply.headers.insert(
            http::header::WWW_AUTHENTICATE,
            self.www_authenticate.clone(),
        );
        Flow::Respond(reply)
    }
}

/// Records the consumer and tells the upstream who it is (replacing anything the client sent).
fn identify(
    ctx: &mut Context,
    consumer: Arc<ConsumerEntry>,
    credential: Option<uuid::Uuid>,
    anonymous: bool,
) {
    let h = &mut ctx.parts.headers;
    set(h, X_CONSUMER_ID, Some(&consumer.id.to_string()));
    set(h, X_CONSUMER_CUSTOM_ID, consumer.custom_id.as_deref());
    set(h, X_CONSUMER_USERNAME, consumer.username.as_deref());
    set(
        h,
        X_CREDENTIAL_IDENTIFIER,
        credential.map(|c| c.to_string()).as_deref(),
    );
    set(h, X_ANONYMOUS_CONSUMER, anonymous.then_some("true"));
    ctx.credential_id = credential;
    ctx.consumer = Some(consumer);
}

fn set(h: &mut HeaderMap, name: HeaderName, value: Option<&str>) {
    match value.and_then(|v| HeaderValue::from_str(v).ok()) {
        Some(v) => {
            h.insert(name, v);
        }
        None => {
            h.remove(name);
        }
    }
}

fn hide(parts: &mut http::request::Parts, found: &Found) {
    match found {
        Found::Header(name, _) => {
            parts.headers.remove(name);
        }
        Found::Query(name, _) => {
            let query = parts.uri.query().unwrap_or("");
            let kept: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != name))
                .finish();
            let pq = if kept.is_empty() {
                parts.uri.path().to_string()
            } else {
                format!("{}?{kept}", parts.uri.path())
            };
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.path_and_query = pq.parse().ok();
            parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
        }
    }
}
