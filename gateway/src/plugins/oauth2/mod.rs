//! oauth2: the gateway as an OAuth 2.0 authorization server for the routes it is on, as
//! Kong's plugin (kong/plugins/oauth2/access.lua). A request to a path ending in
//! `/oauth2/authorize` or `/oauth2/token` is answered by the plugin (`endpoints`); any other
//! must carry an access token it issued (`authenticate`).
//!
//! Tokens, refresh tokens and codes are random 128-bit values stored as SHA-256 digests.
//! Checking an access token is a probe of the in-memory index (`tokens`), never a store
//! query; issuing one waits for the store's write, so a token handed out survives a restart
//! and every node sees it.
mod endpoints;
mod params;
pub mod tokens;

use super::auth::{identify, owner, Fallback};
use super::{get_bool, get_str, get_strings, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::schema::{field, FieldErrors, Ty};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use params::Params;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

pub const SPEC: PluginSpec = PluginSpec {
    name: "oauth2",
    priority: 1400,
    no_consumer: true,
    fields: &[
        field("scopes", Ty::StrArray),
        field("mandatory_scope", Ty::Bool),
        field("provision_key", Ty::Str),
        field(
            "token_expiration",
            Ty::Int {
                min: 0,
                max: i32::MAX as i64,
            },
        ),
        field("enable_authorization_code", Ty::Bool),
        field("enable_implicit_grant", Ty::Bool),
        field("enable_client_credentials", Ty::Bool),
        field("enable_password_grant", Ty::Bool),
        field("hide_credentials", Ty::Bool),
        field("accept_http_if_already_terminated", Ty::Bool),
        field("anonymous", Ty::Str),
        field("global_credentials", Ty::Bool),
        field("auth_header_name", Ty::Str),
        field(
            "refresh_token_ttl",
            Ty::Int {
                min: 0,
                max: 100_000_000,
            },
        ),
        field("reuse_refresh_token", Ty::Bool),
        field("pkce", Ty::Enum(&["none", "lax", "strict"])),
        field("realm", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({
        "scopes": null, "mandatory_scope": false, "token_expiration": 7200,
        "enable_authorization_code": false, "enable_implicit_grant": false,
        "enable_client_credentials": false, "enable_password_grant": false,
        "hide_credentials": false, "accept_http_if_already_terminated": false,
        "anonymous": null, "global_credentials": false, "auth_header_name": "authorization",
        "refresh_token_ttl": 1_209_600, "reuse_refresh_token": false, "pkce": "lax",
        "realm": null,
    });
    v.as_object().cloned().unwrap_or_default()
}

const FLOWS: [&str; 4] = [
    "enable_authorization_code",
    "enable_implicit_grant",
    "enable_client_credentials",
    "enable_password_grant",
];

/// Kong's checks (schema.lua): one flow at least, `scopes` when `mandatory_scope`, a valid
/// header name; a `provision_key` is generated when none is given.
fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    if !FLOWS.iter().any(|f| get_bool(c, f)) {
        errors.add(
            "@entity",
            format!(
                "at least one of these fields must be true: {}",
                FLOWS.join(", ")
            ),
        );
    }
    if get_bool(c, "mandatory_scope") && c.get("scopes").is_none_or(Value::is_null) {
        errors.add("scopes", "required field missing");
    }
    let header = get_str(c, "auth_header_name").unwrap_or_default();
    if HeaderName::try_from(header).is_err() {
        errors.add("auth_header_name", "bad header name");
    }
    if get_str(c, "provision_key").is_none() {
        let key = crate::model::credential::generate_key();
        c.insert("provision_key".into(), key.into());
    }
}

/// How PKCE is asked for (Kong's `pkce`).
#[derive(Clone, Copy, PartialEq)]
enum Pkce {
    /// Never required.
    None,
    /// Required of public clients.
    Lax,
    /// Required of every client.
    Strict,
}

/// An instance's config, read once per snapshot.
struct Conf {
    scopes: Option<Vec<String>>,
    mandatory_scope: bool,
    provision_key: String,
    token_expiration: i64,
    authorization_code: bool,
    implicit_grant: bool,
    client_credentials: bool,
    password_grant: bool,
    hide_credentials: bool,
    accept_http_if_already_terminated: bool,
    global_credentials: bool,
    auth_header_name: HeaderName,
    refresh_token_ttl: i64,
    reuse_refresh_token: bool,
    pkce: Pkce,
    realm: Option<String>,
}

pub struct OAuth2 {
    conf: Conf,
    /// The instance and the service it is on (tokens and codes are bound to them).
    plugin: Uuid,
    service: Option<Uuid>,
    fallback: Fallback,
    shared: Arc<super::Shared>,
}

fn build(
    c: &Map<String, Value>,
    scope: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let int = |k: &str| c.get(k).and_then(Value::as_i64).unwrap_or(0);
    let conf = Conf {
        scopes: c
            .get("scopes")
            .filter(|v| !v.is_null())
            .map(|_| get_strings(c, "scopes")),
        mandatory_scope: get_bool(c, "mandatory_scope"),
        provision_key: get_str(c, "provision_key").unwrap_or_default().into(),
        token_expiration: int("token_expiration"),
        authorization_code: get_bool(c, "enable_authorization_code"),
        implicit_grant: get_bool(c, "enable_implicit_grant"),
        client_credentials: get_bool(c, "enable_client_credentials"),
        password_grant: get_bool(c, "enable_password_grant"),
        hide_credentials: get_bool(c, "hide_credentials"),
        accept_http_if_already_terminated: get_bool(c, "accept_http_if_already_terminated"),
        global_credentials: get_bool(c, "global_credentials"),
        auth_header_name: HeaderName::try_from(
            get_str(c, "auth_header_name").unwrap_or("authorization"),
        )
        .map_err(|e| e.to_string())?,
        refresh_token_ttl: int("refresh_token_ttl"),
        reuse_refresh_token: get_bool(c, "reuse_refresh_token"),
        pkce: match get_str(c, "pkce") {
            Some("none") => Pkce::None,
            Some("strict") => Pkce::Strict,
            _ => Pkce::Lax,
        },
        realm: get_str(c, "realm").map(String::from),
    };
    Ok(Arc::new(OAuth2 {
        conf,
        plugin: scope.plugin,
        service: scope.service,
        fallback: Fallback::of(c, "Bearer")?,
        shared: shared.clone(),
    }))
}

static SCOPE_HEADER: HeaderName = HeaderName::from_static("x-authenticated-scope");
static USERID_HEADER: HeaderName = HeaderName::from_static("x-authenticated-userid");

const MISSING: &str = "The access token is missing";
const INVALID: &str = "The access token is invalid or has expired";

/// Which of the plugin's endpoints a path ends in, if any (a final `/` allowed).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Endpoint {
    Token,
    Authorize,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.ends_with("/oauth2/token") {
        Some(Endpoint::Token)
    } else if path.ends_with("/oauth2/authorize") {
        Some(Endpoint::Authorize)
    } else {
        None
    }
}

impl Handler for OAuth2 {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        if let Some(which) = endpoint(ctx.parts.uri.path()) {
            if ctx.parts.method != http::Method::POST {
                return Access::Now(Flow::Respond(self.invalid_method(ctx, which)));
            }
            return Access::Later(Box::pin(async move {
                match Params::read(ctx, true).await {
                    Ok(params) => Flow::Respond(match which {
                        Endpoint::Token => self.issue_token(ctx, &params).await,
                        Endpoint::Authorize => self.authorize(ctx, &params).await,
                    }),
                    Err(reply) => Flow::Respond(reply),
                }
            }));
        }
        // What a client sends under these names never reaches the upstream; a token's own
        // values replace them below.
        ctx.set_upstream_header(SCOPE_HEADER.clone(), None);
        ctx.set_upstream_header(USERID_HEADER.clone(), None);
        if self.fallback.already_authenticated(ctx) {
            return Access::Now(Flow::Continue);
        }
        if ctx.parts.headers.contains_key(&self.conf.auth_header_name) {
            return Access::Now(self.authenticate(ctx, None));
        }
        let reads_body = matches!(
            ctx.parts.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        );
        Access::Later(Box::pin(async move {
            match Params::read(ctx, reads_body).await {
                Ok(params) => self.authenticate(ctx, Some(params)),
                Err(reply) => Flow::Respond(reply),
            }
        }))
    }
}

