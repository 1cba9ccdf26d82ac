//! Charts drawn on the server as SVG: requests per bucket stacked by status class with the
//! 429s marked on their own, and latency percentiles as lines. Axes carry units and a legend.
use leptos::prelude::*;
use tollgate_analytics::query::Point;

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;

fn clock(start: i64) -> String {
    let secs = start.rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// The frame: y ticks at 0, half and max with `unit`, and the first and last bucket's time.
fn axes(points: &[Point], max: f64, unit: &'static str) -> impl IntoView {
    let plot_h = H - BOTTOM;
    let ticks: Vec<(f64, String)> = [0.0, 0.5, 1.0]
        .iter()
        .map(|f| {
            let value = f * max;
            let label = if max < 10.0 {
                format!("{value:.1} {unit}")
            } else {
                format!("{value:.0} {unit}")
            };
            (plot_h - f * (plot_h - 8.0), label)
        })
        .collect();
    let first = points.first().map(|p| clock(p.start)).unwrap_or_default();
    let last = points.last().map(|p| clock(p.start)).unwrap_or_default();
    view! {
        <line x1=LEFT y1=plot_h x2=W y2=plot_h class="axis"/>
        {ticks
            .into_iter()
            .map(|(y, label)| view! {
                <line x1=LEFT y1=y x2=W y2=y class="grid"/>
                <text x=LEFT - 6.0 y=y + 4.0 text-anchor="end" class="tick">{label}</text>
            })
            .collect_view()}
        <text x=LEFT y=H - 6.0 class="tick">{first}</text>
        <text x=W y=H - 6.0 text-anchor="end" class="tick">{last}" UTC"</text>
    }
}

/// Requests per bucket, stacked 2xx/3xx/4xx/5xx, with a mark for the 429s in each bucket.
pub fn requests(points: &[Point]) -> impl IntoView {
    let max = points.iter().map(|p| p.requests).max().unwrap_or(0).max(1) as f64;
    let plot_h = H - BOTTOM - 8.0;
    let slot = (W - LEFT) / points.len().max(1) as f64;
    let bars: Vec<_> = points
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let x = LEFT + i as f64 * slot + 1.0;
            let mut base = H - BOTTOM;
            let mut out = Vec::new();
            for (n, class) in [
                (p.status_2xx, "s2"),
                (p.status_3xx, "s3"),
                (p.status_4xx - p.rate_limited.min(p.status_4xx), "s4"),
                (p.rate_limited, "s429"),
                (p.status_5xx, "s5"),
            ] {
                let h = n as f64 / max * plot_h;
                base -= h;
                out.push((x, base, h, class, format!("{} {n}", class_name(class))));
            }
            out
        })
        .filter(|b| b.2 > 0.0)
        .collect();
    let width = (slot - 2.0).max(1.0);
    view! {
        <svg viewBox=format!("0 0 {W} {H}") class="chart" role="img" aria-label="Requests over time by status">
            {axes(points, max, "req")}
            {bars
                .into_iter()
                .map(|(x, y, h, class, title)| view! {
                    <rect x=x y=y width=width height=h class=class><title>{title}</title></rect>
                })
                .collect_view()}
        </svg>
        <p class="legend">
            <span class="key s2">"2xx"</span><span class="key s3">"3xx"</span>
            <span class="key s4">"4xx"</span><span class="key s429">"429"</span><span class="key s5">"5xx"</span>
        </p>
    }
}

fn class_name(class: &str) -> &'static str {
    match class {
        "s2" => "2xx",
        "s3" => "3xx",
        "s4" => "4xx (not 429)",
        "s429" => "429",
        _ => "5xx",
    }
}

/// p50, p95 and p99 latency per bucket, as lines.
pub fn latency(points: &[Point]) -> impl IntoView {
    let max = points.iter().map(|p| p.p99_ms).fold(0.0, f64::max).max(1.0);
    let plot_h = H - BOTTOM - 8.0;
    let slot = (W - LEFT) / points.len().max(1) as f64;
    let line = |pick: fn(&Point) -> f64| -> String {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let x = LEFT + (i as f64 + 0.5) * slot;
                let y = H - BOTTOM - pick(p) / max * plot_h;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (p50, p95, p99) = (line(|p| p.p50_ms), line(|p| p.p95_ms), line(|p| p.p99_ms));
    view! {
        <svg viewBox=format!("0 0 {W} {H}") class="chart" role="img" aria-label="Latency percentiles over time">
            {axes(points, max, "ms")}
            <polyline points=p50 class="p50"/>
            <polyline points=p95 class="p95"/>
            <polyline points=p99 class="p99"/>
        </svg>
        <p class="legend">
            <span class="key p50">"p50"</span><span class="key p95">"p95"</span><span class="key p99">"p99"</span>
        </p>
    }
}
