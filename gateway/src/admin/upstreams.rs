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
    let data: Vec<Value> = targets(&b)
        .into_iter()
        .rev()
        .map(|t| target_health(&b, &t, now))
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
    let now = now_ms();
    json!({
        "healthy": balancer_state(b) != Health::Unhealthy,
        "weight": {"total": total, "available": available, "unavailable": total - available},
        "hosts": targets(b).iter().map(|t| target_status(b, t, now)).collect::<Vec<_>>(),
    })
}

/// The balancer's members grouped by target, in creation order.
fn targets(b: &Balancer) -> Vec<Vec<&Member>> {
    let mut out: Vec<Vec<&Member>> = Vec::new();
    for m in &b.members {
        match out.last_mut() {
            Some(group) if group[0].target.id == m.target.id => group.push(m),
            _ => out.push(vec![m]),
        }
    }
    out
}

/// Kong's `getTargetStatus`: the target's name, how it resolved, its addresses with their
/// health (and Tollgate's breaker state and attempt counts).
fn target_status(b: &Balancer, members: &[&Member], now: u64) -> Value {
    let first = members[0];
    let w = u64::from(first.target.weight);
    let (total, available) = weights(members.iter().copied());
    let dns = match &first.dns_error {
        Some(e) => e.as_str(),
        None if first.name.parse::<std::net::IpAddr>().is_ok() => "A",
        None if first.host == first.name => "unresolved",
        None => "A",
    };
    let addresses: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "ip": m.host,
                "port": m.port,
                "weight": w,
                "health": b.health_of(m).as_str(),
                "circuit_breaker": m.health.breaker(now).as_str(),
                "requests": m.health.attempts.load(Ordering::Relaxed),
                "in_flight": m.health.in_flight.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "host": first.name,
        "port": first.port,
        "dns": dns,
        "nodeWeight": w,
        "weight": {"total": total, "available": available, "unavailable": total - available},
        "addresses": addresses,
    })
}

/// A target as `/health` lists it: the entity, its `health` (Kong's: DNS_ERROR when its name
/// did not resolve, else HEALTHY when an address is, UNHEALTHY when one is, else
/// HEALTHCHECKS_OFF) and `data`.
fn target_health(b: &Balancer, members: &[&Member], now: u64) -> Value {
    let first = members[0];
    let states: Vec<Health> = members.iter().map(|m| b.health_of(m)).collect();
    let health = if first.dns_error.is_some() {
        "DNS_ERROR"
    } else if states.contains(&Health::Healthy) {
        "HEALTHY"
    } else if states.contains(&Health::Unhealthy) {
        "UNHEALTHY"
    } else {
        "HEALTHCHECKS_OFF"
    };
    let mut body = serde_json::to_value(&first.target).unwrap_or_default();
    body["health"] = health.into();
    body["data"] = target_status(b, members, now);
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
    let named =
        |m: &&Member| m.target.id.to_string() == t || Some(&m.target.target) == normal.as_ref();
    let mut found = false;
    // Every address of the target, as Kong marks them all when no address is given.
    for m in b.members.iter().filter(named) {
        m.health.set_up(up);
        found = true;
    }
    if !found {
        return Err(ApiError::NotFound);
    }
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
