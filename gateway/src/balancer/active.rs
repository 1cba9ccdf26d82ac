//! Kong's active health checks: each upstream with a probe interval gets a task that probes
//! its targets (an HTTP or HTTPS `GET` of `http_path`, or a TCP connect) and reports what it
//! saw to the targets' health with the active thresholds.
//!
//! A healthy target is probed every `healthy.interval` seconds, an unhealthy one every
//! `unhealthy.interval` (0: not probed in that state), at most `concurrency` at a time,
//! each probe bounded by `timeout`. The tasks follow the snapshots: [`Checkers::reconcile`]
//! keeps a task while its upstream's checks and targets stay the same and replaces it when
//! they change. Probes run on the control plane's runtime, never on the proxy's workers.
use super::health::{Check, Outcome};
use super::{Balancer, Member};
use crate::model::upstream::ActiveChecks;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::{AbortHandle, JoinSet};
use uuid::Uuid;

/// The longest a checker sleeps between looks at its targets: a target another check turned
/// unhealthy starts being probed at most this late.
const MAX_NAP: Duration = Duration::from_millis(250);

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

/// The running checkers, by upstream.
#[derive(Default)]
pub struct Checkers {
    running: Mutex<HashMap<Uuid, (u64, AbortHandle)>>,
}

impl Drop for Checkers {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, (_, task)) in running.drain() {
            task.abort();
        }
    }
}

impl Checkers {
    /// Makes the running checkers those of `balancers`: new ones start, changed ones restart,
    /// those of upstreams that are gone (or stopped probing) stop.
    pub fn reconcile<'a>(&self, balancers: impl Iterator<Item = &'a Arc<Balancer>>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut wanted = HashMap::new();
        for b in balancers.filter(|b| b.checks.active.enabled()) {
            wanted.insert(b.id, (fingerprint(b), b.clone()));
        }
        running.retain(|id, (print, task)| {
            let keep = wanted.get(id).is_some_and(|(p, _)| p == print);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, (print, b)) in wanted {
            running
                .entry(id)
                .or_insert_with(|| (print, tokio::spawn(check(b)).abort_handle()));
        }
    }
}

/// What a checker depends on: the active checks and the targets with their weights.
fn fingerprint(b: &Balancer) -> u64 {
    let targets: Vec<(&str, &str, u16)> = b
        .members
        .iter()
        .map(|m| (m.target.target.as_str(), m.host.as_str(), m.target.weight))
        .collect();
    let text = format!("{:?}{targets:?}", b.checks.active);
    foldhash::fast::FixedState::with_seed(0).hash_one(text)
}

/// Probes `b`'s targets for as long as the task lives.
async fn check(b: Arc<Balancer>) {
    let active = &b.checks.active;
    let client = client(active);
    let mut due = vec![tokio::time::Instant::now(); b.members.len()];
    let limit = Arc::new(tokio::sync::Semaphore::new(active.concurrency as usize));
    loop {
        let now = tokio::time::Instant::now();
        let mut probes = JoinSet::new();
        for (i, m) in b.members.iter().enumerate() {
            let Some(every) = interval(active, m) else {
                continue;
            };
            if due[i] > now {
                continue;
            }
            due[i] = now + every;
            let (b, client, limit) = (b.clone(), client.clone(), limit.clone());
            probes.spawn(async move {
                let _slot = limit.acquire_owned().await;
                let m = &b.members[i];
                let outcome = probe(&b.checks.active, m, &client).await;
                m.health.report(Check::Active, &b.checks, outcome);
            });
        }
        while probes.join_next().await.is_some() {}
        // The next probe due, of the members probed in their present state.
        let next = b
            .members
            .iter()
            .zip(&due)
            .filter(|(m, _)| interval(active, m).is_some())
            .map(|(_, at)| *at)
            .min();
        let nap = tokio::time::Instant::now() + MAX_NAP;
        tokio::time::sleep_until(next.map_or(nap, |at| at.min(nap))).await;
    }
}

/// How often `m` is probed in its present state, if at all.
fn interval(active: &ActiveChecks, m: &Member) -> Option<Duration> {
    if m.target.weight == 0 {
        return None;
    }
    let seconds = if m.health.is_up() {
        active.healthy.interval
    } else {
        active.unhealthy.interval
    };
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

fn client(active: &ActiveChecks) -> HttpClient {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs_f64(active.timeout.max(0.001))));
    let tls = hyper_rustls::HttpsConnectorBuilder::new();
    let tls = if active.https_verify_certificate {
        tls.with_webpki_roots()
    } else {
        tls.with_tls_config(crate::tls::client::unverified())
    };
    let https = tls.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https)
}

/// One probe of one target.
async fn probe(active: &ActiveChecks, m: &Member, client: &HttpClient) -> Outcome {
    let timeout = Duration::from_secs_f64(active.timeout.max(0.001));
    let host = crate::model::target::format(&m.host, m.port);
    if active.kind == "tcp" {
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&host)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(_)) => Outcome::TcpFailure,
            Err(_) => Outcome::Timeout,
        };
    }
    let scheme = if matches!(active.kind.as_str(), "https" | "grpcs") {
        "https"
    } else {
        "http"
    };
    let name = crate::model::target::format(&m.name, m.port);
    let Ok(req) = request(active, scheme, &host, &name) else {
        return Outcome::TcpFailure;
    };
    match tokio::time::timeout(timeout, async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        // Read the body so the probe ends cleanly; its content does not matter.
        let _ = resp.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await
    {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(e)) if e.is_connect() && crate::proxy::is_timeout(&e) => Outcome::Timeout,
        Ok(Err(_)) => Outcome::TcpFailure,
        Err(_) => Outcome::Timeout,
    }
}

/// The probe: `GET http_path` of the address, with the target's name (or `https_sni`) as
/// the `Host`.
fn request(
    active: &ActiveChecks,
    scheme: &str,
    address: &str,
    name: &str,
) -> Result<http::Request<Empty<bytes::Bytes>>, http::Error> {
    let host = active.https_sni.as_deref().unwrap_or(name);
    let mut req = http::Request::get(format!("{scheme}://{address}{}", active.http_path))
        .header(http::header::HOST, host);
    for (name, values) in active.headers.iter().flatten() {
        for v in values {
            req = req.header(name.as_str(), v.as_str());
        }
    }
    req.header(
        http::header::USER_AGENT,
        crate::proxy::gateway_headers::PRODUCT,
    )
    .body(Empty::new())
}
