//! The spill file: batches the sink could not take, kept on disk until it can.
//!
//! Records are appended as `[length u32][crc32 u32][batch id, 16 bytes][packed events]`
//! (little-endian; the events as `packed` lays them out) and each append is fsynced, so a
//! batch that reached the file survives a crash. Delivery goes from the front: a batch counts
//! as gone only once the sink acknowledged it, and the offset of the acknowledged prefix is
//! kept (fsynced) in a side file. When everything is acknowledged both files are truncated. On
//! open, every unacknowledged record is checked; a truncated or corrupt tail is moved aside to
//! a `.bad-<unix time>` file and logged, and the good records stay.
use crate::packed::Packed;
use crate::sink::Batch;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: u64 = 8;
/// A batch id's bytes, at the start of each record's payload.
const ID_BYTES: usize = 16;
/// Larger records are treated as corruption (a batch is far smaller).
const MAX_RECORD: u32 = 256 * 1024 * 1024;

pub struct Spill {
    path: PathBuf,
    offset_path: PathBuf,
    file: File,
    /// Start of the first unacknowledged record.
    acked: u64,
    /// End of the last good record.
    end: u64,
    /// Unacknowledged records.
    pending: u64,
}

/// The next unacknowledged batch and where its record ends (to acknowledge it).
pub struct Pending {
    pub batch: Batch,
    pub end: u64,
}

