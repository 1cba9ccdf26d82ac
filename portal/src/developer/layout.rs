//! The portal's page shell: a top bar with the catalogue, search, and the developer's links
//! (or sign-up and log-in for visitors).
use super::Visitor;
use crate::web::page::{self, Head};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use leptos::prelude::*;

pub fn page(title: &str, visitor: &Visitor, content: impl IntoView + 'static) -> String {
    let heading = title.to_string();
    let account = match &visitor.0 {
        Some(d) => view! {
            <a href="/apps">"My applications"</a>
            <a href="/account" class="user">{d.email.clone()}</a>
            <form method="post" action="/logout" class="inline"><button type="submit">"Log out"</button></form>
        }
        .into_any(),
        None => view! {
            <a href="/login">"Log in"</a>
            <a href="/signup" class="button">"Sign up"</a>
        }
        .into_any(),
    };
    page::document(
        Head {
            title,
            site: "Tollgate developer portal",
            stylesheet: "/assets/portal.css",
            script: Some("/assets/portal.js"),
            refresh: None,
        },
        view! {
            <header class="topbar">
                <a class="brand" href="/">"Developer portal"</a>
                <a href="/">"APIs"</a>
                <form method="get" action="/search" class="search" role="search">
                    <input type="search" name="q" placeholder="Search APIs and operations" aria-label="Search"/>
                </form>
                <nav class="account">{account}</nav>
            </header>
            <main class="portal">
                <h1>{heading}</h1>
                {content}
            </main>
        },
    )
}

/// A page with `status`.
pub fn respond(
    status: StatusCode,
    title: &str,
    visitor: &Visitor,
    content: impl IntoView + 'static,
) -> Response {
    (status, Html(page(title, visitor, content))).into_response()
}

/// The 404 page: also what a developer sees for another developer's application.
pub fn not_found(visitor: &Visitor) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        "Not found",
        visitor,
        view! { <p class="empty">"There is nothing here."</p> },
    )
}

/// A failure of the store or the admin API, said plainly.
pub fn unavailable(visitor: &Visitor, what: String) -> Response {
    tracing::error!(error = %what, "portal request failed");
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        visitor,
        view! { <p class="error" role="alert">"The portal cannot do this right now; try again shortly."</p> },
    )
}
