//! The proxy listeners: accept connections, in cleartext or TLS, serve HTTP/1.1 and HTTP/2
//! (h2c by prior knowledge, or h2 by ALPN) on them, and drain them on shutdown.
//!
//! The proxy runs as nginx does: N worker threads, each with its own single-threaded runtime
//! and its own `SO_REUSEPORT` listener on the proxy address, so the kernel spreads connections
//! and a request never leaves the thread that accepted it. In the benchmark this served 32 %
//! more requests per second on one worker than a one-worker multi-threaded runtime.
use super::coarse_timer::{self, CoarseTimer};
use super::downstream::Tls;
use super::drain::Drain;
use super::{Downstream, Proxy};
use crate::listener::idle::{self, Activity, InFlight, Timeouts, Watched};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long in-flight requests may take to finish once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long clients may take and how many connections a worker serves at once.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// `first_request`: a request's head (and a new connection's first byte); `idle`: an
    /// HTTP/2 connection with no stream open (an HTTP/1 one waits `first_request` for its next
    /// request, hyper's header read timeout).
    pub timeouts: Timeouts,
    /// Connections one worker serves at once; further clients wait in the accept queue.
    pub max_connections: usize,
}

/// Request heads beyond this are refused by hyper (431); heads between the proxy's own limit
/// (`MAX_HEADER_BYTES`) and this, by the proxy (400).
const HYPER_HEAD_LIMIT: usize = 64 * 1024;

/// HTTP/1 settings, for hyper's builder and for auto's (same methods, no common trait). The
/// timer is the coarse one of the worker thread (`coarse_timer::tick` runs beside the
/// connections).
///
/// `half_close`: a client that shuts its sending side after a request still gets the answer
/// (RFC 9112 §9.6 allows it; `nc -N` does it), and the request is not given up when the
/// client leaves before its answer (HAProxy's default; nginx answers 499 and drops it). It
/// also stops hyper reading from the connection while a request is in flight to watch for
/// that: each such read reserved room in a read buffer the request still points into, so
/// hyper allocated a new 8 KiB buffer for every request (about 580 instructions of 25,300).
macro_rules! configure_http1 {
    ($builder:expr, $header_timeout:expr) => {
        $builder
            .timer(CoarseTimer)
            .keep_alive(true)
            .half_close(true)
            .header_read_timeout($header_timeout)
            .max_buf_size(HYPER_HEAD_LIMIT)
    };
}

/// The connection settings every proxy connection gets: hyper's HTTP/1 server for connections
/// that start like HTTP/1 (nearly all), hyper-util's auto connection for the rest, which reads
/// the first bytes and serves HTTP/2 (prior-knowledge h2c) or HTTP/1. The direct HTTP/1 server
/// skips auto's per-read rewind layer and per-poll protocol state: about 500 instructions of
/// a proxied request's 25,600.
struct Builders {
    http1: http1::Builder,
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(header_timeout: Duration) -> Builders {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        configure_http1!(auto.http1(), header_timeout);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(super::MAX_HEADER_BYTES as u32 + 1024)
            // A peer that stops answering pings is gone (the idle watchdog covers a silent one
            // that never finished its handshake).
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(header_timeout);
        let mut http1 = http1::Builder::new();
        // A whole head over the limit that arrived in one read is refused too, as a partial
        // one is (auto's builder has no such setting; there it depends on how the head arrived).
        configure_http1!(http1, header_timeout).max_header_size(HYPER_HEAD_LIMIT);
        Builders { http1, auto }
    }
}

