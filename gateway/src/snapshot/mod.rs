//! The snapshot: everything the proxy needs to serve a request, built from the stored entities
//! and swapped in atomically when configuration changes.
//!
//! The proxy never reads the store; it loads the current snapshot (one atomic pointer read)
//! and works from it. A snapshot that fails to build is never swapped in.

mod consumers;

use crate::balancer::Balancer;
use crate::model::api_version::{self, RouteDeprecation};
use crate::model::{CaCertificate, Certificate, Kind, Route, Service, Sni, Target, Upstream};
use crate::plugins::chain::{Plan, PluginIndex};
use crate::plugins::Shared;
use crate::proxy::{Destination, Endpoint};
use crate::router::Router;
use crate::tls::sni::{Served, SniTable};
use crate::tls::{self, pem};
pub use consumers::{
    BasicEntry, ConsumerEntry, CredentialEntry, CredentialId, Groups, HmacEntry, JwtEntry,
    OAuth2Entry,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A route as the proxy uses it once matched.
pub struct RouteEntry {
    pub id: Uuid,
    /// The route's name, or its id when it has none (metrics and logs label by it).
    pub label: Arc<str>,
    pub service: Option<usize>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling_v1: bool,
    /// The route accepts plain-HTTP requests.
    pub allows_http: bool,
    /// Its protocols are `ws` / `wss` only: anything but a WebSocket handshake gets 426.
    pub websocket_only: bool,
    /// It takes gRPC (`grpc` or `grpcs`): other requests are refused, as Kong refuses them.
    pub grpc: bool,
    /// It takes gRPC in cleartext (`grpc`).
    pub grpc_cleartext: bool,
    pub https_redirect_status_code: u16,
    /// The plugins that apply to its requests.
    pub plugins: Plan,
    /// The headers its deprecated API versions answer with, if it serves any.
    pub deprecation: Option<RouteDeprecation>,
}

/// A service as the proxy uses it: where to send, how long to wait.
pub struct ServiceEntry {
    pub id: Uuid,
    pub label: Arc<str>,
    /// Where its requests go: its host, or the upstream its host names.
    pub destination: Destination,
    pub path: Option<String>,
    pub retries: u32,
    pub read_timeout: Duration,
    /// Its upstream speaks HTTP/2 (`grpc`, `grpcs`).
    pub http2: bool,
}

pub struct Snapshot {
    pub version: i64,
    pub router: Router,
    pub routes: Vec<RouteEntry>,
    pub services: Vec<ServiceEntry>,
    pub consumers: consumers::Consumers,
    pub plugins: PluginIndex,
    /// The upstreams, balanced, in creation order.
    pub upstreams: Vec<Arc<Balancer>>,
    /// The certificates TLS listeners serve, by SNI.
    pub certificates: SniTable,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            router: Router::default(),
            routes: Vec::new(),
            services: Vec::new(),
            consumers: consumers::Consumers::default(),
            plugins: PluginIndex::default(),
            upstreams: Vec::new(),
            certificates: SniTable::default(),
        }
    }

    /// An upstream by id or name.
    pub fn upstream(&self, id_or_name: &str) -> Option<&Arc<Balancer>> {
        self.upstreams
            .iter()
            .find(|b| &*b.name == id_or_name || b.id.to_string() == id_or_name)
    }

    /// The credential of a presented API key, unless it expired.
    pub fn credential(&self, key: &str, now_ms: u64) -> Option<&CredentialEntry> {
        self.consumers.credential(key, now_ms)
    }

    /// A consumer by id or username.
    pub fn consumer(&self, id_or_username: &str) -> Option<Arc<ConsumerEntry>> {
        self.consumers.consumer(id_or_username)
    }

    /// Builds a snapshot from every stored entity. Routes of disabled services are left out,
    /// so they do not match, as in Kong.
    pub fn build(
        version: i64,
        entities: &[(Kind, Value)],
        shared: &Arc<Shared>,
    ) -> Result<Snapshot, String> {
        let mut services = Vec::new();
        let mut consumers = consumers::Consumers::default();
        let (mut credentials, mut plugins) = (Vec::new(), Vec::new());
        let mut service_index = HashMap::new();
        let mut disabled = std::collections::HashSet::new();
        let mut routes = Vec::new();
        let mut service_list = Vec::new();
        let (mut upstreams, mut targets) = (Vec::new(), Vec::new());
        let (mut certificates, mut snis, mut cas) = (Vec::new(), Vec::new(), Vec::new());
        for (kind, body) in entities {
            match kind {
                Kind::Certificate => certificates.push(parse::<Certificate>(body)?),
                Kind::Sni => snis.push(parse::<Sni>(body)?),
                Kind::CaCertificate => cas.push(parse::<CaCertificate>(body)?),
                Kind::Service => {
                    let s: Service = parse(body)?;
                    if !s.enabled {
                        disabled.insert(s.id);
                        continue;
                    }
                    service_index.insert(s.id, service_list.len());
                    service_list.push(s);
                }
                Kind::Upstream => upstreams.push(parse::<Upstream>(body)?),
                Kind::Target => targets.push(parse::<Target>(body)?),
                Kind::Route => {
                    let r: Route = parse(body)?;
                    if r.service.is_some_and(|s| disabled.contains(&s.id)) {
                        continue;
                    }
                    routes.push(r);
                }
                Kind::Consumer => consumers.add_consumer(parse(body)?),
                Kind::ConsumerGroup => consumers.add_group(parse(body)?),
                Kind::KeyAuth
                | Kind::BasicAuth
                | Kind::JwtSecret
                | Kind::HmacAuth
                | Kind::OAuth2Credential
                | Kind::Acl
                | Kind::ConsumerGroupMember => credentials.push((*kind, body)),
                Kind::Plugin => plugins.push(parse::<crate::model::Plugin>(body)?),
            }
        }
        for (kind, body) in credentials {
            consumers.add_credential(kind, body)?;
        }
        shared.dns.begin_round();
        let upstreams = balancers(upstreams, targets, shared);
        let pems = Pems::new(&certificates, &cas);
        for s in &service_list {
            services.push(service_entry(s, &upstreams, &pems, shared)?);
        }
        shared.dns.forget_unwanted();
        let router = Router::new(&routes)?;
        let plugins = PluginIndex::build(&plugins, shared)?;
        let deprecated: Vec<_> = service_list
            .iter()
            .map(|s| api_version::deprecated_headers(s.portal.as_ref()))
            .collect();
        let routes = routes
            .iter()
            .map(|r| {
                let service = r.service.and_then(|s| service_index.get(&s.id).copied());
                let plan = plugins.plan(r.id, service.map(|i| services[i].id));
                let deprecated = service.map(|i| &deprecated[i]);
                let deprecation = deprecated.and_then(|d| RouteDeprecation::of(r, d));
                route_entry(r, service, plan, deprecation)
            })
            .collect();
        Ok(Snapshot {
            version,
            router,
            routes,
            services,
            consumers,
            plugins,
            upstreams,
            certificates: sni_table(&certificates, &snis),
        })
    }
}

