//! How long the console's dashboard takes to gather and render with 1,000,000 requests in the
//! embedded analytics store, for each range it offers (target: under 300 ms each).
//! `cargo bench -p tollgate-portal --bench dashboard`
use std::time::{Duration, Instant};
use tollgate_analytics::sample::synthetic;
use tollgate_analytics::sink::embedded::Embedded;
use tollgate_analytics::sink::{Batch, Sink};
use tollgate_portal::console::dashboard::{load, render_html, Params};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --all-targets` builds this; only `cargo bench` runs it.
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Embedded::open(dir.path(), Duration::from_secs(30 * 86_400))
            .await
            .expect("store");
        let now = tollgate_analytics::unix_now();
        let end_us = now as u64 * 1_000_000;
        let started = Instant::now();
        for chunk in 0..100u64 {
            // 1,000,000 requests over the last 24 hours.
            let span = 86_400_000_000 / 100;
            let events = synthetic(10_000, end_us - 86_400_000_000 + (chunk + 1) * span, span);
            store
                .write(&Batch::new(&events), false)
                .await
                .expect("write");
        }
        println!(
            "stored 1,000,000 requests in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for range in ["15m", "1h", "24h", "7d"] {
            let params = Params::for_range(range);
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let data = load(&store, &params, now).await.expect("load");
                bytes = render_html(&params, data).len();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "dashboard {range}: {:.1} ms (median of 5), {bytes} bytes of HTML",
                times[2]
            );
        }
    });
}
