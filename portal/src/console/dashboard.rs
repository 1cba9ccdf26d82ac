//! The console's front page: traffic, errors, 429s and latency for a time range, with
//! optional service, route and consumer filters, from the analytics queries.
use super::{chart, layout, ConsoleState, CurrentUser};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use leptos::prelude::*;
use serde::Deserialize;
use std::sync::Arc;
use tollgate_analytics::query::{Filter, Point, Queries, RecentEvent, Summary, TopBy, TopEntry};

const REFRESH_SECONDS: u32 = 10;

/// The ranges offered, with the bucket each is drawn in.
pub(crate) const RANGES: [(&str, &str, i64, i64); 4] = [
    ("15m", "Last 15 minutes", 900, 60),
    ("1h", "Last hour", 3600, 60),
    ("24h", "Last 24 hours", 86_400, 3600),
    ("7d", "Last 7 days", 604_800, 3600),
];

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    range: Option<String>,
    /// Reload every 10 s (`refresh=on`).
    refresh: Option<String>,
    service: Option<String>,
    route: Option<String>,
    consumer: Option<String>,
}

/// What the page shows, gathered before rendering.
pub struct Data {
    pub summary: Summary,
    pub series: Vec<Point>,
    pub routes: Vec<TopEntry>,
    pub consumers: Vec<TopEntry>,
    pub recent: Vec<RecentEvent>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Params {
    /// The unfiltered dashboard for one of the offered ranges (`15m`, `1h`, `24h`, `7d`).
    pub fn for_range(range: &str) -> Params {
        Params {
            range: Some(range.to_string()),
            ..Params::default()
        }
    }

    /// One consumer's traffic (by username) over one of the offered ranges.
    pub fn for_consumer(range: &str, consumer: &str) -> Params {
        Params {
            range: Some(range.to_string()),
            consumer: Some(consumer.to_string()),
            ..Params::default()
        }
    }

    /// The range's name (`1h`) and label (`Last hour`).
    pub fn range_label(&self) -> (&'static str, &'static str) {
        let (name, label, _, _) = self.range();
        (name, label)
    }

    fn range(&self) -> (&'static str, &'static str, i64, i64) {
        let wanted = self.range.as_deref().unwrap_or("1h");
        RANGES
            .into_iter()
            .find(|r| r.0 == wanted)
            .unwrap_or(RANGES[1])
    }

    pub fn filter(&self, now: i64) -> Filter {
        let (_, _, span, _) = self.range();
        Filter {
            from: now - span,
            to: now + 1,
            service: non_empty(&self.service),
            route: non_empty(&self.route),
            consumer: non_empty(&self.consumer),
            status_class: None,
        }
    }
}

pub async fn load(q: &dyn Queries, p: &Params, now: i64) -> Result<Data, String> {
    let f = p.filter(now);
    let (_, _, _, step) = p.range();
    let e = |e: tollgate_analytics::query::QueryError| e.to_string();
    Ok(Data {
        summary: q.summary(&f).await.map_err(e)?,
        series: every_bucket(q.timeseries(&f, step).await.map_err(e)?, &f, step),
        routes: q.top(&f, TopBy::Route, 10).await.map_err(e)?,
        consumers: q.top(&f, TopBy::Consumer, 10).await.map_err(e)?,
        recent: q.events(&f, 20).await.map_err(e)?,
    })
}

/// The series with a zero point for each bucket without traffic, so the time axis spans the
/// whole range.
fn every_bucket(series: Vec<Point>, f: &Filter, step: i64) -> Vec<Point> {
    let mut known: std::collections::BTreeMap<i64, Point> =
        series.into_iter().map(|p| (p.start, p)).collect();
    let first = f.from - f.from.rem_euclid(step);
    (0..)
        .map(|i| first + i * step)
        .take_while(|start| *start < f.to)
        .map(|start| {
            known.remove(&start).unwrap_or(Point {
                start,
                ..Point::default()
            })
        })
        .collect()
}

pub async fn show(
    State(st): State<Arc<ConsoleState>>,
    Extension(user): Extension<CurrentUser>,
    Query(p): Query<Params>,
) -> Response {
    let Some(queries) = st.analytics.as_deref() else {
        let body = view! { <p class="empty">"Analytics are off (TOLLGATE_ANALYTICS=off): there is nothing to show."</p> };
        return Html(layout::page("Dashboard", &user.0, body)).into_response();
    };
    let now = tollgate_analytics::unix_now();
    match load(queries, &p, now).await {
        Ok(data) => {
            let refresh = p.refresh.is_some().then_some(REFRESH_SECONDS);
            let page = layout::page_refreshing("Dashboard", &user.0, refresh, render(&p, data));
            Html(page).into_response()
        }
        Err(e) => {
            let body = view! { <p class="error">"The analytics store did not answer: " {e}</p> };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html(layout::page("Dashboard", &user.0, body)),
            )
                .into_response()
        }
    }
}

