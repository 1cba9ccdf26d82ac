//! Plans become rate-limiting plugins: an application's consumer gets one plugin per service
//! its plan names (one consumer-wide plugin when the plan names none), tagged `tollgate-plan`
//! so that a plan change replaces exactly these and nothing an operator added by hand.
use crate::web::admin_api::{self, Payload};
use axum::http::Method;
use axum::Router;
use serde_json::{json, Map, Value};
use tollgate_gateway::store::portal::{Application, ApplicationsBy, Plan, PlanLimits};
use tollgate_gateway::store::Store;

pub use tollgate_gateway::store::portal::PLAN_TAG as TAG;

/// The rate-limiting config of `limits`, or `None` when the plan limits nothing.
pub fn rate_limiting_config(limits: &PlanLimits) -> Option<Value> {
    let mut config = Map::new();
    for (window, limit) in [
        ("second", limits.second),
        ("minute", limits.minute),
        ("hour", limits.hour),
        ("day", limits.day),
    ] {
        if let Some(n) = limit {
            config.insert(window.into(), n.into());
        }
    }
    if config.is_empty() {
        return None;
    }
    config.insert("policy".into(), "local".into());
    Some(Value::Object(config))
}

/// `2/second, 1000/day`.
pub fn limits_text(p: &Plan) -> String {
    let parts: Vec<String> = [
        ("second", p.limits.second),
        ("minute", p.limits.minute),
        ("hour", p.limits.hour),
        ("day", p.limits.day),
    ]
    .into_iter()
    .filter_map(|(w, n)| n.map(|n| format!("{n}/{w}")))
    .collect();
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(", ")
    }
}

/// What a refused application is told.
pub const NOT_IN_PLAN: &str = "Your plan does not include this API";
/// What the applications of a suspended developer are told.
pub const SUSPENDED: &str = "This application's developer account is suspended";
/// The trigger of the pass-through `request-termination` instances: only a request naming it
/// is stopped, so for every other request the consumer-wide block is overridden.
const PASS: &str = "x-tollgate-plan-stop";

/// What an application may call: the services its plan names, or every published service
/// when the plan names none.
pub fn allowed_services(plan: &Plan, published: &[String]) -> Vec<String> {
    if plan.services.is_empty() {
        published.to_vec()
    } else {
        plan.services.clone()
    }
}

/// The plugins (admin API bodies) that carry `plan` on a consumer. A consumer-wide
/// `request-termination` refuses every service with 403; on each allowed service a
/// consumer+service instance, more specific so it wins by Kong's precedence, lets requests
/// through, and the plan's limits apply as `rate-limiting` there. A service created later is
/// refused until the plan covers it.
pub fn plan_plugins(consumer_id: &str, plan: &Plan, allowed: &[String]) -> Vec<Value> {
    let consumer = json!({"id": consumer_id});
    let refuse = json!({"status_code": 403, "message": NOT_IN_PLAN});
    let mut out = vec![block(consumer_id, NOT_IN_PLAN)];
    let limits = rate_limiting_config(&plan.limits);
    for service in allowed {
        let service = json!({"id": service});
        let mut pass = refuse.clone();
        pass["trigger"] = PASS.into();
        out.push(json!({"name": "request-termination", "consumer": consumer, "service": service, "config": pass, "tags": [TAG]}));
        if let Some(config) = &limits {
            out.push(json!({"name": "rate-limiting", "consumer": consumer, "service": service, "config": config, "tags": [TAG]}));
        }
    }
    out
}

/// A consumer-wide `request-termination`: 403 with `message` on every service.
fn block(consumer_id: &str, message: &str) -> Value {
    json!({
        "name": "request-termination",
        "consumer": {"id": consumer_id},
        "config": {"status_code": 403, "message": message},
        "tags": [TAG],
    })
}

