//! The running controller: reflectors keep the cluster's objects current; each change (a
//! burst of changes, once) is translated off the async workers and applied to the store as
//! one transaction that replaces the cluster's entities, after which the snapshot is rebuilt
//! and swapped in at once. What failed to translate becomes Events and `/status` lines, and
//! the rest is served. Portal applications and keys in the store are left alone.
//!
//! Every replica translates and serves. Writes others would repeat are the lease holder's
//! alone: Events, Ingress status, and the store's entities when the store is shared
//! (PostgreSQL; the others pick the change up from it).
mod events;
pub mod leader;
mod reflectors;

use crate::translate::{self, by_object, Cluster, Failure, Options, Translation};
use anyhow::Context;
use leader::{Election, StatusWork};
use reflectors::Stores;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tollgate_gateway::control::{stopped, Reloader, SourceReport};
use tollgate_gateway::declarative::sync::{plan, Op};
use tollgate_gateway::model::unix_now;
use tollgate_gateway::model::{Kind, Record};
use uuid::Uuid;

/// Every entity the controller makes carries a tag starting so (`k8s-kind:Ingress`).
pub const OWNED_TAG: &str = "k8s-kind:";
/// How long a burst of changes may take to land before it is translated once.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// The most failure lines `/status` lists.
const MAX_STATUS_LINES: usize = 100;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub options: Options,
    pub election: Election,
    /// The gateway's own Service (namespace, name), whose address Ingress status shows.
    pub publish_service: Option<(String, String)>,
    /// The store is shared by the replicas (PostgreSQL): only the lease holder writes to it.
    pub shared_store: bool,
}

/// The controller, to run until `stop`. Readiness waits for its first configuration from
/// the moment this is called.
pub fn controller(
    settings: Settings,
    reloader: Arc<Reloader>,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = anyhow::Result<()>> {
    report(&reloader, false, json!({"synced": false}));
    run(settings, reloader, stop)
}

async fn run(
    settings: Settings,
    reloader: Arc<Reloader>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster service account or KUBECONFIG)")?;
    let changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let stores = Stores::start(&client, &changed, &mut tasks);
    tokio::select! {
        _ = stores.ready() => {}
        _ = stopped(&mut stop) => return Ok(()),
    }
    tracing::info!(objects = %stores.counts(), "Kubernetes objects listed");
    let (failures_tx, failures_rx) = watch::channel(Vec::new());
    let (work_tx, work_rx) = watch::channel(StatusWork::default());
    let (leading_tx, mut leading) = watch::channel(false);
    tasks.spawn(publish_events(
        events::Events::new(client.clone(), settings.election.identity.clone()),
        failures_rx,
        leading.clone(),
    ));
    tasks.spawn(leader::run(
        client.clone(),
        settings.election.clone(),
        work_rx,
        leading_tx,
        stop.clone(),
    ));
    let mut applied: Option<Applied> = None;
    loop {
        let cluster = stores.cluster();
        work_tx.send_if_modified(|w| {
            let next = status_work(&cluster, &settings);
            let differs = *w != next;
            *w = next;
            differs
        });
        let writer = !settings.shared_store || *leading.borrow_and_update();
        let outcome = match writer {
            true => apply(cluster, &settings.options, &reloader, &mut applied).await,
            false => {
                applied = None;
                translate_only(cluster, &settings.options).await
            }
        };
        let detail = json!({
            "synced": true,
            "objects": stores.counts(),
            "translation_failures": lines(&outcome.failures),
            "last_error": outcome.error,
        });
        report(&reloader, true, detail);
        failures_tx.send_replace(outcome.failures);
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = leading.changed() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// What one round left: the failures to report, and an error that kept it from applying.
struct Outcome {
    failures: Vec<Failure>,
    error: Option<String>,
}

/// Translates off the async workers (a large cluster takes a CPU-bound moment).
async fn translation(cluster: Cluster, options: &Options) -> Result<Translation, String> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || translate::translate(&cluster, &options, unix_now()))
        .await
        .map_err(|e| format!("translation failed: {e}"))
}

/// A replica that does not write the shared store still translates, for its `/status`.
async fn translate_only(cluster: Cluster, options: &Options) -> Outcome {
    match translation(cluster, options).await {
        Ok(t) => Outcome {
            failures: t.failures,
            error: None,
        },
        Err(e) => Outcome {
            failures: Vec::new(),
            error: Some(e),
        },
    }
}

/// The cluster's entities as last applied (kind and body), what `sync::plan` compares with.
type Applied = Vec<(Kind, Value)>;

