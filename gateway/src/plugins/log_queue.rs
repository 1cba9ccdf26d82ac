//! The queue between the log phase and a log destination (http-log, tcp-log, udp-log):
//! Kong's queue (kong/tools/queue.lua) made bounded in entries and bytes. The log phase only
//! offers an entry and never waits; a full queue drops it and counts the drop, so a
//! destination that is down or slow never slows the proxy. One task per destination takes
//! entries in batches (up to `max_batch_size`, waiting at most `max_coalescing_delay` for a
//! batch to fill), delivers each, and retries a failed one with a doubling delay until
//! `max_retry_time` has passed. What happened to every entry is counted for `/metrics`.
use super::context::Serialized;
use crate::model::schema::{field, Field, FieldErrors, Ty};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What became of a destination's entries.
pub struct Counts {
    pub plugin: &'static str,
    /// Where they go, without credentials (`http://host:port/path`, `host:port`).
    pub destination: String,
    /// Waiting in the queue now.
    pub waiting: AtomicU64,
    pub sent: AtomicU64,
    /// Refused because the queue was full.
    pub dropped: AtomicU64,
    /// Given up after the retries.
    pub failed: AtomicU64,
}

/// How a queue batches and retries (Kong's `queue` record).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_batch_size: usize,
    pub max_coalescing_delay: Duration,
    pub max_entries: usize,
    pub max_bytes: Option<usize>,
    pub max_retry_time: Duration,
    pub initial_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

/// What a queue holds: an encoded entry (the log plugins' JSON), or a record the
/// destination's task encodes itself (opentelemetry's, off the request path).
pub trait Entry: Send + Sync + 'static {
    /// Its size, for `max_bytes`.
    fn size(&self) -> usize;
}

impl Entry for Bytes {
    fn size(&self) -> usize {
        self.len()
    }
}

/// How often a filling batch takes what has arrived (see `Worker::next_batch`).
const FILL_TICK: Duration = Duration::from_millis(5);

/// Delivers one batch of entries to a destination.
pub trait Deliver<T = Bytes>: Send + 'static {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [T],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// One destination's queue, as the log phase sees it.
pub struct Queue<T = Bytes> {
    entries: mpsc::Sender<T>,
    bytes: Arc<AtomicU64>,
    max_bytes: Option<usize>,
    pub counts: Arc<Counts>,
}

