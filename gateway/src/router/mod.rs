//! The router: which route a request belongs to, with Kong's `traditional_compatible` rules.
//!
//! Routes are compiled once per snapshot into an index: requests are bucketed by host (exact,
//! wildcard, or any), and within a bucket a prefix trie finds the path prefixes along the request
//! path, so matching cost follows the request, not the number of routes. Among the routes that
//! match, the most specific wins (see [`Priority`]).
pub mod path;
mod regex_path;
mod trie;

use crate::model::Route;
use http::HeaderMap;
use regex::Regex;
use regex_path::RegexPath;
use std::collections::HashMap;
use trie::PrefixTrie;

/// What the router looks at in a request.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// Lower-case host without the port.
    pub host: &'a str,
    pub port: u16,
    /// The normalized path (see [`path::normalize`]).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// Whether the request came over TLS, and the name its handshake asked for, if any.
    pub tls: bool,
    pub sni: Option<&'a str>,
}

/// The winning route and how much of the path its path matched (what `strip_path` removes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub route: usize,
    pub matched_len: usize,
}

/// Kong's order (`get_priority` in kong/router/transform.lua), most specific first: more
/// attribute kinds, then a route whose hosts are all plain (no wildcard; a route without
/// hosts has none, so a hosts-only route outranks a `/` catch-all), then more headers, then a regex path (by `regex_priority`) over a prefix, then the
/// longest prefix, then the older route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Priority {
    categories: u8,
    plain_host: bool,
    headers: u8,
    regex: bool,
    regex_priority: i64,
    prefix_len: u32,
    newer: std::cmp::Reverse<u32>,
}

enum HeaderRule {
    Exact(String),
    Regex(Regex),
}

struct Compiled {
    methods: Vec<String>,
    /// Ports that exact hosts require, by host (`api.local:8000`); a host also listed
    /// without a port accepts any.
    host_ports: Vec<(String, Vec<u16>)>,
    /// Hosts listed, none of them a wildcard.
    plain_hosts: bool,
    headers: Vec<(http::HeaderName, Vec<HeaderRule>)>,
    regex_paths: Vec<RegexPath>,
    categories: u8,
    regex_priority: i64,
    /// The route's `snis`, lower-cased: on TLS, the handshake must have asked for one of them
    /// (in cleartext they do not count, as in Kong: kong/router/transform.lua).
    snis: Vec<String>,
}

#[derive(Default)]
struct PathIndex {
    prefixes: PrefixTrie,
    /// Regex paths that are literals (see [`RegexPath`]): whole paths, and prefixes.
    regex_exact: HashMap<String, Vec<u32>>,
    regex_prefixes: PrefixTrie,
    /// Routes with a regex path that is a true pattern, tried one by one.
    regex_routes: Vec<u32>,
    pathless: Vec<u32>,
}

enum Wildcard {
    Suffix(String),
    Prefix(String),
}

/// A compiled set of routes; immutable once built.
#[derive(Default)]
pub struct Router {
    routes: Vec<Compiled>,
    exact_hosts: HashMap<String, PathIndex>,
    wildcard_hosts: Vec<(Wildcard, PathIndex)>,
    any_host: PathIndex,
}

impl Router {
    /// Compiles `routes`; the index of a route in the slice is its id in [`RouteMatch`].
    pub fn new(routes: &[Route]) -> Result<Router, String> {
        let mut router = Router::default();
        for (i, r) in routes.iter().enumerate() {
            let compiled = compile(r)?;
            router.index(i as u32, r, &compiled);
            router.routes.push(compiled);
        }
        Ok(router)
    }

