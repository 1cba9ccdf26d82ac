//! The developer portal's entities in the admin API, so operators manage plans, developers and
//! applications as code like everything else: `/plans` (name, limits per second, minute, hour
//! and day, the services covered) with Kong's list, write and error shapes, `/developers`
//! (read, approve or suspend), `/developers/{d}/applications` and `/applications` (read, move
//! to another plan, delete). Every change is applied as the console applies it: a plan's
//! plugins re-made on each application on it, a developer's status on their applications.
use crate::developer::accounts;
use crate::developer::applications::{allowed_by, open_application, Opening};
use crate::developer::credentials::Requested;
use crate::plans;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tollgate_gateway::admin::{kong_methods, ApiError, EntityInput, ITEM_METHODS, LIST_METHODS};
use tollgate_gateway::model::plan::{self, PlanInput};
use tollgate_gateway::model::schema::{self, field, Field, FieldErrors, Ty};
use tollgate_gateway::model::{unix_now, Kind};
use tollgate_gateway::store::portal::{
    Application, ApplicationView, ApplicationsBy, Developer, DeveloperColumn, DeveloperView, Plan,
    CREDENTIALS,
};
use tollgate_gateway::store::{Store, StoreError};

/// What the endpoints work with: the store, and the in-process admin API that writes the
/// plans' plugins.
pub struct Management {
    pub store: Store,
    pub admin: Router,
}

type St = State<Arc<Management>>;

const STATUSES: &[&str] = &["pending", "active", "suspended"];
const DEVELOPER_FIELDS: &[Field] = &[field("status", Ty::Enum(STATUSES))];
const NEW_DEVELOPER_FIELDS: &[Field] = &[
    field("email", Ty::Str),
    field("password", Ty::Str),
    field("status", Ty::Enum(STATUSES)),
];
const APPLICATION_FIELDS: &[Field] = &[field("plan", Ty::Ref)];
const NEW_APPLICATION_FIELDS: &[Field] = &[
    field("name", Ty::Str),
    field("plan", Ty::Ref),
    field("credential", Ty::Enum(&CREDENTIALS)),
    field("public_key", Ty::Str),
];

/// The routes, with Kong's method answers; merged into the admin API by the binary.
pub fn routes(m: Arc<Management>) -> Router {
    Router::new()
        .route(
            "/plans",
            kong_methods(get(list_plans).post(create_plan), LIST_METHODS),
        )
        .route(
            "/plans/{key}",
            kong_methods(
                get(get_plan)
                    .patch(patch_plan)
                    .put(put_plan)
                    .delete(delete_plan),
                ITEM_METHODS,
            ),
        )
        .route(
            "/developers",
            kong_methods(get(list_developers).post(create_developer), LIST_METHODS),
        )
        .route(
            "/developers/{key}",
            kong_methods(
                get(get_developer).patch(patch_developer),
                "GET, HEAD, OPTIONS, PATCH",
            ),
        )
        .route(
            "/developers/{key}/applications",
            kong_methods(
                get(developer_applications).post(create_application),
                LIST_METHODS,
            ),
        )
        .route(
            "/applications",
            kong_methods(get(list_applications), "GET, HEAD, OPTIONS"),
        )
        .route(
            "/applications/{key}",
            kong_methods(
                get(get_application)
                    .patch(patch_application)
                    .delete(delete_application),
                "DELETE, GET, HEAD, OPTIONS, PATCH",
            ),
        )
        .with_state(m)
}

/// Kong's list shape; these lists are short (plans, developers, applications), one page.
fn page(data: Vec<Value>) -> Response {
    Json(json!({"data": data, "next": null})).into_response()
}

/// A failure to apply a change to the gateway's plugins.
fn not_applied(message: String) -> ApiError {
    ApiError::Unavailable(format!(
        "saved, but not applied to its applications: {message}"
    ))
}

/// The body's fields, checked against `fields` (unknown ones and wrong types refused).
fn checked(fields: &[Field], input: EntityInput) -> Result<Map<String, Value>, ApiError> {
    let form = input.is_form();
    let mut given = input.fields;
    let errors = schema::check(fields, &mut given, form);
    if errors.is_empty() {
        Ok(given)
    } else {
        Err(ApiError::Schema(errors))
    }
}

