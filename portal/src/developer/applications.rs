//! A developer's applications. Each is a gateway consumer (username `app-<id>`) with the
//! credential its plan allows and the developer picked (`credentials`) and its plan's
//! rate-limiting plugins, created through the in-process admin API so the proxy knows a new
//! credential as soon as the snapshot reloads. A key or secret is shown once, when created or
//! rotated; key rotation lets the old keys live on for a grace period the developer picks.
//! Another developer's application answers 404, whatever the URL or form says.
use super::credentials::{self, Issued, Refusal, Requested};
use super::layout::{not_found, respond, unavailable};
use super::{PortalState, Visitor};
use crate::plans;
use crate::web::admin_api::{self, Payload};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use axum::{Extension, Form};
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tollgate_analytics::unix_now;
use tollgate_gateway::store::portal::{
    Application, ApplicationsBy, Developer, Plan, APPLICATION_TAG, CREDENTIALS,
};
use tollgate_gateway::store::Store;

/// The grace periods offered when rotating: (seconds, label).
const GRACE: [(i64, &str); 4] = [
    (0, "none: old keys stop now"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (604_800, "7 days"),
];
const MAX_NAME: usize = 64;

/// The consumer username of an application.
pub fn consumer_username(consumer_id: &str) -> String {
    format!("app-{consumer_id}")
}

/// `2026-11-27 01:02 UTC`.
fn utc(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts).map_or_else(
        |_| ts.to_string(),
        |t| {
            format!(
                "{}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        },
    )
}

fn developer(visitor: &Visitor) -> Option<&Developer> {
    visitor.0.as_ref()
}

/// The application `id` when the visitor owns it; otherwise the response to send (404).
pub(super) async fn owned(
    st: &PortalState,
    visitor: &Visitor,
    id: &str,
) -> Result<Application, Response> {
    let Some(dev) = developer(visitor) else {
        return Err(Redirect::to("/login").into_response());
    };
    match st.store.owned_application(&dev.id, id).await {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(not_found(visitor)),
        Err(e) => Err(unavailable(visitor, e.to_string())),
    }
}

pub async fn list(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    render_list(&st, &visitor, StatusCode::OK, None, String::new()).await
}

async fn render_list(
    st: &PortalState,
    visitor: &Visitor,
    status: StatusCode,
    error: Option<String>,
    name: String,
) -> Response {
    let Some(dev) = developer(visitor) else {
        return Redirect::to("/login").into_response();
    };
    let (apps, plans) = match (
        st.store
            .applications(ApplicationsBy::Developer, &dev.id)
            .await,
        st.store.plans().await,
    ) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => return unavailable(visitor, e.to_string()),
    };
    let plan_name = |id: &str| {
        plans
            .iter()
            .find(|p| p.id == id)
            .map_or("(removed)".to_string(), |p| p.name.clone())
    };
    let rows = apps.iter().map(|a| {
        let href = format!("/apps/{}", a.consumer_id);
        let usage = format!("/apps/{}/usage", a.consumer_id);
        view! {
            <tr><td><a href=href>{a.name.clone()}</a></td><td>{plan_name(&a.plan_id)}</td><td>{utc(a.created_at)}</td><td><a href=usage>"Usage"</a></td></tr>
        }
    }).collect_view();
    let table = (!apps.is_empty()).then(|| view! {
        <table><thead><tr><th>"Application"</th><th>"Plan"</th><th>"Created"</th><th></th></tr></thead><tbody>{rows}</tbody></table>
    });
    let form = if plans.is_empty() {
        view! { <p class="empty">"No plans are offered yet, so no application can be created. Ask the API's operator."</p> }.into_any()
    } else {
        let allowed = |p: &Plan| {
            p.credentials
                .iter()
                .map(|c| credentials::label(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let options = plans.iter().map(|p| view! { <option value=p.id.clone()>{format!("{} ({}; {})", p.name, plans::limits_text(p), allowed(p))}</option> }).collect_view();
        let kinds = CREDENTIALS
            .iter()
            .map(|c| view! { <option value=*c>{credentials::label(c)}</option> })
            .collect_view();
        view! {
            <form method="post" action="/apps" class="card narrow">
                <h2>"New application"</h2>
                {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <label>"Name" <input name="name" value=name maxlength=MAX_NAME.to_string() required/></label>
                <label>"Plan" <select name="plan">{options}</select></label>
                <label>"Credential" <select name="credential">{kinds}</select></label>
                <label>"Public key (PEM, for a JWT credential)" <textarea name="public_key" rows="4" maxlength="8192"></textarea></label>
                <p class="hint">"Each plan lists the credentials it allows."</p>
                <button type="submit">"Create application"</button>
            </form>
        }.into_any()
    };
    respond(status, "My applications", visitor, view! { {table} {form} })
}

#[derive(Deserialize)]
pub struct NewApplication {
    name: String,
    plan: String,
    credential: Option<String>,
    public_key: Option<String>,
}

pub async fn create(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Form(f): Form<NewApplication>,
) -> Response {
    let Some(dev) = developer(&visitor).cloned() else {
        return Redirect::to("/login").into_response();
    };
    let name = f.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return render_list(
            &st,
            &visitor,
            StatusCode::BAD_REQUEST,
            Some(format!("Name: 1 to {MAX_NAME} characters.")),
            name,
        )
        .await;
    }
    let plan = match st.store.plan(&f.plan).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return render_list(
                &st,
                &visitor,
                StatusCode::BAD_REQUEST,
                Some("Plan: choose one of the plans offered.".into()),
                name,
            )
            .await
        }
        Err(e) => return unavailable(&visitor, e.to_string()),
    };
    let requested = Requested::from_form(f.credential.as_deref(), f.public_key.as_deref());
    let requested = match requested.and_then(|r| allowed_by(&plan, r)) {
        Ok(r) => r,
        Err(e) => return render_list(&st, &visitor, StatusCode::BAD_REQUEST, Some(e), name).await,
    };
    match open_application(&st.store, &st.admin, &dev.id, &name, &plan, &requested).await {
        Ok((app, issued)) => {
            render_app(&st, &visitor, &app, StatusCode::CREATED, Some(issued)).await
        }
        Err(Opening::Refused(e)) => {
            render_list(&st, &visitor, StatusCode::BAD_REQUEST, Some(e), name).await
        }
        Err(Opening::NameTaken) => {
            render_list(
                &st,
                &visitor,
                StatusCode::CONFLICT,
                Some(format!("You already have an application called “{name}”.")),
                name,
            )
            .await
        }
        Err(Opening::Failed(e)) => unavailable(&visitor, e),
    }
}

/// `requested`, when `plan` allows its kind; else what the form says.
pub fn allowed_by(plan: &Plan, requested: Requested) -> Result<Requested, String> {
    if plan.credentials.iter().any(|c| c == requested.kind()) {
        return Ok(requested);
    }
    let offered: Vec<&str> = plan
        .credentials
        .iter()
        .map(|c| credentials::label(c))
        .collect();
    Err(format!(
        "Credential: the {} plan allows {}.",
        plan.name,
        offered.join(", ")
    ))
}

/// Why an application was not opened.
pub enum Opening {
    /// The developer has an application by that name.
    NameTaken,
    /// The credential asked for cannot be made (a public key that does not parse).
    Refused(String),
    Failed(String),
}

/// Opens an application for `developer_id` on `plan`: its consumer, its row, its plan's
/// plugins, and its credential, whose secret is returned in clear (its only appearance). The
/// portal's form and the admin API's `POST /developers/{d}/applications` both open them here;
/// nothing stays of one that fails.
pub async fn open_application(
    store: &Store,
    admin: &Router,
    developer_id: &str,
    name: &str,
    plan: &Plan,
    requested: &Requested,
) -> Result<(Application, Issued), Opening> {
    let id = uuid::Uuid::new_v4().to_string();
    let consumer = json!({"id": id, "username": consumer_username(&id), "tags": [APPLICATION_TAG]});
    let made = admin_api::call(admin, Method::POST, "/consumers", Payload::Json(consumer)).await;
    if !made.status.is_success() {
        return Err(Opening::Failed(made.message()));
    }
    let app = Application {
        consumer_id: id.clone(),
        developer_id: developer_id.to_string(),
        name: name.to_string(),
        plan_id: plan.id.clone(),
        credential: requested.kind().to_string(),
        created_at: unix_now(),
    };
    let added = store.add_application(&app).await;
    if !matches!(added, Ok(true)) {
        let path = format!("/consumers/{id}");
        let _ = admin_api::call(admin, Method::DELETE, &path, Payload::None).await;
        return Err(match added {
            Ok(_) => Opening::NameTaken,
            Err(e) => Opening::Failed(e.to_string()),
        });
    }
    match plan_and_credential(store, admin, &id, name, plan, requested).await {
        Ok(issued) => {
            tracing::info!(application = %id, developer = %developer_id, "portal: application created");
            Ok((app, issued))
        }
        Err(refused) => {
            let path = format!("/consumers/{id}");
            let _ = admin_api::call(admin, Method::DELETE, &path, Payload::None).await;
            let _ = store.delete_application(&id).await;
            Err(refused)
        }
    }
}

/// Puts the new application's consumer `id` on `plan`, then issues its credential: the plan
/// first, so a credential never works without its plan's limits.
async fn plan_and_credential(
    store: &Store,
    admin: &Router,
    id: &str,
    name: &str,
    plan: &Plan,
    requested: &Requested,
) -> Result<Issued, Opening> {
    let published = plans::published_services(store)
        .await
        .map_err(Opening::Failed)?;
    plans::apply(admin, id, plan, &published)
        .await
        .map_err(Opening::Failed)?;
    credentials::issue(admin, id, name, requested)
        .await
        .map_err(|refusal| match refusal {
            Refusal::Input(e) => Opening::Refused(e),
            Refusal::Failed(e) => Opening::Failed(e),
        })
}

pub async fn show(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> Response {
    match owned(&st, &visitor, &id).await {
        Ok(app) => render_app(&st, &visitor, &app, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

async fn render_app(
    st: &PortalState,
    visitor: &Visitor,
    app: &Application,
    status: StatusCode,
    issued: Option<Issued>,
) -> Response {
    let kind = app.credential.as_str();
    let (held, plan) = match (
        credentials::list(&st.admin, &app.consumer_id, kind).await,
        st.store.plan(&app.plan_id).await,
    ) {
        (Ok(k), Ok(p)) => (k, p),
        (Err(e), _) => return unavailable(visitor, e),
        (_, Err(e)) => return unavailable(visitor, e.to_string()),
    };
    let base = format!("/apps/{}", app.consumer_id);
    let plan_text = plan.as_ref().map_or("(removed)".to_string(), |p| {
        format!("{}: {}", p.name, plans::limits_text(p))
    });
    let usage = format!("{base}/usage");
    let delete = format!("{base}/delete");
    let section = match kind {
        "oauth2" => oauth2_section(&base, &held).into_any(),
        "jwt" => jwt_section(&held).into_any(),
        _ => keys_section(&base, &held).into_any(),
    };
    respond(
        status,
        &app.name,
        visitor,
        view! {
            {issued.map(credentials::revealed)}
            <p>"Plan " <strong>{plan_text}</strong> " · " <a href=usage>"Usage"</a></p>
            {section}
            <form method="post" action=delete class="inline-form">
                <button type="submit" class="danger">"Delete this application"</button>
                <span class="hint">"Its credentials stop working at once."</span>
            </form>
        },
    )
}

/// An API-key application's keys, with rotation and revocation.
fn keys_section(base: &str, keys: &[Value]) -> impl IntoView {
    let now = unix_now();
    let rows = keys.iter().map(|k| {
        let kid = k["id"].as_str().unwrap_or_default().to_string();
        let created = k["created_at"].as_i64().unwrap_or(0);
        let expires = k["ttl"].as_i64().map(|t| created + t);
        let state = match expires {
            None => "never expires".to_string(),
            Some(e) if e <= now => format!("expired {}", utc(e)),
            Some(e) => format!("expires {}", utc(e)),
        };
        let revoke = format!("{base}/keys/{kid}/revoke");
        view! {
            <tr><td><code>{kid}</code></td><td>{utc(created)}</td><td>{state}</td>
                <td><form method="post" action=revoke class="inline"><button type="submit" class="danger">"Revoke"</button></form></td></tr>
        }
    }).collect_view();
    let grace = GRACE
        .iter()
        .map(|(s, label)| view! { <option value=s.to_string()>{*label}</option> })
        .collect_view();
    let rotate = format!("{base}/keys");
    view! {
        <section class="panel wide">
            <h2>"API keys"</h2>
            <table><thead><tr><th>"Key id"</th><th>"Created"</th><th>"Expiry"</th><th></th></tr></thead><tbody>{rows}</tbody></table>
            <form method="post" action=rotate class="inline-form">
                <label>"Old keys keep working for " <select name="grace">{grace}</select></label>
                <button type="submit">"Create a new key"</button>
            </form>
        </section>
    }
}

/// An OAuth2 application's client, with a form for a new secret.
fn oauth2_section(base: &str, clients: &[Value]) -> impl IntoView {
    let rows = clients.iter().map(|c| {
        let id = c["client_id"].as_str().unwrap_or_default().to_string();
        view! { <tr><td><code>{id}</code></td><td>{utc(c["created_at"].as_i64().unwrap_or(0))}</td></tr> }
    }).collect_view();
    let secret = format!("{base}/secret");
    view! {
        <section class="panel wide">
            <h2>"OAuth2 client"</h2>
            <p>"Trade the client id and secret for an access token at the API's token endpoint (each API's page shows it), then send " <code>"Authorization: Bearer <token>"</code> "."</p>
            <table><thead><tr><th>"Client id"</th><th>"Created"</th></tr></thead><tbody>{rows}</tbody></table>
            <form method="post" action=secret class="inline-form">
                <button type="submit">"Create a new client secret"</button>
                <span class="hint">"The old secret stops working at once."</span>
            </form>
        </section>
    }
}

/// A JWT application's key: what its tokens carry in `iss`.
fn jwt_section(keys: &[Value]) -> impl IntoView {
    let rows = keys
        .iter()
        .map(|k| {
            let key = k["key"].as_str().unwrap_or_default().to_string();
            let algorithm = k["algorithm"].as_str().unwrap_or_default().to_string();
            view! { <tr><td><code>{key}</code></td><td>{algorithm}</td></tr> }
        })
        .collect_view();
    view! {
        <section class="panel wide">
            <h2>"JWT key"</h2>
            <p>"Sign tokens with the private key of the public key you uploaded, with this key in their " <code>"iss"</code> " claim, and send " <code>"Authorization: Bearer <token>"</code> "."</p>
            <table><thead><tr><th>"Key (iss)"</th><th>"Algorithm"</th></tr></thead><tbody>{rows}</tbody></table>
        </section>
    }
}

/// A new secret for an OAuth2 application's client, shown once.
pub async fn new_secret(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> Response {
    let app = match owned(&st, &visitor, &id).await {
        Ok(a) if a.credential == "oauth2" => a,
        Ok(_) => return not_found(&visitor),
        Err(r) => return r,
    };
    let clients = match credentials::list(&st.admin, &app.consumer_id, "oauth2").await {
        Ok(c) => c,
        Err(e) => return unavailable(&visitor, e),
    };
    let Some(client) = clients.first() else {
        return not_found(&visitor);
    };
    let client_id = client["client_id"].as_str().unwrap_or_default().to_string();
    let cid = client["id"].as_str().unwrap_or_default();
    match credentials::new_client_secret(&st.admin, &app.consumer_id, cid).await {
        Ok(secret) => {
            let issued = Issued::Client {
                id: client_id,
                secret,
            };
            render_app(&st, &visitor, &app, StatusCode::CREATED, Some(issued)).await
        }
        Err(e) => unavailable(&visitor, e),
    }
}

#[derive(Deserialize)]
pub struct Rotation {
    grace: i64,
}

pub async fn rotate(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Form(f): Form<Rotation>,
) -> Response {
    let app = match owned(&st, &visitor, &id).await {
        Ok(a) if a.credential == "key-auth" => a,
        Ok(_) => return not_found(&visitor),
        Err(r) => return r,
    };
    if !GRACE.iter().any(|(s, _)| *s == f.grace) {
        return (
            StatusCode::BAD_REQUEST,
            "grace: one of 0, 3600, 86400, 604800 seconds",
        )
            .into_response();
    }
    if let Err(e) = retire_keys(&st, &app.consumer_id, f.grace).await {
        return unavailable(&visitor, e);
    }
    match credentials::new_key(&st.admin, &app.consumer_id).await {
        Ok(key) => {
            render_app(
                &st,
                &visitor,
                &app,
                StatusCode::CREATED,
                Some(Issued::Key(key)),
            )
            .await
        }
        Err(Refusal::Input(e) | Refusal::Failed(e)) => unavailable(&visitor, e),
    }
}

/// Makes every current key expire `grace` seconds from now (deleted at once when 0); keys
/// already expiring sooner keep their time.
async fn retire_keys(st: &PortalState, consumer: &str, grace: i64) -> Result<(), String> {
    let now = unix_now();
    for k in credentials::list(&st.admin, consumer, "key-auth").await? {
        let kid = k["id"].as_str().unwrap_or_default();
        let created = k["created_at"].as_i64().unwrap_or(now);
        let path = format!("/consumers/{consumer}/key-auth/{kid}");
        let answer = if grace == 0 {
            admin_api::call(&st.admin, Method::DELETE, &path, Payload::None).await
        } else {
            let ttl = now - created + grace;
            if k["ttl"].as_i64().is_some_and(|t| t <= ttl) {
                continue;
            }
            admin_api::call(
                &st.admin,
                Method::PATCH,
                &path,
                Payload::Json(json!({"ttl": ttl})),
            )
            .await
        };
        if !answer.status.is_success() {
            return Err(answer.message());
        }
    }
    Ok(())
}

pub async fn revoke(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    let app = match owned(&st, &visitor, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // The nested path makes the admin API check that the key is this application's.
    let path = format!("/consumers/{}/key-auth/{key}", app.consumer_id);
    let found = admin_api::call(&st.admin, Method::GET, &path, Payload::None).await;
    if found.status == StatusCode::NOT_FOUND || found.status == StatusCode::BAD_REQUEST {
        return not_found(&visitor);
    }
    let gone = admin_api::call(&st.admin, Method::DELETE, &path, Payload::None).await;
    if !gone.status.is_success() {
        return unavailable(&visitor, gone.message());
    }
    Redirect::to(&format!("/apps/{}", app.consumer_id)).into_response()
}

pub async fn delete(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
) -> Response {
    let app = match owned(&st, &visitor, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let gone = admin_api::call(
        &st.admin,
        Method::DELETE,
        &format!("/consumers/{}", app.consumer_id),
        Payload::None,
    )
    .await;
    if !gone.status.is_success() {
        return unavailable(&visitor, gone.message());
    }
    if let Err(e) = st.store.delete_application(&app.consumer_id).await {
        return unavailable(&visitor, e.to_string());
    }
    Redirect::to("/apps").into_response()
}