impl OAuth2 {
    /// Kong's `do_authentication`: the access token from the header (`Bearer` or `Token`
    /// scheme, or the bare value), else the `access_token` parameter in `params`.
    fn authenticate(&self, ctx: &mut Context<'_>, params: Option<Params>) -> Flow {
        let token = match params {
            None => {
                let value = ctx.parts.headers.get(&self.conf.auth_header_name);
                let text = value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let text = text.unwrap_or_default();
                let parts: Vec<&str> = text.split_whitespace().collect();
                let token = match parts.as_slice() {
                    [scheme, token]
                        if scheme.eq_ignore_ascii_case("bearer")
                            || scheme.eq_ignore_ascii_case("token") =>
                    {
                        if self.conf.hide_credentials {
                            ctx.set_upstream_header(self.conf.auth_header_name.clone(), None);
                        }
                        token.to_string()
                    }
                    _ => text,
                };
                Some(token)
            }
            Some(params) => {
                let token = params.string("access_token");
                if self.conf.hide_credentials && token.is_some() {
                    params.hide(ctx, "access_token");
                }
                token
            }
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            let body = json!({"error": "invalid_request", "error_description": MISSING});
            let reply = challenged(StatusCode::UNAUTHORIZED, body, self.challenge(None));
            return self.fallback.refuse(ctx, reply);
        };
        match self.refusal(ctx, &token) {
            None => Flow::Continue,
            Some(reply) => self.fallback.refuse(ctx, reply),
        }
    }

