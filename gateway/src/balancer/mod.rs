//! Load balancing over an upstream's targets: Kong's algorithms, its health checks, and a
//! circuit breaker per target.
//!
//! A [`Balancer`] is built with each snapshot for each upstream and answers one question per
//! attempt: which target next. Round-robin walks a precomputed wheel in which each target
//! appears as often as its weight (smooth weighted round-robin, so a 1:2:3 upstream serves
//! exactly 1/6, 2/6, 3/6); least-connections and latency score the targets; consistent
//! hashing ranks the targets for each key by weighted rendezvous hashing, so removing a target
//! moves only its own keys, adding one takes only the keys it wins, and a key whose target is
//! down goes to its second choice (Kong uses a ring of `slots` points; what it promises, a key
//! staying on its target, is the same). Targets that are unhealthy, whose breaker is open, with
//! weight 0, or already tried by this request are skipped. The health that decides this
//! lives in [`health`] and outlives snapshots.
pub mod active;
pub mod dns;
pub mod health;

use crate::model::upstream::{CircuitBreaker, Healthchecks};
use crate::model::{Target, Upstream};
use health::{Registry, TargetHealth};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// Kong's balancing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastConnections,
    ConsistentHashing,
    Latency,
}

/// What a consistent-hashing upstream hashes (Kong's `hash_on` and its companion field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    None,
    Consumer,
    Ip,
    Header(http::HeaderName),
    Cookie,
    Path,
    QueryArg(String),
    UriCapture(String),
}

/// One address of a balancer: a target, or one of the addresses its name resolved to.
pub struct Member {
    pub target: Target,
    /// What is connected to: an address, or the target's name while it is not resolved yet.
    pub host: String,
    pub port: u16,
    /// The target's own host, which the `Host` header names.
    pub name: String,
    /// Why the target's name did not resolve (Kong's DNS_ERROR); such a member takes no
    /// requests.
    pub dns_error: Option<String>,
    pub health: Arc<TargetHealth>,
}

impl Member {
    fn weight(&self) -> u32 {
        u32::from(self.target.weight)
    }

    /// May take a request now (its breaker's half-open probes are not used up by asking).
    fn eligible(&self, now: u64) -> bool {
        self.weight() > 0
            && self.dns_error.is_none()
            && self.health.is_up()
            && self.health.breaker(now) != health::BreakerState::Open
    }
}

/// An upstream as one snapshot balances it.
pub struct Balancer {
    pub id: Uuid,
    pub name: Arc<str>,
    pub algorithm: Algorithm,
    pub members: Vec<Member>,
    pub checks: Healthchecks,
    pub breaker: CircuitBreaker,
    pub hash_on: HashOn,
    pub hash_fallback: HashOn,
    /// The cookie hashed on, and the path it is set for when the gateway makes one.
    pub cookie: Option<(String, String)>,
    /// The `Host` sent upstream instead of the target's (Kong's `host_header`).
    pub host_header: Option<http::HeaderValue>,
    /// Round-robin's order: member indexes, each as often as its weight.
    wheel: Vec<u32>,
    /// Each member's rendezvous seed: the hash of its target.
    seeds: Vec<u64>,
    next: AtomicUsize,
}

/// The hash of a key, the same on every node and every run.
pub fn hash_of(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x7011_9a7e).hash_one(key)
}

