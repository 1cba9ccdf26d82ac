//! README.md's admin API and proxy examples, read from README.md itself and run with real curl
//! against the gateway and a stand-in for the seed's backend, so the README cannot say what
//! does not work (issue 23, item 6).
mod common;

use axum::extract::Path;
use axum::routing::{delete, get, post, put};
use common::*;
use std::process::Command;

/// The seed's backend (`pytbak`, ../shared/seed/kubernetes-api-gateway.txt, "API endpoints"):
/// its five routes under `/api/`, 404 for anything else, as the real one answers.
async fn seed_backend() -> u16 {
    let app = axum::Router::new()
        .route("/api/get/context", get(|| async { "[]" }))
        .route(
            "/api/get/context/{id}",
            get(|Path(id): Path<String>| async move { id }),
        )
        .route(
            "/api/post/context",
            post(|| async { (http::StatusCode::CREATED, "{}") }),
        )
        .route(
            "/api/put/context/{id}",
            put(|Path(id): Path<String>| async move { id }),
        )
        .route(
            "/api/delete/context/{id}",
            delete(|| async { http::StatusCode::NO_CONTENT }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// The `curl` commands of README.md's `sh` blocks, and the `openssl` ones that make their
/// files, in order, continuation lines joined and trailing comments dropped.
fn readme_curls() -> Vec<String> {
    let text = include_str!("../README.md");
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        pending.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            continue;
        }
        let command = std::mem::take(&mut pending);
        let command = command.split(" #").next().unwrap().trim().to_string();
        if command.starts_with("curl ") || command.starts_with("openssl ") {
            commands.push(command);
        }
    }
    commands
}

/// Runs `command` with bash in `dir`, curl configured (through its `.curlrc`) to print only the
/// status code.
fn run_curl(command: &str, dir: &std::path::Path) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{command}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn every_curl_example_in_the_readme_works_as_written() {
    let backend = seed_backend().await;
    let gw = Gateway::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let curlrc = "silent\nshow-error\noutput = \"/dev/null\"\nwrite-out = \"%{http_code}\"\n";
    std::fs::write(dir.path().join(".curlrc"), curlrc).unwrap();
    let document = include_str!("data/pytbak-openapi.yaml");
    std::fs::write(dir.path().join("openapi.yaml"), document).unwrap();

    let commands = readme_curls();
    assert!(commands.len() >= 10, "{commands:?}");
    let mut proxied = 0;
    for command in &commands {
        let to_proxy = command.contains("127.0.0.1:8000") || command.contains(":8443");
        let command = command
            .replace("127.0.0.1:8001", &format!("127.0.0.1:{}", gw.admin))
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{}", gw.proxy))
            .replace(":8443", &format!(":{}", gw.tls))
            .replace("127.0.0.1:5000", &format!("127.0.0.1:{backend}"));
        if to_proxy {
            gw.settled().await;
            proxied += 1;
        }
        let status = run_curl(&command, dir.path());
        if command.starts_with("openssl ") {
            continue;
        }
        assert!(
            status.starts_with('2'),
            "README example answered {status}: {command}"
        );
    }
    assert!(proxied >= 2, "the README shows proxied requests");
}
