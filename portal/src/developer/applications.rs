//! A developer's applications. Each is a gateway consumer (username `app-<id>`) with key-auth
//! keys and its plan's rate-limiting plugins, created through the in-process admin API so the
//! proxy knows a new key as soon as the snapshot reloads. A key is shown once, when created
//! or rotated; rotation lets the old keys live on for a grace period the developer picks.
//! Another developer's application answers 404, whatever the URL or form says.
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
    Application, ApplicationsBy, Developer, Plan, APPLICATION_TAG,
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
        let options = plans.iter().map(|p| view! { <option value=p.id.clone()>{format!("{} ({})", p.name, plans::limits_text(p))}</option> }).collect_view();
        view! {
            <form method="post" action="/apps" class="card narrow">
                <h2>"New application"</h2>
                {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <label>"Name" <input name="name" value=name maxlength=MAX_NAME.to_string() required/></label>
                <label>"Plan" <select name="plan">{options}</select></label>
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
    match open_application(&st.store, &st.admin, &dev.id, &name, &plan).await {
        Ok((app, key)) => render_app(&st, &visitor, &app, StatusCode::CREATED, Some(key)).await,
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

/// Why an application was not opened.
pub enum Opening {
    /// The developer has an application by that name.
    NameTaken,
    Failed(String),
}

/// Opens an application for `developer_id` on `plan`: its consumer, its row, its plan's
/// plugins, and a first key, returned in clear (its only appearance). The portal's form and
/// the admin API's `POST /developers/{d}/applications` both open them here.
pub async fn open_application(
    store: &Store,
    admin: &Router,
    developer_id: &str,
    name: &str,
    plan: &Plan,
) -> Result<(Application, String), Opening> {
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
    let published = plans::published_services(store)
        .await
        .map_err(Opening::Failed)?;
    plans::apply(admin, &id, plan, &published)
        .await
        .map_err(Opening::Failed)?;
    tracing::info!(application = %id, developer = %developer_id, "portal: application created");
    let key = new_key(admin, &id).await.map_err(Opening::Failed)?;
    Ok((app, key))
}

/// A new generated key for the consumer, in clear (its only appearance).
async fn new_key(admin: &Router, consumer: &str) -> Result<String, String> {
    let made = admin_api::call(
        admin,
        Method::POST,
        &format!("/consumers/{consumer}/key-auth"),
        Payload::Json(json!({})),
    )
    .await;
    match made.body["key"].as_str() {
        Some(k) if made.status.is_success() => Ok(k.to_string()),
        _ => Err(made.message()),
    }
}

async fn keys(st: &PortalState, consumer: &str) -> Result<Vec<Value>, String> {
    let answer = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/consumers/{consumer}/key-auth?size=1000"),
        Payload::None,
    )
    .await;
    if !answer.status.is_success() {
        return Err(answer.message());
    }
    Ok(answer.body["data"].as_array().cloned().unwrap_or_default())
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
    new_key: Option<String>,
) -> Response {
    let (keys, plan) = match (
        keys(st, &app.consumer_id).await,
        st.store.plan(&app.plan_id).await,
    ) {
        (Ok(k), Ok(p)) => (k, p),
        (Err(e), _) => return unavailable(visitor, e),
        (_, Err(e)) => return unavailable(visitor, e.to_string()),
    };
    let now = unix_now();
    let base = format!("/apps/{}", app.consumer_id);
    let revealed = new_key.map(|k| view! {
        <div class="notice" role="status">
            <p>"Your new API key. Copy it now: it is stored hashed and will not be shown again."</p>
            <p><code class="key" id="new-key" data-new-key=k.clone()>{k.clone()}</code></p>
        </div>
    });
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
    let plan_text = plan.as_ref().map_or("(removed)".to_string(), |p| {
        format!("{}: {}", p.name, plans::limits_text(p))
    });
    let usage = format!("{base}/usage");
    let rotate = format!("{base}/keys");
    let delete = format!("{base}/delete");
    respond(
        status,
        &app.name,
        visitor,
        view! {
            {revealed}
            <p>"Plan " <strong>{plan_text}</strong> " · " <a href=usage>"Usage"</a></p>
            <section class="panel wide">
                <h2>"API keys"</h2>
                <table><thead><tr><th>"Key id"</th><th>"Created"</th><th>"Expiry"</th><th></th></tr></thead><tbody>{rows}</tbody></table>
                <form method="post" action=rotate class="inline-form">
                    <label>"Old keys keep working for " <select name="grace">{grace}</select></label>
                    <button type="submit">"Create a new key"</button>
                </form>
            </section>
            <form method="post" action=delete class="inline-form">
                <button type="submit" class="danger">"Delete this application"</button>
                <span class="hint">"Its keys stop working at once."</span>
            </form>
        },
    )
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
        Ok(a) => a,
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
    match new_key(&st.admin, &app.consumer_id).await {
        Ok(key) => render_app(&st, &visitor, &app, StatusCode::CREATED, Some(key)).await,
        Err(e) => unavailable(&visitor, e),
    }
}

/// Makes every current key expire `grace` seconds from now (deleted at once when 0); keys
/// already expiring sooner keep their time.
async fn retire_keys(st: &PortalState, consumer: &str, grace: i64) -> Result<(), String> {
    let now = unix_now();
    for k in keys(st, consumer).await? {
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