fn filters(p: &Params) -> impl IntoView {
    let (current, _, _, _) = p.range();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let (service, route, consumer) = (value(&p.service), value(&p.route), value(&p.consumer));
    let refresh = p.refresh.is_some();
    view! {
        <form method="get" action="/" class="filters">
            <label>"Range "
                <select name="range">
                    {RANGES.iter().map(|(key, label, _, _)| view! {
                        <option value=*key selected=*key == current>{*label}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>"Service " <input name="service" value=service/></label>
            <label>"Route " <input name="route" value=route/></label>
            <label>"Consumer " <input name="consumer" value=consumer/></label>
            <label class="check"><input type="checkbox" name="refresh" value="on" checked=refresh/>" Refresh every 10 s"</label>
            <button type="submit">"Show"</button>
        </form>
    }
}

pub(crate) fn totals(s: &Summary) -> impl IntoView {
    let percent = |n: u64| {
        if s.requests == 0 {
            0.0
        } else {
            n as f64 * 100.0 / s.requests as f64
        }
    };
    let rate = percent(s.server_errors + s.client_errors);
    let hit_ratio = percent(s.cache_hits);
    let cards = [
        ("Requests", s.requests.to_string()),
        ("Error rate", format!("{rate:.1} %")),
        ("429s", s.rate_limited.to_string()),
        ("Auth failures", s.auth_failed.to_string()),
        ("Cache hits", format!("{} ({hit_ratio:.1} %)", s.cache_hits)),
        (
            "p50 / p95 / p99",
            format!("{:.1} / {:.1} / {:.1} ms", s.p50_ms, s.p95_ms, s.p99_ms),
        ),
    ];
    view! {
        <section class="totals">
            {cards.into_iter().map(|(label, value)| view! {
                <div class="card"><span class="label">{label}</span><span class="value">{value}</span></div>
            }).collect_view()}
        </section>
    }
}

pub(crate) fn top_table(title: &'static str, rows: Vec<TopEntry>) -> impl IntoView {
    view! {
        <section class="panel">
            <h2>{title}</h2>
            <table>
                <thead><tr><th>"Name"</th><th class="num">"Requests"</th><th class="num">"Errors"</th><th class="num">"429s"</th><th class="num">"p95 ms"</th></tr></thead>
                <tbody>
                    {rows.into_iter().map(|r| view! {
                        <tr>
                            <td>{if r.name.is_empty() { "(none)".to_string() } else { r.name }}</td>
                            <td class="num">{r.requests}</td><td class="num">{r.errors}</td>
                            <td class="num">{r.rate_limited}</td><td class="num">{format!("{:.1}", r.p95_ms)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

pub(crate) fn recent_table(rows: Vec<RecentEvent>) -> impl IntoView {
    view! {
        <section class="panel wide">
            <h2>"Recent requests"</h2>
            <table>
                <thead><tr><th>"Time (UTC)"</th><th>"Method"</th><th>"Path"</th><th>"Route"</th><th>"Consumer"</th><th class="num">"Status"</th><th class="num">"ms"</th></tr></thead>
                <tbody>
                    {rows.into_iter().map(|e| {
                        let secs = (e.timestamp_us / 1_000_000) as i64;
                        let at = format!("{:02}:{:02}:{:02}", secs.rem_euclid(86_400) / 3600, secs % 3600 / 60, secs % 60);
                        let class = format!("status s{}", e.status / 100);
                        view! {
                            <tr>
                                <td>{at}</td><td>{e.method}</td><td class="path">{e.path}</td><td>{e.route}</td>
                                <td>{e.consumer}</td><td class=class>{e.status}</td><td class="num">{format!("{:.1}", e.latency_ms)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// The page's content as HTML (what `show` puts in the console's layout).
pub fn render_html(p: &Params, d: Data) -> String {
    render(p, d).to_html()
}

fn render(p: &Params, d: Data) -> impl IntoView + 'static {
    let (_, label, _, _) = p.range();
    let empty = d.summary.requests == 0;
    let body = (!empty).then(|| {
        view! {
            {totals(&d.summary)}
            <section class="panel wide"><h2>"Requests by status"</h2>{chart::requests(&d.series)}</section>
            <section class="panel wide"><h2>"Latency"</h2>{chart::latency(&d.series)}</section>
            {top_table("Top routes", d.routes)}
            {top_table("Top consumers", d.consumers)}
            {recent_table(d.recent)}
        }
    });
    view! {
        {filters(p)}
        <p class="range">{label}</p>
        {empty.then(|| view! { <p class="empty">"No traffic yet in this range. Requests through the proxy show up here within a few seconds."</p> })}
        <div class="grid">{body}</div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_covers_the_range_bucket_by_bucket() {
        let f = Filter {
            from: 1000,
            to: 1300,
            ..Filter::default()
        };
        let busy = Point {
            start: 1080,
            requests: 5,
            ..Point::default()
        };
        let filled = every_bucket(vec![busy.clone()], &f, 60);
        let starts: Vec<i64> = filled.iter().map(|p| p.start).collect();
        assert_eq!(starts, [960, 1020, 1080, 1140, 1200, 1260]);
        assert_eq!(filled[2], busy);
        assert_eq!(filled[0].requests, 0);
    }

    #[test]
    fn unknown_ranges_fall_back_to_the_last_hour() {
        let p = Params {
            range: Some("1y".into()),
            ..Params::default()
        };
        let f = p.filter(10_000);
        assert_eq!((f.from, f.to), (10_000 - 3600, 10_001));
        let p = Params {
            range: Some("7d".into()),
            consumer: Some("  ".into()),
            ..Params::default()
        };
        assert_eq!(p.filter(10_000_000).consumer, None);
    }
}
