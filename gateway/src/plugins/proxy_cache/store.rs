//! Where proxy-cache instances keep responses: the `memory` strategy's stores, one per
//! `dictionary_name` on this node, or a Redis server every node shares (the `redis` strategy,
//! beyond Kong's open-source plugin: its Enterprise sibling has it). A Redis that fails is a
//! miss, never an error for the client; failures are counted and logged at most once a second.
use super::cached::Cached;
use super::key::Key;
use super::memory::Memory;
use crate::plugins::rate_limiting::redis::{Link, Links, Target};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes each memory store holds unless `TOLLGATE_PROXY_CACHE_MEMORY` says otherwise: the
/// size of Kong's `kong_db_cache` shared dictionary.
pub const DEFAULT_MEMORY_BYTES: usize = 128 * 1024 * 1024;

/// The node's memory stores by dictionary name; they outlive snapshots, so a config change
/// keeps what is cached.
pub struct Stores {
    memory_bytes: usize,
    memory: Mutex<HashMap<String, Arc<Memory>>>,
    /// The `redis` strategy's connections.
    pub redis: Links,
}

impl Default for Stores {
    fn default() -> Stores {
        Stores::new(DEFAULT_MEMORY_BYTES)
    }
}

impl Stores {
    /// Stores whose memory ones hold `memory_bytes` each.
    pub fn new(memory_bytes: usize) -> Stores {
        Stores {
            memory_bytes,
            memory: Mutex::default(),
            redis: Links::default(),
        }
    }

    /// The memory store named `dictionary` (made on first use).
    pub fn memory(&self, dictionary: &str) -> Arc<Memory> {
        let mut stores = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(dictionary.to_string())
            .or_insert_with(|| Arc::new(Memory::new(self.memory_bytes)))
            .clone()
    }
}

/// One instance's store.
#[derive(Clone)]
pub enum Storage {
    Memory(Arc<Memory>),
    Redis(Arc<RedisStore>),
}

/// A Redis server as a cache: entries under `proxy-cache:<key>`, expiring by themselves.
pub struct RedisStore {
    link: Arc<Link>,
    name: String,
    timeout: Duration,
}

const PREFIX: &str = "proxy-cache:";

impl Storage {
    pub fn redis(stores: &Stores, target: &Target) -> Storage {
        Storage::Redis(Arc::new(RedisStore {
            link: stores.redis.get(target),
            name: target.name.clone(),
            timeout: target.timeout,
        }))
    }

    /// The live entry under `key`, for the admin API (a Redis failure is an error there).
    pub async fn lookup(&self, key: &Key, now_ms: u64) -> Result<Option<Arc<Cached>>, String> {
        match self {
            Storage::Memory(m) => Ok(m.get(key, now_ms)),
            Storage::Redis(r) => r.fetch(key, now_ms).await,
        }
    }

    /// Takes the entry under `key` out; whether there was one.
    pub async fn purge(&self, key: &Key, now_ms: u64) -> Result<bool, String> {
        match self {
            Storage::Memory(m) => Ok(m.purge(key, now_ms)),
            Storage::Redis(r) => r.purge(key, now_ms).await,
        }
    }

    /// Takes every entry out.
    pub async fn flush(&self, now_ms: u64) -> Result<(), String> {
        match self {
            Storage::Memory(m) => {
                m.flush();
                Ok(())
            }
            Storage::Redis(r) => r.flush(now_ms).await,
        }
    }

    /// Keeps `cached` under `key` for `storage_ttl` seconds: at once in memory, in a task of
    /// its own for Redis (the response is not held up by it).
    pub fn store(&self, key: Key, cached: Cached, storage_ttl: u64, now_ms: u64) {
        match self {
            Storage::Memory(m) => {
                m.put(key, Arc::new(cached), storage_ttl, now_ms);
            }
            Storage::Redis(r) => {
                let r = r.clone();
                tokio::spawn(async move {
                    if let Err(e) = r.put(&key, &cached, storage_ttl, now_ms).await {
                        tracing::warn!(error = %e, "proxy-cache: response not stored in Redis");
                    }
                });
            }
        }
    }
}

impl RedisStore {
    /// The live entry under `key`; a failure is an error (the proxy treats it as a miss).
    pub async fn fetch(&self, key: &Key, now_ms: u64) -> Result<Option<Arc<Cached>>, String> {
        let got: Option<Vec<u8>> = self
            .run(now_ms, |mut c| async move { c.get(redis_key(key)).await })
            .await?;
        Ok(got.and_then(|text| Cached::decode(&text)).map(Arc::new))
    }

    async fn put(&self, key: &Key, cached: &Cached, ttl: u64, now_ms: u64) -> Result<(), String> {
        let text = cached.encode();
        self.run(now_ms, |mut c| async move {
            c.set_ex::<_, _, ()>(redis_key(key), text, ttl.max(1)).await
        })
        .await
    }

    async fn purge(&self, key: &Key, now_ms: u64) -> Result<bool, String> {
        let removed: u64 = self
            .run(now_ms, |mut c| async move { c.del(redis_key(key)).await })
            .await?;
        Ok(removed > 0)
    }

    /// Deletes every `proxy-cache:` entry, found with `SCAN` (which does not block the server
    /// as `KEYS` would).
    async fn flush(&self, now_ms: u64) -> Result<(), String> {
        self.run(now_ms, |mut c| async move {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{PREFIX}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                if !keys.is_empty() {
                    c.del::<_, ()>(keys).await?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })
        .await
    }

    /// Runs `op` on the connection within the timeout.
    async fn run<T, F, Fut>(&self, now_ms: u64, op: F) -> Result<T, String>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.link.connection(now_ms as i64).await?;
            op(conn).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                format!(
                    "Redis at {} did not answer within {:?}",
                    self.name, self.timeout
                )
            })?
    }
}

fn redis_key(key: &Key) -> String {
    format!("{PREFIX}{}", key.hex())
}