impl Spill {
    /// Opens the spill file in `dir` (creating it), checking what is left to deliver.
    pub fn open(dir: &Path) -> io::Result<Spill> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("analytics-spill.log");
        let offset_path = dir.join("analytics-spill.offset");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len();
        let acked = read_offset(&offset_path)?.min(len);
        let mut spill = Spill {
            path,
            offset_path,
            file,
            acked,
            end: acked,
            pending: 0,
        };
        spill.scan(len)?;
        Ok(spill)
    }

    /// Walks the unacknowledged records; the first bad one and everything after it go aside.
    fn scan(&mut self, len: u64) -> io::Result<()> {
        let mut pos = self.acked;
        while pos < len {
            match self.read_at(pos, len)? {
                Some((_, next)) => {
                    pos = next;
                    self.pending += 1;
                }
                None => {
                    self.move_aside(pos, len)?;
                    break;
                }
            }
        }
        self.end = pos;
        Ok(())
    }

    /// The record at `pos`, with the position after it; `None` when it is truncated or corrupt.
    fn read_at(&mut self, pos: u64, len: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
        if len - pos < HEADER {
            return Ok(None);
        }
        let mut header = [0u8; HEADER as usize];
        self.file.seek(SeekFrom::Start(pos))?;
        self.file.read_exact(&mut header)?;
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if size > MAX_RECORD || u64::from(size) > len - pos - HEADER {
            return Ok(None);
        }
        let mut payload = vec![0u8; size as usize];
        self.file.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Ok(None);
        }
        Ok(Some((payload, pos + HEADER + u64::from(size))))
    }

    fn move_aside(&mut self, pos: u64, len: u64) -> io::Result<()> {
        let stamp = crate::unix_now();
        let bad = self.path.with_extension(format!("bad-{stamp}"));
        let mut tail = Vec::new();
        self.file.seek(SeekFrom::Start(pos))?;
        self.file.read_to_end(&mut tail)?;
        std::fs::write(&bad, &tail)?;
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        tracing::error!(
            spill = %self.path.display(),
            moved_to = %bad.display(),
            bytes = len - pos,
            "analytics spill file has a corrupt or truncated tail; the good records will be replayed"
        );
        Ok(())
    }

    /// Batches waiting for the sink.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends `batch` and makes it durable.
    pub fn append(&mut self, batch: &Batch) -> io::Result<()> {
        let events = batch.packed.as_bytes();
        let size = u32::try_from(ID_BYTES + events.len())
            .ok()
            .filter(|s| *s <= MAX_RECORD)
            .ok_or_else(|| io::Error::other("batch too large to spill"))?;
        let mut record = Vec::with_capacity(size as usize + HEADER as usize);
        record.extend_from_slice(&size.to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(batch.id.as_bytes());
        record.extend_from_slice(events);
        let crc = crc32fast::hash(&record[HEADER as usize..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.end += record.len() as u64;
        self.pending += 1;
        Ok(())
    }

    /// The oldest unacknowledged batch. A record that no longer decodes is skipped with an
    /// error log (its checksum held, so it was written that way).
    pub fn next(&mut self) -> io::Result<Option<Pending>> {
        while self.acked < self.end {
            let Some((payload, end)) = self.read_at(self.acked, self.end)? else {
                return Err(io::Error::other("spill record changed on disk"));
            };
            match decode(payload) {
                Some(batch) => return Ok(Some(Pending { batch, end })),
                None => {
                    tracing::error!("skipping an analytics spill record that does not decode");
                    self.ack(end)?;
                }
            }
        }
        Ok(None)
    }

    /// Marks everything before `end` as delivered; an empty spill is truncated.
    pub fn ack(&mut self, end: u64) -> io::Result<()> {
        self.acked = end;
        self.pending = self.pending.saturating_sub(1);
        if self.acked >= self.end {
            self.file.set_len(0)?;
            self.file.sync_all()?;
            self.acked = 0;
            self.end = 0;
            self.pending = 0;
        }
        write_offset(&self.offset_path, self.acked)
    }
}

/// A record's batch: its id, then its events.
fn decode(mut payload: Vec<u8>) -> Option<Batch> {
    let id = uuid::Uuid::from_slice(payload.get(..ID_BYTES)?).ok()?;
    payload.drain(..ID_BYTES);
    Some(Batch {
        id,
        packed: Packed::from_bytes(payload)?,
    })
}

fn read_offset(path: &Path) -> io::Result<u64> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn write_offset(path: &Path, offset: u64) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(&offset.to_le_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::event;

    fn batch(from: u64, n: u64) -> Batch {
        Batch::new(&(from..from + n).map(event).collect::<Vec<_>>())
    }

    #[test]
    fn batches_come_back_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::open(dir.path()).unwrap();
        let (one, two) = (batch(0, 3), batch(3, 2));
        s.append(&one).unwrap();
        s.append(&two).unwrap();
        let first = s.next().unwrap().unwrap();
        assert_eq!(first.batch, one);
        // Not acknowledged: a reopen (a crash) gives it again.
        drop(s);
        let mut s = Spill::open(dir.path()).unwrap();
        assert_eq!(s.pending(), 2);
        let first = s.next().unwrap().unwrap();
        s.ack(first.end).unwrap();
        drop(s);
        let mut s = Spill::open(dir.path()).unwrap();
        let second = s.next().unwrap().unwrap();
        assert_eq!(second.batch, two);
        s.ack(second.end).unwrap();
        assert!(s.next().unwrap().is_none());
        assert_eq!(
            std::fs::metadata(dir.path().join("analytics-spill.log"))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn a_corrupt_or_truncated_tail_is_moved_aside_and_the_good_part_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("analytics-spill.log");
        let mut s = Spill::open(dir.path()).unwrap();
        let good = batch(0, 2);
        s.append(&good).unwrap();
        s.append(&batch(2, 2)).unwrap();
        drop(s);
        let good_len = std::fs::metadata(&log).unwrap().len();
        // A flipped byte in the second record, then a half-written third.
        let mut bytes = std::fs::read(&log).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        bytes.extend_from_slice(&[7, 0, 0]);
        std::fs::write(&log, &bytes).unwrap();

        let mut s = Spill::open(dir.path()).unwrap();
        assert_eq!(s.pending(), 1);
        assert_eq!(s.next().unwrap().unwrap().batch, good);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".bad-"))
            .collect();
        assert_eq!(aside.len(), 1);
        let kept = std::fs::metadata(&log).unwrap().len();
        assert!(kept < good_len);
        assert_eq!(
            std::fs::metadata(aside[0].path()).unwrap().len(),
            bytes.len() as u64 - kept
        );
    }
}
