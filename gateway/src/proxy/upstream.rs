//! Upstream HTTP/1.1 connections, kept alive in a pool per proxy worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its pool, its connections and the tasks
//! driving them stay on that thread: taking a connection is a map lookup with no lock, and no
//! request crosses threads on its way upstream. A connection goes back to the pool when the
//! response body has been read to its end; one whose body was abandoned is closed. The pool
//! outlives snapshots, so a config change keeps the connections already open.
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_io_timeout::TimeoutStream;
use tower::Service;

/// A request body sent upstream: the client's, streamed, or one held in memory (read by a
/// plugin, or resent on a retry).
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;
type Sender = SendRequest<UpstreamBody>;
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

const MAX_IDLE_PER_UPSTREAM: usize = 256;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A service's limits: to connect, for each write of a request to the upstream (Kong's
/// `write_timeout`: the upstream not reading is a 504), and between two parts of a response
/// body (Kong's `read_timeout`; the wait for the response head is bounded by the caller).
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub write: Duration,
    pub read: Duration,
}

/// Connections are shared by upstreams with the same address and connection timeouts (the
/// read timeout belongs to each response, not to the connection).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    write_timeout: Duration,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    /// Looked up twice per request (take, give back): foldhash, not SipHash.
    idle: HashMap<Key, Vec<Idle>, foldhash::fast::RandomState>,
    connectors: HashMap<Duration, Connector>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made: nothing was sent, and the request comes back untouched
    /// (body included) for a retry.
    #[error("cannot connect: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>, Unsent),
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

/// A request that never left, as `send` got it.
pub struct Unsent(pub Box<Request<UpstreamBody>>);

impl std::fmt::Debug for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unsent {} {}", self.0.method(), self.0.uri())
    }
}

/// Sends `req` (whose URI names the upstream) on a pooled or new connection.
pub async fn send(
    mut req: Request<UpstreamBody>,
    timeouts: Timeouts,
) -> Result<Response<PooledBody>, UpstreamError> {
    let Some(authority) = req.uri().authority().cloned() else {
        let unsent = Unsent(Box::new(req));
        return Err(UpstreamError::Connect(
            "the upstream URI has no host".into(),
            unsent,
        ));
    };
    let key = Key {
        scheme: req.uri().scheme().cloned().unwrap_or(Scheme::HTTP),
        authority,
        connect_timeout: timeouts.connect,
        write_timeout: timeouts.write,
    };
    let target = req.uri().clone();
    // On the wire the request line carries only the path and query (origin form), as
    // servers expect from a gateway; the host travels in `Host`.
    *req.uri_mut() = origin_form(&target);
    // A pooled connection the upstream closed meanwhile hands the unsent request back;
    // then it goes on a new connection.
    while let Some(mut sender) = checkout(&key).await {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok(pooled(resp, sender, key, timeouts.read)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(e.into_error().into()),
            },
        }
    }
    let mut sender = match connect(&key, &target).await {
        Ok(sender) => sender,
        Err(e) => {
            // Back as the caller gave it, with its absolute URI.
            *req.uri_mut() = target;
            return Err(UpstreamError::Connect(e, Unsent(Box::new(req))));
        }
    };
    let resp = sender.send_request(req).await?;
    Ok(pooled(resp, sender, key, timeouts.read))
}

fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Uri::from(path)
}

fn pooled(
    resp: Response<Incoming>,
    sender: Sender,
    key: Key,
    read_timeout: Duration,
) -> Response<PooledBody> {
    resp.map(|body| {
        let mut body = PooledBody {
            body,
            read_timeout,
            stall: None,
            release: Some((sender, key)),
        };
        // A body that is empty from the start (204, HEAD, length 0) is never polled.
        if body.body.is_end_stream() {
            body.release();
        }
        body
    })
}

/// An idle connection that is ready for a request, if the pool has one.
async fn checkout(key: &Key) -> Option<Sender> {
    loop {
        let idle = POOL.with(|p| p.borrow_mut().idle.get_mut(key).and_then(Vec::pop))?;
        if idle.since.elapsed() > IDLE_TIMEOUT {
            continue;
        }
        let mut sender = idle.sender;
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

async fn connect(key: &Key, uri: &Uri) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let mut connector = POOL.with(|p| {
        p.borrow_mut()
            .connectors
            .entry(key.connect_timeout)
            .or_insert_with(|| connector(key.connect_timeout))
            .clone()
    });
    let io = connector.call(uri.clone()).await?;
    let mut io = TimeoutStream::new(TokioIo::new(io));
    io.set_write_timeout(Some(key.write_timeout));
    let (sender, conn) = http1::handshake(TokioIo::new(Box::pin(io))).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn connector(connect_timeout: Duration) -> Connector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// An upstream response body that returns its connection to the pool once read to the end,
/// and fails when the upstream sends nothing for `read_timeout`.
pub struct PooledBody {
    body: Incoming,
    read_timeout: Duration,
    /// Armed while the body waits for the upstream.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    release: Option<(Sender, Key)>,
}

impl PooledBody {
    fn release(&mut self) {
        let Some((sender, key)) = self.release.take() else {
            return;
        };
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            let idle = pool.idle.entry(key).or_default();
            if idle.len() < MAX_IDLE_PER_UPSTREAM {
                idle.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        });
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        // The server stops polling once `is_end_stream` says so, so look after each frame.
        match &frame {
            Poll::Pending => {
                let timeout = this.read_timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stall.as_mut().poll(cx).is_ready() {
                    // The connection is in an unknown state: dropped, not pooled.
                    this.release = None;
                    let stalled = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the upstream stopped sending the response body",
                    );
                    return Poll::Ready(Some(Err(stalled.into())));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(_) => {}
        }
        this.stall = None;
        frame.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_cannot_connect_comes_back_whole() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let req = Request::post(format!("http://{addr}/x?y=1"))
            .header("x-kept", "1")
            .body(Either::Right(Full::new(Bytes::from_static(b"payload"))))
            .unwrap();
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            write: Duration::from_secs(1),
            read: Duration::from_secs(1),
        };
        let Err(UpstreamError::Connect(_, Unsent(req))) = send(req, timeouts).await else {
            panic!("expected a connect failure");
        };
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().to_string(), format!("http://{addr}/x?y=1"));
        assert_eq!(req.headers()["x-kept"], "1");
        let Either::Right(body) = req.into_body() else {
            panic!("the body changed kind");
        };
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(bytes, "payload");
    }
}
