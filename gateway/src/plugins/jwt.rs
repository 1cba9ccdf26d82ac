//! jwt: identifies the consumer by a signed JSON Web Token, as Kong's plugin does
//! (kong/plugins/jwt/handler.lua, jwt_parser.lua): the token's `key_claim_name` claim (or
//! header) names a jwt secret, whose algorithm the token must use and whose secret or public
//! key must verify its signature; `exp` and `nbf` are checked when configured.
//!
//! Tokens are parsed here with Kong's messages; signatures are verified by the jsonwebtoken
//! crate. A token's `alg` must equal its secret's algorithm, so `alg: none` (refused as an
//! invalid alg) and algorithm confusion (an HS256 token signed with an RSA public key as the
//! secret) cannot pass.
use super::auth::{challenged, identify, owner, Fallback, Owner};
use super::{get_bool, get_str, get_strings, Access, Context, Flow, Handler, PluginSpec, Reply};
use crate::model::jwt_secret::is_asymmetric;
use crate::model::schema::{field, FieldErrors, Ty};
use crate::snapshot::JwtEntry;
use base64::Engine;
use http::{HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

pub const SPEC: PluginSpec = PluginSpec {
    name: "jwt",
    priority: 1450,
    no_consumer: true,
    fields: &[
        field("uri_param_names", Ty::StrSet),
        field("cookie_names", Ty::StrSet),
        field("key_claim_name", Ty::Str),
        field("secret_is_base64", Ty::Bool),
        field("claims_to_verify", Ty::StrSet),
        field("anonymous", Ty::Str),
        field("run_on_preflight", Ty::Bool),
        field(
            "maximum_expiration",
            Ty::Number {
                min: 0.0,
                max: 31_536_000.0,
            },
        ),
        field("header_names", Ty::StrSet),
        field("realm", Ty::Str),
    ],
    defaults,
    validate,
    build,
};

fn defaults() -> Map<String, Value> {
    let v = json!({
        "uri_param_names": ["jwt"], "cookie_names": [], "key_claim_name": "iss",
        "secret_is_base64": false, "claims_to_verify": null, "anonymous": null,
        "run_on_preflight": true, "maximum_expiration": 0, "header_names": ["authorization"],
        "realm": null,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// The claims `claims_to_verify` may name.
const CLAIMS: [&str; 2] = ["exp", "nbf"];

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let claims = get_strings(c, "claims_to_verify");
    let bad: Vec<Option<String>> = claims
        .iter()
        .map(|n| (!CLAIMS.contains(&n.as_str())).then(|| "expected one of: exp, nbf".to_string()))
        .collect();
    errors.elements("claims_to_verify", bad);
    let max = c.get("maximum_expiration").and_then(Value::as_f64);
    if max.is_some_and(|m| m > 0.0) && !claims.iter().any(|n| n == "exp") {
        errors.add("claims_to_verify", "expected to contain: exp");
    }
    if get_strings(c, "header_names")
        .iter()
        .any(|n| HeaderName::try_from(n.as_str()).is_err())
    {
        errors.add(
            "header_names",
            "bad header name: use letters, digits, '-' and '_'",
        );
    }
}

struct Jwt {
    uri_param_names: Vec<String>,
    cookie_names: Vec<String>,
    header_names: Vec<HeaderName>,
    key_claim_name: String,
    secret_is_base64: bool,
    claims_to_verify: Vec<String>,
    maximum_expiration: f64,
    run_on_preflight: bool,
    fallback: Fallback,
    /// The challenge of a refusal that is about the token (`error="invalid_token"`).
    invalid_token: HeaderValue,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    _: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let fallback = Fallback::of(c, "Bearer")?;
    let base = fallback.challenge.to_str().unwrap_or("Bearer");
    let with_error = match get_str(c, "realm") {
        Some(_) => format!("{base}, error=\"invalid_token\""),
        None => "Bearer error=\"invalid_token\"".into(),
    };
    Ok(Arc::new(Jwt {
        uri_param_names: get_strings(c, "uri_param_names"),
        cookie_names: get_strings(c, "cookie_names"),
        header_names: get_strings(c, "header_names")
            .iter()
            .filter_map(|n| HeaderName::try_from(n.as_str()).ok())
            .collect(),
        key_claim_name: get_str(c, "key_claim_name").unwrap_or("iss").to_string(),
        secret_is_base64: get_bool(c, "secret_is_base64"),
        claims_to_verify: get_strings(c, "claims_to_verify"),
        maximum_expiration: c
            .get("maximum_expiration")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        run_on_preflight: get_bool(c, "run_on_preflight"),
        fallback,
        invalid_token: HeaderValue::from_str(&with_error).map_err(|e| e.to_string())?,
    }))
}

impl Handler for Jwt {
    fn access<'a>(&'a self, ctx: &'a mut Context<'_>) -> Access<'a> {
        let preflight = !self.run_on_preflight && ctx.parts.method == http::Method::OPTIONS;
        if preflight || self.fallback.already_authenticated(ctx) {
            return Access::Now(Flow::Continue);
        }
        let tokens = self.tokens(ctx);
        let flow = match tokens.len() {
            0 => self.fallback.unauthorized(ctx, "Unauthorized"),
            1 => {
                let token = tokens.into_iter().next().unwrap_or_default();
                match self.verify(ctx, &token) {
                    Ok(owner) => {
                        identify(ctx, owner);
                        Flow::Continue
                    }
                    Err(reply) => self.fallback.refuse(ctx, *reply),
                }
            }
            _ => {
                let reply = self.invalid("Multiple tokens provided");
                self.fallback.refuse(ctx, *reply)
            }
        };
        Access::Now(flow)
    }
}

/// Now, in seconds since the epoch, as the claims count time.
fn now_s(ctx: &Context<'_>) -> f64 {
    ctx.now_ms as f64 / 1000.0
}

impl Jwt {
    /// The distinct tokens the request carries: in the query, cookies and `Bearer` headers.
    fn tokens(&self, ctx: &Context<'_>) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let query = ctx.query().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if !v.is_empty() && self.uri_param_names.iter().any(|n| *n == k) {
                found.insert(v.into_owned());
            }
        }
        if !self.cookie_names.is_empty() {
            for cookie in cookies(&ctx.parts.headers) {
                if let Some((name, value)) = cookie.split_once('=') {
                    let (name, value) = (name.trim(), value.trim());
                    if !value.is_empty() && self.cookie_names.iter().any(|n| n == name) {
                        found.insert(value.to_string());
                    }
                }
            }
        }
        for name in &self.header_names {
            if let Some(token) = ctx.parts.headers.get(name).and_then(bearer) {
                found.insert(token);
            }
        }
        found
    }

    /// A 401 about the token (boxed: refusals are the rare path).
    fn invalid(&self, message: impl Into<std::borrow::Cow<'static, str>>) -> Box<Reply> {
        Box::new(challenged(
            StatusCode::UNAUTHORIZED,
            message,
            self.invalid_token.clone(),
        ))
    }

    /// A 401 naming the claims that failed, as Kong's `{"exp": "token expired"}`.
    fn invalid_claims(&self, errors: Map<String, Value>) -> Box<Reply> {
        let mut reply = Reply::json(StatusCode::UNAUTHORIZED, Value::Object(errors));
        reply
            .headers
            .insert(http::header::WWW_AUTHENTICATE, self.invalid_token.clone());
        Box::new(reply)
    }

    /// The consumer and credential of a token that verifies, or the refusal Kong sends.
    fn verify(&self, ctx: &Context<'_>, token: &str) -> Result<Owner, Box<Reply>> {
        let parsed = Token::parse(token).map_err(|e| self.invalid(format!("Bad token; {e}")))?;
        let claim = &self.key_claim_name;
        let key = match parsed
            .claims
            .get(claim)
            .or_else(|| parsed.header.get(claim))
        {
            None | Some(Value::Null) => {
                return Err(self.invalid(format!("No mandatory '{claim}' in claims")))
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(self.invalid(format!("Invalid '{claim}' in claims")))
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let Some(secret) = ctx.snapshot.consumers.jwt(&key) else {
            return Err(self.invalid(format!("No credentials found for given '{claim}'")));
        };
        if parsed.algorithm != secret.algorithm {
            return Err(self.invalid("Invalid algorithm"));
        }
        let key_material = self
            .decoding_key(secret)
            .ok_or_else(|| self.invalid("Invalid key/secret"))?;
        let signed = jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.signed.as_bytes(),
            &key_material,
            secret.algorithm,
        );
        if !signed.unwrap_or(false) {
            return Err(self.invalid("Invalid signature"));
        }
        let errors = self.claim_errors(&parsed.claims, now_s(ctx));
        if !errors.is_empty() {
            return Err(self.invalid_claims(errors));
        }
        Ok(owner(&secret.credential))
    }

    /// What verifies `secret`'s signatures: its public key, or its shared secret (decoded
    /// from base64 with `secret_is_base64`, as Kong decodes it).
    fn decoding_key(&self, secret: &JwtEntry) -> Option<DecodingKey> {
        if is_asymmetric(secret.algorithm) {
            return secret.public_key.clone();
        }
        let text = secret.secret.as_deref()?;
        if self.secret_is_base64 {
            let bytes = base64url(text)?;
            Some(DecodingKey::from_secret(&bytes))
        } else {
            Some(DecodingKey::from_secret(text.as_bytes()))
        }
    }

    /// The registered claims that fail: `claims_to_verify`, then `maximum_expiration`.
    fn claim_errors(&self, claims: &Map<String, Value>, now: f64) -> Map<String, Value> {
        let mut errors = Map::new();
        for name in &self.claims_to_verify {
            let problem = match (name.as_str(), claims.get(name).and_then(Value::as_f64)) {
                (_, None) => "must be a number",
                ("exp", Some(exp)) if exp <= now => "token expired",
                ("nbf", Some(nbf)) if nbf > now => "token not valid yet",
                _ => continue,
            };
            errors.insert(name.clone(), problem.into());
        }
        if errors.is_empty() && self.maximum_expiration > 0.0 {
            let exp = claims.get("exp").and_then(Value::as_f64);
            if exp.is_none_or(|exp| exp - now > self.maximum_expiration) {
                errors.insert("exp".into(), "exceeds maximum allowed expiration".into());
            }
        }
        errors
    }
}

