//! The analytics pipeline end to end: the real binary, a real backend and a real ClickHouse
//! server (Debian's 18.16), with the server stopped and the gateway killed along the way.
mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};
use tollgate_analytics::sink::clickhouse::{ClickHouse, Validation};
use tollgate_analytics::sink::{Batch, Sink};

const ANN: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
const BOB: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

/// A DB-less gateway config: key-auth on the route, and a yearly limit of 7,000 for ann.
fn config(backend: &Backend) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: pytbak
    url: http://127.0.0.1:{}
    routes:
      - name: api
        paths: [/api/]
        strip_path: false
    plugins:
      - name: key-auth
consumers:
  - username: ann
    keyauth_credentials: [{{key: {ANN}}}]
    plugins:
      - name: rate-limiting
        config: {{year: 7000}}
  - username: bob
    keyauth_credentials: [{{key: {BOB}}}]
"#,
        backend.port
    )
}

/// A gateway sending its events to `ch`, compressed as `compression` says (`none` or `lz4`).
async fn gateway(
    dir: &std::path::Path,
    backend: &Backend,
    ch: &ClickHouseServer,
    compression: &str,
) -> Gateway {
    let file = dir.join("kong.yaml");
    std::fs::write(&file, config(backend)).unwrap();
    let url = ch.url("");
    let file = file.to_str().unwrap().to_string();
    Gateway::start_in(
        &[
            ("TOLLGATE_DATABASE", "off"),
            ("TOLLGATE_DECLARATIVE_CONFIG", &file),
            ("TOLLGATE_ANALYTICS", "clickhouse"),
            ("TOLLGATE_CLICKHOUSE_URL", &url),
            ("TOLLGATE_CLICKHOUSE_DATABASE", "tollgate_test"),
            ("TOLLGATE_CLICKHOUSE_COMPRESSION", compression),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "200"),
        ],
        dir.to_path_buf(),
        None,
    )
    .await
}

