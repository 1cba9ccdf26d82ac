//! The admin API: Kong's admin endpoints and shapes, so existing scripts keep working.
//!
//! Entities are created, read, changed and deleted here (JSON, form or multipart bodies), the
//! change lands in the store, and the control loop swaps in a new snapshot. Off loopback every
//! call needs the admin token. Requests a browser sends from another site's page, and (without
//! a token) requests for a host name a rebinding page could use, are refused with 403.
mod analytics;
mod body;
mod entities;
mod error;
pub mod openapi;
pub mod service_openapi;

use crate::control::Reloader;
use crate::store::Store;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use serde_json::{json, Value};
use std::sync::Arc;

pub use body::form_to_object;

/// What the admin API serves from.
pub struct AdminState {
    pub reloader: Arc<Reloader>,
    /// DB-less mode: the declarative file is the only source of truth.
    pub read_only: bool,
    pub token: Option<String>,
    /// Host names the admin API answers to besides addresses and `localhost` (checked when
    /// there is no token; see `crate::origin`).
    pub hosts: Vec<String>,
    /// Shown on `GET /`: version, listeners, store.
    pub summary: Value,
    /// The analytics store's queries; `None` when analytics are off.
    pub analytics: Option<Arc<dyn tollgate_analytics::query::Queries>>,
}

impl AdminState {
    fn store(&self) -> &Store {
        &self.reloader.store
    }

    fn writable(&self) -> Result<(), ApiError> {
        if self.read_only {
            Err(ApiError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

/// The admin API. Paths are matched with or without a trailing slash (`/consumers/` as
/// Kong's examples write it).
pub fn router(state: Arc<AdminState>) -> Router {
    let routes = Router::new()
        .route("/", get(info))
        .route("/status", get(status))
        .route("/openapi.json", get(openapi::document))
        .route("/analytics/summary", get(analytics::summary))
        .route("/analytics/timeseries", get(analytics::timeseries))
        .route("/analytics/status-codes", get(analytics::status_codes))
        .route("/analytics/top", get(analytics::top))
        .route("/analytics/events", get(analytics::events))
        .route(
            "/services/{key}/openapi",
            get(service_openapi::get)
                .put(service_openapi::put)
                .delete(service_openapi::delete),
        )
        .route("/{collection}", get(entities::list).post(entities::create))
        .route(
            "/{collection}/{key}",
            get(entities::get_one)
                .patch(entities::patch_one)
                .put(entities::put_one)
                .delete(entities::delete_one),
        )
        .route(
            "/{parent}/{pid}/{child}",
            get(entities::nested_list).post(entities::nested_create),
        )
        .route(
            "/{parent}/{pid}/{child}/{key}",
            get(entities::nested_get)
                .patch(entities::nested_patch)
                .put(entities::nested_put)
                .delete(entities::nested_delete),
        )
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_browser_attacks,
        ))
        .with_state(state);
    Router::new()
        .fallback_service(tower_http::normalize_path::NormalizePath::trim_trailing_slash(routes))
}

/// Cross-site requests from browsers, and DNS rebinding when there is no token to stop it.
async fn refuse_browser_attacks(
    State(st): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let h = req.headers();
    if crate::origin::cross_site(h) {
        return ApiError::Forbidden("cross-origin request refused".into()).into_response();
    }
    if st.token.is_none() && !crate::origin::trusted_host(h, &st.hosts) {
        return ApiError::Forbidden(
            "this Host is not the admin API's: add it to TOLLGATE_ADMIN_HOSTS".into(),
        )
        .into_response();
    }
    next.run(req).await
}

async fn require_token(State(st): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let h = req.headers();
        let given = h
            .get("tollgate-admin-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                h.get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            });
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn info(State(st): State<Arc<AdminState>>) -> Json<Value> {
    Json(st.summary.clone())
}

/// The version served and the version stored: equal once this node applied every write.
async fn status(State(st): State<Arc<AdminState>>) -> Json<Value> {
    let stored = st.store().version().await.ok();
    Json(json!({
        "database": {"reachable": stored.is_some(), "configuration_version": stored},
        "configuration_version": st.reloader.snapshot.load().version,
    }))
}
