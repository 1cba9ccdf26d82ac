//! The pipeline from the proxy to the sink: a bounded queue, a batcher, and the spill file.
//!
//! The proxy hands each event to `Recorder::record`, which packs it with the others its thread
//! recorded (see `packed`) and queues the pack every `HANDOFF_EVENTS` events, or when the
//! thread calls `hand_over` on its `HANDOFF_INTERVAL` tick, with a `try_send` that never
//! waits: when the queue is full the pack's events are counted as dropped. The batcher sends a
//! batch every `batch_size` events or `flush_interval`, whichever comes first. A batch the sink
//! refuses goes to the spill file, and while anything is spilled new batches queue behind it
//! there, so the sink receives batches in the order they were made. Spilled batches are retried
//! every second, and first of all when the pipeline starts. When the last `Recorder` is gone
//! (the proxy has drained and its threads handed over), the queue is emptied and flushed and
//! the pipeline ends. Events still in a thread's pack are not counted as queued.
//!
//! How much a crash can lose: SIGTERM loses nothing (the proxy drains, every thread hands
//! over, the queue is flushed). SIGKILL loses what was still in memory: at most the events of
//! the last `flush_interval` plus `HANDOFF_INTERVAL`, or none with `Durability::Wal` (see
//! `wal`).
use crate::packed::Packed;
use crate::sink::{Batch, Sink};
use crate::spill::Spill;
use crate::wal::{self, Mark, Segment, WalDir};
use crate::RequestEvent;
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Config {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub durability: Durability,
}

/// What a killed process may lose (`TOLLGATE_ANALYTICS_DURABILITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Events in memory: at most the last flush interval's.
    #[default]
    Batch,
    /// Every event written ahead to a segment file: none (see `wal`).
    Wal,
}

/// A thread's pack of events on its way to the batcher, with where they end in the thread's
/// WAL segment.
struct Pack {
    packed: Packed,
    segment: Option<Mark>,
}

/// Longest a sink may take for one batch before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the batcher empties the queue.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// The pipeline's health, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub enqueued: AtomicU64,
    /// Taken off the queue by the batcher (so `enqueued - received` are waiting).
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub flushed: AtomicU64,
    pub spilled: AtomicU64,
    pub replayed: AtomicU64,
    pub sink_errors: AtomicU64,
    pub batches: AtomicU64,
    pub batch_micros: AtomicU64,
    pub spill_pending: AtomicU64,
    /// Events that could not be written ahead (`Durability::Wal`).
    pub wal_errors: AtomicU64,
}

/// The proxy's end of the pipeline.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pack>,
    wal: Option<Arc<WalDir>>,
    /// Tells this pipeline's unsent events apart from another's on the same thread.
    pipeline: u64,
    pub metrics: Arc<Metrics>,
}

/// Events a thread packs before it hands them over together.
pub const HANDOFF_EVENTS: usize = 64;
/// How often a recording thread should call `Recorder::hand_over`, so that no event waits
/// long for its pack to fill.
pub const HANDOFF_INTERVAL: Duration = Duration::from_millis(20);

/// Numbers pipelines for `Recorder::pipeline`.
static PIPELINES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Events this thread recorded and has not handed over yet, per pipeline.
    static UNSENT: RefCell<Vec<Unsent>> = const { RefCell::new(Vec::new()) };
}

struct Unsent {
    pipeline: u64,
    tx: mpsc::Sender<Pack>,
    metrics: Arc<Metrics>,
    packed: Packed,
    wal: Option<Arc<WalDir>>,
    /// The segment this pack's events are written ahead to (with `Durability::Wal`).
    segment: Option<Segment>,
}