// ---- plans ----

fn plan_json(p: &Plan) -> Value {
    serde_json::to_value(p).expect("plans serialize")
}

/// A plan by id or by name.
async fn find_plan(store: &Store, key: &str) -> Result<Plan, ApiError> {
    if let Some(p) = store.plan(key).await? {
        return Ok(p);
    }
    let all = store.plans().await?;
    all.into_iter()
        .find(|p| p.name == key)
        .ok_or(ApiError::NotFound)
}

/// The plan `fields` describe, on top of `base` (PATCH) or alone (POST, PUT), checked by the
/// plan's one definition (`model::plan`), its services resolved to ids.
async fn plan_from(
    store: &Store,
    fields: Map<String, Value>,
    base: Option<&Plan>,
    form: bool,
) -> Result<Plan, ApiError> {
    let base_input = base.map(|b| PlanInput {
        name: b.name.clone(),
        limits: b.limits.clone(),
        services: b.services.clone(),
        credentials: b.credentials.clone(),
    });
    let input = plan::check(fields, base_input.as_ref(), form).map_err(ApiError::Schema)?;
    let mut errors = FieldErrors::default();
    let services = resolve_services(store, &input.services, &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::Schema(errors));
    }
    Ok(Plan {
        id: base.map_or_else(|| uuid::Uuid::new_v4().to_string(), |b| b.id.clone()),
        name: input.name,
        limits: input.limits,
        services,
        credentials: input.credentials,
        created_at: base.map_or_else(unix_now, |b| b.created_at),
    })
}

async fn resolve_services(
    store: &Store,
    given: &[String],
    errors: &mut FieldErrors,
) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    for name in given {
        match store.get(Kind::Service, name).await? {
            Some(s) => ids.push(s["id"].as_str().unwrap_or_default().to_string()),
            None => errors.add("services", format!("no service named '{name}'")),
        }
    }
    Ok(ids)
}

/// Saves `plan` and re-applies it to every application on it.
async fn save_plan(m: &Management, plan: &Plan) -> Result<(), ApiError> {
    m.store.save_plan(plan).await?;
    plans::apply_to_applications(&m.admin, &m.store, plan)
        .await
        .map_err(not_applied)
}

async fn list_plans(State(m): St) -> Result<Response, ApiError> {
    let data = m.store.plans().await?.iter().map(plan_json).collect();
    Ok(page(data))
}

async fn create_plan(State(m): St, input: EntityInput) -> Result<Response, ApiError> {
    let form = input.is_form();
    let plan = plan_from(&m.store, input.fields, None, form).await?;
    save_plan(&m, &plan).await?;
    Ok((StatusCode::CREATED, Json(plan_json(&plan))).into_response())
}

async fn get_plan(State(m): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(plan_json(&find_plan(&m.store, &key).await?)).into_response())
}

async fn patch_plan(
    State(m): St,
    Path(key): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let base = find_plan(&m.store, &key).await?;
    let form = input.is_form();
    let plan = plan_from(&m.store, input.fields, Some(&base), form).await?;
    save_plan(&m, &plan).await?;
    Ok(Json(plan_json(&plan)).into_response())
}

/// PUT replaces the plan at `key` (an id or a name) or creates it there.
async fn put_plan(
    State(m): St,
    Path(key): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let existing = match find_plan(&m.store, &key).await {
        Ok(p) => Some(p),
        Err(ApiError::NotFound) => None,
        Err(e) => return Err(e),
    };
    let form = input.is_form();
    let mut fields = input.fields;
    let id = match (&existing, uuid::Uuid::parse_str(&key)) {
        (Some(p), _) => p.id.clone(),
        (None, Ok(id)) => id.to_string(),
        (None, Err(_)) => {
            fields
                .entry("name")
                .or_insert_with(|| Value::String(key.clone()));
            uuid::Uuid::new_v4().to_string()
        }
    };
    let mut plan = plan_from(&m.store, fields, None, form).await?;
    plan.id = id;
    if let Some(p) = &existing {
        plan.created_at = p.created_at;
    }
    save_plan(&m, &plan).await?;
    Ok(Json(plan_json(&plan)).into_response())
}