/// Writes a translation to the store: everything the first time (replacing whatever the
/// cluster left there before), then only what `sync::plan` finds changed. Whether anything
/// was written.
async fn store(
    reloader: &Reloader,
    t: &Translation,
    applied: &Option<Applied>,
) -> Result<bool, String> {
    let records = &t.config.records;
    let result = match applied {
        None => reloader.store.replace_tagged(OWNED_TAG, records).await,
        Some(before) => {
            let changes = plan(before, records);
            if changes.is_empty() {
                return Ok(false);
            }
            let changed: HashSet<(Kind, Uuid)> = changes
                .iter()
                .filter(|c| c.op != Op::Delete)
                .map(|c| (c.kind, c.id))
                .collect();
            let upserts: Vec<Record> = records
                .iter()
                .filter(|r| changed.contains(&(r.kind, r.id)))
                .cloned()
                .collect();
            let deletes: Vec<(Kind, Uuid)> = changes
                .iter()
                .filter(|c| c.op == Op::Delete)
                .map(|c| (c.kind, c.id))
                .collect();
            reloader.store.update_entities(&upserts, &deletes).await
        }
    };
    result
        .map(|()| true)
        .map_err(|e| format!("the translated configuration was not stored: {e}"))
}

/// Translates and, when the result differs from what was applied last, writes the change to
/// the store and rebuilds the snapshot.
async fn apply(
    cluster: Cluster,
    options: &Options,
    reloader: &Reloader,
    applied: &mut Option<Applied>,
) -> Outcome {
    let started = Instant::now();
    let t = match translation(cluster, options).await {
        Ok(t) => t,
        Err(e) => {
            return Outcome {
                failures: Vec::new(),
                error: Some(e),
            }
        }
    };
    let translated = started.elapsed();
    let error = match store(reloader, &t, applied).await {
        Err(e) => {
            // The store may hold part of it no more: write everything next time.
            *applied = None;
            Some(e)
        }
        Ok(false) => {
            return Outcome {
                failures: t.failures,
                error: None,
            }
        }
        Ok(true) => match reloader.refresh().await {
            Err(e) => Some(format!("the translated configuration was not applied: {e}")),
            Ok(()) => {
                let bodies = t.config.records.iter().map(|r| (r.kind, r.body.clone()));
                *applied = Some(bodies.collect());
                None
            }
        },
    };
    match &error {
        Some(e) => tracing::error!(error = %e, "Kubernetes configuration kept as it was"),
        None => tracing::info!(
            entities = t.config.records.len(),
            failures = t.failures.len(),
            translate_ms = translated.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Kubernetes configuration applied"
        ),
    }
    Outcome {
        failures: t.failures,
        error,
    }
}

fn report(reloader: &Reloader, ready: bool, detail: Value) {
    reloader.source.store(Some(Arc::new(SourceReport {
        name: "kubernetes",
        ready,
        detail,
    })));
}

/// `Ingress pytbak/api: referenced KongPlugin ... does not exist`, the first hundred.
fn lines(failures: &[Failure]) -> Value {
    let all: Vec<String> = by_object(failures)
        .into_iter()
        .flat_map(|(o, ms)| {
            ms.into_iter()
                .map(move |m| format!("{}: {m}", o.describe()))
        })
        .collect();
    let shown: Vec<&String> = all.iter().take(MAX_STATUS_LINES).collect();
    json!({"count": all.len(), "lines": shown})
}

/// Publishes the latest failures as Events while this replica holds the lease (each replica
/// translates the same objects; one reports them).
async fn publish_events(
    mut events: events::Events,
    mut failures: watch::Receiver<Vec<Failure>>,
    mut leading: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = failures.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
        }
        if *leading.borrow_and_update() {
            let current = failures.borrow_and_update().clone();
            events.publish(&current).await;
        }
    }
}

/// The Ingresses served and the gateway Service's address, for the status writer.
fn status_work(cluster: &Cluster, settings: &Settings) -> StatusWork {
    let address = settings
        .publish_service
        .as_ref()
        .and_then(|(ns, name)| {
            cluster.services.iter().find(|s| {
                s.metadata.namespace.as_ref() == Some(ns) && s.metadata.name.as_ref() == Some(name)
            })
        })
        .map(leader::address)
        .unwrap_or_default();
    let ingresses = translate::served_ingresses(cluster, &settings.options)
        .into_iter()
        .map(|i| {
            (
                i.metadata.namespace.clone().unwrap_or_default(),
                i.metadata.name.clone().unwrap_or_default(),
                leader::current(i),
            )
        })
        .collect();
    StatusWork { ingresses, address }
}