impl Unsent {
    /// Writes the pack's bytes from `from` (the event just pushed) ahead to the segment. A
    /// failure is counted and the event stays in memory, as without a WAL.
    fn write_ahead(&mut self, from: usize) {
        let Some(wal) = &self.wal else { return };
        if self.segment.is_none() {
            self.segment = wal.segment().ok();
        }
        let written = match &mut self.segment {
            Some(s) => s.append(&self.packed.as_bytes()[from..]).is_ok(),
            None => false,
        };
        if !written {
            self.metrics.wal_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&mut self) {
        // The next pack starts with room for as many bytes as this one took. Grown from empty,
        // a pack copied itself at every doubling: the proxy thread's extra CPU per request with
        // the embedded store was 0.27 µs that way and 0.16 µs this way (seven alternating
        // rounds each, /proc/<tid>/stat).
        let room = self.packed.byte_len();
        let packed = std::mem::replace(&mut self.packed, Packed::with_capacity(room));
        let n = packed.len() as u64;
        let segment = self.segment.as_ref().map(Segment::mark);
        if self.segment.as_ref().is_some_and(Segment::full) {
            self.segment = None;
        }
        // With a WAL, dropped events are dropped too (and counted): later packs' marks move
        // the segment's safe offset past them.
        let counter = match self.tx.try_send(Pack { packed, segment }) {
            Ok(()) => &self.metrics.enqueued,
            Err(_) => &self.metrics.dropped,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Unsent {
    /// Also when the thread ends: what it recorded last is not lost.
    fn drop(&mut self) {
        if !self.packed.is_empty() {
            self.send();
        }
    }
}

impl Recorder {
    /// Packs `event` with this thread's others and queues the pack once it is full, without
    /// waiting: a full queue drops the pack (and counts its events).
    pub fn record(&self, event: &RequestEvent) {
        let recorded = UNSENT.try_with(|unsent| {
            let mut unsent = unsent.borrow_mut();
            let i = match unsent.iter().position(|u| u.pipeline == self.pipeline) {
                Some(i) => i,
                None => {
                    unsent.push(self.unsent());
                    unsent.len() - 1
                }
            };
            let u = &mut unsent[i];
            let from = u.packed.byte_len();
            u.packed.push(event);
            u.write_ahead(from);
            if u.packed.len() >= HANDOFF_EVENTS {
                u.send();
            }
        });
        if recorded.is_err() {
            // The thread is ending: sent on its own.
            let mut u = self.unsent();
            u.packed.push(event);
            u.write_ahead(0);
        }
    }

    /// Queues what this thread has recorded so far (and lets go of the queue, so that the
    /// pipeline can end once every recorder is gone).
    pub fn hand_over(&self) {
        let _ =
            UNSENT.try_with(|unsent| unsent.borrow_mut().retain(|u| u.pipeline != self.pipeline));
    }

    fn unsent(&self) -> Unsent {
        Unsent {
            pipeline: self.pipeline,
            tx: self.tx.clone(),
            metrics: self.metrics.clone(),
            packed: Packed::default(),
            wal: self.wal.clone(),
            segment: None,
        }
    }
}

impl Metrics {
    /// Events waiting in the queue.
    pub fn queued(&self) -> u64 {
        let received = self.received.load(Ordering::Relaxed);
        self.enqueued
            .load(Ordering::Relaxed)
            .saturating_sub(received)
    }
}

/// The batcher's side, run by `Pipeline::run`.
pub struct Pipeline {
    rx: mpsc::Receiver<Pack>,
    sink: Arc<dyn Sink>,
    spill: Arc<Mutex<Spill>>,
    config: Config,
    metrics: Arc<Metrics>,
    /// The events of the batch being filled.
    batch: Packed,
    /// Where those events end in their WAL segments, acknowledged once the batch is safe.
    segments: Vec<Mark>,
}

/// Opens the spill file in `data_dir` and makes both ends of the pipeline.
pub fn start(
    config: Config,
    sink: Arc<dyn Sink>,
    data_dir: &Path,
) -> std::io::Result<(Recorder, Pipeline)> {
    let mut spill = Spill::open(data_dir)?;
    let wal = match config.durability {
        Durability::Batch => None,
        Durability::Wal => Some(Arc::new(recover_wal(data_dir, &mut spill)?)),
    };
    let metrics = Arc::new(Metrics::default());
    metrics
        .spill_pending
        .store(spill.pending(), Ordering::Relaxed);
    // The queue holds packs; its capacity is given in events.
    let (tx, rx) = mpsc::channel(config.queue_capacity.div_ceil(HANDOFF_EVENTS).max(1));
    let pipeline = Pipeline {
        rx,
        sink,
        spill: Arc::new(Mutex::new(spill)),
        batch: Packed::default(),
        segments: Vec::new(),
        config,
        metrics: metrics.clone(),
    };
    let recorder = Recorder {
        tx,
        wal,
        pipeline: PIPELINES.fetch_add(1, Ordering::Relaxed),
        metrics,
    };
    Ok((recorder, pipeline))
}

/// Opens the WAL and moves what an earlier run left in it into the spill file, from which
/// the pipeline delivers it first.
fn recover_wal(data_dir: &Path, spill: &mut Spill) -> std::io::Result<WalDir> {
    let (wal, recovered, leftovers) = WalDir::open(data_dir)?;
    if !recovered.is_empty() {
        tracing::info!(
            events = recovered.len(),
            "analytics events recovered from the write-ahead log"
        );
        spill.append(&Batch::of(recovered))?;
    }
    wal::remove(&leftovers);
    Ok(wal)
}

impl Pipeline {
    /// Batches and delivers until every `Recorder` is dropped, then flushes what is left.
    ///
    /// The queue is drained on a short tick rather than awaited event by event, so recording
    /// an event never wakes this task (a wake-up per request cost the proxy thread more than
    /// building the event).
    pub async fn run(mut self) {
        self.replay().await;
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;
        let mut retried = Instant::now();
        loop {
            tick.tick().await;
            let open = self.drain(&mut deadline).await;
            if !open || deadline.is_some_and(|d| Instant::now() >= d) {
                self.flush().await;
                deadline = None;
            }
            if !open {
                return;
            }
            if retried.elapsed() >= RETRY_INTERVAL {
                self.replay().await;
                retried = Instant::now();
            }
        }
    }

    /// Moves every queued event into the batch, sending full batches. `false` once every
    /// `Recorder` is gone and the queue is empty.
    async fn drain(&mut self, deadline: &mut Option<Instant>) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Pack { packed, segment }) => {
                    let n = packed.len() as u64;
                    self.metrics.received.fetch_add(n, Ordering::Relaxed);
                    self.batch.append(&packed);
                    self.segments.extend(segment);
                    deadline.get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                    if self.batch.len() >= self.config.batch_size {
                        self.flush().await;
                        *deadline = None;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = Batch::of(std::mem::take(&mut self.batch));
        let segments = std::mem::take(&mut self.segments);
        if self.spill_pending() > 0 {
            // Keep the order: behind what is already waiting.
            if self.spill(batch).await {
                wal::acknowledge(&segments);
            }
            self.replay().await;
            return;
        }
        if self.deliver(&batch, false).await {
            wal::acknowledge(&segments);
            self.metrics
                .flushed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            // The next batch reuses this one's memory: new memory each time costs the
            // kernel a page fault per page.
            self.batch = batch.packed;
            self.batch.clear();
        } else if self.spill(batch).await {
            wal::acknowledge(&segments);
        }
    }

    /// Writes one batch to the sink; `false` when it failed. A failed write may still have
    /// landed (the answer lost), so every later attempt is a `retry`.
    async fn deliver(&self, batch: &Batch, retry: bool) -> bool {
        let started = Instant::now();
        let result = tokio::time::timeout(WRITE_TIMEOUT, self.sink.write(batch, retry)).await;
        let m = &self.metrics;
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.batch_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let error = match result {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {WRITE_TIMEOUT:?}"),
        };
        // Logged once per failure streak, not once per batch.
        if m.sink_errors.fetch_add(1, Ordering::Relaxed) == 0 || self.spill_pending() == 0 {
            tracing::warn!(
                error,
                events = batch.len(),
                "analytics sink failed; spilling to disk"
            );
        }
        false
    }

    fn spill_pending(&self) -> u64 {
        self.metrics.spill_pending.load(Ordering::Relaxed)
    }

    /// Appends `batch` to the spill file; whether it is there.
    async fn spill(&self, batch: Batch) -> bool {
        let n = batch.len() as u64;
        let spill = self.spill.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let mut s = spill.lock().unwrap_or_else(|e| e.into_inner());
            s.append(&batch).map(|()| s.pending())
        })
        .await;
        match appended {
            Ok(Ok(pending)) => {
                self.metrics.spilled.fetch_add(n, Ordering::Relaxed);
                self.metrics.spill_pending.store(pending, Ordering::Relaxed);
                true
            }
            Ok(Err(e)) => {
                self.metrics.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, events = n, "cannot write the analytics spill file; events lost");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "analytics spill task failed");
                false
            }
        }
    }

