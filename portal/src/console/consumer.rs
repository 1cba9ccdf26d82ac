//! A consumer's page: its API keys (a new key is shown once; keys can be revoked), the plugins
//! that name it with the precedence level each holds, and its own traffic.
use super::admin_api::{self, Payload};
use super::manage::confirmation;
use super::{layout, ConsoleState, CurrentUser};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde_json::Value;
use std::sync::Arc;
use tollgate_analytics::query::{Filter, Summary};

/// Kong's precedence level of a consumer-scoped plugin.
pub fn level(plugin: &Value) -> &'static str {
    let has = |k: &str| plugin[k]["id"].is_string();
    match (has("route"), has("service")) {
        (true, true) => "Route + Service + Consumer (1st of 8)",
        (true, false) => "Route + Consumer (2nd of 8)",
        (false, true) => "Service + Consumer (3rd of 8)",
        (false, false) => "Consumer (5th of 8)",
    }
}

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
    new_key: Option<String>,
) -> Response {
    let consumer = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/consumers/{id}"),
        Payload::None,
    )
    .await;
    if consumer.status != StatusCode::OK {
        return (
            consumer.status,
            Html(layout::page(
                "Consumer",
                &user.0,
                view! { <p class="error">{consumer.message()}</p> },
            )),
        )
            .into_response();
    }
    let c = consumer.body;
    let cid = c["id"].as_str().unwrap_or_default().to_string();
    let name = c["username"]
        .as_str()
        .or(c["custom_id"].as_str())
        .unwrap_or(&cid)
        .to_string();
    let keys = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/consumers/{cid}/key-auth?size=1000"),
        Payload::None,
    )
    .await;
    let plugins = admin_api::call(
        &st.admin,
        Method::GET,
        &format!("/consumers/{cid}/plugins?size=1000"),
        Payload::None,
    )
    .await;
    let traffic = match &st.analytics {
        Some(q) => {
            let now = tollgate_analytics::unix_now();
            let f = Filter {
                from: now - 86_400,
                to: now + 1,
                consumer: Some(name.clone()),
                ..Filter::default()
            };
            q.summary(&f).await.ok()
        }
        None => None,
    };
    let body = view! {
        {new_key.map(|k| view! {
            <p class="notice" role="status">"New key, shown only now: " <code class="key">{k}</code></p>
        })}
        {keys_panel(&cid, keys.body["data"].as_array().cloned().unwrap_or_default())}
        {plugins_panel(plugins.body["data"].as_array().cloned().unwrap_or_default())}
        {traffic_panel(traffic)}
    };
    Html(layout::page(&format!("Consumer {name}"), &user.0, body)).into_response()
}

fn keys_panel(consumer: &str, keys: Vec<Value>) -> impl IntoView {
    let action = format!("/consumers/{consumer}/keys");
    let consumer = consumer.to_string();
    view! {
        <section class="panel wide">
            <h2>"API keys"</h2>
            <table>
                <thead><tr><th>"Id"</th><th>"Created"</th><th>"Expires after (s)"</th><th></th></tr></thead>
                <tbody>
                    {keys.into_iter().map(|k| {
                        let kid = k["id"].as_str().unwrap_or_default().to_string();
                        let revoke = format!("/consumers/{consumer}/keys/{kid}/delete");
                        view! {
                            <tr>
                                <td>{kid}</td><td>{k["created_at"].to_string()}</td>
                                <td>{k["ttl"].as_u64().map_or("never".to_string(), |t| t.to_string())}</td>
                                <td class="actions"><a href=revoke class="danger">"Revoke"</a></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <form method="post" action=action class="entity">
                <label class="field"><span>"Key"</span><input name="key"/><small>"empty: a random 128-bit key"</small></label>
                <label class="field"><span>"Lifetime (s)"</span><input name="ttl" inputmode="numeric"/><small>"empty: never expires"</small></label>
                <button type="submit">"Create key"</button>
            </form>
        </section>
    }
}

fn plugins_panel(plugins: Vec<Value>) -> impl IntoView {
    view! {
        <section class="panel wide">
            <h2>"Plugins for this consumer"</h2>
            <p class="hint">"Each wins over the same plugin set for its route, service or globally (Kong's precedence)."</p>
            <table>
                <thead><tr><th>"Plugin"</th><th>"Level"</th><th>"Config"</th></tr></thead>
                <tbody>
                    {plugins.into_iter().map(|p| view! {
                        <tr><td>{p["name"].as_str().unwrap_or_default().to_string()}</td><td>{level(&p)}</td><td>{p["config"].to_string()}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

fn traffic_panel(s: Option<Summary>) -> impl IntoView {
    let Some(s) = s else {
        return view! { <p class="empty">"No analytics for this consumer."</p> }.into_any();
    };
    view! {
        <section class="panel wide">
            <h2>"Last 24 hours"</h2>
            <p>{format!("{} requests, {} answered 429, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms", s.requests, s.rate_limited, s.p50_ms, s.p95_ms, s.p99_ms)}</p>
        </section>
    }
    .into_any()
}

pub async fn create_key(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let pairs: Vec<(String, String)> = form
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let answer = admin_api::call(
        &st.admin,
        Method::POST,
        &format!("/consumers/{id}/key-auth"),
        Payload::Form(pairs),
    )
    .await;
    if answer.status != StatusCode::CREATED {
        let message = format!("Key not created: {}", answer.message());
        let errors: Vec<String> = answer
            .field_errors()
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let body = view! { <p class="error">{message}</p><ul>{errors.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}</ul> };
        return (
            StatusCode::BAD_REQUEST,
            Html(layout::page("Consumer", &user.0, body)),
        )
            .into_response();
    }
    let key = answer.body["key"].as_str().map(String::from);
    render(&st, &user, &id, key).await
}

pub async fn confirm_revoke(
    Extension(user): Extension<CurrentUser>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    let body = confirmation(
        &format!("/consumers/{id}/keys/{key}/delete"),
        &format!("/consumers/{id}"),
        &format!("Revoke key {key}?"),
    );
    Html(layout::page("Revoke key", &user.0, body)).into_response()
}

pub async fn revoke(
    State(st): State<Arc<ConsoleState>>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    let answer = admin_api::call(
        &st.admin,
        Method::DELETE,
        &format!("/consumers/{id}/key-auth/{key}"),
        Payload::None,
    )
    .await;
    if !answer.status.is_success() {
        return (answer.status, answer.message()).into_response();
    }
    Redirect::to(&format!("/consumers/{id}")).into_response()
}
