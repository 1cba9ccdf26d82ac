//! The admin API: Kong's admin endpoints and shapes, so existing scripts keep working.
//!
//! Entities are created, read, changed and deleted here (JSON, form or multipart bodies), the
//! change lands in the store, and the control loop swaps in a new snapshot. Off loopback every
//! call needs the admin token. Requests a browser sends from another site's page, and (without
//! a token) requests for a host name a rebinding page could use, are refused with 403.
mod analytics;
mod body;
mod certificates;
mod config;
mod declarative_errors;
mod entities;
mod error;
mod list;
mod memberships;
mod oauth2_tokens;
pub mod openapi;
mod proxy_cache;
mod schemas;
pub mod service_openapi;
mod upstreams;

use crate::control::Reloader;
use crate::store::Store;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub use body::{form_to_object, EntityInput};
pub use error::ApiError;

/// What the admin API serves from.
pub struct AdminState {
    pub reloader: Arc<Reloader>,
    /// DB-less mode: the declarative file is the only source of truth.
    pub read_only: bool,
    pub token: Option<String>,
    /// Host names the admin API answers to besides addresses and `localhost` (checked when
    /// there is no token; see `crate::origin`).
    pub hosts: Vec<String>,
    /// The hash of the configuration last posted to `/config` (its `check_hash`).
    pub config_hash: tokio::sync::Mutex<Option<[u8; 32]>>,
    /// Shown on `GET /`: version, listeners, store.
    pub summary: Value,
    /// The analytics store's queries; `None` when analytics are off.
    pub analytics: Option<Arc<dyn tollgate_analytics::query::Queries>>,
}

impl AdminState {
    fn store(&self) -> &Store {
        &self.reloader.store
    }

    /// Refuses a write in DB-less mode with Kong's "operation unsupported" answer: `op`
    /// (create, update, create or update, remove) on `kind`, by its name when `key` is one.
    fn writable(
        &self,
        op: &str,
        kind: crate::model::Kind,
        key: Option<&str>,
    ) -> Result<(), ApiError> {
        if !self.read_only {
            return Ok(());
        }
        let by = key
            .filter(|k| crate::model::uuid_key(k).is_none())
            .map(|_| format!(" by '{}'", kind.name_field()))
            .unwrap_or_default();
        Err(ApiError::Unsupported(format!(
            "cannot {op} '{}' entities{by} when not using a database",
            kind.schema_name()
        )))
    }
}

