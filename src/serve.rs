//! Wiring for `tollgate run`: store, control loop, and the listeners, until a signal stops them.
use crate::settings::{
    listen_addr, Analytics, AnalyticsDurability, ClickHouseCompression, ClickHouseValidation,
    Database, PortalApproval, Settings,
};
use anyhow::{bail, Context};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tollgate_analytics::pipeline;
use tollgate_analytics::query::Queries;
use tollgate_analytics::sink::clickhouse::{ClickHouse, Compression, Validation};
use tollgate_analytics::sink::embedded::Embedded;
use tollgate_analytics::sink::Sink;
use tollgate_analytics::Recorder;
use tollgate_gateway::admin::{self, AdminState};
use tollgate_gateway::control::{stopped, Reloader};
use tollgate_gateway::listener;
use tollgate_gateway::plugins::Shared;
use tollgate_gateway::proxy::{gateway_headers::GatewayHeaders, server, ClientIp, Logger, Proxy};
use tollgate_gateway::status::{self, metrics::Metrics};
use tollgate_gateway::store::{Backend, Keyring, Store};
use tollgate_gateway::{declarative, model, tls};
use tollgate_portal::{console, developer};

/// The runtime of everything but the proxy (admin API, status, reloads): light work, so two
/// threads at most. The proxy workers run their own runtimes (`server::start_workers`).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("tollgate-control")
        .enable_all()
        .build()?)
}

