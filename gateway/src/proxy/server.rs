//! The proxy listener: accepts connections and serves HTTP/1.1 and cleartext HTTP/2 on them,
//! and drains them on shutdown.
//!
//! The proxy runs as nginx does: N worker threads, each with its own single-threaded runtime
//! and its own `SO_REUSEPORT` listener on the proxy address, so the kernel spreads connections
//! and a request never leaves the thread that accepted it. In the benchmark this served 32 %
//! more requests per second on one worker than a one-worker multi-threaded runtime.
use super::coarse_timer::{self, CoarseTimer};
use super::drain::Drain;
use super::{Downstream, Proxy};
use crate::listener::idle::{self, Activity, InFlight, Timeouts, Watched};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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

/// Binds `workers` listeners to `addr` (the first one picks the port when it is 0) and starts
/// one worker thread on each. Each thread ends after its drain once `shutdown` turns true.
pub fn start_workers(
    addr: SocketAddr,
    workers: usize,
    proxy: Arc<Proxy>,
    limits: ClientLimits,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(reuseport_listener(addr)?);
    }
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("tollgate-proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(l) => serve(l, proxy, limits, shutdown).await,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot register the proxy listener")
                            }
                        }
                    })
                })
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

/// Serves `listener` until `shutdown` turns true, then waits for open requests to finish.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ClientLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let header_timeout = limits.timeouts.first_request;
    let builders = Arc::new(Builders::new(header_timeout));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let ticker = tokio::spawn(coarse_timer::tick());
    let hand_over = proxy
        .logger
        .analytics
        .is_some()
        .then(|| tokio::spawn(hand_over_analytics(proxy.clone())));
    let drain = Drain::default();
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
        let proxy = proxy.clone();
        let downstream = Arc::new(Downstream::new(peer, local_port));
        let (builders, drain) = (builders.clone(), drain.clone());
        tokio::spawn(async move {
            let ended = match starts_like_http1(&stream, header_timeout).await {
                None => return,
                Some(true) => {
                    let service = service_fn(move |req| {
                        let (proxy, downstream) = (proxy.clone(), downstream.clone());
                        async move { Ok::<_, Infallible>(proxy.handle(req, &downstream).await) }
                    });
                    let conn = builders
                        .http1
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = conn.with_upgrades();
                    drain
                        .watch(conn, |c| c.graceful_shutdown())
                        .await
                        .map_err(Into::into)
                }
                // HTTP/2 (or an odd HTTP/1 start): watched, since nothing in hyper reaps a
                // client that sends its preface and then nothing, or idles forever.
                Some(false) => {
                    let activity = Activity::new();
                    let open = activity.clone();
                    let service = service_fn(move |req| {
                        let (proxy, downstream) = (proxy.clone(), downstream.clone());
                        let guard = open.begin();
                        async move {
                            let resp = proxy.handle(req, &downstream).await;
                            Ok::<_, Infallible>(resp.map(|body| InFlight::new(body, guard)))
                        }
                    });
                    let io = TokioIo::new(Watched::new(stream, activity.clone()));
                    let conn = builders.auto.serve_connection_with_upgrades(io, service);
                    let conn = drain.watch(conn, |c| c.graceful_shutdown());
                    idle::until_reaped(conn, activity, limits.timeouts)
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, drain.run())
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
