//! The questions every dashboard asks, answered the same way by ClickHouse and the embedded
//! store: a summary, a time series, status codes, top routes and consumers, recent requests.
//! The console, the portal and the admin API's `/analytics/*` all go through `Queries`.
pub mod aggregate;
pub mod clickhouse;
pub mod embedded;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// Which requests a question is about. Times are Unix seconds, `[from, to)`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
pub struct Filter {
    pub from: i64,
    pub to: i64,
    pub service: Option<String>,
    pub route: Option<String>,
    pub consumer: Option<String>,
    /// 2, 3, 4 or 5 for 2xx … 5xx.
    pub status_class: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub requests: u64,
    /// Responses with a 5xx status.
    pub server_errors: u64,
    /// Responses with a 4xx status (429s and 401s included).
    pub client_errors: u64,
    pub rate_limited: u64,
    pub auth_failed: u64,
    /// Answered from proxy-cache's store, without the upstream.
    pub cache_hits: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Summary {
    /// Adds `requests` answered with `status`, of which `rate_limited` were refused by a limit
    /// and `auth_failed` by authentication.
    pub fn count(&mut self, status: u16, requests: u64, rate_limited: u64, auth_failed: u64) {
        self.requests += requests;
        match status / 100 {
            5 => self.server_errors += requests,
            4 => self.client_errors += requests,
            _ => {}
        }
        self.rate_limited += rate_limited;
        self.auth_failed += auth_failed;
    }
}

/// One bucket of a time series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Bucket start, Unix seconds.
    pub start: i64,
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub rate_limited: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Point {
    /// Adds `requests` answered with `status` (and `rate_limited` of them refused by a limit).
    pub fn count(&mut self, status: u16, requests: u64, rate_limited: u64) {
        self.requests += requests;
        self.rate_limited += rate_limited;
        match status / 100 {
            2 => self.status_2xx += requests,
            3 => self.status_3xx += requests,
            4 => self.status_4xx += requests,
            5 => self.status_5xx += requests,
            _ => {}
        }
    }

    /// Adds `other`'s counts (not its start or percentiles).
    pub fn add(&mut self, other: &Point) {
        self.requests += other.requests;
        self.status_2xx += other.status_2xx;
        self.status_3xx += other.status_3xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.rate_limited += other.rate_limited;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatusCount {
    pub status: u16,
    pub requests: u64,
}

/// A route or consumer and its traffic.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TopEntry {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub p95_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TopBy {
    Route,
    Consumer,
    /// The upstream target (`host:port`) that served the requests.
    Upstream,
}

/// One recent request, for a log view.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecentEvent {
    pub timestamp_us: u64,
    pub request_id: String,
    pub service: String,
    pub route: String,
    pub consumer: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: f64,
    pub client_ip: String,
}

#[derive(Debug, thiserror::Error)]
#[error("analytics query failed: {0}")]
pub struct QueryError(pub String);

pub type QueryFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueryError>> + Send + 'a>>;

/// Time-series bucket sizes the stores support.
pub const STEPS: [i64; 3] = [60, 300, 3600];

pub trait Queries: Send + Sync {
    fn summary<'a>(&'a self, f: &'a Filter) -> QueryFuture<'a, Summary>;
    /// Buckets of `step` seconds (one of `STEPS`), oldest first; empty buckets left out.
    fn timeseries<'a>(&'a self, f: &'a Filter, step: i64) -> QueryFuture<'a, Vec<Point>>;
    /// Requests by status code, most frequent first.
    fn status_codes<'a>(&'a self, f: &'a Filter) -> QueryFuture<'a, Vec<StatusCount>>;
    /// The busiest routes, consumers or upstream targets, busiest first.
    fn top<'a>(&'a self, f: &'a Filter, by: TopBy, limit: usize) -> QueryFuture<'a, Vec<TopEntry>>;
    /// The latest requests, newest first.
    fn events<'a>(&'a self, f: &'a Filter, limit: usize) -> QueryFuture<'a, Vec<RecentEvent>>;
}