fn proxy_workers(s: &Settings) -> anyhow::Result<usize> {
    match s.worker_threads {
        Some(0) => bail!("TOLLGATE_WORKER_THREADS must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Where the key that seals stored secrets is kept.
fn keyring_file(s: &Settings) -> std::path::PathBuf {
    s.keyring_file
        .clone()
        .unwrap_or_else(|| s.data_dir.join("keyring"))
}

/// Opens the configured store (creating the SQLite file and data dir on first start).
pub async fn open_store(s: &Settings) -> anyhow::Result<Store> {
    let (backend, url) = match s.database {
        Database::Off => (Backend::Memory, "sqlite::memory:".to_string()),
        Database::Sqlite => {
            std::fs::create_dir_all(&s.data_dir)
                .with_context(|| format!("cannot create the data dir {}", s.data_dir.display()))?;
            let default = format!(
                "sqlite://{}?mode=rwc",
                s.data_dir.join("tollgate.db").display()
            );
            (Backend::Sqlite, s.database_url.clone().unwrap_or(default))
        }
        Database::Postgres => {
            let url = s
                .database_url
                .clone()
                .context("TOLLGATE_DATABASE=postgres needs TOLLGATE_DATABASE_URL")?;
            (Backend::Postgres, url)
        }
    };
    let keyring = match backend {
        Backend::Memory => Keyring::ephemeral(),
        Backend::Sqlite | Backend::Postgres => {
            let path = keyring_file(s);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Keyring::load_or_create(&path)
                .with_context(|| format!("cannot read the keyring {}", path.display()))?
        }
    };
    Store::connect(backend, &url, keyring)
        .await
        .context("cannot open the config store")
}

pub async fn run(s: Settings) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let proxy_addr = listen_addr("TOLLGATE_PROXY_LISTEN", &s.proxy_listen)?;
    let proxy_tls_addr = listen_addr("TOLLGATE_PROXY_TLS_LISTEN", &s.proxy_tls_listen)?;
    let admin_addrs = Addrs::read(
        ("TOLLGATE_ADMIN_LISTEN", &s.admin_listen),
        ("TOLLGATE_ADMIN_TLS_LISTEN", &s.admin_tls_listen),
    )?;
    let status_addr = listen_addr("TOLLGATE_STATUS_LISTEN", &s.status_listen)?;
    let console_addrs = Addrs::read(
        ("TOLLGATE_CONSOLE_LISTEN", &s.console_listen),
        ("TOLLGATE_CONSOLE_TLS_LISTEN", &s.console_tls_listen),
    )?;
    let portal_addrs = Addrs::read(
        ("TOLLGATE_PORTAL_LISTEN", &s.portal_listen),
        ("TOLLGATE_PORTAL_TLS_LISTEN", &s.portal_tls_listen),
    )?;
    let workers = proxy_workers(&s)?;
    let client_ip =
        ClientIp::new(&s.trusted_ips, s.real_ip_header.as_deref()).map_err(anyhow::Error::msg)?;
    for a in admin_addrs.plain.iter().chain(&admin_addrs.tls) {
        if !a.ip().is_loopback() && s.admin_token.as_deref().is_none_or(str::is_empty) {
            bail!("the admin API would listen on {a}, off loopback, without TOLLGATE_ADMIN_TOKEN; set a token or listen on 127.0.0.1");
        }
    }
    if s.kubernetes && s.declarative_config.is_some() {
        bail!("TOLLGATE_KUBERNETES and TOLLGATE_DECLARATIVE_CONFIG are two sources of one configuration; choose one");
    }
    if s.database != Database::Off && s.declarative_config.is_some() {
        bail!("TOLLGATE_DECLARATIVE_CONFIG is served only with TOLLGATE_DATABASE=off; with a database, load a file with `tollgate config apply FILE`");
    }
    let open_files = tollgate_gateway::listener::files::raise_limit();
    let limits = listener_limits(&s);
    let proxy_limits = proxy_limits(&s, workers, open_files);
    tracing::info!(
        open_files,
        proxy_connections_per_worker = proxy_limits.max_connections,
        "open-file limit"
    );
    let gateway_headers =
        GatewayHeaders::parse(&s.headers, &s.headers_upstream).map_err(anyhow::Error::msg)?;
    let store = open_store(&s).await?;
    let plugins = Arc::new(Shared {
        default_redis_url: s.redis_url.clone(),
        proxy_caches: tollgate_gateway::plugins::proxy_cache::Stores::new(s.proxy_cache_memory),
        dns: Arc::new(tollgate_gateway::balancer::dns::Resolver::new(
            std::time::Duration::from_secs(s.dns_ttl),
        )),
        ..Shared::default()
    });
    let oauth2_tokens = plugins.oauth2.clone();
    oauth2_tokens
        .attach(store.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the oauth2 tokens: {e}"))?;
    let reloader = Arc::new(Reloader::new(
        store.clone(),
        Arc::new(Metrics::default()),
        plugins,
    ));
    if let Some(file) = &s.declarative_config {
        load_declarative(&store, file).await?;
    }
    reloader
        .refresh()
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the configuration: {e}"))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reloader.clone().run(stop_rx.clone()));
    tasks.spawn(oauth2_tokens.run(stop_rx.clone()));
    if let Some(file) = s.declarative_config.clone() {
        tasks.spawn(watch_declarative(file, reloader.clone(), stop_rx.clone()));
    }
    // The controller failing (no API server to reach) stops the process, so its pod restarts.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    if s.kubernetes {
        let controller = tollgate_kubernetes::watch::controller(
            kubernetes_settings(&s)?,
            reloader.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = controller.await {
                let _ = fatal_tx.send(e).await;
            }
        });
    }
    let analytics = analytics_store(&s).await?;
    // The pipeline ends, flushing what is left, once the last `Recorder` is dropped: the proxy
    // takes this one, and without a proxy it is dropped at the signal (see below).
    let mut recorder = match &analytics {
        Some((sink, _)) => Some(start_pipeline(&s, sink.clone(), &reloader, &mut tasks)?),
        None => None,
    };
    let any_tls = proxy_tls_addr.is_some()
        || [&admin_addrs, &console_addrs, &portal_addrs]
            .iter()
            .any(|a| a.tls.is_some());
    let tls = match any_tls {
        true => Some(tls_config(&s, &reloader)?),
        false => None,
    };
    let listens: Vec<server::Listen> = [(proxy_addr, None), (proxy_tls_addr, tls.clone())]
        .into_iter()
        .filter_map(|(addr, tls)| Some(server::Listen { addr: addr?, tls }))
        .collect();
    if !listens.is_empty() {
        let proxy = Arc::new(Proxy {
            snapshot: reloader.snapshot.clone(),
            logger: Arc::new(Logger {
                metrics: reloader.metrics.clone(),
                analytics: recorder.take(),
                node: node_name().into(),
            }),
            client_ip,
            headers: gateway_headers,
        });
        let addrs: Vec<String> = listens.iter().map(|l| l.addr.to_string()).collect();
        let addrs = addrs.join(" and ");
        let threads =
            server::start_workers(&listens, workers, proxy, proxy_limits, stop_rx.clone())
                .with_context(|| format!("cannot listen for the proxy on {addrs}"))?;
        tracing::info!("proxy listening on {addrs} with {workers} worker threads");
        for thread in threads {
            tasks.spawn(async move {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            });
        }
    }
    let serve_on = Serving {
        limits,
        tls: tls.clone(),
        stop: stop_rx.clone(),
    };
    if admin_addrs.any() {
        let state = Arc::new(AdminState {
            reloader: reloader.clone(),
            read_only: s.database == Database::Off,
            token: s.admin_token.clone().filter(|t| !t.is_empty()),
            hosts: s.admin_hosts.clone(),
            config_hash: Default::default(),
            summary: summary(&s, &store),
            analytics: analytics.as_ref().map(|(_, queries)| queries.clone()),
        });
        let app = admin::router(state, portal_management(&s, &reloader, &store));
        serve_on
            .spawn(&mut tasks, "admin API", &admin_addrs, app)
            .await?;
    }
    let analytics_queries = analytics.as_ref().map(|(_, queries)| queries.clone());
    if console_addrs.any() {
        console::bootstrap_admin(&store, s.console_admin_password.as_deref(), &s.data_dir)
            .await
            .context("cannot create the first console user")?;
        let state = Arc::new(console::ConsoleState::new(
            store.clone(),
            analytics_queries.clone(),
            in_process_admin(&s, &reloader),
        ));
        let app = console::router(state, s.secure_cookies);
        serve_on
            .spawn(&mut tasks, "admin console", &console_addrs, app)
            .await?;
    }
    if portal_addrs.any() {
        let config = developer::PortalConfig {
            approval_required: s.portal_approval == PortalApproval::Manual,
            proxy_url: s.portal_proxy_url.clone(),
            proxy_port: proxy_addr.map_or(8000, |a| a.port()),
            secure_cookies: s.secure_cookies,
        };
        let state = Arc::new(developer::PortalState::new(
            store.clone(),
            analytics_queries.clone(),
            in_process_admin(&s, &reloader),
            config,
        ));
        let app = developer::router(state);
        serve_on
            .spawn(&mut tasks, "developer portal", &portal_addrs, app)
            .await?;
    }
    if let Some(addr) = status_addr {
        tasks.spawn(listener::serve(
            bind("status", addr).await?,
            status::router(reloader.clone()),
            limits,
            None,
            stop_rx.clone(),
        ));
    }
    tracing::info!("tollgate {} started", env!("CARGO_PKG_VERSION"));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut code = ExitCode::SUCCESS;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
        Some(e) = fatal_rx.recv() => {
            tracing::error!("the Kubernetes controller stopped: {e:#}");
            code = ExitCode::FAILURE;
        }
    }
    let _ = stop_tx.send(true);
    drop(recorder);
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(code)
}

