//! The `memory` strategy: responses kept in this process, up to a size in bytes, the least
//! recently used going first when it is full (Kong keeps them in an nginx shared dictionary of
//! fixed size, which evicts the same way). Instances naming the same `dictionary_name` share
//! one store, as they share the dictionary in Kong.
//!
//! A hit takes a read lock and stamps the entry's last use; only a store or a purge takes the
//! write lock. When a store overflows, expired entries go first, then the least recently used
//! until a tenth of the room is free, so the sort that finds them runs once per tenth of the
//! capacity written rather than once per write.
use super::cached::Cached;
use super::key::Key;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub struct Memory {
    capacity: usize,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Slot>,
    bytes: usize,
}

struct Slot {
    cached: Arc<Cached>,
    /// Unix seconds after which it is gone (the storage TTL).
    expires_at: u64,
    /// Milliseconds of its last hit (or its store).
    last_used: AtomicU64,
    size: usize,
}

impl Memory {
    pub fn new(capacity: usize) -> Memory {
        Memory {
            capacity,
            state: RwLock::new(State::default()),
        }
    }

    /// The live entry under `key`; `now_ms` is the time, stamped as its last use.
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<Arc<Cached>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let slot = state.entries.get(key)?;
        if slot.expires_at <= now_ms / 1000 {
            return None;
        }
        slot.last_used.store(now_ms, Ordering::Relaxed);
        Some(slot.cached.clone())
    }

    /// Keeps `cached` under `key` for `storage_ttl` seconds; `false` when it is larger than
    /// the whole store.
    pub fn put(&self, key: Key, cached: Arc<Cached>, storage_ttl: u64, now_ms: u64) -> bool {
        let size = cached.size();
        if size > self.capacity {
            return false;
        }
        let slot = Slot {
            cached,
            expires_at: now_ms / 1000 + storage_ttl,
            last_used: AtomicU64::new(now_ms),
            size,
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = state.entries.insert(key, slot) {
            state.bytes -= old.size;
        }
        state.bytes += size;
        if state.bytes > self.capacity {
            state.evict(self.capacity - self.capacity / 10, now_ms / 1000);
        }
        true
    }

    /// Takes the entry under `key` out; whether there was a live one.
    pub fn purge(&self, key: &Key, now_ms: u64) -> bool {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match state.entries.remove(key) {
            Some(slot) => {
                state.bytes -= slot.size;
                slot.expires_at > now_ms / 1000
            }
            None => false,
        }
    }

    /// Empties the store.
    pub fn flush(&self) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        *state = State::default();
    }

    /// Entries and bytes held (expired ones until a store overflows or purges them).
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.entries.len(), state.bytes)
    }
}

impl State {
    /// Drops expired entries, then the least recently used, until at most `target` bytes
    /// are held.
    fn evict(&mut self, target: usize, now: u64) {
        let mut freed = 0;
        self.entries.retain(|_, slot| {
            let live = slot.expires_at > now;
            if !live {
                freed += slot.size;
            }
            live
        });
        self.bytes -= freed;
        if self.bytes <= target {
            return;
        }
        let mut by_use: Vec<(u64, Key)> = self
            .entries
            .iter()
            .map(|(k, s)| (s.last_used.load(Ordering::Relaxed), *k))
            .collect();
        by_use.sort_unstable_by_key(|(used, _)| *used);
        for (_, key) in by_use {
            if self.bytes <= target {
                break;
            }
            if let Some(slot) = self.entries.remove(&key) {
                self.bytes -= slot.size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(body_len: usize) -> Arc<Cached> {
        Arc::new(Cached {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: Bytes::from(vec![b'x'; body_len]),
            timestamp: 0,
            ttl: 60,
        })
    }

    fn key(n: u8) -> Key {
        Key([n; 32])
    }

    #[test]
    fn the_least_recently_used_go_first_when_full() {
        let one = entry(1000).size();
        let store = Memory::new(one * 4);
        for n in 0..4 {
            assert!(store.put(key(n), entry(1000), 60, 1000 + u64::from(n)));
        }
        assert!(store.get(&key(0), 2000).is_some()); // 0 is now the most recent
        assert!(store.put(key(4), entry(1000), 60, 2001));
        assert!(store.get(&key(1), 2002).is_none(), "least recently used");
        for n in [0, 4] {
            assert!(store.get(&key(n), 2003).is_some(), "{n} kept");
        }
        let (_, bytes) = store.usage();
        assert!(bytes <= one * 4);
    }

    #[test]
    fn entries_expire_after_their_storage_ttl_and_can_be_purged() {
        let store = Memory::new(1 << 20);
        store.put(key(1), entry(10), 5, 10_000);
        assert!(store.get(&key(1), 14_999).is_some());
        assert!(store.get(&key(1), 15_000).is_none());
        store.put(key(2), entry(10), 5, 10_000);
        assert!(store.purge(&key(2), 10_001));
        assert!(!store.purge(&key(2), 10_001));
        store.put(key(3), entry(10), 5, 10_000);
        store.flush();
        assert_eq!(store.usage(), (0, 0));
    }

    #[test]
    fn an_entry_larger_than_the_store_is_not_kept() {
        let store = Memory::new(100);
        assert!(!store.put(key(1), entry(1000), 60, 0));
        assert_eq!(store.usage(), (0, 0));
    }
}