    /// Sends spilled batches, oldest first, until the sink fails or none are left.
    async fn replay(&mut self) {
        while self.spill_pending() > 0 {
            let spill = self.spill.clone();
            let next = tokio::task::spawn_blocking(move || {
                spill.lock().unwrap_or_else(|e| e.into_inner()).next()
            })
            .await;
            let pending = match next {
                Ok(Ok(Some(p))) => p,
                Ok(Ok(None)) => {
                    self.metrics.spill_pending.store(0, Ordering::Relaxed);
                    return;
                }
                Ok(Err(e)) => {
                    return tracing::error!(error = %e, "cannot read the analytics spill file")
                }
                Err(e) => return tracing::error!(error = %e, "analytics spill task failed"),
            };
            if !self.deliver(&pending.batch, true).await {
                return;
            }
            let n = pending.batch.len() as u64;
            let spill = self.spill.clone();
            let acked = tokio::task::spawn_blocking(move || {
                let mut s = spill.lock().unwrap_or_else(|e| e.into_inner());
                s.ack(pending.end).map(|()| s.pending())
            })
            .await;
            match acked {
                Ok(Ok(left)) => {
                    self.metrics.replayed.fetch_add(n, Ordering::Relaxed);
                    self.metrics.flushed.fetch_add(n, Ordering::Relaxed);
                    self.metrics.spill_pending.store(left, Ordering::Relaxed);
                    if left == 0 {
                        tracing::info!("analytics sink is back; the spill file is delivered");
                    }
                }
                Ok(Err(e)) => {
                    return tracing::error!(error = %e, "cannot update the analytics spill offset")
                }
                Err(e) => return tracing::error!(error = %e, "analytics spill task failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;
    use crate::sink::{SinkError, WriteFuture};
    use std::sync::atomic::AtomicBool;

    /// A sink that keeps what it gets, and can be switched off.
    #[derive(Default)]
    struct Memory {
        down: AtomicBool,
        got: Mutex<Vec<RequestEvent>>,
    }

    impl Sink for Memory {
        fn write<'a>(&'a self, batch: &'a Batch, _retry: bool) -> WriteFuture<'a> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(SinkError("down".into()));
                }
                self.got
                    .lock()
                    .unwrap()
                    .extend(batch.events().map(|e| e.owned()));
                Ok(())
            })
        }
    }