/// The ids of the services published to the portal (private ones too).
pub async fn published_services(store: &Store) -> Result<Vec<String>, String> {
    let listed = crate::apis::listings(store, true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(listed.into_iter().map(|(s, _)| s.id.to_string()).collect())
}

/// Makes the consumer's plan plugins those of `plan`, given the published services.
pub async fn apply(
    admin: &Router,
    consumer_id: &str,
    plan: &Plan,
    published: &[String],
) -> Result<(), String> {
    let plugins = plan_plugins(consumer_id, plan, &allowed_services(plan, published));
    replace_plugins(admin, consumer_id, plugins).await
}

/// Refuses every request with the consumer's keys (its developer is suspended), until the
/// plan is applied again.
pub async fn suspend(admin: &Router, consumer_id: &str) -> Result<(), String> {
    replace_plugins(admin, consumer_id, vec![block(consumer_id, SUSPENDED)]).await
}

/// Replaces the consumer's `tollgate-plan` plugins with `plugins` (admin API bodies).
async fn replace_plugins(
    admin: &Router,
    consumer_id: &str,
    plugins: Vec<Value>,
) -> Result<(), String> {
    let existing = admin_api::call(
        admin,
        Method::GET,
        &format!("/consumers/{consumer_id}/plugins?size=1000"),
        Payload::None,
    )
    .await;
    if !existing.status.is_success() {
        return Err(existing.message());
    }
    for p in existing.body["data"].as_array().into_iter().flatten() {
        let ours = p["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == TAG));
        if let (true, Some(id)) = (ours, p["id"].as_str()) {
            let path = format!("/plugins/{id}");
            let gone = admin_api::call(admin, Method::DELETE, &path, Payload::None).await;
            if !gone.status.is_success() {
                return Err(gone.message());
            }
        }
    }
    for body in plugins {
        let made = admin_api::call(admin, Method::POST, "/plugins", Payload::Json(body)).await;
        if !made.status.is_success() {
            return Err(made.message());
        }
    }
    Ok(())
}

/// Re-applies a plan to every application on it.
pub async fn apply_to_applications(
    admin: &Router,
    store: &Store,
    plan: &Plan,
) -> Result<(), String> {
    let published = published_services(store).await?;
    sync_plan(admin, store, plan, &published).await
}

/// Re-applies every plan (after the set of published services changed).
pub async fn apply_all(admin: &Router, store: &Store) -> Result<(), String> {
    let published = published_services(store).await?;
    for plan in store.plans().await.map_err(|e| e.to_string())? {
        sync_plan(admin, store, &plan, &published).await?;
    }
    Ok(())
}

async fn sync_plan(
    admin: &Router,
    store: &Store,
    plan: &Plan,
    published: &[String],
) -> Result<(), String> {
    let apps = store
        .applications(ApplicationsBy::Plan, &plan.id)
        .await
        .map_err(|e| e.to_string())?;
    for app in &apps {
        sync(admin, store, app, plan, published).await?;
    }
    Ok(())
}

/// Gives an application its plan's plugins, or the suspension block when its developer is
/// not active.
async fn sync(
    admin: &Router,
    store: &Store,
    app: &Application,
    plan: &Plan,
    published: &[String],
) -> Result<(), String> {
    let developer = store
        .developer(&app.developer_id)
        .await
        .map_err(|e| e.to_string())?;
    if developer.is_some_and(|d| d.status == "active") {
        apply(admin, &app.consumer_id, plan, published).await
    } else {
        suspend(admin, &app.consumer_id).await
    }
}

/// Re-applies plans to one developer's applications (after their status changed).
pub async fn sync_developer(
    admin: &Router,
    store: &Store,
    developer_id: &str,
) -> Result<(), String> {
    let published = published_services(store).await?;
    let apps = store
        .applications(ApplicationsBy::Developer, developer_id)
        .await
        .map_err(|e| e.to_string())?;
    for app in &apps {
        match store.plan(&app.plan_id).await.map_err(|e| e.to_string())? {
            Some(plan) => sync(admin, store, app, &plan, &published).await?,
            None => suspend(admin, &app.consumer_id).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_windows_a_plan_limits_are_configured() {
        let limits = PlanLimits {
            second: Some(2),
            day: Some(1000),
            ..PlanLimits::default()
        };
        assert_eq!(
            rate_limiting_config(&limits),
            Some(json!({"second": 2, "day": 1000, "policy": "local"}))
        );
        assert_eq!(rate_limiting_config(&PlanLimits::default()), None);
    }

    fn plan(services: &[&str], second: Option<u64>) -> Plan {
        Plan {
            id: "p".into(),
            name: "P".into(),
            limits: PlanLimits {
                second,
                ..PlanLimits::default()
            },
            services: services.iter().map(|s| s.to_string()).collect(),
            credentials: tollgate_gateway::store::portal::default_credentials(),
            created_at: 1,
        }
    }

    #[test]
    fn a_plan_allows_its_services_or_every_published_one() {
        let published = ["a".to_string(), "b".to_string()];
        assert_eq!(allowed_services(&plan(&["c"], None), &published), ["c"]);
        assert_eq!(allowed_services(&plan(&[], None), &published), ["a", "b"]);
    }

    #[test]
    fn the_consumer_is_refused_everywhere_but_on_its_allowed_services() {
        let plugins = plan_plugins("c1", &plan(&["s1"], Some(2)), &["s1".into()]);
        let shape: Vec<(&str, bool, Option<&str>)> = plugins
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["service"].is_object(),
                    p["config"]["trigger"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("request-termination", false, None),
                ("request-termination", true, Some(PASS)),
                ("rate-limiting", true, None),
            ]
        );
        assert!(plugins
            .iter()
            .all(|p| p["consumer"]["id"] == "c1" && p["tags"][0] == TAG));
        assert_eq!(plugins[0]["config"]["status_code"], 403);
        let unlimited = plan_plugins("c1", &plan(&[], None), &["s1".into(), "s2".into()]);
        assert_eq!(unlimited.len(), 3, "a block and two passes, no limits");
    }
}