/// Sends `n` GETs over `connections` keep-alive connections; returns each status and the
/// median latency.
async fn fire(
    gw: &Gateway,
    key: Option<&'static str>,
    n: usize,
    connections: usize,
) -> (Vec<u16>, Duration) {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let url = gw.proxy_url("/api/get/context");
        let count = n / connections + usize::from(c < n % connections);
        tasks.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut out = Vec::new();
            for _ in 0..count {
                let mut req = http::Request::get(&url);
                if let Some(k) = key {
                    req = req.header("apikey", k);
                }
                let started = Instant::now();
                let resp = client
                    .request(req.body(Full::default()).unwrap())
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                resp.into_body().collect().await.unwrap();
                out.push((status, started.elapsed()));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let mut times: Vec<Duration> = all.iter().map(|a| a.1).collect();
    times.sort();
    (all.iter().map(|a| a.0).collect(), times[times.len() / 2])
}

/// Polls until the events table holds `n` rows, for up to `within`.
async fn wait_for_events(ch: &ClickHouseServer, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let got = try_send(
            "POST",
            &ch.url("/"),
            &[],
            Some((
                "text/plain",
                "SELECT count() FROM tollgate_test.events".into(),
            )),
        )
        .await
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| r.body.trim().parse().ok())
        .unwrap_or(0);
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_reaches_clickhouse_once_across_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut ch) = ClickHouseServer::start(&dir.path().join("ch")).await else {
        return;
    };
    let backend = Backend::start().await;
    let gw = gateway(dir.path(), &backend, &ch, "none").await;

    // 10,000 requests: ann 8,000 (7,000 pass, 1,000 limited), bob 1,500, 500 without a key.
    let (ann, _) = fire(&gw, Some(ANN), 8000, 8).await;
    let (bob, before) = fire(&gw, Some(BOB), 1500, 8).await;
    let (none, _) = fire(&gw, None, 500, 4).await;
    assert_eq!(ann.iter().filter(|s| **s == 429).count(), 1000);
    assert!(bob.iter().all(|s| *s == 200) && none.iter().all(|s| *s == 401));
    assert_eq!(
        wait_for_events(&ch, 10_000, Duration::from_secs(20)).await,
        10_000
    );
    let by = ch
        .query(
            "SELECT consumer, status, rate_limited, auth_failed, count() FROM tollgate_test.events \
             GROUP BY consumer, status, rate_limited, auth_failed ORDER BY consumer, status FORMAT TSV",
        )
        .await;
    assert_eq!(
        by,
        "\t401\t0\t1\t500\nann\t200\t0\t0\t7000\nann\t429\t1\t0\t1000\nbob\t200\t0\t0\t1500"
    );

    // ClickHouse goes away: the proxy does not slow down, and nothing is lost.
    ch.stop();
    let (during, outage) = fire(&gw, Some(BOB), 5000, 8).await;
    assert!(during.iter().all(|s| *s == 200));
    assert!(
        outage < before * 2 + Duration::from_millis(2),
        "median latency {outage:?} while ClickHouse was down, {before:?} before"
    );
    ch.restart().await;
    assert_eq!(
        wait_for_events(&ch, 15_000, Duration::from_secs(30)).await,
        15_000
    );
    let unique = ch
        .query("SELECT uniqExact(request_id), count() FROM tollgate_test.events FORMAT TSV")
        .await;
    assert_eq!(unique, "15000\t15000", "no duplicates");
    let rollup = ch
        .query("SELECT countMerge(requests) FROM tollgate_test.events_minute FORMAT TSV")
        .await;
    assert_eq!(rollup, "15000");
    // Everything spilled during the outage was replayed (events still being batched when
    // ClickHouse came back went straight to it); the pipeline counts a replayed batch once
    // ClickHouse acknowledged it, a moment after the rows are visible.
    let metrics_url = format!("http://127.0.0.1:{}/metrics", gw.status);
    let counter = |body: &str, name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let m = send("GET", &metrics_url, &[], None).await;
        let flushed = counter(&m.body, "tollgate_analytics_events_flushed_total ");
        if flushed == 15_000 || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spilled = counter(&metrics.body, "tollgate_analytics_events_spilled_total ");
    assert!(spilled > 4000, "{}", metrics.body);
    assert_eq!(
        counter(&metrics.body, "tollgate_analytics_events_replayed_total "),
        spilled
    );
    assert_eq!(
        counter(&metrics.body, "tollgate_analytics_events_flushed_total "),
        15_000
    );
    assert!(metrics
        .body
        .contains("tollgate_analytics_events_dropped_total 0"));

    // The same numbers through the admin API.
    let summary = send("GET", &gw.admin_url("/analytics/summary"), &[], None).await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    let j = &summary.json;
    assert_eq!(
        (
            j["requests"].as_u64(),
            j["rate_limited"].as_u64(),
            j["auth_failed"].as_u64()
        ),
        (Some(15_000), Some(1000), Some(500))
    );
    assert!(j["p99_ms"].as_f64().unwrap() >= j["p50_ms"].as_f64().unwrap());
    let top = send(
        "GET",
        &gw.admin_url("/analytics/top?by=consumer&limit=2"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (&top.json[0]["name"], &top.json[0]["requests"]),
        (&"ann".into(), &8000.into())
    );
    assert_eq!(
        (&top.json[1]["name"], &top.json[1]["requests"]),
        (&"bob".into(), &6500.into())
    );
    let bad = send(
        "GET",
        &gw.admin_url("/analytics/timeseries?from=10&to=5&step=7"),
        &[],
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json["fields"]["from"].is_string() && bad.json["fields"]["step"].is_string(),
        "{}",
        bad.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilled_events_survive_a_killed_gateway_and_a_corrupt_tail() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut ch) = ClickHouseServer::start(&dir.path().join("ch")).await else {
        return;
    };
    let backend = Backend::start().await;
    let mut gw = gateway(dir.path(), &backend, &ch, "lz4").await;
    fire(&gw, Some(BOB), 100, 2).await;
    assert_eq!(
        wait_for_events(&ch, 100, Duration::from_secs(20)).await,
        100
    );

    ch.stop();
    fire(&gw, Some(BOB), 1000, 4).await;
    let spill = dir.path().join("analytics-spill.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&spill).map_or(0, |m| m.len()) == 0
        || !gw.log_text().contains("spilling")
    {
        assert!(Instant::now() < deadline, "nothing was spilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last batch reach the file, then kill the gateway where it stands.
    tokio::time::sleep(Duration::from_millis(600)).await;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    // A torn write at the end of the file.
    let mut bytes = std::fs::read(&spill).unwrap();
    bytes.extend_from_slice(&[0xff, 0, 0, 0, 1, 2]);
    std::fs::write(&spill, &bytes).unwrap();

    ch.restart().await;
    let gw = gateway(dir.path(), &backend, &ch, "lz4").await;
    assert_eq!(
        wait_for_events(&ch, 1100, Duration::from_secs(30)).await,
        1100
    );
    assert!(
        gw.log_text().contains("corrupt or truncated tail"),
        "{}",
        gw.log_text()
    );
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("spill.bad-"))
        .count();
    assert_eq!(aside, 1);
}

/// A ClickHouse server of its own in `dir` and a sink writing into `database` on it; `None`
/// when the server binary is missing.
async fn server_and_sink(
    dir: &std::path::Path,
    database: &str,
) -> Option<(ClickHouseServer, ClickHouse)> {
    let server = ClickHouseServer::start(&dir.join("ch")).await?;
    let sink = ClickHouse::new(&server.url(""), database, Validation::Auto).unwrap();
    Some((server, sink))
}

#[tokio::test]
async fn the_embedded_store_and_clickhouse_answer_alike() {
    use tollgate_analytics::query::{Filter, Queries, TopBy};
    use tollgate_analytics::sink::embedded::Embedded;
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, ch)) = server_and_sink(dir.path(), "alike").await else {
        return;
    };
    let embedded = Embedded::open(dir.path(), Duration::from_secs(86_400))
        .await
        .unwrap();
    let now_us = tollgate_analytics::unix_now() as u64 * 1_000_000;
    let mut events = tollgate_analytics::sample::synthetic(4000, now_us, 180_000_000);
    // Two targets behind the service; refused requests reached none.
    for (i, e) in events.iter_mut().enumerate() {
        if !e.rate_limited && !e.auth_failed {
            e.upstream_addr = Some(["10.0.0.1:80", "10.0.0.2:80"][i % 2].into());
        }
    }
    for chunk in events.chunks(1000) {
        let batch = Batch::new(chunk);
        ch.write(&batch, false).await.unwrap();
        embedded.write(&batch, false).await.unwrap();
        // A retry of a batch that landed changes nothing in either store.
        ch.write(&batch, true).await.unwrap();
        embedded.write(&batch, true).await.unwrap();
    }
    let now = tollgate_analytics::unix_now();
    let all = Filter {
        from: now - 3600,
        to: now + 1,
        ..Filter::default()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 0.05 * b.max(0.001);
    for f in [
        all.clone(),
        Filter {
            consumer: Some("ann".into()),
            status_class: Some(2),
            ..all.clone()
        },
    ] {
        let (e, c) = (
            embedded.summary(&f).await.unwrap(),
            ch.summary(&f).await.unwrap(),
        );
        assert_eq!(
            (
                e.requests,
                e.client_errors,
                e.server_errors,
                e.rate_limited,
                e.auth_failed,
                e.bytes_out
            ),
            (
                c.requests,
                c.client_errors,
                c.server_errors,
                c.rate_limited,
                c.auth_failed,
                c.bytes_out
            )
        );
        assert!(e.requests > 0);
        for (pe, pc) in [
            (e.p50_ms, c.p50_ms),
            (e.p95_ms, c.p95_ms),
            (e.p99_ms, c.p99_ms),
        ] {
            assert!(close(pe, pc), "embedded {pe} ms vs ClickHouse {pc} ms");
        }
    }
    assert_eq!(
        embedded.status_codes(&all).await.unwrap(),
        ch.status_codes(&all).await.unwrap()
    );
    let (te, tc) = (
        embedded.timeseries(&all, 60).await.unwrap(),
        ch.timeseries(&all, 60).await.unwrap(),
    );
    let counts = |t: &[tollgate_analytics::query::Point]| {
        t.iter()
            .map(|p| (p.start, p.requests, p.status_4xx, p.rate_limited))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&te), counts(&tc));
    assert!(te.len() >= 3);
    for by in [TopBy::Route, TopBy::Consumer, TopBy::Upstream] {
        let (e, c) = (
            embedded.top(&all, by, 5).await.unwrap(),
            ch.top(&all, by, 5).await.unwrap(),
        );
        let names = |t: &[tollgate_analytics::query::TopEntry]| {
            t.iter()
                .map(|e| (e.name.clone(), e.requests, e.errors))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&e), names(&c));
        assert!(!e.is_empty() && e.iter().all(|t| !t.name.is_empty()));
    }
    let (ee, ce) = (
        embedded.events(&all, 20).await.unwrap(),
        ch.events(&all, 20).await.unwrap(),
    );
    assert_eq!(ee, ce);
    assert_eq!(ee[0].request_id, "r3999");
}

