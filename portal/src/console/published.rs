//! Published APIs, for operators: which services the developer portal lists (the service's
//! `portal` block: title, description, visibility, version) and the OpenAPI document uploaded
//! for each. Writes go through the admin API (`PATCH /services/{s}`,
//! `PUT /services/{s}/openapi`), so the console and scripts are checked the same way.
use super::{layout, ConsoleState, CurrentUser};
use crate::plans;
use crate::web::admin_api::{self, Answer, Payload};
use crate::web::page;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tollgate_gateway::model::api_version::Deprecation;

pub async fn list(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
) -> Response {
    let answer =
        admin_api::call(&st.admin, Method::GET, "/services?size=1000", Payload::None).await;
    let services = answer.body["data"].as_array().cloned().unwrap_or_default();
    let rows = services.iter().map(|s| {
        let id = s["id"].as_str().unwrap_or_default().to_string();
        let name = s["name"].as_str().map_or(id.clone(), String::from);
        let listing = &s["portal"];
        let state = if listing.is_object() { listing["visibility"].as_str().unwrap_or("public").to_string() } else { "not published".into() };
        let href = format!("/apis/{id}");
        view! {
            <tr><td><a href=href>{name}</a></td><td>{listing["title"].as_str().unwrap_or("").to_string()}</td><td>{state}</td><td>{listing["version"].as_str().unwrap_or("").to_string()}</td></tr>
        }
    }).collect_view();
    let empty = services
        .is_empty()
        .then(|| view! { <p class="empty">"No services yet: create one under " <a href="/services">"Services"</a> ", then publish it here."</p> });
    let body = view! {
        <p class="hint">"A published service is listed on the developer portal with documentation generated from its routes, merged with its uploaded OpenAPI document."</p>
        {empty}
        <section class="panel wide">
            <table><thead><tr><th>"Service"</th><th>"Title"</th><th>"Visibility"</th><th>"Version"</th></tr></thead><tbody>{rows}</tbody></table>
        </section>
    };
    Html(layout::page("Published APIs", &user.0, body)).into_response()
}

/// What the last form post on the page did.
#[derive(Default)]
struct Outcome {
    message: Option<String>,
    errors: Vec<(String, String)>,
}

impl Outcome {
    fn of(answer: &Answer, done: String) -> Outcome {
        if answer.status.is_success() {
            Outcome {
                message: Some(done),
                errors: vec![],
            }
        } else {
            Outcome {
                message: Some(answer.message()),
                errors: answer.field_errors(),
            }
        }
    }
}

pub async fn show(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    render(&st, &user, &id, StatusCode::OK, Outcome::default()).await
}

