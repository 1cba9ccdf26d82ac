//! The `redis` policy's counters: shared by every node that points at the same Redis, so a
//! cluster enforces one limit.
//!
//! One Lua script per request reads every window's counter, and counts the request in all of
//! them only when none is at its limit (setting each new counter's expiry to its window's
//! end), so the check and the count are one atomic step on the server. Connections are made
//! on first use and kept across snapshots; after a failed connect, requests fail fast for a
//! second instead of each waiting for the timeout.
use super::local::Window;
use super::PerWindow;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

const CHECK_AND_COUNT: &str = r#"
local n = #KEYS
local usage = {}
for i = 1, n do
  usage[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  if usage[i] >= tonumber(ARGV[i]) then
    return {0, unpack(usage)}
  end
end
for i = 1, n do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIREAT', KEYS[i], ARGV[n + i])
  end
end
return {1, unpack(usage)}
"#;

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CHECK_AND_COUNT));

/// Where a plugin instance keeps its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: String,
    /// `host:port/db`, without credentials, for messages.
    pub name: String,
    pub timeout: Duration,
}

/// The node's Redis connections by URL, and how often Redis failed a request.
#[derive(Default)]
pub struct Links {
    links: Mutex<HashMap<String, Arc<Link>>>,
    pub errors: AtomicU64,
    logged_at_ms: AtomicI64,
}

impl Links {
    /// Whether a Redis failure should be logged now: at most once a second, so an outage
    /// does not flood the log with one line per request.
    pub fn should_log(&self, now_ms: i64) -> bool {
        let last = self.logged_at_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= 1000
            && self
                .logged_at_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The link for `target` (made on first use; its URL may hold a password, which is
    /// why messages name it by `target.name`).
    pub fn get(&self, target: &Target) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .entry(target.url.clone())
            .or_insert_with(|| {
                Arc::new(Link {
                    url: target.url.clone(),
                    name: target.name.clone(),
                    conn: OnceCell::new(),
                    failed_at_ms: AtomicI64::new(i64::MIN),
                })
            })
            .clone()
    }
}

pub struct Link {
    url: String,
    name: String,
    conn: OnceCell<ConnectionManager>,
    failed_at_ms: AtomicI64,
}

impl Link {
    /// Like `local::Counters::check_and_count`, on the server. `subject` prefixes the keys.
    pub async fn check_and_count(
        &self,
        subject: &str,
        windows: &[Window],
        timeout: Duration,
        now_ms: i64,
    ) -> Result<(PerWindow<u64>, bool), String> {
        let run = async {
            let mut conn = self.connection(now_ms).await?;
            let mut script = SCRIPT.prepare_invoke();
            for w in windows {
                script.key(format!(
                    "ratelimit:{subject}:{}:{}",
                    w.start,
                    w.period.name()
                ));
            }
            for w in windows {
                script.arg(w.limit);
            }
            for w in windows {
                script.arg(w.end);
            }
            let reply: Vec<u64> = script
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let (allowed, usage) = reply.split_first().ok_or("empty reply from Redis")?;
            Ok((PerWindow::from_slice(usage), *allowed == 1))
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("Redis at {} did not answer within {timeout:?}", self.name))?
    }

    pub(crate) async fn connection(&self, now_ms: i64) -> Result<ConnectionManager, String> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        if now_ms.saturating_sub(self.failed_at_ms.load(Ordering::Relaxed)) < 1000 {
            return Err(format!(
                "Redis at {} was unreachable less than a second ago",
                self.name
            ));
        }
        let connect = async {
            let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
            ConnectionManager::new(client)
                .await
                .map_err(|e| e.to_string())
        };
        match self.conn.get_or_try_init(|| connect).await {
            Ok(c) => Ok(c.clone()),
            Err(e) => {
                self.failed_at_ms.store(now_ms, Ordering::Relaxed);
                Err(format!("cannot connect to Redis at {}: {e}", self.name))
            }
        }
    }
}
