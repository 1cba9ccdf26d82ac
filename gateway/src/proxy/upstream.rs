//! Upstream HTTP/1.1 connections, kept alive in a pool per proxy worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its pool, its connections and the tasks
//! driving them stay on that thread: taking a connection is a map lookup with no lock, and no
//! request crosses threads on its way upstream. A connection goes back to the pool when the
//! response body has been read to its end; one whose body was abandoned is closed. The pool
//! is keyed by `Target`, which each service gets once with the snapshot, and outlives
//! snapshots, so a config change keeps the connections already open.
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
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
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

/// Where a service's requests go and how its connections are made: the pool's key.
/// Services with the same target share connections. Made once per service when a snapshot
/// is built, with its hash (an authority hashes byte by byte, and the pool is probed twice
/// per request).
#[derive(Clone)]
pub struct Target {
    at: Arc<Address>,
    hash: u64,
}

#[derive(PartialEq, Eq, Hash)]
struct Address {
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    /// Kong's `write_timeout`: the upstream not reading a write of the request is a 504.
    write_timeout: Duration,
}

impl Target {
    pub fn new(
        scheme: Scheme,
        authority: Authority,
        connect_timeout: Duration,
        write_timeout: Duration,
    ) -> Target {
        let at = Address {
            scheme,
            authority,
            connect_timeout,
            write_timeout,
        };
        let hash = foldhash::fast::FixedState::default().hash_one(&at);
        Target {
            at: Arc::new(at),
            hash,
        }
    }

    /// The URI a connector dials.
    fn uri(&self) -> Uri {
        Uri::builder()
            .scheme(self.at.scheme.clone())
            .authority(self.at.authority.clone())
            .path_and_query("/")
            .build()
            .expect("a scheme and an authority make a URI")
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.at, &other.at) || self.at == other.at)
    }
}

impl Eq for Target {}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    /// Looked up twice per request (take, give back): foldhash, not SipHash.
    idle: HashMap<Target, Vec<Idle>, foldhash::fast::RandomState>,
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

/// Sends `req` (its URI in origin form: path and query) to `target`, on a pooled or new
/// connection; `read_timeout` bounds each wait for a part of the response body.
pub async fn send(
    mut req: Request<UpstreamBody>,
    target: &Target,
    read_timeout: Duration,
) -> Result<Response<PooledBody>, UpstreamError> {
    // A pooled connection the upstream closed meanwhile hands the unsent request back;
    // then it goes on a new connection.
    while let Some(mut sender) = checkout(target).await {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok(pooled(resp, sender, target, read_timeout)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(e.into_error().into()),
            },
        }
    }
    let mut sender = match connect(target).await {
        Ok(sender) => sender,
        Err(e) => return Err(UpstreamError::Connect(e, Unsent(Box::new(req)))),
    };
    let resp = sender.send_request(req).await?;
    Ok(pooled(resp, sender, target, read_timeout))
}

fn pooled(
    resp: Response<Incoming>,
    sender: Sender,
    target: &Target,
    read_timeout: Duration,
) -> Response<PooledBody> {
    resp.map(|body| {
        let mut body = PooledBody {
            body,
            read_timeout,
            stall: None,
            release: Some((sender, target.clone())),
        };
        // A body that is empty from the start (204, HEAD, length 0) is never polled.
        if body.body.is_end_stream() {
            body.release();
        }
        body
    })
}

/// An idle connection that is ready for a request, if the pool has one.
async fn checkout(target: &Target) -> Option<Sender> {
    loop {
        let idle = POOL.with(|p| p.borrow_mut().idle.get_mut(target).and_then(Vec::pop))?;
        if idle.since.elapsed() > IDLE_TIMEOUT {
            continue;
        }
        let mut sender = idle.sender;
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

async fn connect(target: &Target) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let at = &target.at;
    let mut connector = POOL.with(|p| {
        p.borrow_mut()
            .connectors
            .entry(at.connect_timeout)
            .or_insert_with(|| connector(at.connect_timeout))
            .clone()
    });
    let io = connector.call(target.uri()).await?;
    let mut io = TimeoutStream::new(TokioIo::new(io));
    io.set_write_timeout(Some(at.write_timeout));
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
    release: Option<(Sender, Target)>,
}

impl PooledBody {
    fn release(&mut self) {
        let Some((sender, target)) = self.release.take() else {
            return;
        };
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            let idle = pool.idle.entry(target).or_default();
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
        let req = Request::post("/x?y=1")
            .header("x-kept", "1")
            .body(Either::Right(Full::new(Bytes::from_static(b"payload"))))
            .unwrap();
        let second = Duration::from_secs(1);
        let target = Target::new(
            Scheme::HTTP,
            addr.to_string().parse().unwrap(),
            second,
            second,
        );
        let Err(UpstreamError::Connect(_, Unsent(req))) = send(req, &target, second).await else {
            panic!("expected a connect failure");
        };
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().to_string(), "/x?y=1");
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