async fn render(
    st: &ConsoleState,
    user: &CurrentUser,
    id: &str,
    status: StatusCode,
    outcome: Outcome,
) -> Response {
    let service = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/services/{id}"),
        Payload::None,
    )
    .await;
    if service.status != StatusCode::OK {
        return (service.status, service.message()).into_response();
    }
    let s = service.body;
    let document = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/services/{id}/openapi"),
        Payload::None,
    )
    .await;
    let name = s["name"].as_str().unwrap_or(id).to_string();
    let listing = s["portal"].clone();
    let text = |k: &str| listing[k].as_str().unwrap_or("").to_string();
    let private = listing["visibility"] == "private";
    let errors = outcome
        .errors
        .into_iter()
        .map(|(f, m)| view! { <li>{format!("{f}: {m}")}</li> })
        .collect_view();
    let message = outcome.message.map(|m| view! { <div class=if status.is_success() { "notice" } else { "error" } role="alert"><p>{m}</p><ul>{errors}</ul></div> });
    let doc_state = if document.status == StatusCode::OK {
        let title = document.body["info"]["title"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let paths = document.body["paths"].as_object().map_or(0, |p| p.len());
        view! { <p>{format!("Uploaded: “{title}”, {paths} paths.")}</p> }.into_any()
    } else {
        view! { <p class="hint">"No document uploaded: the portal documents each route on its own."</p> }.into_any()
    };
    let deprecated = listing
        .as_object()
        .map(Deprecation::of_listing)
        .unwrap_or_default();
    let deprecated = (!deprecated.is_empty()).then(|| {
        let each: Vec<String> = deprecated
            .iter()
            .map(|d| match &d.sunset_at {
                Some(s) => format!("{} since {}, until {s}", d.label, d.deprecated_at),
                None => format!("{} since {}", d.label, d.deprecated_at),
            })
            .collect();
        view! { <p class="hint" id="deprecated-versions">{format!("Deprecated versions: {}. They are set in the service's portal.versions (admin API or declarative file) and kept when this form is saved.", each.join("; "))}</p> }
    });
    let listing_action = format!("/apis/{id}/listing");
    let document_action = format!("/apis/{id}/openapi");
    let remove_action = format!("/apis/{id}/openapi/delete");
    let public_link = format!("/apis/{name}");
    let body = view! {
        {message}
        <section class="panel wide">
            <h2>"Listing"</h2>
            <form method="post" action=listing_action.clone() class="entity">
                <label class="field"><span>"Title"</span><input name="title" value=text("title") required/></label>
                <label class="field"><span>"Version"</span><input name="version" value=text("version")/></label>
                <label class="field"><span>"Visibility"</span><select name="visibility">
                    <option value="public" selected=!private>"public"</option>
                    <option value="private" selected=private>"private: logged-in developers only"</option>
                </select></label>
                <label class="field wide"><span>"Description (Markdown)"</span><textarea name="description" rows="4">{page::textarea_text(&text("description"))}</textarea></label>
                <button type="submit" name="action" value="publish">{if listing.is_object() { "Save listing" } else { "Publish" }}</button>
            </form>
            {deprecated}
            {listing.is_object().then(|| view! {
                <form method="post" action=listing_action class="inline">
                    <input type="hidden" name="action" value="unpublish"/>
                    <button type="submit" class="danger">"Unpublish"</button>
                </form>
                <p class="hint">"On the portal at " <code>{public_link}</code></p>
            })}
        </section>
        <section class="panel wide">
            <h2>"OpenAPI document"</h2>
            {doc_state}
            <form method="post" action=document_action>
                <label class="field wide"><span>"Paste an OpenAPI 3.0 or 3.1 document (YAML or JSON)"</span><textarea name="document" rows="12"></textarea></label>
                <button type="submit">"Upload"</button>
            </form>
            {(document.status == StatusCode::OK).then(|| view! {
                <form method="post" action=remove_action class="inline"><button type="submit" class="danger">"Remove document"</button></form>
            })}
        </section>
    };
    (
        status,
        Html(layout::page(&format!("API {name}"), &user.0, body)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ListingForm {
    action: String,
    title: Option<String>,
    description: Option<String>,
    visibility: Option<String>,
    version: Option<String>,
}

pub async fn save_listing(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    Form(f): Form<ListingForm>,
) -> Response {
    let portal = if f.action == "unpublish" {
        Value::Null
    } else {
        let mut block = json!({"title": f.title.unwrap_or_default(), "visibility": f.visibility.unwrap_or_else(|| "public".into())});
        for (k, v) in [("description", f.description), ("version", f.version)] {
            if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                block[k] = Value::String(v);
            }
        }
        // The form edits the listing's text; the deprecated versions (set through the admin
        // API or a declarative file) are kept as they are.
        let path = format!("/services/{id}");
        let current = admin_api::call(&st.admin, Method::GET, &path, Payload::None).await;
        if let Some(versions) = current.body["portal"]
            .get("versions")
            .filter(|v| !v.is_null())
        {
            block["versions"] = versions.clone();
        }
        block
    };
    let answer = admin_api::call(
        &st.admin,
        Method::PATCH,
        &format!("/services/{id}"),
        Payload::Json(json!({"portal": portal})),
    )
    .await;
    if answer.status.is_success() {
        // Applications on plans that cover every published API gain or lose this one.
        if let Err(e) = plans::apply_all(&st.admin, &st.store).await {
            tracing::error!(error = %e, "plans not re-applied after a listing change");
        }
    }
    respond(&st, &user, &id, &answer, "The listing is saved.").await
}

#[derive(Deserialize)]
pub struct DocumentForm {
    document: String,
}

pub async fn upload(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    Form(f): Form<DocumentForm>,
) -> Response {
    let answer = admin_api::call(
        &st.admin,
        Method::PUT,
        &format!("/services/{id}/openapi"),
        Payload::Text(f.document),
    )
    .await;
    let done = format!(
        "Uploaded: {} operations in {} paths.",
        answer.body["operations"], answer.body["paths"]
    );
    respond(&st, &user, &id, &answer, &done).await
}

pub async fn remove(State(st): State<Arc<ConsoleState>>, Path(id): Path<String>) -> Response {
    match admin_api::call_ok(
        &st.admin,
        Method::DELETE,
        &format!("/services/{id}/openapi"),
        Payload::None,
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/apis/{id}")).into_response(),
        Err(refused) => refused,
    }
}

async fn respond(
    st: &ConsoleState,
    user: &CurrentUser,
    id: &str,
    answer: &Answer,
    done: &str,
) -> Response {
    let status = if answer.status.is_success() {
        StatusCode::OK
    } else {
        answer.status
    };
    render(st, user, id, status, Outcome::of(answer, done.to_string())).await
}
