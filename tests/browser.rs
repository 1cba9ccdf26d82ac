//! The console in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini), once with JavaScript on and once with it off. A person logs
//! in through the form and sees the proxy's requests and 429s on the dashboard; screenshots go
//! to `TOLLGATE_TEST_ARTIFACTS` (target/test-artifacts by default).
mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "browser test password";

struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Option<Driver> {
    let bin = service_env("TOLLGATE_TEST_CHROMEDRIVER")?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = format!("http://127.0.0.1:{port}/status");
    while try_send("GET", &status, &[], None).await.map(|r| r.status) != Ok(200) {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(driver)
}

async fn browser(driver: &Driver, javascript: bool, profile: &std::path::Path) -> Client {
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--window-size=1280,1000".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if !javascript {
        args.push("--blink-settings=scriptEnabled=false".into());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

fn artifacts() -> std::path::PathBuf {
    let dir = std::env::var("TOLLGATE_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-artifacts").into());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the dashboard card labelled `label`.
async fn card(page: &Client, label: &str) -> String {
    let xpath =
        format!("//div[@class='card'][span[@class='label']='{label}']/span[@class='value']");
    page.find(Locator::XPath(&xpath))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_and_watches_the_429s_with_and_without_javascript() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let console_port = free_port();
    let listen = format!("127.0.0.1:{console_port}");
    let gw = Gateway::start(&[
        ("TOLLGATE_CONSOLE_LISTEN", &listen),
        ("TOLLGATE_CONSOLE_ADMIN_PASSWORD", PASSWORD),
        ("TOLLGATE_ANALYTICS_FLUSH_MS", "100"),
    ])
    .await;
    let backend = Backend::start().await;
    limited_traffic(&gw, &backend, 8, 12).await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let profiles = tempfile::tempdir().unwrap();
    for javascript in [true, false] {
        let tag = if javascript { "js" } else { "nojs" };
        let page = browser(&driver, javascript, &profiles.path().join(tag)).await;
        page.goto(&format!("http://{listen}/?range=15m"))
            .await
            .unwrap();
        assert!(
            page.current_url().await.unwrap().path().ends_with("/login"),
            "sent to the login form"
        );
        page.screenshot()
            .await
            .map(|png| std::fs::write(artifacts().join(format!("console-login-{tag}.png")), png))
            .unwrap()
            .unwrap();
        page.find(Locator::Css("input[name=username]"))
            .await
            .unwrap()
            .send_keys("admin")
            .await
            .unwrap();
        page.find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys(PASSWORD)
            .await
            .unwrap();
        page.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        page.wait()
            .for_element(Locator::Css("section.totals"))
            .await
            .unwrap();
        assert_eq!(card(&page, "Requests").await, "12");
        assert_eq!(card(&page, "429s").await, "4");
        assert!(
            page.find(Locator::Css("svg.chart rect.s429")).await.is_ok(),
            "the 429s are drawn"
        );
        let png = page.screenshot().await.unwrap();
        std::fs::write(
            artifacts().join(format!("console-dashboard-{tag}.png")),
            png,
        )
        .unwrap();
        page.close().await.unwrap();
    }
}
