//! An application's usage, for its owner only: requests, errors, 429s and latency over a
//! range, from the same analytics queries the console's dashboard uses.
use super::applications::{consumer_username, owned};
use super::layout::{respond, unavailable};
use super::{PortalState, Visitor};
use crate::console::chart;
use crate::console::dashboard::{self, Params, RANGES};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use leptos::prelude::*;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

pub async fn show(
    State(st): State<Arc<PortalState>>,
    Extension(visitor): Extension<Visitor>,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let app = match owned(&st, &visitor, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(queries) = st.analytics.as_ref() else {
        return respond(
            StatusCode::OK,
            "Usage",
            &visitor,
            view! { <p class="empty">"Analytics are off on this gateway, so there is no usage to show."</p> },
        );
    };
    let params = Params::for_consumer(
        q.range.as_deref().unwrap_or("1h"),
        &consumer_username(&app.consumer_id),
    );
    let data =
        match dashboard::load(queries.as_ref(), &params, tollgate_analytics::unix_now()).await {
            Ok(d) => d,
            Err(e) => return unavailable(&visitor, e),
        };
    let (current, label) = params.range_label();
    let ranges = RANGES
        .iter()
        .map(|(name, text, _, _)| {
            let href = format!("/apps/{}/usage?range={name}", app.consumer_id);
            view! { <a class="version" class:current=*name == current href=href>{*text}</a> }
        })
        .collect_view();
    let back = format!("/apps/{}", app.consumer_id);
    let body = if data.summary.requests == 0 {
        view! { <p class="empty">"No requests with this application's keys in this range yet. They show up here within a few seconds."</p> }.into_any()
    } else {
        view! {
            <div class="grid">
                {dashboard::totals(&data.summary)}
                <section class="panel wide"><h2>"Requests by status"</h2>{chart::requests(&data.series)}</section>
                <section class="panel wide"><h2>"Latency"</h2>{chart::latency(&data.series)}</section>
                {dashboard::top_table("Top routes", data.routes)}
                {dashboard::recent_table(data.recent)}
            </div>
        }.into_any()
    };
    respond(
        StatusCode::OK,
        &format!("Usage of {}", app.name),
        &visitor,
        view! {
            <p><a href=back>"Back to the application"</a></p>
            <p class="doc-links">{ranges}</p>
            <p class="range">{label}</p>
            {body}
        },
    )
}
