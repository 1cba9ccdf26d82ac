//! An upstream's page: its targets as this node balances them (health, weight, circuit
//! breaker, share of the traffic, requests in flight) with the last hour's latency and errors
//! per target from analytics, and the operator's actions: add a target, change its weight,
//! mark it healthy or unhealthy, remove it. Everything goes through the admin API.
use super::manage::confirmation;
use super::{layout, ConsoleState, CurrentUser};
use crate::web::admin_api::{self, Payload};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_analytics::query::{Filter, TopBy, TopEntry};

pub async fn show(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    render(&st, &user, &id, None).await
}

async fn render(
    st: &ConsoleState,
    user: &CurrentUser,
    id: &str,
    error: Option<String>,
) -> Response {
    let upstream = match admin_api::call_ok(
        &st.admin,
        Method::GET,
        &format!("/upstreams/{id}"),
        Payload::None,
    )
    .await
    {
        Ok(a) => a.body,
        Err(refused) => return refused,
    };
    let name = upstream["name"].as_str().unwrap_or(id).to_string();
    let health = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/upstreams/{id}/health"),
        Payload::None,
    )
    .await;
    let targets = health.body["data"].as_array().cloned().unwrap_or_default();
    let stats = per_target(st).await;
    let uid = upstream["id"].as_str().unwrap_or(id).to_string();
    let body = view! {
        {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {super::manage::owner_notice(&upstream)}
        {summary(&upstream)}
        {targets_panel(&uid, targets, stats)}
        {add_form(&uid)}
    };
    Html(layout::page(&format!("Upstream {name}"), &user.0, body)).into_response()
}

/// The last hour's traffic by target address, when analytics are on.
async fn per_target(st: &ConsoleState) -> HashMap<String, TopEntry> {
    let Some(q) = &st.analytics else {
        return HashMap::new();
    };
    let now = tollgate_analytics::unix_now();
    let f = Filter {
        from: now - 3600,
        to: now + 1,
        ..Filter::default()
    };
    q.top(&f, TopBy::Upstream, 1000)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect()
}