#[tokio::test]
async fn the_default_embedded_store_answers_the_admin_api() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&[("TOLLGATE_ANALYTICS_FLUSH_MS", "100")]).await;
    let url = format!("http://127.0.0.1:{}", backend.port);
    for (path, pairs) in [
        ("/services", vec![("name", "s"), ("url", url.as_str())]),
        (
            "/services/s/routes",
            vec![("name", "api"), ("paths[]", "/api/")],
        ),
        ("/routes/api/plugins", vec![("name", "key-auth")]),
        ("/consumers", vec![("username", "bob")]),
        ("/consumers/bob/key-auth", vec![("key", BOB)]),
    ] {
        let r = send("POST", &gw.admin_url(path), &[], form(&pairs)).await;
        assert_eq!(r.status, 201, "{path}: {}", r.body);
    }
    gw.settled().await;
    fire(&gw, Some(BOB), 250, 4).await;
    fire(&gw, None, 50, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let summary = loop {
        let s = send("GET", &gw.admin_url("/analytics/summary"), &[], None).await;
        if s.json["requests"] == 300 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(summary.json["requests"], 300, "{}", summary.body);
    assert_eq!(summary.json["auth_failed"], 50);
    let codes = send("GET", &gw.admin_url("/analytics/status-codes"), &[], None).await;
    assert_eq!(
        codes.body,
        r#"[{"status":200,"requests":250},{"status":401,"requests":50}]"#
    );
    let events = send(
        "GET",
        &gw.admin_url("/analytics/events?limit=3&consumer=bob"),
        &[],
        None,
    )
    .await;
    assert_eq!(events.json.as_array().unwrap().len(), 3);
    assert_eq!(events.json[0]["path"], "/api/get/context");
    assert!(gw.data_dir.join("analytics.db").exists());
}

#[tokio::test]
async fn sigterm_flushes_every_queued_event() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    std::fs::write(&file, config(&backend)).unwrap();
    let file = file.to_str().unwrap().to_string();
    // Batches would wait a minute: only the shutdown can send these.
    let mut gw = Gateway::start_in(
        &[
            ("TOLLGATE_DATABASE", "off"),
            ("TOLLGATE_DECLARATIVE_CONFIG", &file),
            ("TOLLGATE_ANALYTICS_FLUSH_MS", "60000"),
        ],
        dir.path().to_path_buf(),
        None,
    )
    .await;
    fire(&gw, Some(BOB), 40, 2).await;
    assert!(gw.terminate().success());
    let store =
        tollgate_analytics::sink::embedded::Embedded::open(dir.path(), Duration::from_secs(86_400))
            .await
            .unwrap();
    let now = tollgate_analytics::unix_now();
    let all = tollgate_analytics::query::Filter {
        from: now - 600,
        to: now + 1,
        ..Default::default()
    };
    use tollgate_analytics::query::Queries;
    assert_eq!(store.summary(&all).await.unwrap().requests, 40);
}