/// The controller's settings from the gateway's.
fn kubernetes_settings(s: &Settings) -> anyhow::Result<tollgate_kubernetes::watch::Settings> {
    let identity = s.pod_name.clone().unwrap_or_else(node_name);
    let publish_service = match s.publish_service.as_deref() {
        None => None,
        Some(p) => match p.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                Some((ns.to_string(), name.to_string()))
            }
            _ => bail!("TOLLGATE_PUBLISH_SERVICE must be namespace/name, not {p:?}"),
        },
    };
    Ok(tollgate_kubernetes::watch::Settings {
        options: tollgate_kubernetes::translate::Options {
            classes: s.ingress_classes.clone(),
        },
        election: tollgate_kubernetes::watch::leader::Election {
            namespace: s.pod_namespace.clone(),
            lease: s.election_id.clone(),
            identity,
        },
        publish_service,
        shared_store: s.database == Database::Postgres,
    })
}

/// The analytics store for `TOLLGATE_ANALYTICS`: where events go and where queries read.
type AnalyticsStore = (Arc<dyn Sink>, Arc<dyn Queries>);

async fn analytics_store(s: &Settings) -> anyhow::Result<Option<AnalyticsStore>> {
    Ok(Some(match s.analytics {
        Analytics::Off => return Ok(None),
        Analytics::Embedded => {
            let days = std::time::Duration::from_secs(s.analytics_retention_days.max(1) * 86_400);
            let store = Arc::new(Embedded::open(&s.data_dir, days).await?);
            (store.clone(), store)
        }
        Analytics::Clickhouse => {
            let store = Arc::new(clickhouse_store(s)?);
            (store.clone(), store)
        }
    }))
}