/// The served form of each certificate, under each of its SNIs. A certificate that no longer
/// loads (it was checked when written, so only a damaged store does this) is left out.
fn sni_table(certificates: &[Certificate], snis: &[Sni]) -> SniTable {
    let mut served = HashMap::new();
    for c in certificates {
        let alt = match (&c.cert_alt, &c.key_alt) {
            (Some(cert), Some(key)) => Some(pem::certified_key(cert, key)),
            _ => None,
        };
        match (pem::certified_key(&c.cert, &c.key), alt.transpose()) {
            (Ok(main), Ok(alt)) => {
                served.insert(c.id, Arc::new(Served { main, alt }));
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(certificate = %c.id, error = %e, "a stored certificate does not load")
            }
        }
    }
    let mut table = SniTable::default();
    for s in snis {
        if let Some(c) = served.get(&s.certificate.id) {
            table.insert(&s.name, c.clone());
        }
    }
    table
}

/// Each upstream's balancer over its targets (in creation order, as Kong lists them).
fn balancers(
    upstreams: Vec<Upstream>,
    mut targets: Vec<Target>,
    shared: &Shared,
) -> Vec<Arc<Balancer>> {
    targets.sort_by_key(|t| (t.created_at, t.id));
    upstreams
        .iter()
        .map(|u| {
            let own = targets
                .iter()
                .filter(|t| t.upstream.id == u.id)
                .cloned()
                .collect();
            Arc::new(Balancer::new(u, own, &shared.balancers, &shared.dns))
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, String> {
    T::deserialize(body).map_err(|e| format!("stored entity is invalid: {e}"))
}

fn label(name: &Option<String>, id: Uuid) -> Arc<str> {
    name.clone().unwrap_or_else(|| id.to_string()).into()
}

fn route_entry(
    r: &Route,
    service: Option<usize>,
    plugins: Plan,
    deprecation: Option<RouteDeprecation>,
) -> RouteEntry {
    RouteEntry {
        id: r.id,
        label: label(&r.name, r.id),
        service,
        strip_path: r.strip_path,
        preserve_host: r.preserve_host,
        path_handling_v1: r.path_handling == "v1",
        // A `grpcs`-only route answers cleartext calls itself (`grpc_cleartext`).
        allows_http: r
            .protocols
            .iter()
            .any(|p| p == "http" || p == "ws" || p == "grpc")
            || r.protocols.iter().all(|p| p == "grpc" || p == "grpcs"),
        grpc: r.protocols.iter().any(|p| p == "grpc" || p == "grpcs"),
        grpc_cleartext: r.protocols.iter().any(|p| p == "grpc"),
        websocket_only: !r.protocols.is_empty()
            && r.protocols.iter().all(|p| p == "ws" || p == "wss"),
        https_redirect_status_code: r.https_redirect_status_code,
        plugins,
        deprecation,
    }
}

/// The PEM text of the certificates and CA certificates services name, by id.
struct Pems<'a> {
    certificates: HashMap<Uuid, &'a Certificate>,
    cas: HashMap<String, &'a str>,
}

impl<'a> Pems<'a> {
    fn new(certificates: &'a [Certificate], cas: &'a [CaCertificate]) -> Pems<'a> {
        Pems {
            certificates: certificates.iter().map(|c| (c.id, c)).collect(),
            cas: cas
                .iter()
                .map(|c| (c.id.to_string(), c.cert.as_str()))
                .collect(),
        }
    }

    /// A TLS service's settings. A CA certificate or client certificate that is gone leaves
    /// its place empty: nothing verifies (fail closed), no certificate is presented.
    fn tls_settings(&self, s: &Service) -> tls::upstream::Settings {
        let roots = s.ca_certificates.as_ref().map(|ids| {
            ids.iter()
                .filter_map(|id| self.cas.get(id).map(|pem| pem.to_string()))
                .collect()
        });
        let client = s
            .client_certificate
            .and_then(|r| self.certificates.get(&r.id))
            .map(|c| (c.cert.clone(), c.key.clone()));
        tls::upstream::Settings {
            verify: s.tls_verify != Some(false),
            depth: s.tls_verify_depth,
            roots,
            client,
        }
    }
}

fn service_entry(
    s: &Service,
    upstreams: &[Arc<Balancer>],
    pems: &Pems,
    shared: &Shared,
) -> Result<ServiceEntry, String> {
    let tls = matches!(s.protocol.as_str(), "https" | "grpcs" | "wss")
        .then(|| Arc::new(pems.tls_settings(s)));
    let tls = tls.as_ref();
    let timeouts = (
        Duration::from_millis(u64::from(s.connect_timeout)),
        Duration::from_millis(u64::from(s.write_timeout)),
    );
    let port = s.effective_port();
    // gRPC is HTTP/2 end to end (h2c for `grpc`, h2 by ALPN for `grpcs`).
    let http2 = matches!(s.protocol.as_str(), "grpc" | "grpcs");
    let named = s.host.parse::<std::net::IpAddr>().is_err();
    let balancer = match upstreams.iter().find(|b| *b.name == s.host) {
        Some(b) => Some(b.clone()),
        // A host name is balanced over the addresses it resolves to, as Kong does.
        None if named => Some(Arc::new(implicit_balancer(s, tls, port, shared)?)),
        None => None,
    };
    let destination = match balancer {
        Some(b) => Destination::Upstream {
            endpoints: b
                .members
                .iter()
                .map(|m| endpoint(tls, &m.host, &m.name, m.port, timeouts, http2))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("upstream {}: {e}", b.name))?,
            balancer: b,
        },
        None => Destination::Host(
            endpoint(tls, &s.host, &s.host, port, timeouts, http2)
                .map_err(|e| format!("service {}: {e}", s.id))?,
        ),
    };
    Ok(ServiceEntry {
        id: s.id,
        label: label(&s.name, s.id),
        destination,
        path: s.path.clone(),
        retries: s.retries,
        read_timeout: Duration::from_millis(u64::from(s.read_timeout)),
        http2,
    })
}

