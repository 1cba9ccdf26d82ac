//! The write-ahead log of `TOLLGATE_ANALYTICS_DURABILITY=wal`: every event is written to a
//! file before its response's last bytes leave, so a process killed with SIGKILL loses none.
//!
//! Without it, events wait in memory for up to the flush interval (in a proxy thread's pack,
//! the queue, the batch being filled) and a SIGKILL loses them. With it, each proxy thread
//! appends each event it records to a segment file of its own: one `write(2)` per event into
//! the page cache (no fsync: what it guards against is the process dying, not the machine).
//! A segment starts with the offset up to which its events are safe (in the sink or in the
//! fsynced spill file), which the batcher advances after each batch ([`acknowledge`]); a
//! thread moves to a new segment once one holds `ROTATE_BYTES`, and the batcher deletes the old
//! one once all of it is safe. (Creating a file costs about 0.6 ms on this machine's file
//! system, so segments are long-lived: one per pack of 64 events cost 10 µs per request.)
//! At start, what earlier runs left past their safe offsets is read back (a torn last event
//! dropped) into the spill file, from which the pipeline delivers it first. A crash between a
//! batch landing and its offset being written delivers that batch's events twice: at least
//! once, never lost.
use crate::packed::Packed;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const DIR: &str = "analytics-wal";
const EXTENSION: &str = "wal";
/// The safe offset at the start of each segment.
const HEADER: u64 = 8;
/// A thread starts a new segment once its current one holds this much.
pub const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// Where segments go, and how they are named.
pub struct WalDir {
    dir: PathBuf,
    /// This run's start, in nanoseconds: segment names never repeat across runs.
    run: u128,
    next: AtomicU64,
}

/// One thread's open segment.
pub struct Segment {
    file: File,
    path: Arc<PathBuf>,
    len: u64,
}

/// How far a pack's events reach into their segment, and whether the thread has moved on from
/// it (so that it can go once this pack is safe).
#[derive(Debug, Clone)]
pub struct Mark {
    path: Arc<PathBuf>,
    end: u64,
    last: bool,
}

impl WalDir {
    /// Opens (creating) the log in `data_dir` and reads back what earlier runs left past their
    /// safe offsets: those events, and the segment files (to delete once the events are safe).
    pub fn open(data_dir: &Path) -> io::Result<(WalDir, Packed, Vec<PathBuf>)> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let mut leftovers: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == EXTENSION))
            .collect();
        leftovers.sort();
        let mut recovered = Packed::default();
        for path in &leftovers {
            recovered.append(&unsafe_part(std::fs::read(path)?));
        }
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let wal = WalDir {
            dir,
            run,
            next: AtomicU64::new(0),
        };
        Ok((wal, recovered, leftovers))
    }

    /// A new segment file, nothing in it safe yet.
    pub fn segment(&self) -> io::Result<Segment> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{}-{n:06}.{EXTENSION}", self.run));
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(&HEADER.to_le_bytes())?;
        Ok(Segment {
            file,
            path: Arc::new(path),
            len: HEADER,
        })
    }
}

/// The events of a segment's bytes past its safe offset.
fn unsafe_part(mut bytes: Vec<u8>) -> Packed {
    let safe = bytes
        .get(..HEADER as usize)
        .map_or(bytes.len() as u64, |h| {
            u64::from_le_bytes(h.try_into().expect("8 bytes"))
        });
    let from = (safe.max(HEADER) as usize).min(bytes.len());
    Packed::whole_events(bytes.split_off(from))
}

impl Segment {
    /// Appends an event's bytes in one write.
    pub fn append(&mut self, event: &[u8]) -> io::Result<()> {
        self.file.write_all(event)?;
        self.len += event.len() as u64;
        Ok(())
    }

    /// Whether the segment holds `ROTATE_BYTES`: its thread then moves to a new one.
    pub fn full(&self) -> bool {
        self.len >= ROTATE_BYTES
    }

    /// Where the events written so far end, and whether this is the segment's last mark.
    pub fn mark(&self) -> Mark {
        Mark {
            path: self.path.clone(),
            end: self.len,
            last: self.full(),
        }
    }
}

/// Called once the packs of `marks` (in the order they were recorded) are safe: advances each
/// segment's safe offset, and deletes the segments their threads have left. A failure is
/// logged: those events would come back, once, at the next start.
pub fn acknowledge(marks: &[Mark]) {
    let mut latest: HashMap<&Arc<PathBuf>, &Mark> = HashMap::new();
    for m in marks {
        latest.insert(&m.path, m);
    }
    for (path, mark) in latest {
        let done = if mark.last {
            std::fs::remove_file(path.as_path())
        } else {
            OpenOptions::new()
                .write(true)
                .open(path.as_path())
                .and_then(|f| f.write_all_at(&mark.end.to_le_bytes(), 0))
        };
        if let Err(e) = done {
            tracing::warn!(path = %path.display(), error = %e, "cannot update an analytics WAL segment");
        }
    }
}

/// Deletes the segments an earlier run left, once their events are in the spill file.
pub fn remove(segments: &[PathBuf]) {
    for path in segments {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete an analytics WAL segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;

    #[test]
    fn what_is_past_the_safe_offset_comes_back_with_a_torn_tail_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, recovered, leftovers) = WalDir::open(dir.path()).unwrap();
        assert!(recovered.is_empty() && leftovers.is_empty());
        let mut one = Packed::default();
        one.push(&event(1));
        let mut seg = wal.segment().unwrap();
        seg.append(one.as_bytes()).unwrap();
        acknowledge(&[seg.mark()]);
        seg.append(one.as_bytes()).unwrap();
        seg.append(one.as_bytes()).unwrap();
        seg.append(&one.as_bytes()[..10]).unwrap();
        drop(seg);
        let (_, recovered, leftovers) = WalDir::open(dir.path()).unwrap();
        assert_eq!(recovered.len(), 2, "the first event was safe");
        assert_eq!(leftovers.len(), 1);
        remove(&leftovers);
        let (_, recovered, _) = WalDir::open(dir.path()).unwrap();
        assert!(recovered.is_empty());
    }

    #[test]
    fn a_segment_its_thread_left_goes_once_its_last_pack_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = WalDir::open(dir.path()).unwrap();
        let seg = wal.segment().unwrap();
        let mut mark = seg.mark();
        assert!(!mark.last);
        acknowledge(std::slice::from_ref(&mark));
        assert!(seg.path.exists(), "still the thread's segment");
        mark.last = true;
        acknowledge(&[mark]);
        assert!(!seg.path.exists());
    }
}
