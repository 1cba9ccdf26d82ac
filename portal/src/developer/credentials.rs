//! An application's credential, of the kind its plan allows and the developer picked: an API
//! key (key-auth), OAuth2 client credentials (a client id and secret the API's token endpoint
//! trades for bearer tokens), or a JWT key whose public key the developer uploads (jwt, RS256
//! or ES256). Secrets are shown once, when made; the gateway keeps them hashed.
use crate::web::admin_api::{self, Payload};
use axum::http::{Method, StatusCode};
use axum::Router;
use leptos::prelude::*;
use serde_json::{json, Value};

/// A public key larger than this is refused unread (an RSA-8192 key is under 2 KiB).
const MAX_PUBLIC_KEY: usize = 8 * 1024;

/// The credential a developer asked for.
pub enum Requested {
    Key,
    OAuth2,
    Jwt { public_key: String },
}

impl Requested {
    /// The form's `credential` (default: an API key) and `public_key`, or what is wrong.
    pub fn from_form(credential: Option<&str>, public_key: Option<&str>) -> Result<Self, String> {
        match credential.unwrap_or("key-auth") {
            "key-auth" => Ok(Requested::Key),
            "oauth2" => Ok(Requested::OAuth2),
            "jwt" => {
                let pem = public_key.unwrap_or_default().trim();
                if pem.is_empty() || pem.len() > MAX_PUBLIC_KEY {
                    return Err("Public key: paste a PEM public key (RSA or EC P-256).".into());
                }
                Ok(Requested::Jwt {
                    public_key: pem.to_string(),
                })
            }
            _ => Err("Credential: choose one of those offered.".into()),
        }
    }

    /// Its kind, as plans list them.
    pub fn kind(&self) -> &'static str {
        match self {
            Requested::Key => "key-auth",
            Requested::OAuth2 => "oauth2",
            Requested::Jwt { .. } => "jwt",
        }
    }
}

/// What a new credential shows once.
pub enum Issued {
    Key(String),
    Client { id: String, secret: String },
    Jwt { key: String, algorithm: String },
}

impl Issued {
    /// The fields the admin API's answer carries for it.
    pub fn fields(&self) -> Value {
        match self {
            Issued::Key(k) => json!({"key": k}),
            Issued::Client { id, secret } => json!({"client_id": id, "client_secret": secret}),
            Issued::Jwt { key, algorithm } => json!({"jwt_key": key, "algorithm": algorithm}),
        }
    }
}

/// Why a credential was not made: the developer's input (a public key that does not parse),
/// or the gateway.
pub enum Refusal {
    Input(String),
    Failed(String),
}

/// Makes the credential `requested` for application consumer `consumer`.
pub async fn issue(
    admin: &Router,
    consumer: &str,
    name: &str,
    requested: &Requested,
) -> Result<Issued, Refusal> {
    match requested {
        Requested::Key => new_key(admin, consumer).await.map(Issued::Key),
        Requested::OAuth2 => {
            let body = json!({"name": name});
            let made = create(admin, consumer, "oauth2", body).await?;
            Ok(Issued::Client {
                id: text(&made, "client_id"),
                secret: text(&made, "client_secret"),
            })
        }
        Requested::Jwt { public_key } => {
            for algorithm in ["RS256", "ES256"] {
                let body = json!({"algorithm": algorithm, "rsa_public_key": public_key});
                match create(admin, consumer, "jwt", body).await {
                    Ok(made) => {
                        return Ok(Issued::Jwt {
                            key: text(&made, "key"),
                            algorithm: algorithm.into(),
                        })
                    }
                    Err(Refusal::Input(_)) => continue,
                    Err(failed) => return Err(failed),
                }
            }
            Err(Refusal::Input(
                "Public key: not a PEM RSA or EC (P-256) public key.".into(),
            ))
        }
    }
}

/// A new generated API key for the consumer, in clear (its only appearance).
pub async fn new_key(admin: &Router, consumer: &str) -> Result<String, Refusal> {
    let made = create(admin, consumer, "key-auth", json!({})).await?;
    Ok(text(&made, "key"))
}

/// A new client secret for the consumer's oauth2 credential `id`, in clear (shown once).
pub async fn new_client_secret(admin: &Router, consumer: &str, id: &str) -> Result<String, String> {
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("/consumers/{consumer}/oauth2/{id}");
    let body = Payload::Json(json!({"client_secret": secret}));
    let changed = admin_api::call(admin, Method::PATCH, &path, body).await;
    match changed.status.is_success() {
        true => Ok(secret),
        false => Err(changed.message()),
    }
}

/// The consumer's credentials of `kind` (`key-auth`, `oauth2`, `jwt`).
pub async fn list(admin: &Router, consumer: &str, kind: &str) -> Result<Vec<Value>, String> {
    let path = format!("/consumers/{consumer}/{kind}?size=1000");
    let answer = admin_api::call(admin, Method::GET, &path, Payload::None).await;
    if !answer.status.is_success() {
        return Err(answer.message());
    }
    Ok(answer.body["data"].as_array().cloned().unwrap_or_default())
}

async fn create(admin: &Router, consumer: &str, kind: &str, body: Value) -> Result<Value, Refusal> {
    let path = format!("/consumers/{consumer}/{kind}");
    let made = admin_api::call(admin, Method::POST, &path, Payload::Json(body)).await;
    match made.status {
        s if s.is_success() => Ok(made.body),
        StatusCode::BAD_REQUEST => Err(Refusal::Input(made.message())),
        _ => Err(Refusal::Failed(made.message())),
    }
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// The notice that shows a new credential once.
pub fn revealed(issued: Issued) -> impl IntoView {
    let body = match issued {
        Issued::Key(k) => view! {
            <p>"Your new API key. Copy it now: it is stored hashed and will not be shown again."</p>
            <p><code class="key" id="new-key" data-new-key=k.clone()>{k.clone()}</code></p>
        }
        .into_any(),
        Issued::Client { id, secret } => view! {
            <p>"Your OAuth2 client. Copy the secret now: it is stored hashed and will not be shown again."</p>
            <p>"Client id " <code id="client-id">{id}</code></p>
            <p>"Client secret " <code class="key" id="client-secret">{secret}</code></p>
        }
        .into_any(),
        Issued::Jwt { key, algorithm } => view! {
            <p>"Your JWT key. Sign tokens with your private key (" {algorithm} ") and put this key in their " <code>"iss"</code> " claim."</p>
            <p><code class="key" id="jwt-key">{key}</code></p>
        }
        .into_any(),
    };
    view! { <div class="notice" role="status">{body}</div> }
}

/// How each kind is offered in forms.
pub fn label(kind: &str) -> &'static str {
    match kind {
        "oauth2" => "OAuth2 client credentials",
        "jwt" => "JWT signed with your key",
        _ => "API key",
    }
}
