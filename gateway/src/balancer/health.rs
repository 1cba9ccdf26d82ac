//! The health of one target address: Kong's healthy/unhealthy state with its counters, and
//! Tollgate's circuit breaker.
//!
//! Kong's rules (lua-resty-healthcheck, as kong/runloop/balancer/healthcheckers.lua sets it
//! up): each response, timeout or TCP failure, seen by a passive check on proxied traffic or
//! by an active probe, adds to its counter; a success clears the failure counters and a
//! failure the success counter; a healthy target whose counter reaches the unhealthy
//! threshold of its kind turns unhealthy, an unhealthy one whose successes reach the healthy
//! threshold turns healthy, and a change of state clears the counters. A threshold of 0
//! disables that kind.
//!
//! The proxy reads the state on every pick with atomic loads; reports take a short lock that
//! is never held across an await. The state outlives snapshots (see [`Registry`]), so a
//! configuration change does not forget which targets are down.
use crate::model::upstream::{CircuitBreaker, Healthchecks};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;
use uuid::Uuid;

/// What came of one attempt at a target (or one active probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A TCP check connected.
    Success,
    /// An answer with this status.
    Status(u16),
    /// No connection, or it broke before an answer.
    TcpFailure,
    /// No answer in time.
    Timeout,
}

/// Which check saw the outcome: their thresholds differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Active,
    Passive,
}

/// Kong's names for a target's health on `/upstreams/{u}/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    HealthchecksOff,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
            Health::HealthchecksOff => "HEALTHCHECKS_OFF",
        }
    }
}

/// The circuit breaker's state, as `/metrics`, the admin API and the console show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Milliseconds on a process-wide monotonic clock (never 0, so 0 can mean "not set"). Not
/// the proxy's coarse clock: a breaker open for a second must close after one, not two.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

/// One target address's health, shared by the snapshots that balance over it and by its
/// active checker.
pub struct TargetHealth {
    /// `host:port` as the target names it.
    pub address: Arc<str>,
    /// Kong's health: false once a check (or the admin API) marked it unhealthy.
    up: AtomicBool,
    /// The breaker is open until this moment (`now_ms`), or half-open after it; 0: closed.
    open_until: AtomicU64,
    /// Requests a half-open breaker still lets through.
    probes_left: AtomicU32,
    /// Requests in flight (least-connections).
    pub in_flight: AtomicU32,
    /// Attempts sent to this address (its share of traffic).
    pub attempts: AtomicU64,
    /// Exponentially weighted response time in microseconds (the `latency` algorithm).
    pub ewma_us: AtomicU64,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    kong: KongCounters,
    /// Failed attempts in a row (the breaker).
    consecutive: u32,
    /// The breaker's window: (second it began, attempts, failures) for the current second
    /// and the ones before it, newest last.
    window: Vec<(u64, u32, u32)>,
    /// Successful half-open probes so far.
    probe_successes: u32,
}