/// The events `database` holds, as "rows\tdistinct request ids\tactive parts".
async fn rows_ids_parts(ch: &ClickHouseServer, database: &str) -> String {
    ch.query(&format!(
        "SELECT count(), uniqExact(request_id), (SELECT count() FROM system.parts \
         WHERE database = '{database}' AND table = 'events' AND active) \
         FROM {database}.events FORMAT TSV"
    ))
    .await
}

/// A batch larger than one Native block (`native::BLOCK_ROWS`, 4,096 events) reaches ClickHouse
/// as one part, all or nothing, and writing it again as a retry adds nothing.
#[tokio::test]
async fn a_batch_of_several_blocks_lands_as_one_part() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ch, sink)) = server_and_sink(dir.path(), "tollgate_parts").await else {
        return;
    };
    sink.client().await.unwrap(); // the tables exist: their merges can be stopped
    ch.query("SYSTEM STOP MERGES").await;
    // 10,000 events over the hour before noon today: one day, one partition.
    let day_us = 86_400_000_000;
    let noon = tollgate_analytics::unix_now() as u64 * 1_000_000 / day_us * day_us + day_us / 2;
    let batch = Batch::new(&tollgate_analytics::sample::synthetic(
        10_000,
        noon,
        3_600_000_000,
    ));
    sink.write(&batch, false).await.unwrap();
    sink.write(&batch, true).await.unwrap();
    assert_eq!(
        rows_ids_parts(&ch, "tollgate_parts").await,
        "10000\t10000\t1",
        "rows, distinct rows, parts"
    );
}

