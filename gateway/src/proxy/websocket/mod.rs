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

use super::coarse_timer;
use super::downstream::Downstream;
use super::log::{self, Exchange, Logger};
use super::upstream::Switched;
use frames::CloseWatch;
use http::{header, HeaderMap, HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
    let Tunnel {
        client,
        upstream,
        idle_timeout,
    } = tunnel;
    tokio::spawn(async move {
        let mut traffic = Traffic::default();
        match client.await {
            Ok(client) => {
                let relayed = relay(TokioIo::new(client), upstream, idle_timeout, &mut traffic);
                if let Err(e) = relayed.await {
                    tracing::debug!(error = %e, "a WebSocket tunnel ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "the client's connection did not upgrade"),
        }
        drop(conn);
        let mut ex = Box::new(ex);
        ex.bytes_in += traffic.up.passed;
        ex.ws_close_code = Some(traffic.close.unwrap_or(frames::ABNORMAL));
        let status = http::StatusCode::SWITCHING_PROTOCOLS.as_u16();
        log::record(ex, status, traffic.down.passed, &logger);
    });
}

/// What went through a tunnel: each direction's pipe, and the first Close frame's code.
#[derive(Default)]
struct Traffic {
    /// Client to upstream.
    up: Pipe,
    /// Upstream to client.
    down: Pipe,
    close: Option<u16>,
}

/// Relays both ways on one task, without splitting either stream (a split locks the stream
/// on every read and write), until both sides have closed, one fails, or nothing has passed
/// either way for `idle` (`TimedOut`).
async fn relay<C>(
    mut client: C,
    upstream: Switched,
    idle: Duration,
    traffic: &mut Traffic,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = upstream.io;
    traffic.down.load(&upstream.early);
    let mut last = coarse_timer::now();
    let mut deadline = Box::pin(tokio::time::sleep(idle));
    std::future::poll_fn(|cx| {
        let before = traffic.up.passed + traffic.down.passed;
        let up = traffic
            .up
            .poll_pass(cx, Pin::new(&mut client), io.as_mut())?;
        let down = traffic
            .down
            .poll_pass(cx, io.as_mut(), Pin::new(&mut client))?;
        let code = traffic.up.watch.code().or(traffic.down.watch.code());
        traffic.close = traffic.close.or(code);
        if up.is_ready() && down.is_ready() {
            return Poll::Ready(Ok(()));
        }
        if traffic.up.passed + traffic.down.passed != before {
            last = coarse_timer::now();
        }
        // The timer moves only when it fires: a reset for every message would cost more.
        while deadline.as_mut().poll(cx).is_ready() {
            let quiet = coarse_timer::now().saturating_duration_since(last);
            if quiet >= idle {
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            deadline.as_mut().reset((last + idle).into());
        }
        Poll::Pending
    })
    .await
}

/// One direction of a tunnel: what was read and not yet written, and what it saw pass.
struct Pipe {
    buf: Box<[u8]>,
    /// `buf[pos..len]` waits to be written.
    pos: usize,
    len: usize,
    read_done: bool,
    /// Written since the last flush.
    unflushed: bool,
    ended: bool,
    passed: u64,
    watch: CloseWatch,
}

impl Default for Pipe {
    fn default() -> Pipe {
        Pipe {
            buf: vec![0; RELAY_CHUNK].into_boxed_slice(),
            pos: 0,
            len: 0,
            read_done: false,
            unflushed: false,
            ended: false,
            passed: 0,
            watch: CloseWatch::default(),
        }
    }
}

impl Pipe {
    /// Starts the pipe with bytes read before the relay began.
    fn load(&mut self, early: &[u8]) {
        if early.len() > self.buf.len() {
            self.buf = vec![0; early.len()].into_boxed_slice();
        }
        self.buf[..early.len()].copy_from_slice(early);
        (self.pos, self.len) = (0, early.len());
        self.watch.feed(early);
    }

    /// Moves what it can from `from` to `to` (tokio's `copy` loop); ready once `from` has
    /// ended and `to` is shut down.
    fn poll_pass<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut from: Pin<&mut R>,
        mut to: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pos == self.len && !self.read_done {
                let mut read = ReadBuf::new(&mut self.buf);
                match from.as_mut().poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) => {
                        let n = read.filled().len();
                        self.read_done = n == 0;
                        self.watch.feed(&self.buf[..n]);
                        (self.pos, self.len) = (0, n);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        if self.unflushed {
                            ready!(to.as_mut().poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.len {
                let n = ready!(to.as_mut().poll_write(cx, &self.buf[self.pos..self.len]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.passed += n as u64;
                self.unflushed = true;
            }
            if self.read_done {
                ready!(to.as_mut().poll_flush(cx))?;
                ready!(to.as_mut().poll_shutdown(cx))?;
                self.ended = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}