    /// Identifies the consumer of access token `token`; or the 401 it gets.
    fn refusal(&self, ctx: &mut Context<'_>, token: &str) -> Option<Reply> {
        let invalid = || self.bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", INVALID);
        let Some(found) = self.shared.oauth2.find(token) else {
            return Some(invalid());
        };
        match found.service {
            None if !self.conf.global_credentials => {
                return Some(self.bearer_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "The access token is global, but the current plugin is configured without 'global_credentials'",
                ));
            }
            Some(s) if Some(s) != ctx.service_id => return Some(invalid()),
            _ => {}
        }
        if found.expired(ctx.now_ms) {
            return Some(invalid());
        }
        let consumers = &ctx.snapshot.consumers;
        let Some(credential) = consumers.oauth2_credential(found.credential) else {
            return Some(invalid());
        };
        identify(ctx, owner(&credential.credential));
        ctx.set_upstream_header(SCOPE_HEADER.clone(), found.scope.clone());
        ctx.set_upstream_header(USERID_HEADER.clone(), found.authenticated_userid.clone());
        None
    }

    /// A JSON `{"error", "error_description"}` refusal with its `Bearer` challenge.
    fn bearer_error(&self, status: StatusCode, error: &str, description: &str) -> Reply {
        let body = json!({"error": error, "error_description": description});
        challenged(status, body, self.challenge(Some((error, description))))
    }

    /// Kong's `WWW-Authenticate: Bearer realm="...", error="...", error_description="..."`.
    fn challenge(&self, error: Option<(&str, &str)>) -> HeaderValue {
        let mut params = Vec::new();
        if let Some(realm) = self.conf.realm.as_deref().filter(|r| !r.is_empty()) {
            params.push(format!("realm=\"{}\"", realm.replace('"', "")));
        }
        if let Some((error, description)) = error {
            params.push(format!("error=\"{error}\""));
            params.push(format!("error_description=\"{description}\""));
        }
        let text = match params.is_empty() {
            true => "Bearer".to_string(),
            false => format!("Bearer {}", params.join(", ")),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer"))
    }

    /// 405 for an endpoint asked with another method than POST.
    fn invalid_method(&self, ctx: &Context<'_>, which: Endpoint) -> Reply {
        let name = match which {
            Endpoint::Token => "token",
            Endpoint::Authorize => "authorization",
        };
        let description = format!(
            "The HTTP method {} is invalid for the {name} endpoint",
            ctx.parts.method
        );
        self.bearer_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_method",
            &description,
        )
    }
}

/// A JSON refusal with a `WWW-Authenticate` challenge.
fn challenged(status: StatusCode, body: Value, challenge: HeaderValue) -> Reply {
    let mut reply = Reply::json(status, body);
    reply
        .headers
        .insert(http::header::WWW_AUTHENTICATE, challenge);
    reply
}

/// Headers every endpoint answer carries: it must not be cached.
fn no_store() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::checked_config;

    #[test]
    fn the_endpoints_are_found_at_the_end_of_any_path() {
        assert_eq!(endpoint("/oauth2/token"), Some(Endpoint::Token));
        assert_eq!(endpoint("/api/oauth2/token/"), Some(Endpoint::Token));
        assert_eq!(endpoint("/a/oauth2/authorize"), Some(Endpoint::Authorize));
        assert_eq!(endpoint("/oauth2/tokens"), None);
        assert_eq!(endpoint("/request"), None);
    }

    // spec/03-plugins/25-oauth2/01-schema_spec.lua: a flow is required; `scopes` with
    // `mandatory_scope`; a provision key is generated.
    #[test]
    fn kong_schema_rules_hold() {
        let err = checked_config("oauth2", json!({})).unwrap_err();
        assert_eq!(
            err["@entity"][0],
            "at least one of these fields must be true: enable_authorization_code, enable_implicit_grant, enable_client_credentials, enable_password_grant"
        );
        let err = checked_config(
            "oauth2",
            json!({"enable_client_credentials": true, "mandatory_scope": true}),
        )
        .unwrap_err();
        assert_eq!(err["scopes"], "required field missing");
        let ok = checked_config(
            "oauth2",
            json!({"enable_authorization_code": true, "scopes": ["email"]}),
        )
        .unwrap();
        assert_eq!(ok["provision_key"].as_str().unwrap().len(), 32);
        assert_eq!(ok["token_expiration"], 7200);
        assert_eq!(ok["pkce"], "lax");
        assert_eq!(ok["refresh_token_ttl"], 1_209_600);
    }
}
