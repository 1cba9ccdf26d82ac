//! Analytics benchmarks: events/s the pipeline delivers into ClickHouse, and how long the
//! summary and time-series queries take over 10 million events (ClickHouse) and 24 hours of
//! rollups (embedded). Needs a ClickHouse server: `TOLLGATE_BENCH_CLICKHOUSE_URL`
//! (deploy/bench/analytics.sh starts one and runs `cargo bench -p tollgate-analytics`).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_analytics::pipeline::{self, Config};
use tollgate_analytics::query::{Filter, Queries};
use tollgate_analytics::sample::synthetic;
use tollgate_analytics::sink::clickhouse::{ClickHouse, Validation};
use tollgate_analytics::sink::embedded::Embedded;
use tollgate_analytics::sink::{Batch, Sink};

/// The gateway's allocator (src/main.rs), so that the queries are timed as the gateway runs
/// them: with the system's, the embedded 1-minute series took 70 ms instead of 52 ms.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_US: u64 = 86_400 * 1_000_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --all-targets` builds this; only `cargo bench` runs it.
    }
    let Ok(url) = std::env::var("TOLLGATE_BENCH_CLICKHOUSE_URL") else {
        println!("skipped: set TOLLGATE_BENCH_CLICKHOUSE_URL (deploy/bench/analytics.sh does)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        pipeline_throughput(&url).await;
        clickhouse_queries(&url).await;
        embedded_queries().await;
    });
}

fn now_us() -> u64 {
    tollgate_analytics::unix_now() as u64 * 1_000_000
}

async fn pipeline_throughput(url: &str) {
    let n = 1_000_000u64;
    let sink = Arc::new(ClickHouse::new(url, "bench_pipeline", Validation::Auto).expect("sink"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        batch_size: 10_000,
        flush_interval: Duration::from_millis(200),
        queue_capacity: 100_000,
        durability: pipeline::Durability::Batch,
    };
    let (recorder, pipeline) = pipeline::start(config, sink, dir.path()).expect("pipeline");
    let metrics = recorder.metrics.clone();
    let task = tokio::spawn(pipeline.run());
    let events = synthetic(n, now_us(), 3_600_000_000);
    let started = Instant::now();
    for e in &events {
        while metrics.queued() >= 90_000 {
            tokio::task::yield_now().await;
        }
        recorder.record(e);
    }
    recorder.hand_over();
    drop(recorder);
    task.await.expect("pipeline task");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pipeline into ClickHouse: {n} events in {secs:.2} s = {:.0} events/s (batches of 10,000; dropped {}, spilled {})",
        n as f64 / secs,
        metrics.dropped.load(Ordering::Relaxed),
        metrics.spilled.load(Ordering::Relaxed)
    );
}

/// Median of five runs of `f`, in milliseconds.
async fn timed<F, Fut>(mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[2]
}

async fn report(name: &str, store: &dyn Queries, f: &Filter) {
    let summary = timed(|| async {
        store.summary(f).await.expect("summary");
    })
    .await;
    let series = timed(|| async {
        store.timeseries(f, 60).await.expect("timeseries");
    })
    .await;
    let s = store.summary(f).await.expect("summary");
    println!(
        "{name}: {} requests; summary {summary:.1} ms, 1-minute time series {series:.1} ms (median of 5)",
        s.requests
    );
}

async fn clickhouse_queries(url: &str) {
    let store = ClickHouse::new(url, "bench_queries", Validation::Auto).expect("sink");
    let started = Instant::now();
    let day = fill_day(&store).await;
    println!(
        "ClickHouse: 10,000,000 events over 24 h inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    merged(&store).await;
    report("ClickHouse, 10 M events over 24 h", &store, &day).await;
    // The embedded store's queries come next, on the same cores.
    merged(&store).await;
}

/// Waits (up to two minutes) until the server has merged what was inserted: queries are timed
/// against a settled table, and not while merges take the cores.
async fn merged(store: &ClickHouse) {
    let client = store.client().await.expect("client");
    // Merges start within a second of the inserts that call for them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..240 {
        let running: u64 = client
            .query("SELECT toUInt64(count()) FROM system.merges")
            .fetch_one()
            .await
            .expect("system.merges");
        if running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn embedded_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Embedded::open(dir.path(), Duration::from_secs(7 * 86_400))
        .await
        .expect("embedded");
    let day = fill_day(&store).await;
    report("embedded, 24 h of rollups (10 M events)", &store, &day).await;
}

/// Writes 10,000,000 synthetic events over the last 24 hours, in batches of 100,000;
/// returns the filter for that day.
async fn fill_day(store: &dyn Sink) -> Filter {
    let end = now_us();
    for chunk in 0..100 {
        let events = synthetic(
            100_000,
            end - DAY_US + (chunk + 1) * DAY_US / 100,
            DAY_US / 100,
        );
        store
            .write(&Batch::new(&events), false)
            .await
            .expect("write");
    }
    Filter {
        from: (end / 1_000_000) as i64 - 86_400,
        to: (end / 1_000_000) as i64 + 1,
        ..Filter::default()
    }
}