    /// The capture `name` (a group's name, or its number) of the first of route `route`'s
    /// regex paths that matches `path` with that group: what an upstream hashing on
    /// `uri_capture` hashes.
    pub fn capture(&self, route: usize, path: &str, name: &str) -> Option<String> {
        let compiled = self.routes.get(route)?;
        compiled
            .regex_paths
            .iter()
            .find_map(|re| re.capture(path, name))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn index(&mut self, id: u32, r: &Route, compiled: &Compiled) {
        let add_paths = |idx: &mut PathIndex| add_paths(idx, id, r, &compiled.regex_paths);
        let hosts = r.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            add_paths(&mut self.any_host);
        }
        for h in hosts {
            let h = h.to_ascii_lowercase();
            let name = strip_port(&h).0.to_string();
            if let Some(s) = name.strip_prefix('*') {
                add_paths(self.wildcard_index(Wildcard::Suffix(s.to_string())));
            } else if let Some(p) = name.strip_suffix('*') {
                add_paths(self.wildcard_index(Wildcard::Prefix(p.to_string())));
            } else {
                add_paths(self.exact_hosts.entry(name).or_default());
            }
        }
    }

    fn wildcard_index(&mut self, w: Wildcard) -> &mut PathIndex {
        let pos = self.wildcard_hosts.iter().position(|(x, _)| match (x, &w) {
            (Wildcard::Suffix(a), Wildcard::Suffix(b))
            | (Wildcard::Prefix(a), Wildcard::Prefix(b)) => a == b,
            _ => false,
        });
        let pos = pos.unwrap_or_else(|| {
            self.wildcard_hosts.push((w, PathIndex::default()));
            self.wildcard_hosts.len() - 1
        });
        &mut self.wildcard_hosts[pos].1
    }

    /// The most specific route matching `req`, if any.
    pub fn find(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        let mut best: Option<(Priority, RouteMatch)> = None;
        if let Some(idx) = self.exact_hosts.get(req.host) {
            self.search(idx, req, &mut best);
        }
        for (w, idx) in &self.wildcard_hosts {
            let hit = match w {
                Wildcard::Suffix(s) => req.host.len() > s.len() && req.host.ends_with(s.as_str()),
                Wildcard::Prefix(p) => req.host.len() > p.len() && req.host.starts_with(p.as_str()),
            };
            if hit {
                self.search(idx, req, &mut best);
            }
        }
        self.search(&self.any_host, req, &mut best);
        best.map(|(_, m)| m)
    }

    fn search(
        &self,
        idx: &PathIndex,
        req: &RequestInfo<'_>,
        best: &mut Option<(Priority, RouteMatch)>,
    ) {
        let mut consider = |id: u32, regex: bool, len: usize| {
            let r = &self.routes[id as usize];
            if !self.matches_rest(r, req) {
                return;
            }
            let p = Priority {
                categories: r.categories,
                plain_host: r.plain_hosts,
                headers: r.headers.len() as u8,
                regex,
                regex_priority: if regex { r.regex_priority } else { 0 },
                prefix_len: if regex { 0 } else { len as u32 },
                newer: std::cmp::Reverse(id),
            };
            if best.as_ref().is_none_or(|(b, _)| p > *b) {
                *best = Some((
                    p,
                    RouteMatch {
                        route: id as usize,
                        matched_len: len,
                    },
                ));
            }
        };
        idx.prefixes
            .for_each_prefix(req.path, |id, len| consider(id, false, len as usize));
        for &id in idx.regex_exact.get(req.path).into_iter().flatten() {
            consider(id, true, req.path.len());
        }
        idx.regex_prefixes
            .for_each_prefix(req.path, |id, len| consider(id, true, len as usize));
        for &id in &idx.regex_routes {
            let r = &self.routes[id as usize];
            let patterns = r
                .regex_paths
                .iter()
                .filter(|p| matches!(p, RegexPath::Pattern(_)));
            if let Some(end) = patterns.filter_map(|re| re.find(req.path)).next() {
                consider(id, true, end);
            }
        }
        for &id in &idx.pathless {
            consider(id, false, 0);
        }
    }

    /// Methods, host port and headers: everything but the host name and path.
    fn matches_rest(&self, r: &Compiled, req: &RequestInfo<'_>) -> bool {
        if req.tls && !r.snis.is_empty() && !req.sni.is_some_and(|s| sni_matches(&r.snis, s)) {
            return false;
        }
        if !r.methods.is_empty() && !r.methods.iter().any(|m| m == req.method) {
            return false;
        }
        if let Some((_, ports)) = r.host_ports.iter().find(|(h, _)| h == req.host) {
            if !ports.contains(&req.port) {
                return false;
            }
        }
        r.headers.iter().all(|(name, rules)| {
            req.headers.get_all(name).iter().any(|v| {
                let v = v.to_str().unwrap_or_default();
                rules.iter().any(|rule| match rule {
                    HeaderRule::Exact(x) => x.eq_ignore_ascii_case(v),
                    HeaderRule::Regex(re) => re.is_match(v),
                })
            })
        })
    }
}