fn clickhouse_store(s: &Settings) -> anyhow::Result<ClickHouse> {
    let url = s
        .clickhouse_url
        .as_deref()
        .context("TOLLGATE_ANALYTICS=clickhouse needs TOLLGATE_CLICKHOUSE_URL")?;
    let validation = match s.clickhouse_validation {
        ClickHouseValidation::Auto => Validation::Auto,
        ClickHouseValidation::On => Validation::On,
        ClickHouseValidation::Off => Validation::Off,
    };
    let compression = match s.clickhouse_compression {
        ClickHouseCompression::None => Compression::None,
        ClickHouseCompression::Lz4 => Compression::Lz4,
    };
    Ok(ClickHouse::new(url, &s.clickhouse_database, validation)?.with_compression(compression))
}

/// Starts the analytics pipeline into `sink`. It ends after the proxy: when the last
/// `Recorder` is dropped it flushes what is left.
fn start_pipeline(
    s: &Settings,
    sink: Arc<dyn Sink>,
    reloader: &Reloader,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<Recorder> {
    let config = pipeline::Config {
        batch_size: s.analytics_batch_size.max(1),
        flush_interval: std::time::Duration::from_millis(s.analytics_flush_ms.max(1)),
        queue_capacity: s.analytics_queue.max(1),
        durability: match s.analytics_durability {
            AnalyticsDurability::Batch => pipeline::Durability::Batch,
            AnalyticsDurability::Wal => pipeline::Durability::Wal,
        },
    };
    let (recorder, pipeline) = pipeline::start(config, sink, &s.data_dir).with_context(|| {
        format!(
            "cannot open the analytics spill file in {}",
            s.data_dir.display()
        )
    })?;
    let _ = reloader.metrics.analytics.set(recorder.metrics.clone());
    tasks.spawn(pipeline.run());
    Ok(recorder)
}

/// This node's name in analytics events: the host name.
fn node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tollgate".into())
}

/// A listener's cleartext and TLS addresses, each optional.
struct Addrs {
    plain: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

impl Addrs {
    fn read(plain: (&str, &str), tls: (&str, &str)) -> anyhow::Result<Addrs> {
        Ok(Addrs {
            plain: listen_addr(plain.0, plain.1)?,
            tls: listen_addr(tls.0, tls.1)?,
        })
    }

    fn any(&self) -> bool {
        self.plain.is_some() || self.tls.is_some()
    }
}

/// What the admin API, console and portal listeners share: bounds, TLS, the stop signal.
struct Serving {
    limits: listener::Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
}

impl Serving {
    /// Serves `app` on each of `addrs`: in cleartext, and over TLS.
    async fn spawn(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        what: &str,
        addrs: &Addrs,
        app: axum::Router,
    ) -> anyhow::Result<()> {
        if let Some(addr) = addrs.plain {
            let l = bind(what, addr).await?;
            let serve = listener::serve(l, app.clone(), self.limits, None, self.stop.clone());
            tasks.spawn(serve);
        }
        if let Some(addr) = addrs.tls {
            let l = bind(&format!("{what} (TLS)"), addr).await?;
            let serve = listener::serve(l, app, self.limits, self.tls.clone(), self.stop.clone());
            tasks.spawn(serve);
        }
        Ok(())
    }
}

/// The TLS configuration every TLS listener shares: certificates by SNI from the
/// configuration, else the default one kept in the data dir.
fn tls_config(s: &Settings, reloader: &Reloader) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let default = tls::default_cert::load_or_create(&s.data_dir)?;
    let resolver = Arc::new(tls::sni::Resolver::new(reloader.snapshot.clone(), default));
    Ok(tls::server_config(resolver, &tls::ALPN_H2_HTTP1))
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}"))?;
    tracing::info!("{what} listening on {addr}");
    Ok(l)
}

