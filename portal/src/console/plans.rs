//! The portal's plans, for operators: a name, request limits per second, minute, hour and
//! day, and the services they cover (none: every service). Saving a plan re-applies it to
//! every application on it, as rate-limiting plugins on their consumers.
use super::{layout, ConsoleState, CurrentUser};
use crate::developer::credentials;
use crate::plans;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use leptos::prelude::*;
use std::sync::Arc;
use tollgate_gateway::model::Kind;
use tollgate_gateway::store::portal::{default_credentials, Plan, PlanLimits, CREDENTIALS};
use tollgate_gateway::store::{ListQuery, StoreError};

const WINDOWS: [&str; 4] = ["second", "minute", "hour", "day"];

/// Services as (id, name) for the form's checkboxes.
async fn services(st: &ConsoleState) -> Vec<(String, String)> {
    let q = ListQuery {
        size: 1000,
        ..ListQuery::default()
    };
    let page = st
        .store
        .list(Kind::Service, &q)
        .await
        .map(|p| p.data)
        .unwrap_or_default();
    page.iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            let name = s["name"].as_str().map_or(id.clone(), String::from);
            (id, name)
        })
        .collect()
}

fn limit(limits: &PlanLimits, window: &str) -> Option<u64> {
    match window {
        "second" => limits.second,
        "minute" => limits.minute,
        "hour" => limits.hour,
        _ => limits.day,
    }
}

fn plan_form(
    action: String,
    plan: &Plan,
    services: &[(String, String)],
    error: Option<String>,
    button: &'static str,
) -> impl IntoView {
    let limits = WINDOWS.iter().map(|w| {
        let value = limit(&plan.limits, w).map(|n| n.to_string()).unwrap_or_default();
        view! { <label class="field"><span>{format!("Requests per {w}")}</span><input name=*w value=value inputmode="numeric"/></label> }
    }).collect_view();
    let boxes = services.iter().map(|(id, name)| {
        let checked = plan.services.contains(id);
        view! { <label class="check"><input type="checkbox" name="service" value=id.clone() checked=checked/>{name.clone()}</label> }
    }).collect_view();
    let credentials = CREDENTIALS.iter().map(|c| {
        let checked = plan.credentials.iter().any(|p| p == c);
        view! { <label class="check"><input type="checkbox" name="credential" value=*c checked=checked/>{credentials::label(c)}</label> }
    }).collect_view();
    view! {
        <form method="post" action=action class="entity">
            {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <label class="field"><span>"Name"</span><input name="name" value=plan.name.clone() required/></label>
            {limits}
            <fieldset class="field"><legend>"Services (none ticked: every published API)"</legend>{boxes}</fieldset>
            <fieldset class="field"><legend>"Credentials applications may use (none ticked: API keys)"</legend>{credentials}</fieldset>
            <button type="submit">{button}</button>
        </form>
    }
}

/// The plan a form describes, or what is wrong with it.
fn parse(pairs: &[(String, String)], id: String, created_at: i64) -> Result<Plan, String> {
    let value = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let name = value("name").unwrap_or_default();
    if name.is_empty() || name.chars().count() > 64 {
        return Err("name: 1 to 64 characters".into());
    }
    let mut limits = PlanLimits::default();
    for w in WINDOWS {
        let parsed = match value(w).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("{w}: a whole number above 0, or empty"))?,
            ),
        };
        match w {
            "second" => limits.second = parsed,
            "minute" => limits.minute = parsed,
            "hour" => limits.hour = parsed,
            _ => limits.day = parsed,
        }
    }
    let ticked = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut credentials = ticked("credential");
    if credentials.is_empty() {
        credentials = default_credentials();
    }
    if let Some(c) = credentials
        .iter()
        .find(|c| !CREDENTIALS.contains(&c.as_str()))
    {
        return Err(format!("credentials: '{c}' is not one offered"));
    }
    Ok(Plan {
        id,
        name,
        limits,
        services: ticked("service"),
        credentials,
        created_at,
    })
}

pub async fn list(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
) -> Response {
    render_list(&st, &user, StatusCode::OK, None).await
}

