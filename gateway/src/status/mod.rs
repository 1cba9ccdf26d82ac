//! The status listener: `/status` for health checks and `/metrics` for Prometheus.
pub mod metrics;

use crate::control::Reloader;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn router(reloader: Arc<Reloader>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(reloader)
}

/// Ready once a configuration is loaded (and the configuration source, when there is one,
/// has delivered its own); says whether the store still answers.
async fn status(State(r): State<Arc<Reloader>>) -> impl IntoResponse {
    let snapshot = r.snapshot.load();
    let source = r.source.load_full();
    let ready = snapshot.version > 0 && source.as_ref().is_none_or(|s| s.ready);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "ready": ready,
        "configuration_version": snapshot.version,
        "routes": snapshot.routes.len(),
        "services": snapshot.services.len(),
        "database": {"reachable": r.store_reachable()},
        "open_files": {
            "limit": crate::listener::files::limit(),
            "open": crate::listener::files::open(),
        },
    });
    if let Some(s) = source {
        body[s.name] = s.detail.clone();
    }
    (code, Json(body))
}

async fn metrics(State(r): State<Arc<Reloader>>) -> impl IntoResponse {
    let snapshot = r.snapshot.load();
    let gauges = [
        (
            "tollgate_config_version",
            "Version of the configuration being served.",
            snapshot.version as f64,
        ),
        (
            "tollgate_routes",
            "Routes in the configuration being served.",
            snapshot.routes.len() as f64,
        ),
        (
            "tollgate_store_reachable",
            "1 when the config store answered its last poll.",
            f64::from(u8::from(r.store_reachable())),
        ),
    ];
    let mut text = r.metrics.render(
        &[(
            "tollgate_rate_limit_redis_errors_total",
            "rate-limiting requests whose Redis counter failed (passed when fault_tolerant).",
            r.plugins
                .redis
                .errors
                .load(std::sync::atomic::Ordering::Relaxed),
        )],
        &gauges,
    );
    metrics::render_targets(&snapshot.upstreams, &mut text);
    metrics::render_log_deliveries(&r.plugins.log_queues.all_counts(), &mut text);
    let (accepted, active) = crate::proxy::connection_counts();
    let node_id = crate::admin::node_id().to_string();
    let node = metrics::kong::Node {
        node_id: &node_id,
        version: env!("CARGO_PKG_VERSION"),
        accepted,
        active,
        requests: r.metrics.requests_total(),
        datastore_reachable: r.store_reachable(),
    };
    metrics::kong::node(&mut text, &node);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
