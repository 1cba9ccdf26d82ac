//! The admin console on `TOLLGATE_CONSOLE_LISTEN`: log in, then watch traffic, 429s and
//! latency, and manage the gateway. Every page but the login form needs a session (a visitor
//! without one gets the login form on `/` and is sent to it from anywhere else); every form post must come from
//! the console's own origin (checked on `Origin`, or `Referer` when a browser sends no Origin).
mod auth;
pub(crate) mod chart;
mod consumer;
pub mod dashboard;
mod developers;
mod layout;
mod manage;
mod plans;
mod published;
mod upstream;

use crate::web::origin::refuse_cross_origin;
use crate::web::page;
use crate::web::sessions::StoreSessions;
pub use auth::bootstrap_admin;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use tollgate_analytics::query::Queries;
use tollgate_gateway::store::Store;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

const STYLESHEET: &str = include_str!("../../../assets/console.css");

pub struct ConsoleState {
    pub store: Store,
    pub analytics: Option<Arc<dyn Queries>>,
    /// The admin API, called in process for every read and write of entities.
    admin: Router,
    lockout: auth::Lockout,
}

impl ConsoleState {
    pub fn new(store: Store, analytics: Option<Arc<dyn Queries>>, admin: Router) -> ConsoleState {
        ConsoleState {
            store,
            analytics,
            admin,
            lockout: auth::Lockout::default(),
        }
    }
}

/// The logged-in user's name, put in the request by the guard.
#[derive(Clone)]
pub struct CurrentUser(pub String);

/// The console. `secure_cookies` when it is served over TLS.
pub fn router(state: Arc<ConsoleState>, secure_cookies: bool) -> Router {
    let sessions = SessionManagerLayer::new(StoreSessions(state.store.clone()))
        .with_name("tollgate_console")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(8)));
    Router::new()
        .route("/", get(dashboard::show))
        .route("/login", get(auth::show_login).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/console.css", page::asset(page::CSS, STYLESHEET))
        .route("/developers", get(developers::list))
        .route("/developers/{id}/status", post(developers::set_status))
        .route("/plans", get(plans::list).post(plans::create))
        .route(
            "/plans/{id}/edit",
            get(plans::edit_form).post(plans::update),
        )
        .route("/plans/{id}/delete", post(plans::delete))
        .route("/apis", get(published::list))
        .route("/apis/{id}", get(published::show))
        .route("/apis/{id}/listing", post(published::save_listing))
        .route("/apis/{id}/openapi", post(published::upload))
        .route("/apis/{id}/openapi/delete", post(published::remove))
        .route("/{collection}", get(manage::list).post(manage::create))
        .route(
            "/{collection}/{id}/delete",
            get(manage::confirm_delete).post(manage::delete),
        )
        .route(
            "/{collection}/{id}/edit",
            get(manage::edit_form).post(manage::update),
        )
        .route("/upstreams/{id}", get(upstream::show))
        .route("/upstreams/{id}/targets", post(upstream::add_target))
        .route(
            "/upstreams/{id}/targets/{target}/weight",
            post(upstream::set_weight),
        )
        .route(
            "/upstreams/{id}/targets/{target}/health",
            post(upstream::set_health),
        )
        .route(
            "/upstreams/{id}/targets/{target}/delete",
            get(upstream::confirm_remove).post(upstream::remove),
        )
        .route("/consumers/{id}", get(consumer::show))
        .route("/consumers/{id}/keys", post(consumer::create_key))
        .route(
            "/consumers/{id}/keys/{key}/delete",
            get(consumer::confirm_revoke).post(consumer::revoke),
        )
        .layer(middleware::from_fn(guard))
        .layer(middleware::from_fn(refuse_cross_origin))
        .layer(middleware::from_fn(crate::web::page::security_headers))
        .layer(sessions)
        .with_state(state)
}

/// Sends visitors without a session to the login form (cross-origin posts were refused before).
async fn guard(session: Session, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/login" || path.starts_with("/assets/") {
        return next.run(req).await;
    }
    match session.get::<String>(auth::USER).await {
        Ok(Some(user)) => {
            req.extensions_mut().insert(CurrentUser(user));
            next.run(req).await
        }
        // The front page itself shows the login form; everything else sends it there.
        _ if path == "/" && req.method() == Method::GET => auth::login_page(StatusCode::OK, None),
        _ => Redirect::to("/login").into_response(),
    }
}