impl TargetHealth {
    fn new(address: Arc<str>) -> TargetHealth {
        TargetHealth {
            address,
            up: AtomicBool::new(true),
            open_until: AtomicU64::new(0),
            probes_left: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            attempts: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0),
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Whether Kong's checks (or an operator) count it healthy.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether a request may go to it now: healthy, and its breaker closed or letting a
    /// probe through (which this call then uses up).
    pub fn admits(&self, now: u64) -> bool {
        if !self.is_up() {
            return false;
        }
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        self.probes_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    pub fn breaker(&self, now: u64) -> BreakerState {
        match self.open_until.load(Ordering::Relaxed) {
            0 => BreakerState::Closed,
            until if now < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Marks it healthy or unhealthy, as the admin API's `/healthy` and `/unhealthy` do, with
    /// its counters cleared; a healthy mark closes the breaker too.
    pub fn set_up(&self, up: bool) {
        let mut c = self.lock();
        self.up.store(up, Ordering::Relaxed);
        c.kong = KongCounters::default();
        if up {
            self.open_until.store(0, Ordering::Relaxed);
        }
    }

    /// Counts an outcome against Kong's thresholds of `check` in `checks`.
    pub fn report(&self, check: Check, checks: &Healthchecks, outcome: Outcome) {
        let mut c = self.lock();
        let (healthy_statuses, unhealthy_statuses, limits) = thresholds(check, checks);
        let up = self.is_up();
        let (count, limit) = match outcome {
            Outcome::Success => return self.success(&mut c.kong, up, limits.successes),
            Outcome::Status(s) if healthy_statuses.contains(&s) => {
                return self.success(&mut c.kong, up, limits.successes)
            }
            Outcome::Status(s) if unhealthy_statuses.contains(&s) => {
                c.kong.http_failures += 1;
                (c.kong.http_failures, limits.http_failures)
            }
            Outcome::Status(_) => return,
            Outcome::TcpFailure => {
                c.kong.tcp_failures += 1;
                (c.kong.tcp_failures, limits.tcp_failures)
            }
            Outcome::Timeout => {
                c.kong.timeouts += 1;
                (c.kong.timeouts, limits.timeouts)
            }
        };
        c.kong.successes = 0;
        if up && limit > 0 && count >= limit {
            self.up.store(false, Ordering::Relaxed);
            c.kong = KongCounters::default();
            tracing::warn!(target = %self.address, "target marked unhealthy");
        }
    }

    /// A success: the failure counters start again, and enough of them in a row bring an
    /// unhealthy target back.
    fn success(&self, k: &mut KongCounters, up: bool, needed: u32) {
        *k = KongCounters {
            successes: k.successes + 1,
            ..KongCounters::default()
        };
        if !up && needed > 0 && k.successes >= needed {
            // Checks found it healthy: the breaker need not probe it again.
            self.up.store(true, Ordering::Relaxed);
            self.open_until.store(0, Ordering::Relaxed);
            *k = KongCounters::default();
            tracing::info!(target = %self.address, "target marked healthy");
        }
    }

    /// Counts an attempt's outcome for the breaker: a TCP failure, a timeout or a 5xx is a
    /// failure.
    pub fn breaker_report(&self, breaker: &CircuitBreaker, outcome: Outcome, now: u64) {
        if !breaker.enabled {
            return;
        }
        let failed = !matches!(outcome, Outcome::Success | Outcome::Status(0..500));
        let mut c = self.lock();
        match self.breaker(now) {
            BreakerState::Open => {}
            BreakerState::HalfOpen if failed => self.open(breaker, &mut c, now),
            BreakerState::HalfOpen => {
                c.probe_successes += 1;
                if c.probe_successes >= breaker.half_open_probes {
                    self.open_until.store(0, Ordering::Relaxed);
                    c.consecutive = 0;
                    c.window.clear();
                }
            }
            BreakerState::Closed => {
                c.consecutive = if failed { c.consecutive + 1 } else { 0 };
                let (attempts, failures) = count_window(&mut c.window, breaker, failed, now);
                let ratio_tripped = attempts >= breaker.min_requests
                    && f64::from(failures) >= breaker.error_ratio * f64::from(attempts);
                if c.consecutive >= breaker.consecutive_failures || (failed && ratio_tripped) {
                    self.open(breaker, &mut c, now);
                }
            }
        }
    }

    fn open(&self, breaker: &CircuitBreaker, c: &mut Counters, now: u64) {
        let until = now + (breaker.open_for * 1000.0) as u64;
        self.probes_left
            .store(breaker.half_open_probes, Ordering::Relaxed);
        self.open_until.store(until.max(1), Ordering::Relaxed);
        c.probe_successes = 0;
        c.consecutive = 0;
        c.window.clear();
        tracing::warn!(target = %self.address, "circuit breaker opened");
    }

    /// Folds a response time into the moving average (the `latency` algorithm's score).
    pub fn observe_latency(&self, us: u64) {
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Kong's counters: outcomes of each kind since the last one of another kind.
#[derive(Default)]
struct KongCounters {
    successes: u32,
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
}

/// Adds an attempt to the breaker's per-second window and sums the window.
fn count_window(
    window: &mut Vec<(u64, u32, u32)>,
    breaker: &CircuitBreaker,
    failed: bool,
    now: u64,
) -> (u32, u32) {
    let second = now / 1000;
    let span = breaker.window.ceil() as u64;
    window.retain(|(s, _, _)| s + span > second);
    match window.last_mut() {
        Some((s, attempts, failures)) if *s == second => {
            *attempts += 1;
            *failures += u32::from(failed);
        }
        _ => window.push((second, 1, u32::from(failed))),
    }
    window
        .iter()
        .fold((0, 0), |(a, f), (_, wa, wf)| (a + wa, f + wf))
}

/// A check's thresholds, as counts.
struct Limits {
    successes: u32,
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
}

fn thresholds(check: Check, checks: &Healthchecks) -> (&[u16], &[u16], Limits) {
    match check {
        Check::Active => {
            let a = &checks.active;
            (
                &a.healthy.http_statuses,
                &a.unhealthy.http_statuses,
                Limits {
                    successes: a.healthy.successes.into(),
                    http_failures: a.unhealthy.http_failures.into(),
                    tcp_failures: a.unhealthy.tcp_failures.into(),
                    timeouts: a.unhealthy.timeouts.into(),
                },
            )
        }
        Check::Passive => {
            let p = &checks.passive;
            (
                &p.healthy.http_statuses,
                &p.unhealthy.http_statuses,
                Limits {
                    successes: p.healthy.successes.into(),
                    http_failures: p.unhealthy.http_failures.into(),
                    tcp_failures: p.unhealthy.tcp_failures.into(),
                    timeouts: p.unhealthy.timeouts.into(),
                },
            )
        }
    }
}

/// An upstream's id and one of its addresses.
type AddressKey = (Uuid, Arc<str>);

/// Every target's health, by upstream and address, kept while some snapshot uses it: a new
/// snapshot finds the state the old one left.
#[derive(Default)]
pub struct Registry {
    states: Mutex<HashMap<AddressKey, Weak<TargetHealth>>>,
}

impl Registry {
    /// The health of `address` in upstream `upstream`, made healthy on first use.
    pub fn get(&self, upstream: Uuid, address: &Arc<str>) -> Arc<TargetHealth> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let key = (upstream, address.clone());
        if let Some(found) = states.get(&key).and_then(Weak::upgrade) {
            return found;
        }
        states.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(TargetHealth::new(address.clone()));
        states.insert(key, Arc::downgrade(&fresh));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passive(tcp: u8, http: u8, successes: u8) -> Healthchecks {
        let mut h = Healthchecks::default();
        h.passive.unhealthy.tcp_failures = tcp;
        h.passive.unhealthy.http_failures = http;
        h.passive.healthy.successes = successes;
        h
    }

    #[test]
    fn a_target_leaves_and_rejoins_at_the_thresholds() {
        let t = TargetHealth::new("a:1".into());
        let checks = passive(0, 3, 2);
        for _ in 0..2 {
            t.report(Check::Passive, &checks, Outcome::Status(500));
        }
        assert!(t.is_up(), "two failures are below the threshold of 3");
        t.report(Check::Passive, &checks, Outcome::Status(200));
        t.report(Check::Passive, &checks, Outcome::Status(500));
        t.report(Check::Passive, &checks, Outcome::Status(500));
        assert!(t.is_up(), "a success cleared the failure counter");
        t.report(Check::Passive, &checks, Outcome::Status(500));
        assert!(!t.is_up());
        t.report(Check::Passive, &checks, Outcome::Status(200));
        assert!(!t.is_up());
        t.report(Check::Passive, &checks, Outcome::Status(200));
        assert!(t.is_up());
    }

    #[test]
    fn zero_thresholds_never_change_the_state() {
        let t = TargetHealth::new("a:1".into());
        for _ in 0..100 {
            t.report(
                Check::Passive,
                &Healthchecks::default(),
                Outcome::TcpFailure,
            );
        }
        assert!(t.is_up());
    }

    #[test]
    fn the_breaker_opens_half_opens_and_closes() {
        let t = TargetHealth::new("a:1".into());
        let b = CircuitBreaker {
            consecutive_failures: 3,
            open_for: 1.0,
            half_open_probes: 2,
            ..CircuitBreaker::default()
        };
        let now = 10_000;
        for _ in 0..3 {
            assert!(t.admits(now));
            t.breaker_report(&b, Outcome::Status(502), now);
        }
        assert_eq!(t.breaker(now), BreakerState::Open);
        assert!(!t.admits(now + 999));
        let later = now + 1000;
        assert!(t.admits(later) && t.admits(later));
        assert!(!t.admits(later), "only two probes while half-open");
        t.breaker_report(&b, Outcome::Status(200), later);
        t.breaker_report(&b, Outcome::Status(200), later);
        assert_eq!(t.breaker(later), BreakerState::Closed);
        assert!(t.admits(later));
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again() {
        let t = TargetHealth::new("a:1".into());
        let b = CircuitBreaker {
            consecutive_failures: 1,
            open_for: 1.0,
            ..CircuitBreaker::default()
        };
        t.breaker_report(&b, Outcome::TcpFailure, 5_000);
        assert!(t.admits(6_000));
        t.breaker_report(&b, Outcome::Timeout, 6_000);
        assert_eq!(t.breaker(6_500), BreakerState::Open);
    }

    #[test]
    fn the_error_ratio_opens_the_breaker() {
        let t = TargetHealth::new("a:1".into());
        let b = CircuitBreaker {
            consecutive_failures: 1000,
            min_requests: 10,
            error_ratio: 0.5,
            ..CircuitBreaker::default()
        };
        for i in 0..10 {
            let outcome = if i % 2 == 1 {
                Outcome::Status(503)
            } else {
                Outcome::Status(200)
            };
            t.breaker_report(&b, outcome, 20_000);
        }
        assert_eq!(t.breaker(20_000), BreakerState::Open);
    }

    #[test]
    fn the_registry_keeps_state_across_snapshots() {
        let r = Registry::default();
        let id = Uuid::new_v4();
        let a: Arc<str> = "a:1".into();
        let first = r.get(id, &a);
        first.set_up(false);
        assert!(!r.get(id, &a).is_up());
        drop(first);
        assert!(r.get(id, &a).is_up(), "forgotten once no snapshot holds it");
    }
}