/// The bounds of the admin API, console, portal and status listeners.
fn listener_limits(s: &Settings) -> listener::Limits {
    listener::Limits {
        max_connections: s.listener_max_connections.max(1),
        header_timeout: Duration::from_secs(s.client_header_timeout.max(1)),
        request_timeout: Duration::from_secs(s.client_request_timeout.max(1)),
        idle_timeout: Duration::from_secs(s.client_idle_timeout.max(1)),
    }
}

/// The proxy's bounds per worker. Unless set, its connections get what the open-file limit
/// leaves once the four other listeners are full and 256 descriptors are kept for files and
/// the stores, halved (each proxied connection may hold an upstream one too).
fn proxy_limits(s: &Settings, workers: usize, open_files: u64) -> server::ClientLimits {
    let others = 4 * s.listener_max_connections as u64 + 256;
    let total = s
        .proxy_max_connections
        .unwrap_or_else(|| (open_files.saturating_sub(others) / 2).max(64) as usize);
    server::ClientLimits {
        timeouts: tollgate_gateway::listener::idle::Timeouts {
            first_request: Duration::from_secs(s.client_header_timeout.max(1)),
            idle: Duration::from_secs(s.client_idle_timeout.max(1)),
        },
        max_connections: total.div_ceil(workers).max(1),
    }
}

fn summary(s: &Settings, store: &Store) -> serde_json::Value {
    json!({
        "tagline": "Welcome to tollgate",
        "version": env!("CARGO_PKG_VERSION"),
        "hostname": std::env::var("HOSTNAME").unwrap_or_default(),
        "configuration": {
            "database": format!("{:?}", store.backend()).to_lowercase(),
            "proxy_listen": s.proxy_listen,
            "admin_listen": s.admin_listen,
            "status_listen": s.status_listen,
            "declarative_config": s.declarative_config,
        },
        "plugins": {"available_on_server": tollgate_gateway::plugins::registry().iter().map(|p| p.name).collect::<Vec<_>>()},
    })
}

/// The admin API for the console and the portal, called in process: no token, since it is
/// reachable only through their own sessions and checks.
/// The developer portal's plans, developers and applications in the public admin API; their
/// changes to plugins go through the in-process admin API.
fn portal_management(s: &Settings, reloader: &Arc<Reloader>, store: &Store) -> axum::Router {
    tollgate_portal::management::routes(Arc::new(tollgate_portal::management::Management {
        store: store.clone(),
        admin: in_process_admin(s, reloader),
    }))
}

fn in_process_admin(s: &Settings, reloader: &Arc<Reloader>) -> axum::Router {
    admin::router(
        Arc::new(AdminState {
            reloader: reloader.clone(),
            read_only: s.database == Database::Off,
            token: None,
            hosts: Vec::new(),
            config_hash: Default::default(),
            summary: json!({}),
            analytics: None,
        }),
        axum::Router::new(),
    )
}

/// Reads, checks and loads a declarative file into the (in-memory) store.
pub async fn load_declarative(store: &Store, file: &Path) -> anyhow::Result<()> {
    let text =
        declarative::read_file(file).with_context(|| format!("cannot read {}", file.display()))?;
    let config = declarative::load(&text, model::unix_now()).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|d| format!("  {}: {d}", file.display()))
            .collect();
        anyhow::anyhow!("invalid declarative configuration:\n{}", lines.join("\n"))
    })?;
    store.replace_all(&config.records, &config.plans).await?;
    tracing::info!(file = %file.display(), entities = config.records.len(), "declarative configuration loaded");
    Ok(())
}

/// Reloads the declarative file when it changes (checked each second) or on SIGHUP. A file
/// that does not validate is reported and the running configuration stays.
async fn watch_declarative(
    file: std::path::PathBuf,
    reloader: Arc<Reloader>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    let stamp = |f: &Path| {
        std::fs::metadata(f)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = stamp(&file);
    loop {
        let forced = tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
            _ = hup.recv() => true,
            _ = stopped(&mut stop) => return,
        };
        let now = stamp(&file);
        if !forced && now == last {
            continue;
        }
        last = now;
        match load_declarative(&reloader.store, &file).await {
            Ok(()) => reloader.poke(),
            Err(e) => tracing::error!("{e:#}; keeping the running configuration"),
        }
    }
}
