//! Counting recent attempts by key (a username, an email, a client address) to refuse the
//! next one past a limit: login lockouts and sign-up limits. Memory stays bounded: once the map
//! holds `MAX_KEYS` keys, those whose attempts have all expired are dropped, and if none has,
//! the key attempted least recently makes room. A new key is always counted: a flood of junk
//! keys can push out the quietest one, but never switch the throttle off for the others.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 10_000;

pub struct Throttle {
    limit: usize,
    window: Duration,
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Throttle {
    /// At most `limit` attempts per key in any `window`.
    pub fn new(limit: usize, window: Duration) -> Throttle {
        Throttle {
            limit,
            window,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has used up its attempts.
    pub fn exhausted(&self, key: &str) -> bool {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(key).is_some_and(|list| {
            list.retain(|t| t.elapsed() < self.window);
            list.len() >= self.limit
        })
    }

    /// Counts one attempt by `key`.
    pub fn hit(&self, key: &str) {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, list| list.iter().any(|t| t.elapsed() < window));
            if map.len() >= MAX_KEYS {
                let quietest = map
                    .iter()
                    .min_by_key(|(_, list)| list.last().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = quietest {
                    map.remove(&k);
                }
            }
        }
        let list = map.entry(key.to_string()).or_default();
        list.retain(|t| t.elapsed() < self.window);
        list.push(Instant::now());
    }

    /// How long ago `key`'s latest attempt in the window was; `None` without one.
    pub fn since_last(&self, key: &str) -> Option<Duration> {
        let map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .and_then(|list| list.last())
            .map(|t| t.elapsed())
            .filter(|age| *age < self.window)
    }

    /// Forgets `key`'s attempts (after a successful login).
    pub fn clear(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_limit_and_others_are_not() {
        let t = Throttle::new(2, Duration::from_secs(60));
        t.hit("a");
        assert!(!t.exhausted("a"));
        t.hit("a");
        assert!(t.exhausted("a"));
        assert!(!t.exhausted("b"));
        t.clear("a");
        assert!(!t.exhausted("a"));
    }

    /// Issue 22, item 6: 10,000 junk keys filled the table, and no key was throttled after.
    #[test]
    fn a_full_table_still_counts_new_keys() {
        let t = Throttle::new(2, Duration::from_secs(60));
        for i in 0..MAX_KEYS + 5 {
            t.hit(&format!("junk{i}"));
        }
        t.hit("admin");
        t.hit("admin");
        assert!(t.exhausted("admin"));
        assert!(t
            .since_last("admin")
            .is_some_and(|d| d < Duration::from_secs(1)));
        assert!(t.attempts.lock().unwrap().len() <= MAX_KEYS);
    }

    #[test]
    fn attempts_expire_with_the_window() {
        let t = Throttle::new(1, Duration::from_millis(30));
        t.hit("a");
        assert!(t.exhausted("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!t.exhausted("a"));
    }
}
