//! Name resolution for balancing: every host name a target or a service names is resolved
//! again each `TOLLGATE_DNS_TTL` seconds, and each address it yields becomes a member of the
//! balancer, as Kong's DNS client makes each A record a balancer address.
//!
//! The system resolver (getaddrinfo) answers without TTLs, so the refresh interval is a
//! setting. Snapshots read the last answers without waiting; a name no snapshot has seen
//! resolved yet is balanced as the name itself (the connection resolves it) until its first
//! answer, which, like every answer that changes the addresses, asks for a new snapshot.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What is known of a name.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Not looked up yet.
    Pending,
    /// Its addresses, sorted.
    Addresses(Vec<IpAddr>),
    /// The lookup failed with this message (Kong's DNS_ERROR).
    Failed(String),
}

struct Entry {
    answer: Answer,
    /// When it was last looked up; `None` until it has been.
    at: Option<Instant>,
    /// Whether the last snapshot asked for it: names no longer used are dropped.
    wanted: bool,
}

/// The names balancers use and their last answers.
pub struct Resolver {
    ttl: Duration,
    names: Mutex<HashMap<String, Entry>>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(Duration::from_secs(30))
    }
}

impl Resolver {
    pub fn new(ttl: Duration) -> Resolver {
        Resolver {
            ttl,
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The last answer for `host`, which is from now on resolved in the background.
    pub fn lookup(&self, host: &str) -> Answer {
        let mut names = self.lock();
        let e = names.entry(host.to_ascii_lowercase()).or_insert(Entry {
            answer: Answer::Pending,
            at: None,
            wanted: true,
        });
        e.wanted = true;
        e.answer.clone()
    }

    /// Starts a new round of `lookup`s: names no snapshot asks for any more are forgotten
    /// when the round ends (`forget_unwanted`).
    pub fn begin_round(&self) {
        for e in self.lock().values_mut() {
            e.wanted = false;
        }
    }

    pub fn forget_unwanted(&self) {
        self.lock().retain(|_, e| e.wanted);
    }

    /// Resolves every name due, and says whether any answer changed.
    pub async fn refresh(&self) -> bool {
        let now = Instant::now();
        let due: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.at.is_none_or(|at| now.duration_since(at) >= self.ttl))
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = false;
        for name in due {
            let answer = resolve(&name).await;
            let mut names = self.lock();
            if let Some(e) = names.get_mut(&name) {
                changed |= e.answer != answer;
                e.answer = answer;
                e.at = Some(Instant::now());
            }
        }
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long one lookup may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

async fn resolve(name: &str) -> Answer {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Ok(Ok(addrs)) => {
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            // IPv4 when the name has it, as Kong's default `dns_order` (A before AAAA).
            if ips.iter().any(IpAddr::is_ipv4) {
                ips.retain(IpAddr::is_ipv4);
            }
            ips.sort();
            ips.dedup();
            if ips.is_empty() {
                Answer::Failed("no addresses".into())
            } else {
                Answer::Addresses(ips)
            }
        }
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Err(_) => Answer::Failed("lookup timed out".into()),
    }
}

/// Re-resolves the names every second that some are due, and calls `changed` when an answer
/// moved, until the task is dropped.
pub async fn run(resolver: Arc<Resolver>, changed: impl Fn()) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if resolver.refresh().await {
            changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolve_in_the_background_and_changes_are_reported() {
        let r = Resolver::new(Duration::from_secs(60));
        assert_eq!(r.lookup("localhost"), Answer::Pending);
        assert!(r.refresh().await, "the first answer is a change");
        match r.lookup("localhost") {
            Answer::Addresses(a) => assert!(a.iter().all(|ip| ip.is_loopback()), "{a:?}"),
            other => panic!("{other:?}"),
        }
        assert!(!r.refresh().await, "nothing is due within the TTL");
        r.lookup("no-such-host.invalid");
        r.refresh().await;
        assert!(matches!(
            r.lookup("no-such-host.invalid"),
            Answer::Failed(_)
        ));
        r.begin_round();
        r.lookup("localhost");
        r.forget_unwanted();
        assert_eq!(r.lock().len(), 1);
    }
}
