//! The authorization server's endpoints, as Kong's `authorize` and `issue_token`: each check
//! in Kong's order, a later failing check's error replacing an earlier one's, so clients see
//! the error Kong would give them.
use super::params::Params;
use super::tokens::hex_digest;
use super::{no_store, OAuth2, Pkce};
use crate::plugins::body::Field;
use crate::plugins::{Context, Reply};
use crate::snapshot::OAuth2Entry;
use crate::store::oauth2::{CodeRow, TokenRow};
use base64::Engine;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use uuid::Uuid;

/// An OAuth 2.0 error: its code and description.
struct Error {
    error: &'static str,
    description: Cow<'static, str>,
}

fn fail(error: &'static str, description: impl Into<Cow<'static, str>>) -> Error {
    Error {
        error,
        description: description.into(),
    }
}

fn error(error: &'static str, description: impl Into<Cow<'static, str>>) -> Option<Error> {
    Some(fail(error, description))
}

const INVALID_CLIENT: &str = "Invalid client authentication";
const REDIRECT_MISMATCH: &str =
    "Invalid redirect_uri that does not match with any redirect_uri created with the application";
/// How long an authorization code can be redeemed (Kong's 300 s).
const CODE_SECONDS: i64 = 300;

/// How a new token is written: on its own, or in one transaction with what it consumes.
enum Write<'a> {
    Insert,
    /// Redeems the code with this digest.
    Redeem(&'a str),
    /// Replaces this token (a refresh).
    Replace(&'a str),
    /// Gives this token a new access token, keeping the refresh token presented.
    Renew(&'a TokenRow, String),
}

/// What a new token is for.
struct Grant {
    credential: Uuid,
    authenticated_userid: Option<String>,
    scope: Option<String>,
    refresh: bool,
}

/// Why a token could not be issued: what it consumed is gone, or the store failed.
enum Refused {
    Gone,
    Failed(Reply),
}

impl OAuth2 {
    /// `POST .../oauth2/authorize`: a code (or, for the implicit grant, a token) for the
    /// user the operator's login page names, sent back in the client's redirect URI.
    pub(super) async fn authorize(&self, ctx: &mut Context<'_>, p: &Params) -> Reply {
        let snapshot = ctx.snapshot.clone();
        let mut failed = None;
        let mut redirect_uri = None;
        let mut answer = Map::new();
        let mut implicit = false;
        if let Err(message) = self.check_https(ctx) {
            failed = error("access_denied", message);
        } else if p.string("provision_key").as_deref() != Some(&self.conf.provision_key) {
            failed = error("invalid_provision_key", "Invalid provision_key");
        } else if blank(p.string("authenticated_userid")) {
            failed = error(
                "invalid_authenticated_userid",
                "Missing authenticated_userid parameter",
            );
        } else {
            let response_type = p.string("response_type");
            let code = self.conf.authorization_code && response_type.as_deref() == Some("code");
            let token = self.conf.implicit_grant && response_type.as_deref() == Some("token");
            if !code && !token {
                failed = error("unsupported_response_type", "Invalid response_type");
            }
            let scope = self.scope(p).unwrap_or_else(|e| {
                failed = Some(e);
                None
            });
            let client = self.client(&snapshot, p.string("client_id"));
            match client.filter(|c| !c.redirect_uris.is_empty()) {
                None => failed = error("invalid_client", INVALID_CLIENT),
                Some(c) => {
                    let wanted = p.string("redirect_uri");
                    let wanted = wanted.unwrap_or_else(|| c.redirect_uris[0].clone());
                    if c.redirect_uris.contains(&wanted) {
                        redirect_uri = Some(wanted);
                    } else {
                        failed = error("invalid_request", REDIRECT_MISMATCH);
                        redirect_uri = Some(c.redirect_uris[0].clone());
                    }
                }
            }
            let challenge = match challenge(p) {
                Err(e) => {
                    failed = error("invalid_request", e);
                    None
                }
                Ok(challenge) => challenge,
            };
            if let Some(c) = client.filter(|c| challenge.is_none() && self.requires_pkce(c, false))
            {
                let kind = if c.public { "public" } else { "confidential" };
                let message = format!("code_challenge is required for {kind} clients");
                failed = error("invalid_request", message);
            }
            if let (None, Some(c)) = (&failed, client) {
                let userid = p.string("authenticated_userid");
                let issued = match code {
                    true => self.new_code(ctx, c, userid, scope, challenge).await,
                    false => {
                        implicit = true;
                        let grant = Grant {
                            credential: c.id,
                            authenticated_userid: userid,
                            scope,
                            refresh: false,
                        };
                        self.issue(ctx, grant, Write::Insert)
                            .await
                            .map_err(|r| match r {
                                Refused::Failed(reply) => reply,
                                Refused::Gone => unexpected(),
                            })
                    }
                };
                match issued {
                    Ok(a) => answer = a,
                    Err(reply) => return reply,
                }
            }
        }
        let status = if failed.is_some() { 400 } else { 200 };
        let mut params = params_of(failed, answer, p.string("state"));
        if let Some(uri) = redirect_uri {
            let uri = with_params(&uri, &params, implicit);
            params = Map::from_iter([("redirect_uri".to_string(), Value::String(uri))]);
        }
        endpoint_reply(status, params, None)
    }

    /// `POST .../oauth2/token`: a token for a code, a refresh token, the client's own
    /// credentials, or (when enabled) a user the operator's app vouches for.
    pub(super) async fn issue_token(&self, ctx: &mut Context<'_>, p: &Params) -> Reply {
        let snapshot = ctx.snapshot.clone();
        let mut failed = None;
        let mut basic_challenge = false;
        let mut answer = Map::new();
        if let Err(message) = self.check_https(ctx) {
            failed = error("access_denied", message);
        } else {
            let grant = p.string("grant_type");
            let grant = grant.as_deref();
            let allowed = matches!(grant, Some("authorization_code" | "refresh_token"))
                || (self.conf.client_credentials && grant == Some("client_credentials"))
                || (self.conf.password_grant && grant == Some("password"));
            if !allowed {
                failed = error("unsupported_grant_type", "Invalid grant_type");
            }
            let (client_id, secret, from_header) = self.client_credentials(ctx, p);
            let client = self.client(&snapshot, client_id);
            if grant != Some("client_credentials") {
                match client.filter(|c| !c.redirect_uris.is_empty()) {
                    Some(c) => {
                        let wanted = p.string("redirect_uri");
                        if !wanted.is_none_or(|w| c.redirect_uris.contains(&w)) {
                            failed = error("invalid_request", REDIRECT_MISMATCH);
                        }
                    }
                    None => {
                        failed = error("invalid_client", INVALID_CLIENT);
                        basic_challenge = from_header;
                    }
                }
            }
            if let Some(c) = client {
                if let Some(e) = self.authenticate_client(c, secret.as_deref()).await {
                    basic_challenge = from_header && e.error == "invalid_client";
                    failed = Some(e);
                }
            }
            if let (None, Some(grant)) = (&failed, grant) {
                match self.grant(ctx, p, grant, client).await {
                    Ok(Ok(a)) => answer = a,
                    Ok(Err(e)) => failed = Some(e),
                    Err(reply) => return reply,
                }
            }
        }
        let status = match (&failed, basic_challenge) {
            (None, _) => 200,
            (Some(_), true) => 401,
            (Some(_), false) => 400,
        };
        let challenge =
            basic_challenge.then_some(HeaderValue::from_static("Basic realm=\"OAuth2.0\""));
        endpoint_reply(
            status,
            params_of(failed, answer, p.string("state")),
            challenge,
        )
    }

    /// The grant `grant` for an authenticated (or public) client: the answer's parameters,
    /// the OAuth error, or a reply for a store failure.
    async fn grant(
        &self,
        ctx: &mut Context<'_>,
        p: &Params,
        grant: &str,
        client: Option<&OAuth2Entry>,
    ) -> Result<Result<Map<String, Value>, Error>, Reply> {
        let provision_ok = p.string("provision_key").as_deref() == Some(&self.conf.provision_key);
        let userid = p.string("authenticated_userid");
        let Some(c) = client else {
            return Ok(Err(match grant {
                "client_credentials" if userid.is_some() && !provision_ok => {
                    fail("invalid_provision_key", "Invalid provision_key")
                }
                _ => fail("invalid_client", INVALID_CLIENT),
            }));
        };
        let scoped = |refresh: bool, userid: Option<String>| -> Result<Grant, Error> {
            Ok(Grant {
                credential: c.id,
                authenticated_userid: userid,
                scope: self.scope(p)?,
                refresh,
            })
        };
        match grant {
            "authorization_code" => self.redeem(ctx, p, c).await,
            "refresh_token" => self.refresh(ctx, p, c).await,
            "client_credentials" if userid.is_some() && !provision_ok => {
                Ok(Err(fail("invalid_provision_key", "Invalid provision_key")))
            }
            "client_credentials" => match scoped(false, userid) {
                Ok(g) => self.issued(ctx, g, Write::Insert, "").await,
                Err(e) => Ok(Err(e)),
            },
            _ if !provision_ok => Ok(Err(fail("invalid_provision_key", "Invalid provision_key"))),
            _ if blank(userid.clone()) => Ok(Err(fail(
                "invalid_authenticated_userid",
                "Missing authenticated_userid parameter",
            ))),
            _ => match scoped(true, userid) {
                Ok(g) => self.issued(ctx, g, Write::Insert, "").await,
                Err(e) => Ok(Err(e)),
            },
        }
    }

    /// The authorization code grant: the code must be this client's, for this service (or
    /// instance, with `global_credentials`), unexpired, unused, and match its PKCE challenge.
    async fn redeem(
        &self,
        ctx: &mut Context<'_>,
        p: &Params,
        client: &OAuth2Entry,
    ) -> Result<Result<Map<String, Value>, Error>, Reply> {
        let invalid = || fail("invalid_request", "Invalid code");
        let store = self.store().ok_or_else(unexpected)?;
        let code = p.string("code").unwrap_or_default();
        let hash = hex_digest(&code);
        let found = store
            .code(&hash, crate::model::unix_now())
            .await
            .map_err(|_| unexpected())?;
        let Some(row) = found.filter(|_| !code.is_empty()) else {
            return Ok(Err(invalid()));
        };
        let service = self.bound_service(ctx).map(|s| s.to_string());
        if service.is_some() && service != row.service_id {
            return Ok(Err(invalid()));
        }
        if row.credential_id != client.id.to_string() {
            return Ok(Err(invalid()));
        }
        if self.requires_pkce(client, row.challenge_method.is_some()) {
            if let Some(e) = pkce_verified(p, row.challenge.as_deref()) {
                return Ok(Err(e));
            }
        }
        let plugin = self.plugin.to_string();
        if self.conf.global_credentials && row.plugin_id.as_ref().is_some_and(|id| *id != plugin) {
            return Ok(Err(invalid()));
        }
        let grant = Grant {
            credential: client.id,
            authenticated_userid: row.authenticated_userid.clone(),
            scope: row.scope.clone(),
            refresh: true,
        };
        self.issued(ctx, grant, Write::Redeem(&hash), "Invalid code")
            .await
    }

    /// The refresh token grant: the token must be this client's, for this service, and its
    /// scopes still offered.
    async fn refresh(
        &self,
        ctx: &mut Context<'_>,
        p: &Params,
        client: &OAuth2Entry,
    ) -> Result<Result<Map<String, Value>, Error>, Reply> {
        const INVALID: &str = "Invalid refresh_token";
        let store = self.store().ok_or_else(unexpected)?;
        let presented = p.string("refresh_token").unwrap_or_default();
        let found = store
            .token_by_refresh(&hex_digest(&presented), crate::model::unix_now())
            .await
            .map_err(|_| unexpected())?;
        let service = self.bound_service(ctx).map(|s| s.to_string());
        let Some(old) = found.filter(|t| service.is_none() || service == t.service_id) else {
            return Ok(Err(fail("invalid_request", INVALID)));
        };
        if old.credential_id != client.id.to_string() {
            return Ok(Err(fail("invalid_client", INVALID_CLIENT)));
        }
        let offered = self.conf.scopes.as_deref().unwrap_or_default();
        let scopes = old.scope.as_deref().unwrap_or_default();
        if scopes
            .split_whitespace()
            .any(|s| !offered.iter().any(|o| o == s))
        {
            return Ok(Err(fail("invalid_scope", "Scope mismatch")));
        }
        let grant = Grant {
            credential: client.id,
            authenticated_userid: old.authenticated_userid.clone(),
            scope: old.scope.clone(),
            refresh: true,
        };
        let write = match self.conf.reuse_refresh_token {
            true => Write::Renew(&old, presented),
            false => Write::Replace(&old.id),
        };
        self.issued(ctx, grant, write, INVALID).await
    }

    /// `issue`, with what it consumed being gone read as `gone` (an `invalid_request`).
    async fn issued(
        &self,
        ctx: &Context<'_>,
        grant: Grant,
        write: Write<'_>,
        gone: &'static str,
    ) -> Result<Result<Map<String, Value>, Error>, Reply> {
        match self.issue(ctx, grant, write).await {
            Ok(answer) => Ok(Ok(answer)),
            Err(Refused::Gone) => Ok(Err(fail("invalid_request", gone))),
            Err(Refused::Failed(reply)) => Err(reply),
        }
    }

    /// Kong's `generate_token`: a new access token (and refresh token, unless `grant` says
    /// not or tokens never expire), stored, then in this node's index.
    async fn issue(
        &self,
        ctx: &Context<'_>,
        grant: Grant,
        write: Write<'_>,
    ) -> Result<Map<String, Value>, Refused> {
        let store = self.store().ok_or_else(|| Refused::Failed(unexpected()))?;
        let now = crate::model::unix_now();
        let expires_in = self.conf.token_expiration;
        let access = crate::model::credential::generate_key();
        let refresh_ttl = (self.conf.refresh_token_ttl > 0).then_some(self.conf.refresh_token_ttl);
        let failed = |_| Refused::Failed(unexpected());
        let (row, refresh) = match write {
            Write::Renew(old, presented) => {
                let row = store
                    .renew_token(&old.id, &hex_digest(&access), now, expires_in)
                    .await
                    .map_err(failed)?;
                (row.ok_or(Refused::Gone)?, Some(presented))
            }
            write => {
                let refresh =
                    (grant.refresh && expires_in > 0).then(crate::model::credential::generate_key);
                let lives = match (expires_in, &refresh, refresh_ttl) {
                    (0, _, _) | (_, Some(_), None) => None,
                    (_, Some(_), Some(ttl)) => Some(now + ttl.max(expires_in)),
                    (_, None, _) => Some(now + expires_in),
                };
                let row = TokenRow {
                    id: Uuid::new_v4().to_string(),
                    access_hash: hex_digest(&access),
                    refresh_hash: refresh.as_deref().map(hex_digest),
                    credential_id: grant.credential.to_string(),
                    service_id: self.bound_service(ctx).map(|s| s.to_string()),
                    authenticated_userid: grant.authenticated_userid,
                    scope: grant.scope,
                    expires_in,
                    created_at: now,
                    purge_at: lives,
                    revoked_at: None,
                    seq: 0,
                };
                let written = match write {
                    Write::Redeem(code) => store.redeem_code(code, row).await,
                    Write::Replace(old) => {
                        let replaced = store.replace_token(old, row, now).await;
                        if let Some(old) = crate::model::uuid_key(old) {
                            self.shared.oauth2.forget(old);
                        }
                        replaced
                    }
                    _ => store.insert_token(row).await.map(Some),
                };
                (written.map_err(failed)?.ok_or(Refused::Gone)?, refresh)
            }
        };
        self.shared.oauth2.apply(&row);
        let mut answer = Map::new();
        answer.insert("access_token".into(), access.into());
        answer.insert("token_type".into(), "bearer".into());
        if expires_in > 0 {
            answer.insert("expires_in".into(), expires_in.into());
        }
        if let Some(refresh) = refresh {
            answer.insert("refresh_token".into(), refresh.into());
        }
        Ok(answer)
    }

    /// Stores a new authorization code for client `c`: the answer's `code`.
    async fn new_code(
        &self,
        ctx: &Context<'_>,
        c: &OAuth2Entry,
        authenticated_userid: Option<String>,
        scope: Option<String>,
        challenge: Option<String>,
    ) -> Result<Map<String, Value>, Reply> {
        let store = self.store().ok_or_else(unexpected)?;
        let code = crate::model::credential::generate_key();
        let row = CodeRow {
            code_hash: hex_digest(&code),
            credential_id: c.id.to_string(),
            service_id: self.bound_service(ctx).map(|s| s.to_string()),
            plugin_id: Some(self.plugin.to_string()),
            authenticated_userid,
            scope,
            challenge_method: challenge.as_ref().map(|_| "S256".to_string()),
            challenge,
            expires_at: crate::model::unix_now() + CODE_SECONDS,
        };
        store.insert_code(&row).await.map_err(|_| unexpected())?;
        Ok(Map::from_iter([("code".to_string(), Value::String(code))]))
    }

    /// The service tokens and codes issued here are bound to: this one, unless the instance
    /// shares credentials (`global_credentials`).
    fn bound_service(&self, ctx: &Context<'_>) -> Option<Uuid> {
        match self.conf.global_credentials {
            true => None,
            false => ctx.service_id.or(self.service),
        }
    }

    /// The store tokens and codes are written to (attached when the node starts).
    fn store(&self) -> Option<&crate::store::Store> {
        self.shared.oauth2.store()
    }

    /// The client named `client_id`, if any.
    fn client<'s>(
        &self,
        snapshot: &'s crate::snapshot::Snapshot,
        client_id: Option<String>,
    ) -> Option<&'s OAuth2Entry> {
        let id = client_id.filter(|c| !c.is_empty())?;
        snapshot.consumers.oauth2_client(&id)
    }

    /// Checks a client's secret (confidential) or that it sent none (public).
    async fn authenticate_client(&self, c: &OAuth2Entry, secret: Option<&str>) -> Option<Error> {
        if c.public {
            return match secret.is_some_and(|s| !s.trim().is_empty()) {
                true => error(
                    "invalid_request",
                    "client_secret is disallowed for public clients",
                ),
                false => None,
            };
        }
        let verified = match secret {
            Some(s) => {
                let passwords = &self.shared.passwords;
                passwords.verify(&c.client_id, &c.secret_hash, s).await
            }
            None => false,
        };
        if verified {
            None
        } else {
            error("invalid_client", INVALID_CLIENT)
        }
    }

    /// Kong's `retrieve_client_credentials`: `client_id` and `client_secret` parameters,
    /// else Basic credentials in the auth header (the third value says so), else a lone
    /// `client_id`.
    fn client_credentials(
        &self,
        ctx: &Context<'_>,
        p: &Params,
    ) -> (Option<String>, Option<String>, bool) {
        let (id, secret) = (p.string("client_id"), p.string("client_secret"));
        if id.is_some() && secret.is_some() {
            return (id, secret, false);
        }
        if let Some(header) = ctx.parts.headers.get(&self.conf.auth_header_name) {
            let text = String::from_utf8_lossy(header.as_bytes());
            let decoded = basic_credentials(&text);
            return match decoded.as_deref().map(|d| d.split_once(':')) {
                Some(Some((id, secret))) => (Some(id.into()), Some(secret.into()), true),
                Some(None) => (decoded, None, true),
                None => (None, None, true),
            };
        }
        (id, None, false)
    }

    /// Kong's `retrieve_scope`: the requested scopes, each one offered, or the error.
    fn scope(&self, p: &Params) -> Result<Option<String>, Error> {
        let invalid = |d: String| Error {
            error: "invalid_scope",
            description: d.into(),
        };
        let requested = p.get("scope");
        if let (Some(offered), false) = (&self.conf.scopes, matches!(requested, Field::Missing)) {
            let Field::One(requested) = requested else {
                return Err(invalid("scope must be a string".into()));
            };
            let mut scopes = Vec::new();
            for s in requested.split_whitespace() {
                if !offered.iter().any(|o| o == s) {
                    return Err(invalid(format!("\"{s}\" is an invalid scope")));
                }
                scopes.push(s);
            }
            return Ok((!scopes.is_empty()).then(|| scopes.join(" ")));
        }
        if matches!(requested, Field::Missing) && self.conf.mandatory_scope {
            return Err(invalid("You must specify a scope".into()));
        }
        Ok(None)
    }

    /// Kong's `requires_pkce`: when the code was made with a challenge, for public clients
    /// unless `pkce` is `none`, and for every client when it is `strict`.
    fn requires_pkce(&self, client: &OAuth2Entry, used_pkce: bool) -> bool {
        used_pkce
            || (client.public && self.conf.pkce != Pkce::None)
            || (!client.public && self.conf.pkce == Pkce::Strict)
    }

    /// Kong's `check_https`: over TLS, or (with `accept_http_if_already_terminated`) from a
    /// trusted proxy saying `X-Forwarded-Proto: https`.
    fn check_https(&self, ctx: &Context<'_>) -> Result<(), &'static str> {
        const REFUSED: &str = "You must use HTTPS";
        if ctx.tls {
            return Ok(());
        }
        if !self.conf.accept_http_if_already_terminated || !ctx.trusted_peer {
            return Err(REFUSED);
        }
        let mut protos = ctx.parts.headers.get_all("x-forwarded-proto").iter();
        match (protos.next(), protos.next()) {
            (Some(_), Some(_)) => Err("Only one X-Forwarded-Proto header allowed"),
            (Some(p), None) if p.as_bytes().eq_ignore_ascii_case(b"https") => Ok(()),
            _ => Err(REFUSED),
        }
    }
}

/// Kong's `retrieve_code_challenge`: the challenge, as base64url without padding, or the
/// error of a challenge method without a challenge or other than S256.
fn challenge(p: &Params) -> Result<Option<String>, &'static str> {
    let method = p.string("code_challenge_method");
    let Some(challenge) = p.string("code_challenge") else {
        return match method {
            Some(_) => Err("code_challenge is required when code_method is present"),
            None => Ok(None),
        };
    };
    if method.is_some_and(|m| m != "S256" && m != "s256") {
        return Err("code_challenge_method is not supported, must be S256");
    }
    let normalized: String = challenge
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    Ok(Some(normalized))
}

