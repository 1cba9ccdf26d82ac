//! Counting recent attempts by key (a username, an email, a client address) to refuse the
//! next one past a limit: login lockouts and sign-up limits. Memory stays bounded: keys whose
//! attempts have all expired are dropped once the map grows past `MAX_KEYS`.
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
        }
        if map.len() < MAX_KEYS || map.contains_key(key) {
            map.entry(key.to_string()).or_default().push(Instant::now());
        }
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

    #[test]
    fn attempts_expire_with_the_window() {
        let t = Throttle::new(1, Duration::from_millis(30));
        t.hit("a");
        assert!(t.exhausted("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!t.exhausted("a"));
    }
}
