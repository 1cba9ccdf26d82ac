//! The portal's developers, for operators: who signed up, and approving, suspending or
//! reactivating them. A suspended developer's session ends at their next request and their
//! applications' keys get 403 until the account is active again.
use super::{layout, ConsoleState, CurrentUser};
use crate::plans;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde::Deserialize;
use std::sync::Arc;
use tollgate_gateway::store::portal::{ApplicationsBy, DeveloperColumn};

/// The statuses an operator can set, with the button that sets each.
const ACTIONS: [(&str, &str, &str); 3] = [
    ("pending", "active", "Approve"),
    ("active", "suspended", "Suspend"),
    ("suspended", "active", "Reactivate"),
];

pub async fn list(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
) -> Response {
    let developers = match st.store.developers().await {
        Ok(d) => d,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut rows = Vec::with_capacity(developers.len());
    for d in developers {
        let apps = st
            .store
            .applications(ApplicationsBy::Developer, &d.id)
            .await
            .map(|a| a.len())
            .unwrap_or(0);
        let action = ACTIONS
            .iter()
            .find(|(from, _, _)| *from == d.status)
            .map(|(_, to, label)| {
                let href = format!("/developers/{}/status", d.id);
                view! {
                    <form method="post" action=href class="inline">
                        <input type="hidden" name="status" value=*to/>
                        <button type="submit">{*label}</button>
                    </form>
                }
            });
        rows.push(view! {
            <tr><td>{d.email}</td><td class=format!("dev-{}", d.status)>{d.status.clone()}</td><td class="num">{apps}</td><td>{action}</td></tr>
        });
    }
    let table = if rows.is_empty() {
        view! { <p class="empty">"No developer has signed up on the portal yet."</p> }.into_any()
    } else {
        view! {
            <table><thead><tr><th>"Email"</th><th>"Status"</th><th class="num">"Applications"</th><th></th></tr></thead>
            <tbody>{rows.into_iter().collect_view()}</tbody></table>
        }.into_any()
    };
    Html(layout::page(
        "Developers",
        &user.0,
        view! { <section class="panel wide">{table}</section> },
    ))
    .into_response()
}

#[derive(Deserialize)]
pub struct StatusChange {
    status: String,
}

pub async fn set_status(
    State(st): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
    Form(f): Form<StatusChange>,
) -> Response {
    if !["active", "suspended"].contains(&f.status.as_str()) {
        return (StatusCode::BAD_REQUEST, "status: active or suspended").into_response();
    }
    match st
        .store
        .update_developer(&id, DeveloperColumn::Status, &f.status)
        .await
    {
        Ok(true) => {}
        Ok(false) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
    // Their applications' keys stop (or start again) with the account.
    match plans::sync_developer(&st.admin, &st.store, &id).await {
        Ok(()) => Redirect::to("/developers").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the status is saved but not yet applied to the developer's applications: {e}"),
        )
            .into_response(),
    }
}
