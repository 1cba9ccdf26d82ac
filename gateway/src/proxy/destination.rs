//! Where a service's requests go: its one host, or the targets of the upstream its `host`
//! names. Each request gets a [`Picks`] that hands `upstream::send` a destination per attempt
//! and tells the balancer's health what became of each.
use super::upstream::{Attempts, Target};
use crate::balancer::health::{now_ms, Check, Outcome, TargetHealth};
use crate::balancer::{Algorithm, Balancer};
use http::HeaderValue;
use smallvec::SmallVec;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A service's destination, made once per snapshot.
pub enum Destination {
    /// A host name or address: every attempt goes there.
    Host(Endpoint),
    /// An upstream: `endpoints[i]` is how this service reaches the balancer's member `i`.
    Upstream {
        balancer: Arc<Balancer>,
        endpoints: Vec<Endpoint>,
    },
}

/// One place to connect to, as a service reaches it.
pub struct Endpoint {
    /// The connection pool's key (address and the service's timeouts).
    pub target: Target,
    /// `host:port`, as analytics events and logs name the upstream.
    pub address: Arc<str>,
    /// The `Host` sent there unless the route preserves the client's.
    pub host_header: HeaderValue,
}

impl Destination {
    /// The `Host` every attempt sends, when it does not depend on the target picked.
    pub fn fixed_host(&self) -> Option<&HeaderValue> {
        match self {
            Destination::Host(e) => Some(&e.host_header),
            Destination::Upstream { balancer, .. } => balancer.host_header.as_ref(),
        }
    }
}

/// One request's attempts.
pub struct Picks<'a> {
    destination: &'a Destination,
    /// The consistent-hashing value of the request, if any.
    hash: Option<u64>,
    tried: SmallVec<[usize; 4]>,
    /// The member of the last attempt, counted in flight until this request ends.
    current: Option<InFlight>,
    /// Whether the `Host` is per attempt (the head has none).
    host_per_attempt: bool,
}

/// A request counted in flight at a target (least-connections) until it is dropped.
pub struct InFlight {
    member: usize,
    health: Arc<TargetHealth>,
}

impl InFlight {
    fn new(member: usize, health: Arc<TargetHealth>) -> InFlight {
        health.in_flight.fetch_add(1, Ordering::Relaxed);
        health.attempts.fetch_add(1, Ordering::Relaxed);
        InFlight { member, health }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<'a> Picks<'a> {
    pub fn new(destination: &'a Destination, hash: Option<u64>, host_in_head: bool) -> Picks<'a> {
        Picks {
            destination,
            hash,
            tried: SmallVec::new(),
            current: None,
            host_per_attempt: !host_in_head,
        }
    }

    /// The address of the last attempt (analytics' `upstream_addr`).
    pub fn address(&self) -> Option<Arc<str>> {
        match self.destination {
            Destination::Host(e) => Some(e.address.clone()),
            Destination::Upstream { endpoints, .. } => self
                .current
                .as_ref()
                .map(|c| endpoints[c.member].address.clone()),
        }
    }

    /// The last attempt was answered with `status` after `upstream_us`: the passive checks,
    /// the breaker and the latency score hear of it. Returns what keeps the target counted
    /// in flight, to be dropped when the response has been sent.
    pub fn answered(mut self, status: u16, upstream_us: u64) -> Option<InFlight> {
        let (Destination::Upstream { balancer, .. }, Some(current)) =
            (self.destination, self.current.take())
        else {
            return None;
        };
        let outcome = Outcome::Status(status);
        report(balancer, &current.health, outcome);
        if balancer.algorithm == Algorithm::Latency {
            current.health.observe_latency(upstream_us);
        }
        Some(current)
    }
}

/// Passes an attempt's outcome to the target's passive checks and breaker.
fn report(b: &Balancer, health: &TargetHealth, outcome: Outcome) {
    if b.checks.passive_enabled() {
        health.report(Check::Passive, &b.checks, outcome);
    }
    health.breaker_report(&b.breaker, outcome, now_ms());
}

impl Attempts for Picks<'_> {
    fn next(&mut self) -> Option<(Target, Option<HeaderValue>)> {
        match self.destination {
            Destination::Host(e) => Some((e.target.clone(), None)),
            Destination::Upstream {
                balancer,
                endpoints,
            } => {
                let i = balancer.pick(self.hash, &self.tried)?;
                self.tried.push(i);
                self.current = Some(InFlight::new(i, balancer.members[i].health.clone()));
                let e = &endpoints[i];
                let host = self.host_per_attempt.then(|| e.host_header.clone());
                Some((e.target.clone(), host))
            }
        }
    }

    fn failed(&mut self, outcome: Outcome) {
        if let (Destination::Upstream { balancer, .. }, Some(current)) =
            (self.destination, &self.current)
        {
            report(balancer, &current.health, outcome);
        }
    }
}