async fn render_list(
    st: &ConsoleState,
    user: &CurrentUser,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let plans = match st.store.plans().await {
        Ok(p) => p,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let services = services(st).await;
    let service_names = |ids: &[String]| {
        if ids.is_empty() {
            return "every published API".to_string();
        }
        ids.iter()
            .map(|id| {
                services
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or(id.clone(), |(_, n)| n.clone())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = plans.iter().map(|p| {
        let edit = format!("/plans/{}/edit", p.id);
        let delete = format!("/plans/{}/delete", p.id);
        view! {
            <tr><td>{p.name.clone()}</td><td>{plans::limits_text(p)}</td><td>{service_names(&p.services)}</td>
                <td class="actions"><a href=edit>"Edit"</a>
                    <form method="post" action=delete class="inline"><button type="submit" class="danger">"Delete"</button></form></td></tr>
        }
    }).collect_view();
    let blank = Plan {
        id: String::new(),
        name: String::new(),
        limits: PlanLimits::default(),
        services: vec![],
        credentials: default_credentials(),
        created_at: 0,
    };
    let body = view! {
        <section class="panel wide">
            <table><thead><tr><th>"Plan"</th><th>"Limits"</th><th>"Services"</th><th></th></tr></thead><tbody>{rows}</tbody></table>
        </section>
        <section class="panel wide"><h2>"New plan"</h2>{plan_form("/plans".into(), &blank, &services, error, "Create plan")}</section>
    };
    (status, Html(layout::page("Plans", &user.0, body))).into_response()
}

pub async fn create(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let plan = match parse(
        &pairs,
        uuid::Uuid::new_v4().to_string(),
        tollgate_analytics::unix_now(),
    ) {
        Ok(p) => p,
        Err(e) => return render_list(&st, &user, StatusCode::BAD_REQUEST, Some(e)).await,
    };
    match st.store.save_plan(&plan).await {
        Ok(()) => Redirect::to("/plans").into_response(),
        Err(StoreError::Unique { .. }) => {
            render_list(
                &st,
                &user,
                StatusCode::CONFLICT,
                Some(format!("name: a plan called “{}” exists", plan.name)),
            )
            .await
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn render_edit(
    st: &ConsoleState,
    user: &CurrentUser,
    plan: &Plan,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let services = services(st).await;
    let action = format!("/plans/{}/edit", plan.id);
    let body = view! {
        <p class="hint">"Saving applies the plan's limits to every application on it."</p>
        <section class="panel wide">{plan_form(action, plan, &services, error, "Save plan")}</section>
    };
    (
        status,
        Html(layout::page(&format!("Plan {}", plan.name), &user.0, body)),
    )
        .into_response()
}

pub async fn edit_form(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    match st.store.plan(&id).await {
        Ok(Some(p)) => render_edit(&st, &user, &p, StatusCode::OK, None).await,
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

pub async fn update(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let existing = match st.store.plan(&id).await {
        Ok(Some(p)) => p,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let plan = match parse(&pairs, existing.id.clone(), existing.created_at) {
        Ok(p) => p,
        Err(e) => {
            return render_edit(&st, &user, &existing, StatusCode::BAD_REQUEST, Some(e)).await
        }
    };
    match st.store.save_plan(&plan).await {
        Ok(()) => {}
        Err(StoreError::Unique { .. }) => {
            return render_edit(
                &st,
                &user,
                &existing,
                StatusCode::CONFLICT,
                Some(format!("name: a plan called “{}” exists", plan.name)),
            )
            .await
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
    match plans::apply_to_applications(&st.admin, &st.store, &plan).await {
        Ok(_) => Redirect::to("/plans").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the plan is saved but not yet applied to every application: {e}"),
        )
            .into_response(),
    }
}

pub async fn delete(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    let plan = match st.store.plan(&id).await {
        Ok(plan) => plan,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    match st.store.delete_plan(&id).await {
        Ok(()) | Err(StoreError::NotFound) => {
            if let Some(plan) = plan {
                if let Err(e) = plans::forget(&st.admin, &plan).await {
                    return (StatusCode::SERVICE_UNAVAILABLE, e).into_response();
                }
            }
            Redirect::to("/plans").into_response()
        }
        Err(StoreError::Referenced { .. }) => {
            render_list(
                &st,
                &user,
                StatusCode::CONFLICT,
                Some("This plan has applications on it: move or delete them first.".into()),
            )
            .await
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_form_becomes_a_plan_or_a_field_error() {
        let p = parse(
            &pairs(&[
                ("name", "Free"),
                ("second", "2"),
                ("day", ""),
                ("service", "s1"),
                ("service", "s2"),
            ]),
            "id".into(),
            1,
        )
        .unwrap();
        assert_eq!(
            p.limits,
            PlanLimits {
                second: Some(2),
                ..PlanLimits::default()
            }
        );
        assert_eq!(p.services, ["s1", "s2"]);
        assert_eq!(
            parse(&pairs(&[("name", "x"), ("minute", "0")]), "id".into(), 1).unwrap_err(),
            "minute: a whole number above 0, or empty"
        );
        assert_eq!(
            parse(&pairs(&[("name", " ")]), "id".into(), 1).unwrap_err(),
            "name: 1 to 64 characters"
        );
    }
}
