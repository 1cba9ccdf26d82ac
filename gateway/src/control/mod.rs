//! The control plane's loop: notice configuration changes and swap in a new snapshot.
//!
//! Every node polls the store's version counter each second (the change feed that lets nodes
//! sharing one PostgreSQL see each other's writes), and a local admin write pokes the loop so
//! the change applies at once. A snapshot that fails to build is logged and counted, and the
//! old one keeps serving; a store that stops answering is reported on `/status`.
use crate::model::Kind;
use crate::snapshot::Snapshot;
use crate::status::metrics::Metrics;
use crate::store::Store;
use arc_swap::{ArcSwap, ArcSwapOption};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How often the store's version is checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Shared view of the configuration the proxy serves.
pub struct Reloader {
    pub store: Store,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Plugin state that outlives snapshots (rate-limit counters, Redis connections).
    pub plugins: Arc<crate::plugins::Shared>,
    /// The active health checkers of the upstreams being served.
    checkers: crate::balancer::active::Checkers,
    /// Set when something besides the store changed what a snapshot holds (a name resolved
    /// to other addresses): the next refresh rebuilds even at the same version.
    rebuild: AtomicBool,
    poke: Notify,
    store_reachable: AtomicBool,
    /// Held through a refresh: a second caller (the poll loop and a writer that refreshes
    /// itself) waits, then finds the version current, instead of building the same snapshot
    /// twice at once.
    refreshing: tokio::sync::Mutex<()>,
    /// What a configuration source besides the store reports (the Kubernetes controller).
    pub source: ArcSwapOption<SourceReport>,
    /// The entities such a source serves, in place of the store's copies of them.
    overlay: ArcSwapOption<Overlay>,
}

/// Entities a configuration source outside the store owns (the Kubernetes controller's),
/// served straight from memory: a change reaches the proxy without a store round trip, and
/// the store's copy of them (tagged `tag_prefix`) is only for reading.
pub struct Overlay {
    pub tag_prefix: &'static str,
    pub entities: Arc<Vec<(Kind, Value)>>,
}

/// A configuration source's state on `/status`: whether it has delivered a configuration yet
/// (readiness waits for it) and what it has to say (what failed to translate).
pub struct SourceReport {
    pub name: &'static str,
    pub ready: bool,
    pub detail: serde_json::Value,
}

impl Reloader {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        plugins: Arc<crate::plugins::Shared>,
    ) -> Reloader {
        Reloader {
            store,
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            metrics,
            plugins,
            checkers: Default::default(),
            rebuild: AtomicBool::new(false),
            poke: Notify::new(),
            store_reachable: AtomicBool::new(true),
            refreshing: tokio::sync::Mutex::new(()),
            source: ArcSwapOption::empty(),
            overlay: ArcSwapOption::empty(),
        }
    }

    pub fn store_reachable(&self) -> bool {
        self.store_reachable.load(Ordering::Relaxed)
    }

    /// Asks the loop to look for a change now (after a local write).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Rebuilds the snapshot if the store's version moved. Returns the error that kept a new
    /// configuration from applying, if any.
    pub async fn refresh(&self) -> Result<(), String> {
        let _one_at_a_time = self.refreshing.lock().await;
        let version = self.stored_version().await?;
        if version == self.snapshot.load().version && !self.rebuild.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        self.rebuild_at(version).await
    }

    /// Serves `overlay` from now on: the snapshot is rebuilt with it at once. When that fails
    /// the overlay served before stays.
    pub async fn serve_overlay(&self, overlay: Overlay) -> Result<(), String> {
        let _one_at_a_time = self.refreshing.lock().await;
        let version = self.stored_version().await?;
        let before = self.overlay.swap(Some(Arc::new(overlay)));
        let result = self.rebuild_at(version).await;
        if result.is_err() {
            self.overlay.store(before);
        }
        result
    }

    async fn stored_version(&self) -> Result<i64, String> {
        match self.store.version().await {
            Ok(v) => {
                self.store_reachable.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                if self.store_reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "config store unreachable; serving the last configuration");
                }
                Err(e.to_string())
            }
        }
    }

    /// The store's entities (but those the overlay replaces) and the overlay's.
    async fn entities(&self) -> Result<Vec<(Kind, Value)>, String> {
        let overlay = self.overlay.load_full();
        let prefix = overlay.as_ref().map(|o| o.tag_prefix);
        let mut entities = self
            .store
            .load_all_but(prefix)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(o) = overlay {
            entities.extend(o.entities.iter().cloned());
            entities.sort_by_key(|(k, _)| *k);
        }
        Ok(entities)
    }

    /// Builds the snapshot of the store at `version` (and the overlay) and swaps it in.
    async fn rebuild_at(&self, version: i64) -> Result<(), String> {
        let entities = self.entities().await?;
        let plugins = self.plugins.clone();
        // A large configuration takes a CPU-bound moment to build: off the async workers.
        let built =
            tokio::task::spawn_blocking(move || Snapshot::build(version, &entities, &plugins))
                .await
                .map_err(|e| format!("snapshot build failed: {e}"))?;
        match built {
            Ok(s) => {
                tracing::info!(
                    version,
                    routes = s.routes.len(),
                    services = s.services.len(),
                    "configuration applied"
                );
                self.checkers.reconcile(s.upstreams.iter());
                self.snapshot.store(Arc::new(s));
                self.metrics.config_reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(version, error = %e, "configuration change not applied");
                Err(e)
            }
        }
    }

    /// Runs until `shutdown` turns true, with the resolver of the balancers' names.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let me = self.clone();
        let dns = tokio::spawn(crate::balancer::dns::run(
            self.plugins.dns.clone(),
            move || {
                me.rebuild.store(true, Ordering::Relaxed);
                me.poke();
            },
        ));
        let _stop_dns = AbortOnDrop(dns.abort_handle());
        loop {
            let _ = self.refresh().await;
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = self.poke.notified() => {
                    // Let a burst of writes land before rebuilding once for all of them.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