    fn config() -> Config {
        Config {
            batch_size: 10,
            flush_interval: Duration::from_millis(20),
            queue_capacity: 1000,
            durability: Durability::Batch,
        }
    }

    async fn settle(sink: &Memory, n: usize) {
        for _ in 0..400 {
            if sink.got.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Issue 22, item 10: events a killed process held in memory (here: in this thread's
    /// pack, never handed over) are lost without a WAL and come back with one.
    #[tokio::test]
    async fn with_a_wal_the_events_a_killed_process_held_come_back() {
        for durability in [Durability::Batch, Durability::Wal] {
            let dir = tempfile::tempdir().unwrap();
            let config = Config {
                durability,
                ..config()
            };
            let (rec, pipeline) =
                start(config.clone(), Arc::new(Memory::default()), dir.path()).unwrap();
            for i in 0..10 {
                rec.record(&event(i));
            }
            // Killed: nothing runs any more, nothing is flushed.
            std::mem::forget(pipeline);
            std::mem::forget(rec);
            let sink = Arc::new(Memory::default());
            let (rec, pipeline) = start(config, sink.clone(), dir.path()).unwrap();
            let task = tokio::spawn(pipeline.run());
            drop(rec);
            task.await.unwrap();
            let got: Vec<String> = sink
                .got
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.request_id.to_string())
                .collect();
            let want: Vec<String> = match durability {
                Durability::Batch => vec![],
                Durability::Wal => (0..10).map(|i| format!("req-{i}")).collect(),
            };
            assert_eq!(got, want, "{durability:?}");
            let left = std::fs::read_dir(dir.path().join("analytics-wal")).map_or(0, |d| d.count());
            assert_eq!(left, 0, "the killed run's segments go once recovered");
        }
    }

    #[tokio::test]
    async fn everything_arrives_in_order_across_an_outage_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Memory::default());
        let (rec, pipeline) = start(config(), sink.clone(), dir.path()).unwrap();
        let task = tokio::spawn(pipeline.run());
        for i in 0..25 {
            rec.record(&event(i));
        }
        rec.hand_over();
        settle(&sink, 25).await;
        sink.down.store(true, Ordering::SeqCst);
        for i in 25..60 {
            rec.record(&event(i));
        }
        rec.hand_over();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Stopped while the sink is down: the rest goes to disk, and a new pipeline sends it.
        let metrics = rec.metrics.clone();
        drop(rec);
        task.await.unwrap();
        assert_eq!(metrics.queued(), 0);
        assert_eq!(metrics.spilled.load(Ordering::SeqCst), 35);
        sink.down.store(false, Ordering::SeqCst);
        let (rec, pipeline) = start(config(), sink.clone(), dir.path()).unwrap();
        tokio::spawn(pipeline.run());
        rec.record(&event(60));
        rec.hand_over();
        settle(&sink, 61).await;
        let got = sink.got.lock().unwrap().clone();
        assert_eq!(got, (0..61).map(event).collect::<Vec<_>>());
        assert!(rec.metrics.replayed.load(Ordering::SeqCst) >= 35);
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        // Room for one pack; nobody takes it off the queue.
        let small = Config {
            queue_capacity: HANDOFF_EVENTS,
            ..config()
        };
        let (rec, _pipeline) = start(small, Arc::new(Memory::default()), dir.path()).unwrap();
        let n = HANDOFF_EVENTS as u64;
        for i in 0..3 * n + 5 {
            rec.record(&event(i));
        }
        rec.hand_over();
        assert_eq!(rec.metrics.enqueued.load(Ordering::SeqCst), n);
        assert_eq!(rec.metrics.dropped.load(Ordering::SeqCst), 2 * n + 5);
        assert_eq!(rec.metrics.queued(), n);
    }

    #[tokio::test]
    async fn a_thread_that_ends_hands_over_what_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Memory::default());
        let (rec, pipeline) = start(config(), sink.clone(), dir.path()).unwrap();
        let task = tokio::spawn(pipeline.run());
        std::thread::spawn(move || (0..3).for_each(|i| rec.record(&event(i))))
            .join()
            .unwrap();
        // The thread's recorder is gone with it, so the pipeline ends once it has the events.
        task.await.unwrap();
        assert_eq!(
            *sink.got.lock().unwrap(),
            (0..3).map(event).collect::<Vec<_>>()
        );
    }
}