/// One address the proxy listens on: cleartext, or TLS with this server configuration.
#[derive(Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Binds each of `listens` once per worker (the first bind picks the port when it is 0) and
/// starts `workers` threads, each serving one socket of every address. Each thread ends after
/// its drain once `shutdown` turns true.
pub fn start_workers(
    listens: &[Listen],
    workers: usize,
    proxy: Arc<Proxy>,
    limits: ClientLimits,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut per_worker: Vec<Vec<(std::net::TcpListener, Option<TlsAcceptor>)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for listen in listens {
        let first = reuseport_listener(listen.addr)?;
        let addr = first.local_addr()?;
        let acceptor = listen.tls.clone().map(TlsAcceptor::from);
        per_worker[0].push((first, acceptor.clone()));
        for sockets in per_worker.iter_mut().skip(1) {
            sockets.push((reuseport_listener(addr)?, acceptor.clone()));
        }
    }
    per_worker
        .into_iter()
        .enumerate()
        .map(|(i, sockets)| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("tollgate-proxy-{i}"))
                .spawn(move || runtime.block_on(worker(sockets, proxy, limits, shutdown)))
        })
        .collect()
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// One worker thread: serves its sockets until `shutdown` turns true, then waits for open
/// requests to finish. The worker's connection limit spans all its sockets.
async fn worker(
    sockets: Vec<(std::net::TcpListener, Option<TlsAcceptor>)>,
    proxy: Arc<Proxy>,
    limits: ClientLimits,
    shutdown: watch::Receiver<bool>,
) {
    let ticker = tokio::spawn(coarse_timer::tick());
    let hand_over = proxy
        .logger
        .analytics
        .is_some()
        .then(|| tokio::spawn(hand_over_analytics(proxy.clone())));
    let conns = Connections {
        proxy: proxy.clone(),
        builders: Arc::new(Builders::new(limits.timeouts.first_request)),
        limits,
        drain: Drain::default(),
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut loops = tokio::task::JoinSet::new();
    for (socket, tls) in sockets {
        match TcpListener::from_std(socket) {
            Ok(l) => {
                let accept = accept_loop(l, tls, conns.clone(), slots.clone(), shutdown.clone());
                loops.spawn(accept);
            }
            Err(e) => tracing::error!(error = %e, "cannot register a proxy listener"),
        }
    }
    while loops.join_next().await.is_some() {}
    if tokio::time::timeout(DRAIN_TIMEOUT, conns.drain.run())
        .await
        .is_err()
    {
        tracing::warn!("some requests were still open when the drain timeout ran out");
    }
    ticker.abort();
    if let Some(task) = hand_over {
        task.abort();
        proxy.logger.hand_over();
    }
}

/// What serving a connection needs, shared by a worker's sockets.
#[derive(Clone)]
struct Connections {
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    limits: ClientLimits,
    drain: Drain,
}

/// Accepts connections on `listener` while a connection slot is free, until `shutdown`.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    conns: Connections,
    slots: Arc<tokio::sync::Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        // A slot first, then the connection: past the limit, clients wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = crate::control::stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::control::stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let (conns, tls) = (conns.clone(), tls.clone());
        let local_ip = stream
            .local_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let at = Accepted {
            peer,
            local_port,
            local_ip,
            slot,
        };
        tokio::spawn(async move {
            let ended = match tls {
                None => conns.cleartext(stream, at).await,
                Some(acceptor) => conns.tls(stream, acceptor, at).await,
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

type Ended = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// An accepted connection's facts, and its slot of the worker's connection limit (held by
/// its `Downstream` once it has one).
struct Accepted {
    peer: SocketAddr,
    local_port: u16,
    local_ip: IpAddr,
    slot: tokio::sync::OwnedSemaphorePermit,
}

impl Connections {
    /// A cleartext connection: HTTP/1 unless it opens with HTTP/2's preface (h2c).
    async fn cleartext(&self, stream: TcpStream, at: Accepted) -> Ended {
        let timeout = self.limits.timeouts.first_request;
        let downstream = Downstream::new(at.peer, at.local_port, None)
            .on(at.local_ip)
            .holding(at.slot);
        let downstream = Arc::new(downstream);
        match starts_like_http1(&stream, timeout).await {
            None => Ok(()),
            Some(true) => self.http1(stream, downstream).await,
            Some(false) => self.watched(stream, downstream).await,
        }
    }

    /// A TLS connection: the handshake (within the header timeout), then HTTP/2 when ALPN
    /// chose it, else HTTP/1. Cleartext HTTP sent here gets nginx's 400.
    async fn tls(&self, stream: TcpStream, acceptor: TlsAcceptor, at: Accepted) -> Ended {
        let timeout = self.limits.timeouts.first_request;
        let Some(stream) = crate::tls::accept(stream, &acceptor, timeout).await? else {
            return Ok(());
        };
        let (_, session) = stream.get_ref();
        let h2 = session.alpn_protocol() == Some(b"h2");
        let tls = Tls {
            sni: session.server_name().map(Box::from),
        };
        let downstream = Downstream::new(at.peer, at.local_port, Some(tls))
            .on(at.local_ip)
            .holding(at.slot);
        let downstream = Arc::new(downstream);
        if h2 {
            self.watched(stream, downstream).await
        } else {
            self.http1(stream, downstream).await
        }
    }

    /// Serves HTTP/1 with hyper's HTTP/1 server (upgrades allowed).
    async fn http1<I>(&self, io: I, downstream: Arc<Downstream>) -> Ended
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.proxy.clone();
        let service = service_fn(move |req| {
            let (proxy, downstream) = (proxy.clone(), downstream.clone());
            async move { Ok::<_, Infallible>(proxy.handle(req, &downstream).await) }
        });
        let conn = self
            .builders
            .http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        self.drain
            .watch(conn, |c| c.graceful_shutdown())
            .await
            .map_err(Into::into)
    }

    /// Serves HTTP/2 (or an odd HTTP/1 start) with hyper-util's auto connection, watched,
    /// since nothing in hyper reaps a client that sends its preface and then nothing, or
    /// idles forever.
    async fn watched<I>(&self, io: I, downstream: Arc<Downstream>) -> Ended
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let (open, proxy) = (activity.clone(), self.proxy.clone());
        let service = service_fn(move |req| {
            let (proxy, downstream) = (proxy.clone(), downstream.clone());
            let guard = open.begin();
            async move {
                let resp = proxy.handle(req, &downstream).await;
                Ok::<_, Infallible>(resp.map(|body| InFlight::new(body, guard)))
            }
        });
        let io = TokioIo::new(Watched::new(io, activity.clone()));
        let conn = self
            .builders
            .auto
            .serve_connection_with_upgrades(io, service);
        let conn = self.drain.watch(conn, |c| c.graceful_shutdown());
        idle::until_reaped(conn, activity, self.limits.timeouts)
            .await
            .unwrap_or(Ok(()))
    }
}

/// Whether a new connection's first bytes rule out HTTP/2's preface (`PRI * HTTP/2.0`); `None`
/// when the client closed, failed or sent nothing within the header read timeout. Peeking
/// leaves the bytes for the server that reads the request.
async fn starts_like_http1(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0u8; 3];
    let peeked = tokio::time::timeout(timeout, stream.peek(&mut first)).await;
    let n = peeked.ok()?.ok()?;
    (n > 0).then(|| !b"PRI".starts_with(&first[..n]))
}

/// Hands this worker's recorded events to the analytics pipeline on a short tick, so that
/// they do not wait for a full pack when traffic is light.
async fn hand_over_analytics(proxy: Arc<Proxy>) {
    let mut tick = tokio::time::interval(tollgate_analytics::pipeline::HANDOFF_INTERVAL);
    loop {
        tick.tick().await;
        proxy.logger.hand_over();
    }
}
