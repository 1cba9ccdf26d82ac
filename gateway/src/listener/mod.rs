//! Serving the listeners other than the proxy (admin API, console, portal, status) with the
//! bounds every listener exposed to strangers needs: at most `max_connections` open at once
//! (the rest wait in the kernel's accept queue, holding no file descriptor, so one listener
//! cannot use up the descriptors the proxy needs), a time limit on a request's head, on a
//! whole request (its body read and its answer made), and on a silent or idle connection.
//! `axum::serve` has none of these.
//!
//! The proxy has its own accept loop (`proxy::server`); it shares [`idle`] with this one.
pub mod files;
pub mod idle;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use idle::{Activity, InFlight, Timeouts, Watched};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tower::ServiceExt;

/// How long open requests may take to finish once the gateway stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a client may have open at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 32;

/// The bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// A request's head, and a new connection's first request.
    pub header_timeout: Duration,
    /// A whole request: reading its body and making its answer.
    pub request_timeout: Duration,
    /// A kept-alive connection with no request.
    pub idle_timeout: Duration,
}

impl Limits {
    fn idle(&self) -> Timeouts {
        Timeouts {
            first_request: self.header_timeout,
            idle: self.idle_timeout,
        }
    }
}

/// Serves `app` on `listener` within `limits` (over TLS when `tls` is given) until `stop`
/// turns true, then lets open requests finish (for up to `DRAIN_TIMEOUT`).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) {
    let tls = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        // A slot first, then the connection: past the limit, clients wait in the backlog.
        let accepted = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => tokio::select! {
                    conn = listener.accept() => conn.map(|c| (c, slot)),
                    _ = crate::control::stopped(&mut stop) => break,
                },
                Err(_) => break,
            },
            _ = crate::control::stopped(&mut stop) => break,
        };
        let ((stream, peer), slot) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let activity = Activity::new();
        let service = request_service(app.clone(), peer, activity.clone(), limits.request_timeout);
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let timeouts = limits.idle();
        tokio::spawn(async move {
            if let Some(stream) = open(stream, tls, limits.header_timeout).await {
                let io = TokioIo::new(Watched::new(stream, activity.clone()));
                let conn = watcher.watch(builder.serve_connection_with_upgrades(io, service));
                if let Some(Err(e)) = idle::until_reaped(conn, activity, timeouts).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests were still open when the drain timeout ran out");
    }
}

/// A new connection as HTTP is read from it: itself, or over TLS after the handshake (`None`
/// when that did not happen; see [`crate::tls::accept`]).
async fn open(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    timeout: Duration,
) -> Option<Either<TcpStream, TlsStream<TcpStream>>> {
    let Some(acceptor) = tls else {
        return Some(Either::Left(stream));
    };
    match crate::tls::accept(stream, &acceptor, timeout).await {
        Ok(stream) => stream.map(Either::Right),
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
    }
}

/// The per-connection service: `app` with the client's address (axum's `ConnectInfo`), each
/// request counted as open until its body ends, and answered 408 when it takes longer than
/// `request_timeout`.
fn request_service(
    app: axum::Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    request_timeout: Duration,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<InFlight<axum::body::Body>>,
    Error = Infallible,
    Future = impl std::future::Future<
        Output = Result<hyper::Response<InFlight<axum::body::Body>>, Infallible>,
    > + Send,
> + Clone {
    service_fn(move |mut req: hyper::Request<Incoming>| {
        let (app, guard) = (app.clone(), activity.begin());
        req.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let answer =
                tokio::time::timeout(request_timeout, app.oneshot(req.map(axum::body::Body::new)));
            let resp = match answer.await {
                Ok(Ok(resp)) => resp,
                Ok(Err(never)) => match never {},
                Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
            };
            Ok::<_, Infallible>(resp.map(|body| InFlight::new(body, guard)))
        }
    })
}