/// The admin API. Paths are matched with or without a trailing slash (`/consumers/` as
/// Kong's examples write it). `extra` holds endpoints other crates serve here (the developer
/// portal's plans, developers and applications); they get the same token and cross-site
/// checks.
pub fn router(state: Arc<AdminState>, extra: Router) -> Router {
    const READ: &str = "GET, HEAD, OPTIONS";
    const LIST: &str = LIST_METHODS;
    const ITEM: &str = ITEM_METHODS;
    // Kong 3 marks with PUT; Kong 2's POST is taken too.
    const MARK: &str = "OPTIONS, POST, PUT";
    let routes = Router::new()
        .route("/", kong_methods(get(info), READ))
        .route("/status", kong_methods(get(status), READ))
        .route("/openapi.json", kong_methods(get(openapi::document), READ))
        .route(
            "/config",
            kong_methods(get(config::get).post(config::post), LIST).layer(
                axum::extract::DefaultBodyLimit::max(config::MAX_CONFIG_BYTES),
            ),
        )
        .route(
            "/plugins/enabled",
            kong_methods(get(schemas::enabled_plugins), READ),
        )
        .route("/schemas/{name}", kong_methods(get(schemas::entity), READ))
        .route(
            "/schemas/plugins/{name}",
            kong_methods(get(schemas::plugin), READ),
        )
        .route(
            "/schemas/plugins/validate",
            kong_methods(post(schemas::validate_plugin), "OPTIONS, POST"),
        )
        .route(
            "/schemas/{name}/validate",
            kong_methods(post(schemas::validate_entity), "OPTIONS, POST"),
        )
        .route(
            "/analytics/summary",
            kong_methods(get(analytics::summary), READ),
        )
        .route(
            "/analytics/timeseries",
            kong_methods(get(analytics::timeseries), READ),
        )
        .route(
            "/analytics/status-codes",
            kong_methods(get(analytics::status_codes), READ),
        )
        .route("/analytics/top", kong_methods(get(analytics::top), READ))
        .route(
            "/analytics/events",
            kong_methods(get(analytics::events), READ),
        )
        .route(
            "/services/{key}/openapi",
            kong_methods(
                get(service_openapi::get)
                    .put(service_openapi::put)
                    .delete(service_openapi::delete),
                "DELETE, GET, HEAD, OPTIONS, PUT",
            ),
        )
        .route(
            "/upstreams/{u}/health",
            kong_methods(get(upstreams::health), READ),
        )
        .route(
            "/upstreams/{u}/targets/all",
            kong_methods(get(upstreams::all_targets), READ),
        )
        .route(
            "/upstreams/{u}/targets/{t}/healthy",
            kong_methods(
                put(upstreams::mark_healthy).post(upstreams::mark_healthy),
                MARK,
            ),
        )
        .route(
            "/upstreams/{u}/targets/{t}/unhealthy",
            kong_methods(
                put(upstreams::mark_unhealthy).post(upstreams::mark_unhealthy),
                MARK,
            ),
        )
        .route(
            "/oauth2_tokens",
            kong_methods(
                get(oauth2_tokens::list).post(oauth2_tokens::create),
                "GET, HEAD, OPTIONS, POST",
            ),
        )
        .route(
            "/oauth2_tokens/{key}",
            kong_methods(
                get(oauth2_tokens::get_one).delete(oauth2_tokens::delete_one),
                "DELETE, GET, HEAD, OPTIONS",
            ),
        )
        .route(
            "/proxy-cache",
            kong_methods(
                axum::routing::delete(proxy_cache::purge_all),
                "DELETE, OPTIONS",
            ),
        )
        .route(
            "/proxy-cache/{key}",
            kong_methods(
                get(proxy_cache::lookup).delete(proxy_cache::purge),
                "DELETE, GET, HEAD, OPTIONS",
            ),
        )
        .route(
            "/proxy-cache/{plugin}/caches/{key}",
            kong_methods(
                get(proxy_cache::lookup_in).delete(proxy_cache::purge_in),
                "DELETE, GET, HEAD, OPTIONS",
            ),
        )
        .route(
            "/consumer_groups/{group}/consumers/{consumer}",
            kong_methods(
                memberships::delete_route("consumer_groups", "consumers"),
                "DELETE, OPTIONS",
            ),
        )
        .route(
            "/consumers/{consumer}/consumer_groups/{group}",
            kong_methods(
                memberships::delete_route("consumers", "consumer_groups"),
                "DELETE, OPTIONS",
            ),
        )
        .route(
            "/{collection}",
            kong_methods(get(entities::list).post(entities::create), LIST),
        )
        .route(
            "/{collection}/{key}",
            kong_methods(
                get(entities::get_one)
                    .patch(entities::patch_one)
                    .put(entities::put_one)
                    .delete(entities::delete_one),
                ITEM,
            ),
        )
        .route(
            "/{parent}/{pid}/{child}",
            kong_methods(
                get(entities::nested_list).post(entities::nested_create),
                LIST,
            ),
        )
        .route(
            "/{parent}/{pid}/{child}/{key}",
            kong_methods(
                get(entities::nested_get)
                    .patch(entities::nested_patch)
                    .put(entities::nested_put)
                    .delete(entities::nested_delete),
                ITEM,
            ),
        )
        .with_state(state.clone())
        .merge(extra)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(
            state,
            refuse_browser_attacks,
        ));
    Router::new()
        .fallback_service(tower_http::normalize_path::NormalizePath::trim_trailing_slash(routes))
}

/// The methods a collection path and an item path serve, as [`kong_methods`] lists them.
pub const LIST_METHODS: &str = "GET, HEAD, OPTIONS, POST";
pub const ITEM_METHODS: &str = "DELETE, GET, HEAD, OPTIONS, PATCH, PUT";

/// A path's handlers with Kong's answers for the methods they do not take
/// (kong/api/api_helpers.lua): `OPTIONS` is 204 with the path's `methods` in `Allow` and
/// `Access-Control-Allow-Methods`; another method is 405 `{"message": "Method not allowed"}`.
/// `methods` is written as Kong lists them: sorted, with HEAD beside GET, and OPTIONS.
pub fn kong_methods<S: Clone + Send + Sync + 'static>(
    router: MethodRouter<S>,
    methods: &'static str,
) -> MethodRouter<S> {
    use axum::http::{header, StatusCode};
    router
        .options(move || async move {
            let headers = [
                (header::ALLOW, methods),
                (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"),
            ];
            (StatusCode::NO_CONTENT, headers)
        })
        .fallback(move || async move {
            let body = Json(json!({"message": "Method not allowed"}));
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, methods)],
                body,
            )
        })
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

/// This node's id, made at start: `GET /` and `/upstreams/{u}/health` show it, as Kong's do.
pub fn node_id() -> uuid::Uuid {
    static ID: std::sync::OnceLock<uuid::Uuid> = std::sync::OnceLock::new();
    *ID.get_or_init(uuid::Uuid::new_v4)
}

async fn info(State(st): State<Arc<AdminState>>) -> Json<Value> {
    let mut summary = st.summary.clone();
    summary["node_id"] = json!(node_id());
    Json(summary)
}

/// The version served and the version stored: equal once this node applied every write.
async fn status(State(st): State<Arc<AdminState>>) -> Json<Value> {
    let stored = st.store().version().await.ok();
    Json(json!({
        "database": {"reachable": stored.is_some(), "configuration_version": stored},
        "configuration_version": st.reloader.snapshot.load().version,
    }))
}
