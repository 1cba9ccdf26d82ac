//! Plans become rate-limiting plugins: an application's consumer gets one plugin per service
//! its plan names (one consumer-wide plugin when the plan names none), tagged `tollgate-plan`
//! so that a plan change replaces exactly these and nothing an operator added by hand.
use crate::web::admin_api::{self, Payload};
use axum::http::Method;
use axum::Router;
use serde_json::{json, Map, Value};
use tollgate_gateway::store::portal::{ApplicationsBy, Plan, PlanLimits};
use tollgate_gateway::store::Store;

pub const TAG: &str = "tollgate-plan";

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

/// Makes the consumer's plan plugins those of `plan`.
pub async fn apply(admin: &Router, consumer_id: &str, plan: &Plan) -> Result<(), String> {
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
            let gone = admin_api::call(
                admin,
                Method::DELETE,
                &format!("/plugins/{id}"),
                Payload::None,
            )
            .await;
            if !gone.status.is_success() {
                return Err(gone.message());
            }
        }
    }
    let Some(config) = rate_limiting_config(&plan.limits) else {
        return Ok(());
    };
    let services: Vec<Option<&String>> = if plan.services.is_empty() {
        vec![None]
    } else {
        plan.services.iter().map(Some).collect()
    };
    for service in services {
        let body = json!({
            "name": "rate-limiting",
            "consumer": {"id": consumer_id},
            "service": service.map(|id| json!({"id": id})),
            "config": config,
            "tags": [TAG],
        });
        let made = admin_api::call(admin, Method::POST, "/plugins", Payload::Json(body)).await;
        if !made.status.is_success() {
            return Err(made.message());
        }
    }
    Ok(())
}

/// Re-applies a changed plan to every application on it; answers how many were updated.
pub async fn apply_to_applications(
    admin: &Router,
    store: &Store,
    plan: &Plan,
) -> Result<usize, String> {
    let apps = store
        .applications(ApplicationsBy::Plan, &plan.id)
        .await
        .map_err(|e| e.to_string())?;
    for app in &apps {
        apply(admin, &app.consumer_id, plan).await?;
    }
    Ok(apps.len())
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
}
