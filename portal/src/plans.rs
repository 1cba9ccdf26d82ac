//! Plans become consumer groups: each plan has a group (`tollgate-plan-<id>`) whose plugins,
//! tagged `tollgate-plan`, carry its limits and the services it covers, and an application's
//! consumer is a member of its plan's group. A plan change replaces exactly the group's tagged
//! plugins, nothing an operator added by hand.
use crate::web::admin_api::{call, Payload};
use axum::http::{Method, StatusCode};
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

/// The consumer group of `plan`: its applications' consumers are its members, and the plan's
/// plugins are scoped to it (Kong's consumer groups), so a plan's limits are one set of
/// plugins however many applications use it.
pub fn group_name(plan: &Plan) -> String {
    format!("tollgate-plan-{}", plan.id)
}

/// The plugins (admin API bodies) that carry `plan` on its group `group_id`. A group-wide
/// `request-termination` refuses every service with 403; on each allowed service a
/// group+service instance, more specific so it wins by Kong's precedence, lets requests
/// through, and the plan's limits apply as `rate-limiting` there (counted per consumer). A
/// service created later is refused until the plan covers it.
pub fn plan_plugins(group_id: &str, plan: &Plan, allowed: &[String]) -> Vec<Value> {
    let group = json!({"id": group_id});
    let refuse = json!({"status_code": 403, "message": NOT_IN_PLAN});
    let mut out = vec![json!({
        "name": "request-termination",
        "consumer_group": group,
        "config": refuse,
        "tags": [TAG],
    })];
    let limits = rate_limiting_config(&plan.limits);
    for service in allowed {
        let service = json!({"id": service});
        let mut pass = refuse.clone();
        pass["trigger"] = PASS.into();
        out.push(json!({"name": "request-termination", "consumer_group": group, "service": service, "config": pass, "tags": [TAG]}));
        if let Some(config) = &limits {
            out.push(json!({"name": "rate-limiting", "consumer_group": group, "service": service, "config": config, "tags": [TAG]}));
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

/// Puts an application's consumer on `plan`: a member of the plan's group (made with its
/// plugins if it is not there yet), of no other plan's, with no plan plugins of its own.
pub async fn apply(
    admin: &Router,
    consumer_id: &str,
    plan: &Plan,
    published: &[String],
) -> Result<(), String> {
    let group = match group_id(admin, plan).await? {
        Some(id) => id,
        None => sync_group(admin, plan, published).await?,
    };
    replace_plugins(admin, &format!("/consumers/{consumer_id}"), vec![]).await?;
    join_only(admin, consumer_id, Some(&group)).await
}

/// Refuses every request of the consumer (its developer is suspended), until the plan is
/// applied again: it leaves its plan's group and gets a block of its own.
pub async fn suspend(admin: &Router, consumer_id: &str) -> Result<(), String> {
    join_only(admin, consumer_id, None).await?;
    let owner = format!("/consumers/{consumer_id}");
    replace_plugins(admin, &owner, vec![block(consumer_id, SUSPENDED)]).await
}

/// Removes `plan`'s group (its plugins and memberships with it): the plan was deleted.
pub async fn forget(admin: &Router, plan: &Plan) -> Result<(), String> {
    let path = format!("/consumer_groups/{}", group_name(plan));
    let gone = call(admin, Method::DELETE, &path, Payload::None).await;
    match gone.status.is_success() || gone.status == StatusCode::NOT_FOUND {
        true => Ok(()),
        false => Err(gone.message()),
    }
}

/// The id of `plan`'s group, if it exists.
async fn group_id(admin: &Router, plan: &Plan) -> Result<Option<String>, String> {
    let path = format!("/consumer_groups/{}", group_name(plan));
    let found = call(admin, Method::GET, &path, Payload::None).await;
    match found.status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => Ok(found.body["id"].as_str().map(String::from)),
        _ => Err(found.message()),
    }
}

/// Makes (or keeps) `plan`'s group and gives it the plan's plugins for `published`; its id.
pub async fn sync_group(
    admin: &Router,
    plan: &Plan,
    published: &[String],
) -> Result<String, String> {
    let id = match group_id(admin, plan).await? {
        Some(id) => id,
        None => {
            let body = Payload::Json(json!({"name": group_name(plan), "tags": [TAG]}));
            let made = call(admin, Method::POST, "/consumer_groups", body).await;
            match made.body["id"]
                .as_str()
                .filter(|_| made.status.is_success())
            {
                Some(id) => id.to_string(),
                None => return Err(made.message()),
            }
        }
    };
    let plugins = plan_plugins(&id, plan, &allowed_services(plan, published));
    replace_plugins(admin, &format!("/consumer_groups/{id}"), plugins).await?;
    Ok(id)
}

/// Makes the consumer a member of plan group `group` alone (of none, for `None`).
async fn join_only(admin: &Router, consumer_id: &str, group: Option<&str>) -> Result<(), String> {
    let path = format!("/consumers/{consumer_id}/consumer_groups");
    let current = call(admin, Method::GET, &path, Payload::None).await;
    if !current.status.is_success() {
        return Err(current.message());
    }
    let mut member = false;
    for g in current.body["data"].as_array().into_iter().flatten() {
        let id = g["id"].as_str().unwrap_or_default();
        let ours = g["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("tollgate-plan-"));
        if Some(id) == group {
            member = true;
        } else if ours {
            let leave = format!("/consumer_groups/{id}/consumers/{consumer_id}");
            let left = call(admin, Method::DELETE, &leave, Payload::None).await;
            if !left.status.is_success() {
                return Err(left.message());
            }
        }
    }
    if let (Some(group), false) = (group, member) {
        let join = format!("/consumer_groups/{group}/consumers");
        let body = Payload::Json(json!({"consumer": consumer_id}));
        let joined = call(admin, Method::POST, &join, body).await;
        if !joined.status.is_success() {
            return Err(joined.message());
        }
    }
    Ok(())
}

/// Replaces the `tollgate-plan` plugins of `owner` (`/consumers/{c}` or
/// `/consumer_groups/{g}`) with `plugins` (admin API bodies).
async fn replace_plugins(admin: &Router, owner: &str, plugins: Vec<Value>) -> Result<(), String> {
    let listed = format!("{owner}/plugins?size=1000");
    let existing = call(admin, Method::GET, &listed, Payload::None).await;
    if !existing.status.is_success() {
        return Err(existing.message());
    }
    for p in existing.body["data"].as_array().into_iter().flatten() {
        let ours = p["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == TAG));
        if let (true, Some(id)) = (ours, p["id"].as_str()) {
            let path = format!("/plugins/{id}");
            let gone = call(admin, Method::DELETE, &path, Payload::None).await;
            if !gone.status.is_success() {
                return Err(gone.message());
            }
        }
    }
    for body in plugins {
        let made = call(admin, Method::POST, "/plugins", Payload::Json(body)).await;
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
    sync_group(admin, plan, &published).await?;
    sync_plan(admin, store, plan, &published).await
}

/// Re-applies every plan (after the set of published services changed).
pub async fn apply_all(admin: &Router, store: &Store) -> Result<(), String> {
    let published = published_services(store).await?;
    for plan in store.plans().await.map_err(|e| e.to_string())? {
        sync_group(admin, &plan, &published).await?;
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
    fn the_group_is_refused_everywhere_but_on_its_allowed_services() {
        let plugins = plan_plugins("g1", &plan(&["s1"], Some(2)), &["s1".into()]);
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
            .all(|p| p["consumer_group"]["id"] == "g1" && p["tags"][0] == TAG));
        assert_eq!(plugins[0]["config"]["status_code"], 403);
        let unlimited = plan_plugins("g1", &plan(&[], None), &["s1".into(), "s2".into()]);
        assert_eq!(unlimited.len(), 3, "a block and two passes, no limits");
    }
}