impl Balancer {
    /// The balancer for `upstream` over `targets` (its own, in creation order), each name
    /// expanded to the addresses `dns` last had for it, with the health each address had in
    /// earlier snapshots.
    pub fn new(
        upstream: &Upstream,
        targets: Vec<Target>,
        registry: &Registry,
        dns: &dns::Resolver,
    ) -> Balancer {
        let members: Vec<Member> = targets
            .into_iter()
            .flat_map(|t| members_of(upstream.id, t, registry, dns))
            .collect();
        let weights: Vec<u32> = members.iter().map(Member::weight).collect();
        let slots = upstream.slots as usize;
        let algorithm = match upstream.algorithm.as_str() {
            "least-connections" => Algorithm::LeastConnections,
            "consistent-hashing" => Algorithm::ConsistentHashing,
            "latency" => Algorithm::Latency,
            _ => Algorithm::RoundRobin,
        };
        let hash_on = hash_input(&upstream.hash_on, upstream, true);
        let hash_fallback = hash_input(&upstream.hash_fallback, upstream, false);
        Balancer {
            id: upstream.id,
            name: upstream.name.as_str().into(),
            algorithm,
            wheel: wheel(&weights, slots),
            seeds: members
                .iter()
                .map(|m| hash_of(m.health.address.as_bytes()))
                .collect(),
            members,
            checks: upstream.healthchecks.clone(),
            breaker: upstream.circuit_breaker.clone(),
            cookie: upstream
                .hash_on_cookie
                .clone()
                .map(|c| (c, upstream.hash_on_cookie_path.clone())),
            host_header: upstream
                .host_header
                .as_deref()
                .and_then(|h| http::HeaderValue::from_str(h).ok()),
            hash_on,
            hash_fallback,
            next: AtomicUsize::new(rand::random::<u32>() as usize),
        }
    }

    /// The member for the next attempt, skipping those in `tried` while others remain;
    /// `None` when no target can take a request (Kong's 503).
    pub fn pick(&self, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        let now = health::now_ms();
        // Taking a pick may use up a half-open breaker's last probe: then it is refused and
        // the next one is looked for.
        let mut refused = Vec::new();
        for avoid in [tried, &[]] {
            loop {
                let usable = |i: usize| {
                    !avoid.contains(&i) && !refused.contains(&i) && self.members[i].eligible(now)
                };
                let found = match (self.algorithm, hash) {
                    (Algorithm::ConsistentHashing, Some(h)) => self.rendezvous(h, &usable),
                    (Algorithm::LeastConnections, _) => self.least_loaded(&usable, |_| 1),
                    (Algorithm::Latency, _) => {
                        self.least_loaded(&usable, |m| m.health.ewma_us.load(Ordering::Relaxed))
                    }
                    _ => self.round_robin(&usable),
                };
                match found {
                    Some(i) if self.members[i].health.admits(now) => return Some(i),
                    Some(i) => refused.push(i),
                    None => break,
                }
            }
        }
        None
    }

    /// A member's health as Kong names it: weight 0, and upstreams without checks, are
    /// HEALTHCHECKS_OFF, unless an operator marked the member unhealthy.
    pub fn health_of(&self, m: &Member) -> health::Health {
        use health::Health;
        if m.target.weight == 0 {
            Health::HealthchecksOff
        } else if !m.health.is_up() {
            Health::Unhealthy
        } else if self.checks.enabled() {
            Health::Healthy
        } else {
            Health::HealthchecksOff
        }
    }

