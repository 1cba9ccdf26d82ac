//! Reaping connections that hold a socket without using it: a client that opens a connection
//! and sends nothing (or only an HTTP/2 preface), or keeps an idle connection open forever.
//!
//! hyper's HTTP/1 `header_read_timeout` covers a slow request head, but nothing in hyper closes
//! an HTTP/2 connection whose client went silent, nor an idle one on a server without that
//! setting. Here the connection's reads are watched ([`Watched`] stamps each read that brought
//! bytes), requests in flight are counted until their response body ends ([`InFlight`]), and
//! [`reap`] ends the connection once nothing was read and no request was open for the
//! allowed time: `first_request` until a request came, `idle` after it.
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long a connection may stay silent with no request open.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Before its first request (the time a client has to send a complete request head).
    pub first_request: Duration,
    /// Between requests.
    pub idle: Duration,
}

/// What the watchdog knows of one connection.
pub struct Activity {
    born: Instant,
    /// Milliseconds after `born` of the last read that brought bytes.
    last_read_ms: AtomicU64,
    open_requests: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            born: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            open_requests: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// A request begins; it counts as open until the returned guard is dropped (with the
    /// response body, see [`InFlight`]).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.open_requests.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// How long until the connection may be reaped; `None` when it may be now.
    fn remaining(&self, t: &Timeouts) -> Option<Duration> {
        if self.open_requests.load(Ordering::Relaxed) > 0 {
            return Some(t.idle.min(t.first_request));
        }
        let allowed = if self.requests.load(Ordering::Relaxed) == 0 {
            t.first_request
        } else {
            t.idle
        };
        let silent =
            Duration::from_millis(self.now_ms() - self.last_read_ms.load(Ordering::Relaxed));
        allowed.checked_sub(silent).filter(|d| !d.is_zero())
    }
}

/// Marks one request open while it lives.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_read_ms.fetch_max(a.now_ms(), Ordering::Relaxed);
        a.open_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves once the connection has been silent with no request open for longer than
/// `timeouts` allow: run it beside the connection and drop the connection when it resolves.
pub async fn reap(activity: Arc<Activity>, timeouts: Timeouts) {
    while let Some(wait) = activity.remaining(&timeouts) {
        tokio::time::sleep(wait).await;
    }
}

pin_project! {
    /// A connection's socket, stamping the time of each read that brought bytes.
    pub struct Watched<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
    }
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            let a = this.activity;
            a.last_read_ms.store(a.now_ms(), Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pin_project! {
    /// A response body that keeps its request counted as open until it ends or is dropped.
    pub struct InFlight<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B> InFlight<B> {
    pub fn new(inner: B, guard: RequestGuard) -> InFlight<B> {
        InFlight {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: hyper::body::Body> hyper::body::Body for InFlight<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `conn` until it ends or the watchdog reaps it (then it is dropped, which closes it).
pub async fn until_reaped<F: Future>(
    conn: F,
    activity: Arc<Activity>,
    timeouts: Timeouts,
) -> Option<F::Output> {
    tokio::select! {
        out = conn => Some(out),
        () = reap(activity, timeouts) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_is_reaped_open_requests_are_not() {
        let t = Timeouts {
            first_request: Duration::from_millis(100),
            idle: Duration::from_millis(300),
        };
        let a = Activity::new();
        let started = tokio::time::Instant::now();
        reap(a.clone(), t).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        let guard = a.begin();
        let waited = tokio::time::timeout(Duration::from_secs(5), reap(a.clone(), t)).await;
        assert!(waited.is_err(), "an open request keeps the connection");
        drop(guard);
        let started = tokio::time::Instant::now();
        reap(a, t).await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "idle after a request"
        );
    }
}
