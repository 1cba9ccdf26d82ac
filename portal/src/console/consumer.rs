//! A consumer's page: its API keys (a new key is shown once; keys can be revoked), the plugins
//! that name it with the precedence level each holds, and its own traffic.
use super::manage::confirmation;
use super::{layout, ConsoleState, CurrentUser};
use crate::web::admin_api::{self, Payload};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use serde_json::Value;
use std::sync::Arc;
use tollgate_analytics::query::{Filter, Summary};
use tollgate_gateway::model::owner::ClusterObject;

/// Kong's precedence level of a plugin instance, from its scope.
pub fn level(plugin: &Value) -> &'static str {
    let has = |k: &str| plugin[k]["id"].is_string();
    match (has("route"), has("service"), has("consumer")) {
        (true, true, true) => "Route + Service + Consumer (1st of 8)",
        (true, false, true) => "Route + Consumer (2nd of 8)",
        (false, true, true) => "Service + Consumer (3rd of 8)",
        (true, true, false) => "Route + Service (4th of 8)",
        (false, false, true) => "Consumer (5th of 8)",
        (true, false, false) => "Route (6th of 8)",
        (false, true, false) => "Service (7th of 8)",
        (false, false, false) => "Global (8th of 8)",
    }
}

/// Whether one of the consumer's own plugins wins over `general` for this consumer: same
/// plugin, and its route and service are unset or the same as the general one's.
fn overridden(general: &Value, own: &[Value]) -> bool {
    own.iter().any(|o| {
        o["name"] == general["name"]
            && ["route", "service"]
                .iter()
                .all(|k| o[*k].is_null() || o[*k]["id"] == general[*k]["id"])
    })
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
    let plugins =
        admin_api::call(&st.admin, Method::GET, "/plugins?size=1000", Payload::None).await;
    let all = plugins.body["data"].as_array().cloned().unwrap_or_default();
    let (own, general): (Vec<Value>, Vec<Value>) = all
        .into_iter()
        .filter(|p| p["consumer"].is_null() || p["consumer"]["id"] == c["id"])
        .partition(|p| !p["consumer"].is_null());
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
        {super::manage::owner_notice(&c)}
        {keys_panel(&cid, keys.body["data"].as_array().cloned().unwrap_or_default())}
        {plugins_panel(own, general)}
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
                        let owner = ClusterObject::of(&k);
                        view! {
                            <tr>
                                <td>{kid}</td><td>{k["created_at"].to_string()}</td>
                                <td>{k["ttl"].as_u64().map_or("never".to_string(), |t| t.to_string())}</td>
                                <td class="actions">{match owner {
                                    None => view! { <a href=revoke class="danger">"Revoke"</a> }.into_any(),
                                    Some(o) => view! { <span class="hint">{format!("from the {o}")}</span> }.into_any(),
                                }}</td>
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

fn plugins_panel(own: Vec<Value>, general: Vec<Value>) -> impl IntoView {
    let rows: Vec<(Value, &'static str)> = own
        .iter()
        .map(|p| (p.clone(), "applies: the most specific for this consumer"))
        .chain(general.iter().map(|g| {
            let state = if overridden(g, &own) {
                "overridden by this consumer's own"
            } else {
                "applies"
            };
            (g.clone(), state)
        }))
        .collect();
    view! {
        <section class="panel wide">
            <h2>"Plugins that apply to this consumer"</h2>
            <p class="hint">"Kong's precedence: the most specific instance of a plugin wins."</p>
            <table>
                <thead><tr><th>"Plugin"</th><th>"Level"</th><th>"For this consumer"</th><th>"Config"</th></tr></thead>
                <tbody>
                    {rows.into_iter().map(|(p, state)| view! {
                        <tr>
                            <td>{p["name"].as_str().unwrap_or_default().to_string()}</td><td>{level(&p)}</td>
                            <td>{state}</td><td>{p["config"].to_string()}</td>
                        </tr>
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
    let uri = format!("/consumers/{id}/key-auth/{key}");
    match admin_api::call_ok(&st.admin, Method::DELETE, &uri, Payload::None).await {
        Ok(_) => Redirect::to(&format!("/consumers/{id}")).into_response(),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_and_overrides_follow_kongs_precedence() {
        let r = json!({"id": "r"});
        let own =
            json!({"name": "rate-limiting", "route": r, "service": null, "consumer": {"id": "c"}});
        assert_eq!(level(&own), "Route + Consumer (2nd of 8)");
        let global =
            json!({"name": "rate-limiting", "route": null, "service": null, "consumer": null});
        assert_eq!(level(&global), "Global (8th of 8)");
        let on_route =
            json!({"name": "rate-limiting", "route": r, "service": null, "consumer": null});
        let other_route = json!({"name": "rate-limiting", "route": {"id": "x"}, "service": null, "consumer": null});
        let own = [own];
        assert!(overridden(&on_route, &own));
        assert!(
            !overridden(&other_route, &own),
            "the consumer's limit is for route r only"
        );
        let key_auth = json!({"name": "key-auth", "route": null, "service": null});
        assert!(!overridden(&key_auth, &own));
    }
}