/// The balancer of a service whose host is a name and no upstream's: its one target is the
/// host, expanded to its addresses; no health checks and no breaker (Kong has none there),
/// and the service's own `Host`.
fn implicit_balancer(
    s: &Service,
    tls: Option<&Arc<tls::upstream::Settings>>,
    port: u16,
    shared: &Shared,
) -> Result<Balancer, String> {
    let target = crate::model::target::format(&s.host, port);
    let stamp = json!({"id": s.id, "created_at": 0, "updated_at": 0});
    let mut upstream = stamp.clone();
    upstream["name"] = json!(s.host);
    upstream["circuit_breaker"] = json!({"enabled": false});
    let mut t = stamp;
    t["upstream"] = json!({"id": s.id});
    t["target"] = json!(target);
    let upstream: Upstream = parse(&upstream)?;
    let mut b = Balancer::new(&upstream, vec![parse(&t)?], &shared.balancers, &shared.dns);
    let dial = Default::default();
    b.host_header = Some(endpoint(tls, &s.host, &s.host, port, dial, false)?.host_header);
    Ok(b)
}

/// How a service reaches `host:port`: the pool key with its connect and write timeouts and
/// its TLS (asking for `name`), the address as logs name it, and the `Host` it sends, naming
/// `name` (the port left out when it is the scheme's own).
fn endpoint(
    tls: Option<&Arc<tls::upstream::Settings>>,
    host: &str,
    name: &str,
    port: u16,
    (connect_timeout, write_timeout): (Duration, Duration),
    http2: bool,
) -> Result<Endpoint, String> {
    let default_port = if tls.is_some() { 443 } else { 80 };
    let bracketed = |h: &str| {
        if h.contains(':') {
            format!("[{h}]")
        } else {
            h.to_string()
        }
    };
    let (host, name) = (bracketed(host), bracketed(name));
    let upstream_tls = tls.map(|settings| {
        Arc::new(tls::upstream::UpstreamTls {
            settings: settings.clone(),
            server_name: name.clone(),
        })
    });
    let authority: http::uri::Authority = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let host_header = if port == default_port {
        name
    } else {
        format!("{name}:{port}")
    };
    let scheme = if upstream_tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    Ok(Endpoint {
        address: authority.as_str().into(),
        target: crate::proxy::Target::new(
            scheme,
            authority,
            connect_timeout,
            write_timeout,
            upstream_tls,
            http2,
        ),
        host_header: http::HeaderValue::from_str(&host_header).map_err(|e| e.to_string())?,
    })
}