async fn delete_plan(State(m): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    match find_plan(&m.store, &key).await {
        Ok(p) => {
            m.store.delete_plan(&p.id).await?;
            plans::forget(&m.admin, &p)
                .await
                .map_err(ApiError::Unavailable)?;
        }
        // Kong answers 204 for a delete of something already gone.
        Err(ApiError::NotFound) => {}
        Err(e) => return Err(e),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- developers ----

fn developer_json(d: &Developer) -> Value {
    serde_json::to_value(DeveloperView::from(d)).expect("developers serialize")
}

/// A developer by id or email.
async fn find_developer(store: &Store, key: &str) -> Result<Developer, ApiError> {
    let found = match store.developer(key).await? {
        Some(d) => Some(d),
        None => store.developer_by_email(&key.to_ascii_lowercase()).await?,
    };
    found.ok_or(ApiError::NotFound)
}

async fn list_developers(State(m): St) -> Result<Response, ApiError> {
    let data = m
        .store
        .developers()
        .await?
        .iter()
        .map(developer_json)
        .collect();
    Ok(page(data))
}

/// Creates a developer account as code (`email`, `password`, `status` default `active`): the
/// same rules as the portal's sign-up, the password stored as argon2id.
async fn create_developer(State(m): St, input: EntityInput) -> Result<Response, ApiError> {
    let fields = checked(NEW_DEVELOPER_FIELDS, input)?;
    let text = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut errors = FieldErrors::default();
    let email = accounts::normalized_email(text("email"));
    if email.is_none() {
        errors.add("email", "expected an email address");
    }
    if let Some(problem) = accounts::password_problem(text("password")) {
        errors.add("password", problem);
    }
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Schema(errors));
    };
    let password_hash =
        crate::web::passwords::hash(text("password")).map_err(ApiError::Unavailable)?;
    let status = fields
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("active");
    let dev = Developer {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        password_hash,
        status: status.to_string(),
        created_at: unix_now(),
    };
    if !m.store.add_developer(&dev).await? {
        return Err(StoreError::Unique {
            description: format!("{{email=\"{email}\"}}"),
            fields: json!({"email": email}),
        }
        .into());
    }
    Ok((StatusCode::CREATED, Json(developer_json(&dev))).into_response())
}

async fn get_developer(State(m): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(developer_json(&find_developer(&m.store, &key).await?)).into_response())
}

/// Approves, suspends or reactivates a developer; their applications follow at once.
async fn patch_developer(
    State(m): St,
    Path(key): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let mut dev = find_developer(&m.store, &key).await?;
    let fields = checked(DEVELOPER_FIELDS, input)?;
    if let Some(status) = fields.get("status").and_then(Value::as_str) {
        m.store
            .update_developer(&dev.id, DeveloperColumn::Status, status)
            .await?;
        dev.status = status.to_string();
        plans::sync_developer(&m.admin, &m.store, &dev.id)
            .await
            .map_err(not_applied)?;
    }
    Ok(Json(developer_json(&dev)).into_response())
}

async fn developer_applications(
    State(m): St,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let dev = find_developer(&m.store, &key).await?;
    let apps = m
        .store
        .applications(ApplicationsBy::Developer, &dev.id)
        .await?;
    Ok(page(apps.iter().map(application_json).collect()))
}

