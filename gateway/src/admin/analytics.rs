//! `/analytics/*`: the analytics queries over HTTP, the same whichever store holds the events.
//!
//! Every endpoint takes `from` and `to` (Unix seconds; the last hour when left out) and the
//! optional filters `service`, `route`, `consumer` and `status_class` (2 … 5).
use super::error::ApiError;
use super::AdminState;
use crate::model::schema::FieldErrors;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use tollgate_analytics::query::{
    Filter, Point, Queries, RecentEvent, StatusCount, Summary, TopBy, TopEntry, STEPS,
};

/// The last second of the year 9999: times beyond it (or before 1970) are refused, not
/// multiplied into an overflow by the stores' microsecond columns.
const LAST_SECOND: i64 = 253_402_300_799;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct Params {
    /// Start, Unix seconds (default: an hour before `to`); summary and timeseries count the
    /// whole minute it falls in.
    #[param(minimum = 0, maximum = 253402300799_i64)]
    from: Option<i64>,
    /// End, Unix seconds, exclusive (default: now).
    #[param(minimum = 0, maximum = 253402300799_i64)]
    to: Option<i64>,
    service: Option<String>,
    route: Option<String>,
    consumer: Option<String>,
    /// 2, 3, 4 or 5.
    #[param(minimum = 2, maximum = 5)]
    status_class: Option<u8>,
    /// Time-series bucket in seconds: 60, 300 or 3600 (timeseries only).
    step: Option<i64>,
    /// `route`, `consumer` or `upstream` (top only).
    by: Option<TopBy>,
    /// Rows to return, 1 … 1000 (top and events).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

impl Params {
    fn filter(&self) -> Result<Filter, ApiError> {
        let mut errors = FieldErrors::default();
        let to = self
            .to
            .unwrap_or_else(|| tollgate_analytics::unix_now() + 1);
        let from = self.from.unwrap_or(to - 3600);
        for (name, t) in [("from", from), ("to", to)] {
            if !(0..=LAST_SECOND).contains(&t) {
                errors.add(name, format!("value should be between 0 and {LAST_SECOND}"));
            }
        }
        if from >= to {
            errors.add("from", "must be before 'to'");
        }
        if self.status_class.is_some_and(|c| !(2..=5).contains(&c)) {
            errors.add("status_class", "expected one of: 2, 3, 4, 5");
        }
        if self.step.is_some_and(|s| !STEPS.contains(&s)) {
            errors.add("step", "expected one of: 60, 300, 3600");
        }
        if self.limit.is_some_and(|l| !(1..=1000).contains(&l)) {
            errors.add("limit", "value should be between 1 and 1000");
        }
        errors.into_result()?;
        Ok(Filter {
            from,
            to,
            service: self.service.clone(),
            route: self.route.clone(),
            consumer: self.consumer.clone(),
            status_class: self.status_class,
        })
    }
}

fn store(st: &AdminState) -> Result<&dyn Queries, ApiError> {
    st.analytics
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("analytics are off (TOLLGATE_ANALYTICS=off)".into()))
}

fn failed(e: tollgate_analytics::query::QueryError) -> ApiError {
    tracing::warn!(error = %e, "analytics query failed");
    ApiError::Unavailable(e.to_string())
}

pub async fn summary(
    State(st): State<Arc<AdminState>>,
    Query(p): Query<Params>,
) -> Result<Json<Summary>, ApiError> {
    let f = p.filter()?;
    store(&st)?.summary(&f).await.map(Json).map_err(failed)
}

pub async fn timeseries(
    State(st): State<Arc<AdminState>>,
    Query(p): Query<Params>,
) -> Result<Json<Vec<Point>>, ApiError> {
    let f = p.filter()?;
    let step = p.step.unwrap_or(60);
    store(&st)?
        .timeseries(&f, step)
        .await
        .map(Json)
        .map_err(failed)
}

pub async fn status_codes(
    State(st): State<Arc<AdminState>>,
    Query(p): Query<Params>,
) -> Result<Json<Vec<StatusCount>>, ApiError> {
    let f = p.filter()?;
    store(&st)?.status_codes(&f).await.map(Json).map_err(failed)
}

pub async fn top(
    State(st): State<Arc<AdminState>>,
    Query(p): Query<Params>,
) -> Result<Json<Vec<TopEntry>>, ApiError> {
    let f = p.filter()?;
    let by = p.by.unwrap_or(TopBy::Route);
    store(&st)?
        .top(&f, by, p.limit.unwrap_or(10))
        .await
        .map(Json)
        .map_err(failed)
}

pub async fn events(
    State(st): State<Arc<AdminState>>,
    Query(p): Query<Params>,
) -> Result<Json<Vec<RecentEvent>>, ApiError> {
    let f = p.filter()?;
    store(&st)?
        .events(&f, p.limit.unwrap_or(100))
        .await
        .map(Json)
        .map_err(failed)
}
