//! file-log: each finished request as one JSON line appended to a file, Kong's plugin with
//! the main fields of Kong's log entry (request, response, latencies, client_ip, service,
//! route, consumer, started_at). The log phase only builds the line and hands it to the
//! file's writer thread through a bounded queue without waiting; a full queue drops the line
//! and counts it. `reopen` opens the file for every batch of lines (for log rotation).
use super::context::Serialized;
use super::log_queue::Counts;
use super::{get_bool, get_str, Handler, PluginSpec};
use crate::model::schema::{field, FieldErrors, Ty};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use tollgate_analytics::RequestEvent;

pub const SPEC: PluginSpec = PluginSpec {
    name: "file-log",
    priority: 9,
    no_consumer: false,
    fields: &[field("path", Ty::Str), field("reopen", Ty::Bool)],
    defaults,
    validate,
    build,
};

/// Lines waiting for a file's writer before new ones are dropped.
const QUEUE: usize = 10_000;

fn defaults() -> Map<String, Value> {
    let v = json!({"path": null, "reopen": false});
    v.as_object().cloned().unwrap_or_default()
}

fn validate(c: &mut Map<String, Value>, errors: &mut FieldErrors) {
    match get_str(c, "path") {
        None => errors.add("path", "required field missing"),
        Some(p) if !Path::new(p).is_absolute() || p.ends_with('/') => errors.add(
            "path",
            "not a valid filename: give an absolute path to a file",
        ),
        Some(_) => {}
    }
}

/// One writer thread per file (and `reopen` setting), shared by every instance and snapshot
/// that names it.
#[derive(Default)]
pub struct Writers(Mutex<HashMap<(PathBuf, bool), Arc<Writer>>>);

pub struct Writer {
    lines: SyncSender<String>,
    counts: Arc<Counts>,
}

impl Writers {
    fn get(&self, path: &Path, reopen: bool, counts: Arc<Counts>) -> Result<Arc<Writer>, String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (path.to_path_buf(), reopen);
        if let Some(w) = map.get(&key) {
            return Ok(w.clone());
        }
        let (lines, rx) = sync_channel(QUEUE);
        let file = path.to_path_buf();
        let written = counts.clone();
        std::thread::Builder::new()
            .name("tollgate-file-log".into())
            .spawn(move || write_lines(&file, reopen, &rx, &written))
            .map_err(|e| format!("cannot start the file-log writer: {e}"))?;
        let writer = Arc::new(Writer { lines, counts });
        map.insert(key, writer.clone());
        Ok(writer)
    }
}

impl Writer {
    /// Hands `line` to the writer thread; drops (and counts) it when the queue is full.
    fn offer(&self, line: String) {
        // Counted before the writer can take it, so the gauge never goes below zero.
        self.counts.waiting.fetch_add(1, Ordering::Relaxed);
        if self.lines.try_send(line).is_err() {
            self.counts.waiting.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread: appends lines as they come, a batch per wake-up.
fn write_lines(path: &Path, reopen: bool, rx: &Receiver<String>, counts: &Counts) {
    let mut file = None;
    let mut failures = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        let mut lines = 1;
        while let Ok(more) = rx.try_recv() {
            batch.push_str(&more);
            lines += 1;
        }
        counts.waiting.fetch_sub(lines, Ordering::Relaxed);
        if reopen {
            file = None;
        }
        if file.is_none() {
            file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok();
        }
        let written = file.as_mut().map(|f| f.write_all(batch.as_bytes()));
        if !matches!(written, Some(Ok(()))) {
            counts.failed.fetch_add(lines, Ordering::Relaxed);
            file = None;
            // Said once per streak of failures, not per line.
            if failures == 0 {
                tracing::error!(path = %path.display(), "file-log cannot write to its file");
            }
            failures += 1;
        } else {
            counts.sent.fetch_add(lines, Ordering::Relaxed);
            failures = 0;
        }
    }
}

struct FileLog {
    writer: Arc<Writer>,
}

fn build(
    c: &Map<String, Value>,
    _: &super::chain::Scope,
    shared: &Arc<super::Shared>,
) -> Result<Arc<dyn Handler>, String> {
    let path = get_str(c, "path").ok_or("path is required")?;
    let counts = shared.log_queues.counts("file-log", path.to_string());
    let writer = shared
        .file_logs
        .get(Path::new(path), get_bool(c, "reopen"), counts)?;
    Ok(Arc::new(FileLog { writer }))
}

impl Handler for FileLog {
    fn on_response(&self) -> bool {
        true
    }

    fn log(&self, event: &RequestEvent, serialized: &Serialized) {
        let mut line = super::log_entry::entry(event, serialized).to_string();
        line.push('\n');
        self.writer.offer(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_required_and_must_be_absolute() {
        for (config, message) in [
            (json!({}), "path: required field missing"),
            (
                json!({"path": "relative.log"}),
                "path: not a valid filename",
            ),
        ] {
            let mut c = config.as_object().cloned().unwrap();
            match super::super::normalize_config("file-log", &mut c) {
                Err(super::super::ConfigError::Fields(f)) => {
                    assert!(f.message().contains(message), "{}", f.message())
                }
                _ => panic!("{config} accepted"),
            }
        }
    }

    #[test]
    fn lines_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.log");
        let writers = Writers::default();
        let queues = super::super::log_queue::Queues::default();
        let counts = || queues.counts("file-log", "requests.log".into());
        let w = writers.get(&path, false, counts()).unwrap();
        assert!(
            Arc::ptr_eq(&w, &writers.get(&path, false, counts()).unwrap()),
            "one writer per file"
        );
        for i in 0..100 {
            w.offer(format!("{i}\n"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 100 {
                let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
                assert_eq!(text.lines().collect::<Vec<_>>(), expected);
                let c = counts();
                assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
                assert_eq!(c.waiting.load(Ordering::Relaxed), 0);
                assert_eq!(c.sent.load(Ordering::Relaxed), 100);
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