/// A token split and decoded as Kong's parser does it, its signature not yet checked.
struct Token<'t> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    algorithm: Algorithm,
    /// `header.claims`, the text the signature covers.
    signed: &'t str,
    signature: &'t str,
}

impl<'t> Token<'t> {
    fn parse(token: &'t str) -> Result<Token<'t>, &'static str> {
        // Kong's tokenizer: the first two dots end the header and the claims; the signature
        // is all that follows.
        let mut parts = token.splitn(3, '.');
        let (header_64, claims_64, signature) = match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(c), Some(s)) => (h, c, s),
            _ => return Err("invalid JSON"),
        };
        let signed = &token[..header_64.len() + 1 + claims_64.len()];
        let object = |part: &str| -> Result<Map<String, Value>, &'static str> {
            let bytes = base64url(part).ok_or("invalid JSON")?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err("invalid JSON"),
            }
        };
        let header = object(header_64)?;
        let claims = object(claims_64)?;
        let algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .filter(|a| crate::model::jwt_secret::ALGORITHMS.contains(a))
            .and_then(|a| Algorithm::from_str(a).ok())
            .ok_or("invalid alg")?;
        if base64url(signature).is_none() {
            return Err("invalid signature");
        }
        Ok(Token {
            header,
            claims,
            algorithm,
            signed,
            signature,
        })
    }
}

