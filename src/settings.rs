//! Every setting of ARCHITECTURE.md's interface table, each an environment variable and a flag.
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Database {
    Sqlite,
    Postgres,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Analytics {
    Embedded,
    Clickhouse,
    Off,
}

/// `TOLLGATE_ANALYTICS_DURABILITY`: what a killed process may lose of the analytics events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnalyticsDurability {
    /// At most the events of the last flush interval (they wait in memory).
    Batch,
    /// None: every event is written ahead to a file before its response ends.
    Wal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClickHouseCompression {
    None,
    Lz4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClickHouseValidation {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Proxy listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_PROXY_LISTEN",
        default_value = "0.0.0.0:8000",
        global = true
    )]
    pub proxy_listen: String,
    /// Proxy TLS listener address (HTTPS and HTTP/2 by ALPN), or `off`.
    #[arg(
        long,
        env = "TOLLGATE_PROXY_TLS_LISTEN",
        default_value = "0.0.0.0:8443",
        global = true
    )]
    pub proxy_tls_listen: String,
    /// Admin API listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_LISTEN",
        default_value = "127.0.0.1:8001",
        global = true
    )]
    pub admin_listen: String,
    /// Admin API TLS listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_TLS_LISTEN",
        default_value = "127.0.0.1:8444",
        global = true
    )]
    pub admin_tls_listen: String,
    /// Token every admin call must carry; required when the admin API listens off loopback.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// Host names the admin API answers to besides IP addresses and `localhost`, comma
    /// separated (without a token, any other `Host` is refused: DNS rebinding).
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    pub admin_hosts: Vec<String>,
    /// Admin console listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_CONSOLE_LISTEN",
        default_value = "127.0.0.1:8002",
        global = true
    )]
    pub console_listen: String,
    /// Admin console TLS listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_CONSOLE_TLS_LISTEN",
        default_value = "off",
        global = true
    )]
    pub console_tls_listen: String,
    /// Developer portal listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_PORTAL_LISTEN",
        default_value = "0.0.0.0:8003",
        global = true
    )]
    pub portal_listen: String,
    /// Developer portal TLS listener address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_PORTAL_TLS_LISTEN",
        default_value = "off",
        global = true
    )]
    pub portal_tls_listen: String,
    /// Status listener (`/status`, `/metrics`) address, or `off`.
    #[arg(
        long,
        env = "TOLLGATE_STATUS_LISTEN",
        default_value = "127.0.0.1:8100",
        global = true
    )]
    pub status_listen: String,
    /// Proxy worker threads, each with its own runtime and listener (default: one per CPU).
    #[arg(long, env = "TOLLGATE_WORKER_THREADS", global = true)]
    pub worker_threads: Option<usize>,
    /// Seconds a client may take to send a request's head, and a new connection its first
    /// request (every listener; an idle HTTP/1 keep-alive connection is closed after it too).
    #[arg(
        long,
        env = "TOLLGATE_CLIENT_HEADER_TIMEOUT",
        default_value_t = 10,
        global = true
    )]
    pub client_header_timeout: u64,
    /// Seconds an idle HTTP/2 connection (and on the admin API, console, portal and status
    /// listeners, any idle connection) stays open.
    #[arg(
        long,
        env = "TOLLGATE_CLIENT_IDLE_TIMEOUT",
        default_value_t = 60,
        global = true
    )]
    pub client_idle_timeout: u64,
    /// Seconds a request to the admin API, console, portal or status listener may take, its
    /// body included (the proxy's requests are bounded by their services' timeouts).
    #[arg(
        long,
        env = "TOLLGATE_CLIENT_REQUEST_TIMEOUT",
        default_value_t = 60,
        global = true
    )]
    pub client_request_timeout: u64,
    /// Connections each of the admin API, console, portal and status listeners serves at once;
    /// more clients wait in the accept queue.
    #[arg(
        long,
        env = "TOLLGATE_LISTENER_MAX_CONNECTIONS",
        default_value_t = 256,
        global = true
    )]
    pub listener_max_connections: usize,
    /// Connections the proxy serves at once, over all workers (default: what the open-file
    /// limit leaves after the other listeners, halved for the upstream connections).
    #[arg(long, env = "TOLLGATE_PROXY_MAX_CONNECTIONS", global = true)]
    pub proxy_max_connections: Option<usize>,
    /// Seconds a resolved host name (a target's, or a service's) is used before it is
    /// resolved again; each address it resolves to is balanced as a target.
    #[arg(long, env = "TOLLGATE_DNS_TTL", default_value_t = 30, global = true)]
    pub dns_ttl: u64,
    /// Where the SQLite store and other local state live.
    #[arg(
        long,
        env = "TOLLGATE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// The file holding the key that seals stored secrets (certificates' private keys);
    /// default `keyring` in the data dir, made at first start. Nodes sharing a PostgreSQL
    /// store need the same file.
    #[arg(long, env = "TOLLGATE_KEYRING_FILE", global = true)]
    pub keyring_file: Option<PathBuf>,
    /// Config store: `sqlite`, `postgres`, or `off` (DB-less, from the declarative file).
    #[arg(
        long,
        env = "TOLLGATE_DATABASE",
        value_enum,
        default_value = "sqlite",
        global = true
    )]
    pub database: Database,
    /// Database URL (required for postgres; for sqlite it defaults to a file in the data dir).
    #[arg(
        long,
        env = "TOLLGATE_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// Declarative configuration file served in DB-less mode.
    #[arg(long, env = "TOLLGATE_DECLARATIVE_CONFIG", global = true)]
    pub declarative_config: Option<PathBuf>,
    /// Kubernetes mode: serve the cluster's Ingresses and Kong resources (in-cluster service
    /// account, or KUBECONFIG).
    #[arg(long, env = "TOLLGATE_KUBERNETES", global = true)]
    pub kubernetes: bool,
    /// The ingress classes served (`spec.ingressClassName` or `kubernetes.io/ingress.class`).
    #[arg(
        long = "ingress-class",
        env = "TOLLGATE_INGRESS_CLASSES",
        value_delimiter = ',',
        default_value = "tollgate,kong",
        global = true
    )]
    pub ingress_classes: Vec<String>,
    /// The gateway's own Service (`namespace/name`), whose address the served Ingresses'
    /// `status.loadBalancer` shows.
    #[arg(long, env = "TOLLGATE_PUBLISH_SERVICE", global = true)]
    pub publish_service: Option<String>,
    /// The Lease (in the pod's namespace) the replicas compete for to write Ingress status.
    #[arg(
        long,
        env = "TOLLGATE_ELECTION_ID",
        default_value = "tollgate-leader",
        global = true
    )]
    pub election_id: String,
    /// The pod's namespace (from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", global = true)]
    pub pod_namespace: String,
    /// The pod's name (from the downward API); the host name when unset.
    #[arg(long, env = "POD_NAME", global = true)]
    pub pod_name: Option<String>,
    /// Analytics store: `embedded`, `clickhouse` or `off`.
    #[arg(
        long,
        env = "TOLLGATE_ANALYTICS",
        value_enum,
        default_value = "embedded",
        global = true
    )]
    pub analytics: Analytics,
    /// ClickHouse's HTTP interface (`http://127.0.0.1:8123`), for `TOLLGATE_ANALYTICS=clickhouse`.
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_URL", global = true)]
    pub clickhouse_url: Option<String>,
    /// Row validation by the ClickHouse client: `auto` (on for servers from 2023), `on`, `off`.
    #[arg(
        long,
        env = "TOLLGATE_CLICKHOUSE_VALIDATION",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub clickhouse_validation: ClickHouseValidation,
    /// Compression of the events sent to ClickHouse: `none` (least CPU on the gateway) or
    /// `lz4` (fewer bytes, for a slow or metered link to ClickHouse).
    #[arg(
        long,
        env = "TOLLGATE_CLICKHOUSE_COMPRESSION",
        value_enum,
        default_value = "none",
        global = true
    )]
    pub clickhouse_compression: ClickHouseCompression,
    /// Events per analytics batch. Large, because ClickHouse wants few inserts (about one
    /// a second) and the embedded store's cost is per transaction; under light traffic
    /// batches go every `analytics_flush_ms` anyway.
    #[arg(
        long,
        env = "TOLLGATE_ANALYTICS_BATCH_SIZE",
        default_value_t = 50_000,
        global = true
    )]
    pub analytics_batch_size: usize,
    /// Longest an event waits for its batch, in milliseconds.
    #[arg(
        long,
        env = "TOLLGATE_ANALYTICS_FLUSH_MS",
        default_value_t = 1000,
        global = true
    )]
    pub analytics_flush_ms: u64,
    /// Events the queue between the proxy and the batcher holds; beyond it they are dropped
    /// (and counted).
    #[arg(
        long,
        env = "TOLLGATE_ANALYTICS_QUEUE",
        default_value_t = 100_000,
        global = true
    )]
    pub analytics_queue: usize,
    /// What a process killed with SIGKILL may lose of the analytics events: `batch`, at most
    /// the last flush interval's; `wal`, none (each event is written to a file first).
    #[arg(
        long,
        env = "TOLLGATE_ANALYTICS_DURABILITY",
        value_enum,
        default_value = "batch",
        global = true
    )]
    pub analytics_durability: AnalyticsDurability,
    /// Days the embedded store keeps its per-minute rollups.
    #[arg(
        long,
        env = "TOLLGATE_ANALYTICS_RETENTION_DAYS",
        default_value_t = 7,
        global = true
    )]
    pub analytics_retention_days: u64,
    #[arg(
        long,
        env = "TOLLGATE_CLICKHOUSE_DATABASE",
        default_value = "tollgate",
        global = true
    )]
    pub clickhouse_database: String,
    /// Redis for cluster-wide rate-limit counters.
    #[arg(
        long,
        env = "TOLLGATE_REDIS_URL",
        hide_env_values = true,
        global = true
    )]
    pub redis_url: Option<String>,
    /// Bytes each proxy-cache memory store (`config.memory.dictionary_name`) holds; the least
    /// recently used responses go first when it is full.
    #[arg(
        long,
        env = "TOLLGATE_PROXY_CACHE_MEMORY",
        default_value_t = tollgate_gateway::plugins::proxy_cache::store::DEFAULT_MEMORY_BYTES,
        global = true
    )]
    pub proxy_cache_memory: usize,
    /// Proxies whose real-IP header is believed: comma-separated CIDRs or addresses.
    #[arg(long, env = "TOLLGATE_TRUSTED_IPS", default_value = "", global = true)]
    pub trusted_ips: String,
    /// The header a trusted proxy names the client in (`X-Forwarded-For`, `CF-Connecting-IP`).
    #[arg(long, env = "TOLLGATE_REAL_IP_HEADER", global = true)]
    pub real_ip_header: Option<String>,
    /// The gateway's own response headers, as Kong's `headers` setting: `server_tokens`
    /// (`Server`, `Via`), `latency_tokens` (`X-Kong-Proxy-Latency`, `X-Kong-Upstream-Latency`,
    /// `X-Kong-Response-Latency`), single header names such as `X-Kong-Upstream-Status`, or
    /// `off`.
    #[arg(
        long,
        env = "TOLLGATE_HEADERS",
        default_value = tollgate_gateway::proxy::gateway_headers::DEFAULT_DOWNSTREAM,
        global = true
    )]
    pub headers: String,
    /// Headers the gateway adds to upstream requests, as Kong's `headers_upstream`:
    /// `X-Kong-Request-Id` or `off`.
    #[arg(
        long,
        env = "TOLLGATE_HEADERS_UPSTREAM",
        default_value = tollgate_gateway::proxy::gateway_headers::DEFAULT_UPSTREAM,
        global = true
    )]
    pub headers_upstream: String,
    /// Mark the console's and the portal's session cookies `Secure`: set it when they are
    /// reached over HTTPS through a TLS-terminating proxy.
    #[arg(
        long,
        env = "TOLLGATE_SECURE_COOKIES",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub secure_cookies: bool,
    /// Password of the first console user `admin` (generated into a 0600 file in the data
    /// dir when unset).
    #[arg(
        long,
        env = "TOLLGATE_CONSOLE_ADMIN_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub console_admin_password: Option<String>,
    /// Whether new developers wait for an operator's approval (`manual`) or can log in at
    /// once (`auto`).
    #[arg(
        long,
        env = "TOLLGATE_PORTAL_APPROVAL",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub portal_approval: PortalApproval,
    /// The proxy's public URL shown in the portal's documents and curl samples (default: the
    /// portal's host name with the proxy's port).
    #[arg(long, env = "TOLLGATE_PORTAL_PROXY_URL", global = true)]
    pub portal_proxy_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PortalApproval {
    Auto,
    Manual,
}

/// A listener setting: an address, or `None` for `off`.
pub fn listen_addr(name: &str, value: &str) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.trim().parse().map(Some).map_err(|e| {
        anyhow::anyhow!("{name}: '{value}' is not an address like 127.0.0.1:8001 or `off` ({e})")
    })
}
