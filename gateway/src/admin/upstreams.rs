//! Kong's upstream endpoints beyond plain CRUD (kong/api/routes/upstreams.lua): the health of
//! an upstream's targets as this node sees it, marking a target healthy or unhealthy, and the
//! raw list of targets.
//!
//! Health is per node, as in Kong: it is read from the snapshot this node serves, and a mark
//! changes this node's balancer only.
use super::error::ApiError;
use super::{list, AdminState};
use crate::balancer::health::{now_ms, Health};
use crate::balancer::{Balancer, Member};
use crate::model::{target, Kind};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use uuid::Uuid;

type St = State<Arc<AdminState>>;

/// `GET /upstreams/{u}/health`: each target, newest first, with Kong's `health` and `data`
/// (its addresses and weights), plus Tollgate's breaker state and traffic count per address;
/// `?balancer_health=1` answers the balancer's own health instead.
pub async fn health(
    st: St,
    Path(upstream): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let b = balancer(&st, &upstream).await?;
    let node_id = super::node_id();
    let balancer_health = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "balancer_health" && v == "1");
    let Some(b) = b else {
        // Stored, not yet in the snapshot this node serves: no targets to report on yet.
        return Ok(Json(json!({"data": [], "next": null, "node_id": node_id})).into_response());
    };
    if balancer_health {
        let data = json!({
            "id": b.id,
            "health": balancer_state(&b).as_str(),
            "details": details(&b),
        });
        return Ok(Json(json!({"data": data, "next": null, "node_id": node_id})).into_response());
    }
    let now = now_ms();
    let data: Vec<Value> = b
        .members
        .iter()
        .rev()
        .map(|m| target_health(&b, m, now))
        .collect();
    Ok(Json(json!({"data": data, "next": null, "node_id": node_id})).into_response())
}

/// The balancer's health: healthy while more than `threshold` percent of the weight is
/// available (Kong's `balancer:updateStatus`).
fn balancer_state(b: &Balancer) -> Health {
    if !b.checks.enabled() {
        return Health::HealthchecksOff;
    }
    let (total, available) = weights(b.members.iter());
    if total > 0 && (available as f64 / total as f64 * 100.0) > b.checks.threshold {
        Health::Healthy
    } else {
        Health::Unhealthy
    }
}

fn weights<'a>(members: impl Iterator<Item = &'a Member>) -> (u64, u64) {
    members.fold((0, 0), |(total, available), m| {
        let w = u64::from(m.target.weight);
        (total + w, available + if m.health.is_up() { w } else { 0 })
    })
}

fn details(b: &Balancer) -> Value {
    let (total, available) = weights(b.members.iter());
    json!({
        "healthy": balancer_state(b) != Health::Unhealthy,
        "weight": {"total": total, "available": available, "unavailable": total - available},
        "hosts": b.members.iter().map(|m| address_status(b, m, now_ms())).collect::<Vec<_>>(),
    })
}

/// Kong's `getTargetStatus` for one member, which Tollgate resolves to one address.
fn address_status(b: &Balancer, m: &Member, now: u64) -> Value {
    let w = u64::from(m.target.weight);
    let available = if m.health.is_up() { w } else { 0 };
    json!({
        "host": m.host,
        "port": m.port,
        "dns": if m.host.parse::<std::net::IpAddr>().is_ok() { "A" } else { "name" },
        "nodeWeight": w,
        "weight": {"total": w, "available": available, "unavailable": w - available},
        "addresses": [{
            "ip": m.host,
            "port": m.port,
            "weight": w,
            "health": b.health_of(m).as_str(),
            "circuit_breaker": m.health.breaker(now).as_str(),
            "requests": m.health.attempts.load(Ordering::Relaxed),
            "in_flight": m.health.in_flight.load(Ordering::Relaxed),
        }],
    })
}

fn target_health(b: &Balancer, m: &Member, now: u64) -> Value {
    let mut body = serde_json::to_value(&m.target).unwrap_or_default();
    body["health"] = b.health_of(m).as_str().into();
    body["data"] = address_status(b, m, now);
    body
}

/// `PUT /upstreams/{u}/targets/{t}/healthy`.
pub async fn mark_healthy(
    st: St,
    Path((upstream, t)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    mark(&st, &upstream, &t, true).await
}

/// `PUT /upstreams/{u}/targets/{t}/unhealthy`.
pub async fn mark_unhealthy(
    st: St,
    Path((upstream, t)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    mark(&st, &upstream, &t, false).await
}

async fn mark(st: &AdminState, upstream: &str, t: &str, up: bool) -> Result<Response, ApiError> {
    let b = balancer(st, upstream).await?.ok_or(ApiError::NotFound)?;
    let normal = target::normal(t).ok();
    let m = b
        .members
        .iter()
        .find(|m| m.target.id.to_string() == t || Some(&m.target.target) == normal.as_ref())
        .ok_or(ApiError::NotFound)?;
    m.health.set_up(up);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /upstreams/{u}/targets/all`: every target, weight 0 included, paged.
pub async fn all_targets(
    st: St,
    Path(upstream): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let body = st
        .store()
        .get(Kind::Upstream, &upstream)
        .await?
        .ok_or(ApiError::NotFound)?;
    let id = body["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or(ApiError::NotFound)?;
    let base = format!("/upstreams/{upstream}/targets/all");
    list::answer(
        &st,
        Kind::Target,
        Some(("upstream_id", id)),
        q.as_deref(),
        &base,
    )
    .await
}

/// The upstream's balancer in the snapshot this node serves; 404 when the store has no such
/// upstream, `None` when it has but the snapshot does not yet.
async fn balancer(st: &AdminState, upstream: &str) -> Result<Option<Arc<Balancer>>, ApiError> {
    if let Some(b) = st.reloader.snapshot.load().upstream(upstream) {
        return Ok(Some(b.clone()));
    }
    st.store()
        .get(Kind::Upstream, upstream)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(None)
}