/// Opens an application for the developer (`name`, `plan` by name or id), as the portal's form
/// does; the answer carries its first key in clear, this once.
async fn create_application(
    State(m): St,
    Path(key): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let dev = find_developer(&m.store, &key).await?;
    let fields = checked(NEW_APPLICATION_FIELDS, input)?;
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut errors = FieldErrors::default();
    if name.is_empty() {
        errors.add("name", "required field missing");
    }
    let plan = match plan_named(&fields) {
        Some(p) => match find_plan(&m.store, &p).await {
            Ok(plan) => Some(plan),
            Err(ApiError::NotFound) => {
                errors.add("plan", format!("no plan named '{p}'"));
                None
            }
            Err(e) => return Err(e),
        },
        None => {
            errors.add("plan", "required field missing");
            None
        }
    };
    let Some(plan) = plan.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Schema(errors));
    };
    let text = |k: &str| fields.get(k).and_then(Value::as_str);
    let requested = Requested::from_form(text("credential"), text("public_key"))
        .and_then(|r| allowed_by(&plan, r))
        .map_err(|e| field_error("credential", e))?;
    match open_application(&m.store, &m.admin, &dev.id, &name, &plan, &requested).await {
        Ok((app, issued)) => {
            let mut body = application_json(&app);
            if let (Value::Object(b), Value::Object(shown)) = (&mut body, issued.fields()) {
                b.extend(shown);
            }
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(Opening::Refused(e)) => Err(field_error("public_key", e)),
        Err(Opening::NameTaken) => Err(StoreError::Unique {
            description: format!("{{developer={{id=\"{}\"}},name=\"{name}\"}}", dev.id),
            fields: json!({"developer": {"id": dev.id}, "name": name}),
        }
        .into()),
        Err(Opening::Failed(e)) => Err(ApiError::Unavailable(e)),
    }
}

/// A 400 naming `field`.
fn field_error(field: &str, message: String) -> ApiError {
    let mut errors = FieldErrors::default();
    errors.add(field, message);
    ApiError::Schema(errors)
}

/// The plan a body names: `"gold"`, `{"name": "gold"}` or `{"id": "..."}`.
fn plan_named(fields: &Map<String, Value>) -> Option<String> {
    match fields.get("plan") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(r)) => ["id", "name"]
            .iter()
            .find_map(|k| r.get(*k).and_then(Value::as_str).map(String::from)),
        _ => None,
    }
}

// ---- applications ----

fn application_json(a: &Application) -> Value {
    serde_json::to_value(ApplicationView::from(a)).expect("applications serialize")
}

async fn find_application(store: &Store, key: &str) -> Result<Application, ApiError> {
    store.application(key).await?.ok_or(ApiError::NotFound)
}

async fn list_applications(State(m): St) -> Result<Response, ApiError> {
    let apps = m.store.all_applications().await?;
    Ok(page(apps.iter().map(application_json).collect()))
}

async fn get_application(State(m): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(application_json(&find_application(&m.store, &key).await?)).into_response())
}

/// Moves an application to another plan (`{"plan": "gold"}`, by name or id).
async fn patch_application(
    State(m): St,
    Path(key): Path<String>,
    input: EntityInput,
) -> Result<Response, ApiError> {
    let mut app = find_application(&m.store, &key).await?;
    let fields = checked(APPLICATION_FIELDS, input)?;
    if let Some(name) = plan_named(&fields) {
        let plan = match find_plan(&m.store, &name).await {
            Err(ApiError::NotFound) => {
                let mut e = FieldErrors::default();
                e.add("plan", format!("no plan named '{name}'"));
                return Err(ApiError::Schema(e));
            }
            other => other?,
        };
        m.store
            .set_application_plan(&app.consumer_id, &plan.id)
            .await?;
        app.plan_id = plan.id.clone();
        let published = plans::published_services(&m.store)
            .await
            .map_err(not_applied)?;
        plans::apply(&m.admin, &app.consumer_id, &plan, &published)
            .await
            .map_err(not_applied)?;
    }
    Ok(Json(application_json(&app)).into_response())
}

/// Deletes the application and its consumer (keys and plan plugins with it).
async fn delete_application(State(m): St, Path(key): Path<String>) -> Result<Response, ApiError> {
    let app = match find_application(&m.store, &key).await {
        Ok(a) => a,
        Err(ApiError::NotFound) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => return Err(e),
    };
    let path = format!("/consumers/{}", app.consumer_id);
    let gone = crate::web::admin_api::call(
        &m.admin,
        axum::http::Method::DELETE,
        &path,
        crate::web::admin_api::Payload::None,
    )
    .await;
    if !gone.status.is_success() {
        return Err(ApiError::Unavailable(gone.message()));
    }
    match m.store.delete_application(&app.consumer_id).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
