//! The running controller: reflectors keep the cluster's objects current; each change (a
//! burst of changes, once) is translated off the async workers and served at once: the
//! snapshot is rebuilt from the translation in memory (the reloader's overlay) with the
//! store's own entities (portal applications and keys, an operator's), and swapped in whole.
//! Then the store gets a copy of the cluster's entities, in one transaction, for the admin
//! API and the console to read. What failed to translate becomes Events and `/status` lines,
//! and the rest is served.
//!
//! Every replica translates and serves its own translation. Writes others would repeat are
//! the lease holder's alone: Events, Ingress status, and the store's copy when the store is
//! shared (PostgreSQL).
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
use tollgate_gateway::control::{stopped, Overlay, Reloader, SourceReport};
use tollgate_gateway::declarative::sync::{plan, Change, Op};
use tollgate_gateway::model::unix_now;
use tollgate_gateway::model::{Kind, Record};
use uuid::Uuid;

/// Every entity the controller makes carries a tag starting so (`k8s-kind:Ingress`).
pub const OWNED_TAG: &str = tollgate_gateway::model::owner::CLUSTER_TAG;
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
    let mut state = Applied::default();
    loop {
        let cluster = stores.cluster();
        work_tx.send_if_modified(|w| {
            let next = status_work(&cluster, &settings);
            let differs = *w != next;
            *w = next;
            differs
        });
        let writer = !settings.shared_store || *leading.borrow_and_update();
        let outcome = apply(cluster, &settings.options, &reloader, &mut state, writer).await;
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

/// The cluster's entities (kind and body) as one round made them.
type Entities = Arc<Vec<(Kind, Value)>>;

/// What this replica last served, and last wrote to the store (what `sync::plan` compares
/// with; none after a failed write, so the next writes everything).
#[derive(Default)]
struct Applied {
    served: Option<Entities>,
    stored: Option<Entities>,
}

/// Writes a translation to the store, for the admin API and the console to read: everything
/// (replacing whatever the cluster left there before) when `changes` is none, else the
/// changed entities.
async fn store(
    reloader: &Reloader,
    records: &[Record],
    changes: Option<Vec<Change>>,
) -> Result<(), String> {
    let result = match changes {
        None => reloader.store.replace_tagged(OWNED_TAG, records).await,
        Some(changes) => {
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
    result.map_err(|e| format!("the translated configuration was not stored: {e}"))
}

/// Translates and, when the result differs from what is served (`sync::plan`, which leaves
/// timestamps out), serves it at once (the snapshot is rebuilt from memory), then copies it
/// to the store when this replica writes.
async fn apply(
    cluster: Cluster,
    options: &Options,
    reloader: &Reloader,
    state: &mut Applied,
    writer: bool,
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
    let records = &t.config.records;
    let before = state.served.clone();
    let changes = before.as_ref().map(|b| plan(b, records));
    let mut error = None;
    if changes.as_ref().is_none_or(|c| !c.is_empty()) {
        let entities: Entities =
            Arc::new(records.iter().map(|r| (r.kind, r.body.clone())).collect());
        let overlay = Overlay {
            tag_prefix: OWNED_TAG,
            entities: entities.clone(),
        };
        match reloader.serve_overlay(overlay).await {
            Ok(()) => {
                state.served = Some(entities);
                tracing::info!(
                    entities = records.len(),
                    failures = t.failures.len(),
                    translate_ms = translated.as_millis() as u64,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Kubernetes configuration applied"
                );
            }
            Err(e) => error = Some(format!("the translated configuration was not applied: {e}")),
        }
    }
    if !writer {
        state.stored = None;
    } else if error.is_none() {
        error = copy_to_store(reloader, records, state, before, changes)
            .await
            .err();
    }
    if let Some(e) = &error {
        tracing::error!(error = %e, "Kubernetes configuration round failed");
    }
    Outcome {
        failures: t.failures,
        error,
    }
}

/// Brings the store's copy to what is served: everything when it has none yet, else what
/// changed since it was written (`changes`, when it was written from `before`).
async fn copy_to_store(
    reloader: &Reloader,
    records: &[Record],
    state: &mut Applied,
    before: Option<Entities>,
    changes: Option<Vec<Change>>,
) -> Result<(), String> {
    let changes = match (&state.stored, &before) {
        (None, _) => None,
        (Some(s), Some(b)) if Arc::ptr_eq(s, b) => changes,
        (Some(s), _) => Some(plan(s, records)),
    };
    if changes.as_ref().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    let result = store(reloader, records, changes).await;
    // After a failed write the store may hold part of it: write everything next time.
    state.stored = result.is_ok().then(|| state.served.clone()).flatten();
    result
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
