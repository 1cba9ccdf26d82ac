//! WebSocket through the proxy (RFC 6455): the handshake is an ordinary request — routed,
//! authenticated and rate limited like any other, and sent upstream with its `Upgrade` — and
//! when the upstream answers 101 both connections become a tunnel that relays bytes each way
//! untouched until either side closes or neither sends anything for the idle timeout (the
//! service's `read_timeout`, as nginx's `proxy_read_timeout` bounds a Kong WebSocket).
//!
//! The connection is one analytics event, recorded when the tunnel closes: its duration,
//! bytes each way and the close code of the first Close frame (1006 when none passed).
//! The tunnel keeps the client connection's slot of the worker's connection limit.
mod frames;

use super::downstream::Downstream;
use super::log::{self, Exchange, Logger};
use super::upstream::Switched;
use bytes::Bytes;
use frames::CloseWatch;
use http::{header, HeaderMap, HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Each read of a tunnel's side asks for this much.
const RELAY_CHUNK: usize = 16 * 1024;

/// Whether a request is a WebSocket opening handshake (RFC 6455 §4.1): an HTTP/1.1 `GET`
/// with `Upgrade: websocket` and `Connection: upgrade`.
pub fn requested<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == http::Method::GET
        && has_token(req.headers(), header::UPGRADE, b"websocket")
        && has_token(req.headers(), header::CONNECTION, b"upgrade")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|v| {
        super::upstream::connection_options(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(token))
    })
}

/// The headers that carry the switch upstream, and back to the client with the 101.
pub fn write_upgrade_headers(head: &mut Vec<u8>) {
    super::upstream::write_header(head, b"connection", b"upgrade");
    super::upstream::write_header(head, b"upgrade", b"websocket");
}

pub fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Both ends of a switched connection, waiting for the 101 to reach the client.
pub struct Tunnel {
    pub client: OnUpgrade,
    pub upstream: Switched,
    pub idle_timeout: Duration,
}

/// Runs `tunnel` on its own task; the exchange is logged when it closes.
pub(super) fn spawn(tunnel: Tunnel, ex: Exchange, logger: Arc<Logger>, conn: Arc<Downstream>) {
    tokio::spawn(async move {
        let traffic = Traffic::new();
        match tunnel.client.await {
            Ok(client) => {
                let client = TokioIo::new(client);
                let idle = tunnel.idle_timeout;
                relay(client, tunnel.upstream, idle, &traffic).await;
            }
            Err(e) => tracing::debug!(error = %e, "the client's connection did not upgrade"),
        }
        drop(conn);
        let mut ex = Box::new(ex);
        ex.bytes_in += traffic.up.load(Relaxed);
        ex.ws_close_code = Some(match traffic.close.load(Relaxed) {
            0 => frames::ABNORMAL,
            code => code,
        });
        let status = http::StatusCode::SWITCHING_PROTOCOLS.as_u16();
        log::record(ex, status, traffic.down.load(Relaxed), &logger);
    });
}

/// What went through a tunnel, counted as it goes.
struct Traffic {
    start: Instant,
    /// Client to upstream bytes.
    up: AtomicU64,
    /// Upstream to client bytes.
    down: AtomicU64,
    /// Milliseconds from `start` to the last bytes either way.
    last_ms: AtomicU64,
    /// The first Close frame's code, 0 until one passes.
    close: AtomicU16,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            start: Instant::now(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            close: AtomicU16::new(0),
        }
    }

    fn passed(&self, count: &AtomicU64, n: usize, watch: &CloseWatch) {
        count.fetch_add(n as u64, Relaxed);
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Relaxed);
        if let Some(code) = watch.code() {
            let _ = self.close.compare_exchange(0, code, Relaxed, Relaxed);
        }
    }

    /// Returns once nothing has passed either way for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= timeout {
                return;
            }
            tokio::time::sleep(timeout - quiet).await;
        }
    }
}

/// Relays both ways until both sides have closed, one fails, or the tunnel idles out.
async fn relay<C>(client: C, upstream: Switched, idle: Duration, traffic: &Traffic)
where
    C: AsyncRead + AsyncWrite,
{
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream.io);
    let up = pump(
        client_read,
        upstream_write,
        Bytes::new(),
        &traffic.up,
        traffic,
    );
    let down = pump(
        upstream_read,
        client_write,
        upstream.early,
        &traffic.down,
        traffic,
    );
    tokio::select! {
        ended = async { tokio::try_join!(up, down) } => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "a WebSocket tunnel broke");
            }
        }
        () = traffic.idle(idle) => tracing::debug!("a WebSocket tunnel idled out"),
    }
}

/// Copies one direction, `early` first, until its reader ends (then shuts the writer).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    early: Bytes,
    count: &AtomicU64,
    traffic: &Traffic,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut watch = CloseWatch::default();
    if !early.is_empty() {
        watch.feed(&early);
        to.write_all(&early).await?;
        traffic.passed(count, early.len(), &watch);
    }
    let mut buf = vec![0u8; RELAY_CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        watch.feed(&buf[..n]);
        to.write_all(&buf[..n]).await?;
        traffic.passed(count, n, &watch);
    }
}
