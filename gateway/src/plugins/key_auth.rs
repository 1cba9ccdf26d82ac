//! key-auth: identifies the consumer by an API key sent in a header, the query string, or a
//! form or JSON body.
//!
//! Keys are looked up by their SHA-256 digest in the snapshot (one map probe, no store access);
//! the clear key is never stored or logged. Messages, headers and config follow Kong's plugin.
use super::auth::{identify, owner, Fallback};
use super::body::{Field, FormBody};
use super::{get_bool, get_strings, Access, Context, Flow, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
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
}

const NO_KEY: &str = "No API key found in request";
const BAD_KEY: &str = "Unauthorized";
const DUPLICATE: &str = "Duplicate API key found";

struct KeyAuth {
    /// Each name as a header (case-insensitive) and as given (query and body are exact).
    key_names: Vec<(HeaderName, String)>,
    in_header: bool,
    in_query: bool,
    in_body: bool,
    hide_credentials: bool,
    run_on_preflight: bool,
    fallback: Fallback,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    Ok(Arc::new(KeyAuth {
        key_names: get_strings(c, "key_names")
            .into_iter()
            // Kong reads headers through nginx, whose names match with `_` as `-`: key name
            // `api_key` is the `api-key` header.
            .filter_map(|n| Some((HeaderName::try_from(n.replace('_', "-")).ok()?, n)))
            .collect(),
        in_header: get_bool(c, "key_in_header"),
        in_query: get_bool(c, "key_in_query"),
        in_body: get_bool(c, "key_in_body"),
        hide_credentials: get_bool(c, "hide_credentials"),
        run_on_preflight: get_bool(c, "run_on_preflight"),
        fallback: Fallback::of(c, "Key")?,
    }))
}

/// Where a key was found, so `hide_credentials` can remove it.
enum Found {
    Header(HeaderName, HeaderValue),
    Query(String, String),
    Body(String, String),
}

impl Found {
    /// The key as text (a header's bytes that are not UTF-8 are replaced, as Kong's strings are).
    fn key(&self) -> Cow<'_, str> {
        match self {
            Found::Header(_, v) => match v.to_str() {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(v.as_bytes()),
            },
            Found::Query(_, k) | Found::Body(_, k) => Cow::Borrowed(k),
        }
    }
}

impl Handler for KeyAuth {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let preflight = !self.run_on_preflight && ctx.parts.method == http::Method::OPTIONS;
        if preflight || self.fallback.already_authenticated(ctx) {
            return Access::Now(Flow::Continue);
        }
        if !self.in_body {
            return Access::Now(self.authenticate(ctx, None));
        }
        Access::Later(Box::pin(async move {
            let content_type = ctx.parts.headers.get(http::header::CONTENT_TYPE).cloned();
            match ctx.body().await {
                Ok(bytes) => {
                    let body =
                        FormBody::parse(content_type.as_ref().and_then(|v| v.to_str().ok()), bytes);
                    self.authenticate(ctx, body)
                }
                Err(reply) => Flow::Respond(reply),
            }
        }))
    }
}

impl KeyAuth {
    /// Finds the key in the request (and `body`, the form when keys may come in one) and
    /// identifies its consumer.
    fn authenticate(&self, ctx: &mut Context<'_>, body: Option<FormBody>) -> Flow {
        let found = match self.find_key(ctx, body.as_ref()) {
            Ok(found) => found,
            Err(()) => return self.fallback.unauthorized(ctx, DUPLICATE),
        };
        // An empty key is no key (handler.lua: `if not key or key == ""`).
        let Some(found) = found.filter(|f| !f.key().is_empty()) else {
            return self.fallback.unauthorized(ctx, NO_KEY);
        };
        if self.hide_credentials {
            hide(ctx, &found, body);
        }
        let Some(cred) = ctx.snapshot.credential(&found.key(), ctx.now_ms) else {
            return self.fallback.unauthorized(ctx, BAD_KEY);
        };
        let owner = owner(cred);
        identify(ctx, owner);
        Flow::Continue
    }

    /// The key, if one was sent; `Err` when a name was sent more than once.
    fn find_key(&self, ctx: &Context<'_>, body: Option<&FormBody>) -> Result<Option<Found>, ()> {
        for (header, name) in &self.key_names {
            if self.in_header {
                let mut values = ctx.parts.headers.get_all(header).iter();
                if let Some(v) = values.next() {
                    if values.next().is_some() {
                        return Err(());
                    }
                    return Ok(Some(Found::Header(header.clone(), v.clone())));
                }
            }
            if self.in_query {
                let query = ctx.query().unwrap_or("");
                let mut values =
                    form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name);
                if let Some((k, v)) = values.next() {
                    if values.next().is_some() {
                        return Err(());
                    }
                    return Ok(Some(Found::Query(k.into_owned(), v.into_owned())));
                }
            }
            match body.map(|b| b.field(name)) {
                Some(Field::One(v)) => return Ok(Some(Found::Body(name.clone(), v))),
                Some(Field::Ambiguous) => return Err(()),
                Some(Field::Missing) | None => {}
            }
        }
        Ok(None)
    }
}

/// Takes the key out of what the upstream gets.
fn hide(ctx: &mut Context<'_>, found: &Found, body: Option<FormBody>) {
    match found {
        Found::Header(name, _) => ctx.set_upstream_header(name.clone(), None),
        Found::Body(name, _) => {
            if let Some(body) = body {
                ctx.set_body(body.without(name));
            }
        }
        Found::Query(name, _) => ctx.drop_query_param(name),
    }
}