/// A batch that spans midnight goes as one `INSERT` per day. When only one of them landed (as
/// if the second had failed: its day's rows dropped here), a retry writes that day alone.
#[tokio::test]
async fn a_retry_writes_only_the_days_that_did_not_land() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ch, sink)) = server_and_sink(dir.path(), "tollgate_days").await else {
        return;
    };
    // 2,000 events over the two hours around the last midnight: 1,000 on each day.
    let midnight = tollgate_analytics::unix_now() as u64 / 86_400 * 86_400_000_000;
    let hour = 3_600_000_000;
    let batch = Batch::new(&tollgate_analytics::sample::synthetic(
        2_000,
        midnight + hour,
        2 * hour,
    ));
    sink.write(&batch, false).await.unwrap();
    assert_eq!(
        rows_ids_parts(&ch, "tollgate_days").await,
        "2000\t2000\t2",
        "rows, distinct rows, parts"
    );
    let today = ch
        .query("SELECT max(partition_id) FROM system.parts WHERE database = 'tollgate_days'")
        .await;
    ch.query(&format!(
        "ALTER TABLE tollgate_days.events DROP PARTITION ID '{today}'"
    ))
    .await;
    assert_eq!(rows_ids_parts(&ch, "tollgate_days").await, "1000\t1000\t1");
    sink.write(&batch, true).await.unwrap();
    assert_eq!(rows_ids_parts(&ch, "tollgate_days").await, "2000\t2000\t2");
    sink.write(&batch, true).await.unwrap();
    assert_eq!(rows_ids_parts(&ch, "tollgate_days").await, "2000\t2000\t2");
}

/// An events table made before `grpc_status` and `ws_close_code` existed gets them on the
/// sink's first write (migrations/clickhouse/002_added_columns.sql; ClickHouse 18.16 has no
/// `ADD COLUMN IF NOT EXISTS`), its old rows reading -1, and new events land whole.
#[tokio::test]
async fn an_events_table_from_before_the_protocol_codes_gains_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ch, sink)) = server_and_sink(dir.path(), "tollgate_old").await else {
        return;
    };
    let ddl = include_str!("../migrations/clickhouse/001_events.sql");
    let table = &ddl[ddl.find("CREATE TABLE").unwrap()..];
    let old: String = table[..table.find(';').unwrap()]
        .lines()
        .filter(|l| !l.contains("grpc_status") && !l.contains("ws_close_code"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{database}", "tollgate_old");
    ch.query("CREATE DATABASE tollgate_old").await;
    ch.query(&old).await;
    ch.query("INSERT INTO tollgate_old.events (request_id) VALUES ('old')")
        .await;
    let now = tollgate_analytics::unix_now() as u64 * 1_000_000;
    let batch = Batch::new(&tollgate_analytics::sample::synthetic(10, now, 1_000_000));
    sink.write(&batch, false).await.unwrap();
    let rows = ch
        .query(
            "SELECT request_id = 'old' AS old, grpc_status, ws_close_code, count() \
             FROM tollgate_old.events GROUP BY old, grpc_status, ws_close_code ORDER BY old \
             FORMAT TSV",
        )
        .await;
    assert_eq!(rows.trim_end(), "0\t-1\t-1\t10\n1\t-1\t-1\t1");
}