fn summary(u: &Value) -> impl IntoView {
    let s = |k: &str| u[k].as_str().unwrap_or("").to_string();
    let hc = &u["healthchecks"];
    let active = hc["active"]["healthy"]["interval"].as_f64().unwrap_or(0.0) > 0.0
        || hc["active"]["unhealthy"]["interval"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0;
    let passive = ["tcp_failures", "timeouts", "http_failures"]
        .iter()
        .any(|k| hc["passive"]["unhealthy"][k].as_u64().unwrap_or(0) > 0);
    let checks = match (active, passive) {
        (true, true) => "active and passive",
        (true, false) => "active",
        (false, true) => "passive",
        (false, false) => "off",
    };
    let breaker = if u["circuit_breaker"]["enabled"] == true {
        format!(
            "opens after {} failures in a row, for {} s",
            u["circuit_breaker"]["consecutive_failures"], u["circuit_breaker"]["open_for"]
        )
    } else {
        "off".to_string()
    };
    let edit = format!("/upstreams/{}/edit", s("id"));
    view! {
        <section class="panel wide">
            <p>"Algorithm: " <strong>{s("algorithm")}</strong> " · hash on: " {s("hash_on")}
               " · health checks: " {checks} " · circuit breaker: " {breaker}
               " · " <a href=edit>"Edit"</a></p>
        </section>
    }
}

fn targets_panel(
    upstream: &str,
    targets: Vec<Value>,
    stats: HashMap<String, TopEntry>,
) -> impl IntoView {
    if targets.is_empty() {
        return view! { <p class="empty">"No targets yet: this upstream answers 503."</p> }
            .into_any();
    }
    let total: u64 = targets
        .iter()
        .flat_map(addresses)
        .map(|a| a["requests"].as_u64().unwrap_or(0))
        .sum();
    let mut rows = Vec::new();
    for t in &targets {
        for a in addresses(t) {
            rows.push(target_row(upstream, t, &a, total, &stats));
        }
    }
    view! {
        <section class="panel wide">
            <h2>"Targets"</h2>
            <p class="hint">"Health and traffic as this node sees them; latency and errors of the last hour from analytics."</p>
            <table>
                <thead><tr>
                    <th>"Target"</th><th>"Address"</th><th>"Weight"</th><th>"Health"</th><th>"Breaker"</th>
                    <th class="num">"Share"</th><th class="num">"In flight"</th>
                    <th class="num">"p95 (1 h)"</th><th class="num">"Errors (1 h)"</th><th></th>
                </tr></thead>
                <tbody>{rows.into_iter().collect_view()}</tbody>
            </table>
        </section>
    }
    .into_any()
}

/// A target's addresses as `/health` lists them.
fn addresses(t: &Value) -> Vec<Value> {
    t["data"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn target_row(
    upstream: &str,
    t: &Value,
    a: &Value,
    total: u64,
    stats: &HashMap<String, TopEntry>,
) -> impl IntoView {
    let id = t["id"].as_str().unwrap_or_default().to_string();
    let target = t["target"].as_str().unwrap_or_default().to_string();
    let ip = a["ip"].as_str().unwrap_or_default();
    let port = a["port"].as_u64().unwrap_or(0);
    let address = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let requests = a["requests"].as_u64().unwrap_or(0);
    let share = if total > 0 {
        format!(
            "{:.1} % ({requests})",
            requests as f64 * 100.0 / total as f64
        )
    } else {
        "–".to_string()
    };
    let (p95, errors) = stats.get(&address).map_or(("–".into(), "–".into()), |s| {
        (
            format!("{:.1} ms", s.p95_ms),
            format!("{} of {}", s.errors, s.requests),
        )
    });
    let health = t["health"].as_str().unwrap_or("").to_string();
    let breaker = a["circuit_breaker"].as_str().unwrap_or("").to_string();
    let base = format!("/upstreams/{upstream}/targets/{id}");
    let weight = t["weight"].as_u64().unwrap_or(0).to_string();
    let mark = |state: &'static str, label: &'static str| {
        let action = format!("{base}/health");
        view! {
            <form method="post" action=action class="inline">
                <input type="hidden" name="state" value=state/>
                <button type="submit">{label}</button>
            </form>
        }
    };
    view! {
        <tr>
            <td>{target}</td><td>{address}</td>
            <td>
                <form method="post" action=format!("{base}/weight") class="inline">
                    <input name="weight" value=weight inputmode="numeric" size="5" aria-label="Weight"/>
                    <button type="submit">"Set"</button>
                </form>
            </td>
            <td class=format!("health-{}", health.to_ascii_lowercase())>{health.clone()}</td>
            <td class=format!("breaker-{breaker}")>{breaker.replace('_', "-")}</td>
            <td class="num">{share}</td><td class="num">{a["in_flight"].to_string()}</td>
            <td class="num">{p95}</td><td class="num">{errors}</td>
            <td class="actions">
                {mark("healthy", "Mark healthy")}
                {mark("unhealthy", "Mark unhealthy")}
                <a href=format!("{base}/delete") class="danger">"Remove"</a>
            </td>
        </tr>
    }
}

fn add_form(upstream: &str) -> impl IntoView {
    let action = format!("/upstreams/{upstream}/targets");
    view! {
        <section class="panel wide">
            <h2>"Add a target"</h2>
            <form method="post" action=action class="entity">
                <label class="field"><span>"Target"</span><input name="target"/><small>"host:port (port 8000 when left out)"</small></label>
                <label class="field"><span>"Weight"</span><input name="weight" inputmode="numeric"/><small>"0 to 65535; default 100; 0 takes no traffic"</small></label>
                <button type="submit">"Add"</button>
            </form>
        </section>
    }
}

/// Sends `pairs` to the admin API and shows the upstream again, with the refusal if any.
async fn act(
    st: &ConsoleState,
    user: &CurrentUser,
    upstream: &str,
    (method, path): (Method, String),
    pairs: Vec<(String, String)>,
) -> Response {
    let answer = admin_api::call(&st.admin, method, &path, Payload::Form(pairs)).await;
    if answer.status.is_success() {
        // The page shows the balancer this node serves: let it take the change first.
        applied(st).await;
        return Redirect::to(&format!("/upstreams/{upstream}")).into_response();
    }
    let fields: Vec<String> = answer
        .field_errors()
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let why = if fields.is_empty() {
        answer.message()
    } else {
        fields.join("; ")
    };
    let mut page = render(st, user, upstream, Some(format!("Not changed: {why}"))).await;
    *page.status_mut() = StatusCode::BAD_REQUEST;
    page
}

/// Waits (up to two seconds) until this node serves every stored change, as the admin API's
/// `/status` tells.
async fn applied(st: &ConsoleState) {
    for _ in 0..100 {
        let s = admin_api::call(&st.admin, Method::GET, "/status", Payload::None).await;
        if s.body["configuration_version"] == s.body["database"]["configuration_version"] {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn add_target(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let pairs = form
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let to = (Method::POST, format!("/upstreams/{id}/targets"));
    act(&st, &user, &id, to, pairs).await
}

#[derive(Deserialize)]
pub struct Weight {
    weight: String,
}

pub async fn set_weight(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path((id, target)): Path<(String, String)>,
    Form(f): Form<Weight>,
) -> Response {
    let to = (Method::PATCH, format!("/upstreams/{id}/targets/{target}"));
    act(&st, &user, &id, to, vec![("weight".into(), f.weight)]).await
}

#[derive(Deserialize)]
pub struct Mark {
    state: String,
}

pub async fn set_health(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path((id, target)): Path<(String, String)>,
    Form(f): Form<Mark>,
) -> Response {
    if !["healthy", "unhealthy"].contains(&f.state.as_str()) {
        return (StatusCode::BAD_REQUEST, "state: healthy or unhealthy").into_response();
    }
    let to = (
        Method::PUT,
        format!("/upstreams/{id}/targets/{target}/{}", f.state),
    );
    act(&st, &user, &id, to, Vec::new()).await
}

pub async fn confirm_remove(
    Extension(user): Extension<CurrentUser>,
    Path((id, target)): Path<(String, String)>,
) -> Response {
    let body = confirmation(
        &format!("/upstreams/{id}/targets/{target}/delete"),
        &format!("/upstreams/{id}"),
        "Remove this target from the upstream?",
    );
    Html(layout::page("Remove target", &user.0, body)).into_response()
}

pub async fn remove(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path((id, target)): Path<(String, String)>,
) -> Response {
    let to = (Method::DELETE, format!("/upstreams/{id}/targets/{target}"));
    act(&st, &user, &id, to, Vec::new()).await
}