    fn round_robin(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let len = self.wheel.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|k| self.wheel[(start + k) % len] as usize)
            .find(|&i| usable(i))
    }

    /// The usable member with the fewest requests in flight per unit of weight, each
    /// request counting `cost` (1, or the member's response time for `latency`). Ties go
    /// round the members in turn.
    fn least_loaded(
        &self,
        usable: &dyn Fn(usize) -> bool,
        cost: impl Fn(&Member) -> u64,
    ) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let score = |m: &Member| {
            let load = u64::from(m.health.in_flight.load(Ordering::Relaxed)) + 1;
            // Untried members (no latency yet) go first.
            (load * cost(m).max(1)) as f64 / f64::from(m.weight())
        };
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| usable(i))
            .min_by(|&a, &b| score(&self.members[a]).total_cmp(&score(&self.members[b])))
    }

    /// The usable member that scores highest for `hash`: weight / -ln(u), `u` uniform in
    /// (0, 1) from the hash and the member's seed (weighted rendezvous hashing).
    fn rendezvous(&self, hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let score = |i: usize| {
            let mixed = hash_of(&(hash ^ self.seeds[i]).to_le_bytes());
            let u = ((mixed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            f64::from(self.members[i].weight()) / -u.ln()
        };
        (0..self.members.len())
            .filter(|&i| usable(i))
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
    }
}

/// A target's members: itself when it is an address or not resolved yet, else one per
/// address its name has (each with the target's weight, as Kong gives each A record).
fn members_of(upstream: Uuid, t: Target, registry: &Registry, dns: &dns::Resolver) -> Vec<Member> {
    let (name, port) = t.host_port();
    let (hosts, dns_error) = if name.parse::<IpAddr>().is_ok() {
        (vec![name.clone()], None)
    } else {
        match dns.lookup(&name) {
            dns::Answer::Addresses(ips) => (ips.iter().map(IpAddr::to_string).collect(), None),
            dns::Answer::Pending => (vec![name.clone()], None),
            dns::Answer::Failed(why) => (vec![name.clone()], Some(why)),
        }
    };
    hosts
        .into_iter()
        .map(|host| {
            let address = crate::model::target::format(&host, port);
            let key: Arc<str> = if host == name {
                t.target.as_str().into()
            } else {
                format!("{} ({address})", t.target).into()
            };
            Member {
                health: registry.get(upstream, &key),
                target: t.clone(),
                host,
                port,
                name: name.clone(),
                dns_error: dns_error.clone(),
            }
        })
        .collect()
}

fn hash_input(on: &str, u: &Upstream, primary: bool) -> HashOn {
    let pick = |a: &Option<String>, b: &Option<String>| {
        if primary { a.clone() } else { b.clone() }.unwrap_or_default()
    };
    match on {
        "consumer" => HashOn::Consumer,
        "ip" => HashOn::Ip,
        "header" => {
            let name = pick(&u.hash_on_header, &u.hash_fallback_header);
            http::HeaderName::from_bytes(name.as_bytes()).map_or(HashOn::None, HashOn::Header)
        }
        "cookie" => HashOn::Cookie,
        "path" => HashOn::Path,
        "query_arg" => HashOn::QueryArg(pick(&u.hash_on_query_arg, &u.hash_fallback_query_arg)),
        "uri_capture" => {
            HashOn::UriCapture(pick(&u.hash_on_uri_capture, &u.hash_fallback_uri_capture))
        }
        _ => HashOn::None,
    }
}

/// Round-robin's wheel: smooth weighted round-robin over the weights (scaled down to at
/// most `slots` entries), so each member's turns are spread evenly over the wheel.
fn wheel(weights: &[u32], slots: usize) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let divisor = weights
        .iter()
        .filter(|&&w| w > 0)
        .fold(0, |g, &w| gcd(g, u64::from(w)));
    let mut scaled: Vec<u64> = weights.iter().map(|&w| u64::from(w) / divisor).collect();
    let sum: u64 = scaled.iter().sum();
    if sum > slots as u64 {
        for (s, &w) in scaled.iter_mut().zip(weights) {
            *s = if w == 0 {
                0
            } else {
                (u64::from(w) * slots as u64 / total).max(1)
            };
        }
    }
    let sum: i64 = scaled.iter().map(|&s| s as i64).sum();
    let mut current = vec![0i64; scaled.len()];
    let mut out = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        for (c, &w) in current.iter_mut().zip(&scaled) {
            *c += w as i64;
        }
        let best = (0..current.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .expect("a non-empty wheel has members");
        current[best] -= sum;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What a request offers to hash on.
pub struct HashRequest<'a> {
    pub consumer: Option<&'a str>,
    pub ip: IpAddr,
    pub headers: &'a http::HeaderMap,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The route's named captures of the path, when it matched by regex.
    pub captures: &'a dyn Fn(&str) -> Option<String>,
}

/// The hash a consistent-hashing upstream places a request by (Kong's
/// `get_value_to_hash`): the primary input, else the fallback, else none. A `cookie` input
/// the request lacks is made up, and the cookie to set on the response is returned with it.
pub fn request_hash(b: &Balancer, req: &HashRequest) -> (Option<u64>, Option<http::HeaderValue>) {
    if b.algorithm != Algorithm::ConsistentHashing {
        return (None, None);
    }
    for on in [&b.hash_on, &b.hash_fallback] {
        if *on == HashOn::Cookie {
            let Some((name, path)) = &b.cookie else {
                continue;
            };
            if let Some(v) = cookie(req.headers, name) {
                return (Some(hash_of(v.as_bytes())), None);
            }
            let value = Uuid::new_v4().to_string();
            let set = format!("{name}={value}; Path={path}");
            return (
                Some(hash_of(value.as_bytes())),
                http::HeaderValue::from_str(&set).ok(),
            );
        }
        if let Some(v) = hash_value(on, req) {
            return (Some(hash_of(v.as_bytes())), None);
        }
    }
    (None, None)
}

fn hash_value(on: &HashOn, req: &HashRequest) -> Option<String> {
    match on {
        HashOn::None | HashOn::Cookie => None,
        HashOn::Consumer => req.consumer.map(str::to_string),
        HashOn::Ip => Some(req.ip.to_string()),
        HashOn::Header(name) => {
            let values: Vec<&str> = req
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        }
        HashOn::Path => Some(req.path.to_string()),
        HashOn::QueryArg(arg) => query_arg(req.query?, arg),
        HashOn::UriCapture(name) => (req.captures)(name),
    }
}

/// A query argument's value as Kong hashes it: `?a` is "true", `?a=` alone is nothing, and
/// several values are sorted and joined with commas (03-consistent-hashing_spec.lua:399-460).
fn query_arg(query: &str, name: &str) -> Option<String> {
    let mut values: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (decode(k) == name).then(|| v.map_or_else(|| "true".to_string(), decode))
        })
        .collect();
    match values.len() {
        0 => None,
        1 if values[0].is_empty() => None,
        _ => {
            values.sort();
            Some(values.join(","))
        }
    }
}

fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_arguments_hash_as_kongs_do() {
        let q = |query: &str, name: &str| query_arg(query, name);
        assert_eq!(q("hashme=123", "hashme").as_deref(), Some("123"));
        assert_eq!(q("a=1", "hashme"), None);
        assert_eq!(q("hashme", "hashme").as_deref(), Some("true"));
        assert_eq!(q("foo=", "foo"), None);
        assert_eq!(q("foo=b&foo=a&foo=c", "foo").as_deref(), Some("a,b,c"));
        assert_eq!(
            q("foo=s&foo&foo=1&foo=", "foo").as_deref(),
            Some(",1,s,true")
        );
        assert_eq!(q("foo&foo&", "foo").as_deref(), Some("true,true"));
        assert_eq!(q("%7B%7D=x", "{}").as_deref(), Some("x"));
    }

    #[test]
    fn the_wheel_serves_each_weight_its_share_evenly() {
        let w = wheel(&[1, 2, 3], 10_000);
        assert_eq!(w.len(), 6);
        let count = |i| w.iter().filter(|&&x| x == i).count();
        assert_eq!((count(0), count(1), count(2)), (1, 2, 3));
        assert_ne!(w[0], w[1], "spread, not in runs");
        assert_eq!(wheel(&[100, 100], 10_000), vec![0, 1]);
        assert_eq!(wheel(&[0, 5], 10_000), vec![1]);
        assert!(wheel(&[0, 0], 10).is_empty());
    }

    #[test]
    fn a_wheel_larger_than_the_slots_is_scaled_down() {
        let w = wheel(&[65535, 1, 30000], 100);
        assert!(w.len() <= 102, "{}", w.len());
        assert!(w.contains(&1), "a small weight keeps a turn");
    }
}