impl<T: Entry> Queue<T> {
    /// Offers `entry`; drops (and counts) it when the queue is full.
    pub fn offer(&self, entry: impl Into<T>) {
        let entry: T = entry.into();
        let len = entry.size() as u64;
        let over = self
            .max_bytes
            .is_some_and(|max| self.bytes.load(Ordering::Relaxed) + len > max as u64);
        if over {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Counted before the worker can take it, so neither count goes below zero.
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.counts.waiting.fetch_add(1, Ordering::Relaxed);
        if self.entries.try_send(entry).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.counts.waiting.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The node's queues, by name (instances with the same destination and settings share
/// one), and the counts of every destination ever used, for `/metrics`. A queue lives while
/// some instance holds it; its task delivers what is left, then ends.
#[derive(Default)]
pub struct Queues {
    /// Each a `Weak<Queue<T>>` of its entry type, and the same untyped to see whether it
    /// still lives (dead ones are dropped when a queue is added).
    queues: Mutex<HashMap<String, Named>>,
    counts: Mutex<HashMap<(&'static str, String), Arc<Counts>>>,
}

/// A queue in the registry: typed, to hand out; untyped, to see whether it lives.
type Named = (Box<dyn Any + Send>, Weak<dyn Any + Send + Sync>);

impl Queues {
    /// The queue named `name`, started with `policy` and `deliver` when there is none.
    pub fn get<T: Entry>(
        &self,
        name: String,
        (plugin, destination): (&'static str, String),
        policy: &Policy,
        deliver: impl FnOnce() -> Result<Box<dyn Deliver<T>>, String>,
    ) -> Result<Arc<Queue<T>>, String> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let live = queues
            .get(&name)
            .and_then(|(q, _)| q.downcast_ref::<Weak<Queue<T>>>());
        if let Some(q) = live.and_then(Weak::upgrade) {
            return Ok(q);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| format!("{plugin} needs the async runtime"))?;
        let counts = self.counts(plugin, destination);
        let (tx, rx) = mpsc::channel(policy.max_entries.max(1));
        let bytes = Arc::new(AtomicU64::new(0));
        let queue = Arc::new(Queue {
            entries: tx,
            bytes: bytes.clone(),
            max_bytes: policy.max_bytes,
            counts: counts.clone(),
        });
        let worker = Worker {
            rx,
            bytes,
            counts,
            policy: policy.clone(),
            deliver: deliver()?,
        };
        runtime.spawn(worker.run());
        queues.retain(|_, (_, alive)| alive.strong_count() > 0);
        let untyped: Arc<dyn Any + Send + Sync> = queue.clone();
        let typed: Box<dyn Any + Send> = Box::new(Arc::downgrade(&queue));
        queues.insert(name, (typed, Arc::downgrade(&untyped)));
        Ok(queue)
    }

    /// The counts of `destination` for `plugin` (made on first use).
    pub fn counts(&self, plugin: &'static str, destination: String) -> Arc<Counts> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .entry((plugin, destination.clone()))
            .or_insert_with(|| {
                Arc::new(Counts {
                    plugin,
                    destination,
                    waiting: AtomicU64::new(0),
                    sent: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Every destination's counts, by plugin and destination.
    pub fn all_counts(&self) -> Vec<Arc<Counts>> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Arc<Counts>> = counts.values().cloned().collect();
        all.sort_by(|a, b| (a.plugin, &a.destination).cmp(&(b.plugin, &b.destination)));
        all
    }
}

struct Worker<T> {
    rx: mpsc::Receiver<T>,
    bytes: Arc<AtomicU64>,
    counts: Arc<Counts>,
    policy: Policy,
    deliver: Box<dyn Deliver<T>>,
}

impl<T: Entry> Worker<T> {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch().await {
            let n = batch.len() as u64;
            let len: u64 = batch.iter().map(|e| e.size() as u64).sum();
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.counts.waiting.fetch_sub(n, Ordering::Relaxed);
            match self.deliver_with_retries(&batch).await {
                Ok(()) => self.counts.sent.fetch_add(n, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(plugin = self.counts.plugin, destination = %self.counts.destination,
                        entries = n, error = %e, "log entries given up");
                    self.counts.failed.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
    }

    /// The next batch: the first entry to come, then as many more as arrive before the
    /// batch is full or `max_coalescing_delay` has passed. `None` once the queue is closed
    /// and empty. While a batch fills, the channel is drained every `FILL_TICK` rather than
    /// waited on: a waiting receiver is woken by every entry, which costs the proxy's thread
    /// a wake-up of this task's thread per request.
    async fn next_batch(&mut self) -> Option<Vec<T>> {
        use tokio::sync::mpsc::error::TryRecvError;
        let first = self.rx.recv().await?;
        let mut batch = vec![first];
        let max = self.policy.max_batch_size;
        let deadline = tokio::time::Instant::now() + self.policy.max_coalescing_delay;
        loop {
            while batch.len() < max {
                match self.rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Some(batch),
                }
            }
            let now = tokio::time::Instant::now();
            if batch.len() >= max || now >= deadline {
                return Some(batch);
            }
            tokio::time::sleep_until(deadline.min(now + FILL_TICK)).await;
        }
    }

    async fn deliver_with_retries(&mut self, batch: &[T]) -> Result<(), String> {
        let started = Instant::now();
        let mut delay = self.policy.initial_retry_delay;
        loop {
            let error = match self.deliver.deliver(batch).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() + delay > self.policy.max_retry_time {
                return Err(error);
            }
            tracing::debug!(destination = %self.counts.destination, error = %error, "log delivery failed, retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.policy.max_retry_delay);
        }
    }
}

/// A log plugin's instance: its entries go to its destination's queue, one JSON document
/// each (a line with `lines`, as tcp-log writes them).
pub struct Shipper {
    queue: Arc<Queue>,
    lines: bool,
}

/// The instance of `plugin` with config `c`, shipping to `destination` (no credentials in
/// it: it labels the metrics) through the queue of instances configured alike.
pub fn shipper(
    shared: &super::Shared,
    (plugin, c): (&'static str, &Map<String, Value>),
    destination: String,
    policy: &Policy,
    deliver: impl FnOnce() -> Result<Box<dyn Deliver>, String>,
) -> Result<Arc<dyn super::Handler>, String> {
    let name = format!("{plugin} {}", Value::Object(c.clone()));
    let queue = shared
        .log_queues
        .get(name, (plugin, destination), policy, deliver)?;
    let lines = plugin == "tcp-log";
    Ok(Arc::new(Shipper { queue, lines }))
}

impl super::Handler for Shipper {
    fn on_response(&self) -> bool {
        true
    }

    fn log(&self, event: &tollgate_analytics::RequestEvent, serialized: &Serialized) {
        let mut entry = super::log_entry::entry(event, serialized).to_string();
        if self.lines {
            entry.push('\n');
        }
        self.queue.offer(entry);
    }
}

/// An HTTP(S) client for a log or trace server: connections kept idle for `idle`, the
/// server's certificate not verified (Kong's `ssl_verify = false` for its log plugins).
pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

pub fn https_client(connect_timeout: Duration, idle: Duration) -> HttpsClient {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::client::unverified())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(4)
        .build(https)
}

/// Kong's `queue` record (kong/tools/queue_schema.lua), for plugins that batch.
pub const QUEUE_FIELDS: &[Field] = &[
    field(
        "max_batch_size",
        Ty::Int {
            min: 1,
            max: 1_000_000,
        },
    ),
    field(
        "max_coalescing_delay",
        Ty::Number {
            min: 0.0,
            max: 3600.0,
        },
    ),
    field(
        "max_entries",
        Ty::Int {
            min: 1,
            max: 1_000_000,
        },
    ),
    field(
        "max_bytes",
        Ty::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    field(
        "max_retry_time",
        Ty::Number {
            min: -1.0,
            max: f64::MAX,
        },
    ),
    field(
        "initial_retry_delay",
        Ty::Number {
            min: 0.001,
            max: 1_000_000.0,
        },
    ),
    field(
        "max_retry_delay",
        Ty::Number {
            min: 0.001,
            max: 1_000_000.0,
        },
    ),
    field("concurrency_limit", Ty::Int { min: -1, max: 1 }),
];

/// Kong's defaults for the `queue` record.
pub fn queue_defaults() -> Value {
    json!({
        "max_batch_size": 1, "max_coalescing_delay": 1, "max_entries": 10000,
        "max_bytes": null, "max_retry_time": 60, "initial_retry_delay": 0.01,
        "max_retry_delay": 60, "concurrency_limit": 1,
    })
}

/// Fills the `queue` record's defaults and checks what its fields' types do not.
pub fn validate_queue(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let queue = c.entry("queue").or_insert_with(queue_defaults);
    if let (Value::Object(given), Value::Object(all)) = (queue, queue_defaults()) {
        for (k, v) in all {
            given.entry(k).or_insert(v);
        }
        if given.get("concurrency_limit").and_then(Value::as_i64) == Some(0) {
            errors.nest("queue", {
                let mut e = FieldErrors::default();
                e.add("concurrency_limit", "expected one of: -1, 1");
                e
            });
        }
    }
}

/// The policy a checked config's `queue` record says.
pub fn policy(c: &Map<String, Value>) -> Policy {
    let q = c.get("queue").cloned().unwrap_or_else(queue_defaults);
    let number = |k: &str, default: f64| q.get(k).and_then(Value::as_f64).unwrap_or(default);
    let seconds = |k: &str, default: f64| Duration::from_secs_f64(number(k, default).max(0.0));
    Policy {
        max_batch_size: number("max_batch_size", 1.0) as usize,
        max_coalescing_delay: seconds("max_coalescing_delay", 1.0),
        max_entries: number("max_entries", 10_000.0) as usize,
        max_bytes: q
            .get("max_bytes")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        max_retry_time: seconds("max_retry_time", 60.0),
        initial_retry_delay: seconds("initial_retry_delay", 0.01),
        max_retry_delay: seconds("max_retry_delay", 60.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records batches; fails the first `failures` deliveries.
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<Bytes>>>>,
        failures: usize,
    }

    impl Deliver for Recorder {
        fn deliver<'a>(
            &'a mut self,
            batch: &'a [Bytes],
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
            Box::pin(async move {
                if self.failures > 0 {
                    self.failures -= 1;
                    return Err("refused".into());
                }
                self.batches.lock().unwrap().push(batch.to_vec());
                Ok(())
            })
        }
    }

    fn policy(batch: usize, entries: usize) -> Policy {
        Policy {
            max_batch_size: batch,
            max_coalescing_delay: Duration::from_millis(50),
            max_entries: entries,
            max_bytes: None,
            max_retry_time: Duration::from_secs(1),
            initial_retry_delay: Duration::from_millis(5),
            max_retry_delay: Duration::from_millis(20),
        }
    }

    async fn settle(counts: &Counts, total: u64) {
        for _ in 0..200 {
            let done = counts.sent.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed);
            if done >= total {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn entries_go_in_batches_and_a_failed_batch_is_retried() {
        let queues = Queues::default();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            batches: batches.clone(),
            failures: 2,
        };
        let q = queues
            .get(
                "q".into(),
                ("http-log", "d".into()),
                &policy(3, 100),
                || Ok(Box::new(recorder)),
            )
            .unwrap();
        for i in 0..7 {
            q.offer(format!("e{i}"));
        }
        settle(&q.counts, 7).await;
        let sizes: Vec<usize> = batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(q.counts.sent.load(Ordering::Relaxed), 7);
        assert_eq!(q.counts.waiting.load(Ordering::Relaxed), 0);
        let same = queues.get(
            "q".into(),
            ("http-log", "d".into()),
            &policy(3, 100),
            || unreachable!("the queue exists"),
        );
        assert!(Arc::ptr_eq(&q, &same.unwrap()));
        // Once no instance holds it, the name gets a queue (and a task) of its own again,
        // under the one entry the registry holds for it.
        drop(q);
        let mut started = false;
        let again = queues.get(
            "q".into(),
            ("http-log", "d".into()),
            &policy(3, 100),
            || {
                started = true;
                Ok(Box::new(Recorder {
                    batches: Arc::default(),
                    failures: 0,
                }))
            },
        );
        assert!(again.is_ok() && started);
        assert_eq!(queues.queues.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_a_dead_destination_fails_after_the_retry_time() {
        let queues = Queues::default();
        let mut p = policy(1, 2);
        p.max_retry_time = Duration::from_millis(30);
        let recorder = Recorder {
            batches: Arc::default(),
            failures: usize::MAX,
        };
        let q = queues
            .get("dead".into(), ("tcp-log", "d".into()), &p, || {
                Ok(Box::new(recorder))
            })
            .unwrap();
        let started = Instant::now();
        for i in 0..50 {
            q.offer(format!("e{i}"));
        }
        assert!(
            started.elapsed() < Duration::from_millis(5),
            "offering never waits"
        );
        let dropped = q.counts.dropped.load(Ordering::Relaxed);
        assert!(dropped >= 47, "{dropped} dropped");
        settle(&q.counts, 50 - dropped).await;
        assert_eq!(q.counts.failed.load(Ordering::Relaxed), 50 - dropped);
        let all = queues.all_counts();
        assert_eq!((all.len(), all[0].plugin), (1, "tcp-log"));
    }

    #[tokio::test]
    async fn a_byte_limit_drops_what_would_pass_it() {
        let queues = Queues::default();
        let mut p = policy(1, 100);
        p.max_bytes = Some(10);
        p.max_retry_time = Duration::ZERO;
        let recorder = Recorder {
            batches: Arc::default(),
            failures: usize::MAX,
        };
        let q = queues
            .get("b".into(), ("udp-log", "d".into()), &p, || {
                Ok(Box::new(recorder))
            })
            .unwrap();
        q.offer("x".repeat(11));
        assert_eq!(q.counts.dropped.load(Ordering::Relaxed), 1);
    }
}