fn add_paths(idx: &mut PathIndex, id: u32, r: &Route, regex_paths: &[RegexPath]) {
    let paths = r.paths.as_deref().unwrap_or_default();
    if paths.is_empty() {
        idx.pathless.push(id);
    }
    for p in paths.iter().filter(|p| !p.starts_with('~')) {
        idx.prefixes.insert(p, id);
    }
    let mut has_pattern = false;
    for p in regex_paths {
        match p {
            RegexPath::Exact(l) => idx.regex_exact.entry(l.clone()).or_default().push(id),
            RegexPath::Prefix(l) => idx.regex_prefixes.insert(l, id),
            RegexPath::Pattern(_) => has_pattern = true,
        }
    }
    if has_pattern {
        idx.regex_routes.push(id);
    }
}

fn compile(r: &Route) -> Result<Compiled, String> {
    let non_empty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    let headers = r.headers.clone().unwrap_or_default();
    let mut header_rules = Vec::with_capacity(headers.len());
    for (name, values) in &headers {
        let name = http::HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?;
        let rules = values
            .iter()
            .map(|v| match v.strip_prefix("~*") {
                Some(re) => Regex::new(&format!("(?i)^(?:{re})$"))
                    .map(HeaderRule::Regex)
                    .map_err(|e| e.to_string()),
                None => Ok(HeaderRule::Exact(v.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        header_rules.push((name, rules));
    }
    let regex_paths = r
        .paths
        .iter()
        .flatten()
        .filter_map(|p| p.strip_prefix('~'))
        .map(RegexPath::new)
        .collect::<Result<Vec<_>, _>>()?;
    let hosts: Vec<String> = r
        .hosts
        .iter()
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let mut host_ports: Vec<(String, Vec<u16>)> = Vec::new();
    let any_port: Vec<&str> = hosts
        .iter()
        .map(|h| strip_port(h))
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| n)
        .collect();
    for h in &hosts {
        let (name, Some(port)) = strip_port(h) else {
            continue;
        };
        if any_port.contains(&name) {
            continue;
        }
        match host_ports.iter_mut().find(|(n, _)| n == name) {
            Some((_, ports)) => ports.push(port),
            None => host_ports.push((name.to_string(), vec![port])),
        }
    }
    let categories = [
        non_empty(&r.methods),
        non_empty(&r.hosts),
        non_empty(&r.paths),
        non_empty(&r.snis),
        !headers.is_empty(),
    ]
    .iter()
    .filter(|x| **x)
    .count() as u8;
    Ok(Compiled {
        methods: r.methods.clone().unwrap_or_default(),
        host_ports,
        plain_hosts: !hosts.is_empty() && !hosts.iter().any(|h| h.contains('*')),
        headers: header_rules,
        regex_paths,
        categories,
        regex_priority: r.regex_priority,
        snis: r
            .snis
            .iter()
            .flatten()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
    })
}

/// Whether `sni` is one of `snis`, where `*.example.com` takes any name ending in
/// `.example.com` and `example.*` any starting with `example.` (Kong's postfix and prefix
/// operators).
fn sni_matches(snis: &[String], sni: &str) -> bool {
    let sni = sni.to_ascii_lowercase();
    snis.iter().any(|n| {
        if let Some(suffix) = n.strip_prefix('*') {
            sni.ends_with(suffix)
        } else if let Some(prefix) = n.strip_suffix('*') {
            sni.starts_with(prefix)
        } else {
            *n == sni
        }
    })
}

/// `host:8000` → (`host`, Some(8000)); IPv6 literals keep their colons.
pub fn strip_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((h, p)) => (&host[..h.len() + 1], p.parse().ok()),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests;