/// Base64url with or without padding, as Kong's parser decodes.
fn base64url(text: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text).ok()
}

/// The `name=value` pairs of the request's `Cookie` headers.
fn cookies(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
}

/// The token of a `Bearer <token>` header value (the scheme anywhere in it, as Kong reads it).
fn bearer(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let at = text.find("Bearer").or_else(|| text.find("bearer"))?;
    let rest = &text[at + 6..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let token = rest.trim_start();
    (!token.is_empty()).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use crate::plugins::checked_config;
    use serde_json::json;

    // spec/03-plugins/16-jwt/06-schema_spec.lua, every case.
    #[test]
    fn maximum_expiration_is_checked_as_kongs_schema_does() {
        let ok = json!({"maximum_expiration": 60, "claims_to_verify": ["exp", "nbf"]});
        assert!(checked_config("jwt", ok).is_ok(), ":6");
        for claims in [json!(["exp", "nbf"]), json!(["nbf"])] {
            let err = checked_config(
                "jwt",
                json!({"maximum_expiration": -1, "claims_to_verify": claims}),
            )
            .unwrap_err();
            assert_eq!(
                err,
                json!({"maximum_expiration": "value should be between 0 and 31536000"}),
                ":17"
            );
        }
        let err = checked_config(
            "jwt",
            json!({"maximum_expiration": 60, "claims_to_verify": ["nbf"]}),
        )
        .unwrap_err();
        assert_eq!(err["claims_to_verify"], "expected to contain: exp", ":40");
        let err = checked_config("jwt", json!({"claims_to_verify": ["iat"]})).unwrap_err();
        assert_eq!(
            err["claims_to_verify"],
            json!(["expected one of: exp, nbf"])
        );
    }
}