/// Kong's `validate_pkce_verifier`: the `code_verifier`, 43 to 128 characters, whose
/// SHA-256 in base64url is the code's challenge.
fn pkce_verified(p: &Params, challenge: Option<&str>) -> Option<Error> {
    let verifier = match p.get("code_verifier") {
        Field::Missing => {
            return error(
                "invalid_request",
                "code_verifier is required for PKCE authorization requests",
            )
        }
        Field::Ambiguous => return error("invalid_request", "code_verifier is not a string"),
        Field::One(v) => v,
    };
    if !(43..=128).contains(&verifier.len()) {
        return error(
            "invalid_request",
            "code_verifier must be between 43 and 128 characters",
        );
    }
    let digest = Sha256::digest(verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    match challenge == Some(computed.as_str()) {
        true => None,
        false => error("invalid_grant", "Invalid code"),
    }
}

/// The credentials of a `Basic` value (Kong's pattern `\s*[Bb]asic\s*(.+)`), decoded.
fn basic_credentials(header: &str) -> Option<String> {
    let at = header.find("Basic").or_else(|| header.find("basic"))?;
    if !header[..at].trim().is_empty() {
        return None;
    }
    let encoded = header[at + 5..].trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn blank(value: Option<String>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

/// An endpoint's answer parameters: the error's, or the success's, with the client's `state`.
fn params_of(
    failed: Option<Error>,
    answer: Map<String, Value>,
    state: Option<String>,
) -> Map<String, Value> {
    let mut params = match failed {
        Some(e) => Map::from_iter([
            ("error".to_string(), Value::from(e.error)),
            (
                "error_description".to_string(),
                Value::from(e.description.into_owned()),
            ),
        ]),
        None => answer,
    };
    if let Some(state) = state {
        params.insert("state".into(), state.into());
    }
    params
}

/// `uri` with `params` added to its query (or, for the implicit grant, its fragment), as
/// Kong's `encode_args` writes them: sorted by name, percent-encoded.
fn with_params(uri: &str, params: &Map<String, Value>, fragment: bool) -> String {
    let Ok(mut url) = url::Url::parse(uri) else {
        return uri.to_string();
    };
    let existing = match fragment {
        true => url.fragment(),
        false => url.query(),
    };
    let mut merged: BTreeMap<String, String> = existing
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    for (k, v) in params {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        merged.insert(k.clone(), text);
    }
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let encoded: Vec<String> = merged
        .iter()
        .map(|(k, v)| {
            let e = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string();
            format!("{}={}", e(k), e(v))
        })
        .collect();
    let joined = encoded.join("&");
    match fragment {
        true => url.set_fragment(Some(&joined)),
        false => url.set_query(Some(&joined)),
    }
    url.to_string()
}

/// An endpoint's JSON answer, never cached.
fn endpoint_reply(
    status: u16,
    params: Map<String, Value>,
    challenge: Option<HeaderValue>,
) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut reply = Reply::json(status, Value::Object(params));
    reply.headers = no_store();
    if let Some(challenge) = challenge {
        reply
            .headers
            .insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    reply
}

/// Kong's answer when the store fails under an endpoint.
fn unexpected() -> Reply {
    Reply::json(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"message": "An unexpected error occurred"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // 03-access_spec.lua:773 "returns error when the redirect_uri does not match": Kong's
    // parameters, sorted and percent-encoded, in the first redirect URI.
    #[test]
    fn parameters_go_into_the_redirect_uri_as_kong_encodes_them() {
        let params = params_of(
            error("invalid_request", REDIRECT_MISMATCH),
            Map::new(),
            None,
        );
        assert_eq!(
            with_params("http://google.test/kong", &params, false),
            "http://google.test/kong?error=invalid_request&error_description=Invalid%20redirect_uri%20that%20does%20not%20match%20with%20any%20redirect_uri%20created%20with%20the%20application"
        );
        // :794 "works even if redirect_uri contains a query string".
        let code = Map::from_iter([("code".to_string(), Value::from("abc"))]);
        let params = params_of(None, code, Some("s 1".into()));
        assert_eq!(
            with_params("http://google.test/kong?foo=bar", &params, false),
            "http://google.test/kong?code=abc&foo=bar&state=s%201"
        );
        assert_eq!(
            with_params("http://google.test/kong", &params, true),
            "http://google.test/kong#code=abc&state=s%201"
        );
    }

    #[test]
    fn basic_client_credentials_are_read_as_kong_reads_them() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let header = format!("Basic {}", enc("clientid123:secret123"));
        assert_eq!(
            basic_credentials(&header).as_deref(),
            Some("clientid123:secret123")
        );
        assert_eq!(
            basic_credentials(&format!("basic {}", enc("a"))).as_deref(),
            Some("a")
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic %%%"), None);
    }
}
