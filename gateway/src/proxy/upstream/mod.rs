//! Upstream HTTP/1.1 exchanges, on connections kept alive in a pool per proxy worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its pool and its connections stay on
//! that thread: taking a connection is a map lookup with no lock, and no request crosses
//! threads on its way upstream. The exchange runs inside the request's own future (the
//! request written, the response head read, then the body read as the client's connection
//! asks for it): no task per connection and no channel between the two sides, which is what
//! hyper's client costs (measured by `deploy/bench/ceiling.sh`: hyper's server with this kind
//! of client forwards 9-10 % more requests per second than with hyper's). The framing rules are
//! in `codec`. A connection goes back to the pool when the response body has been read to its
//! end; one whose body was abandoned is closed. The pool is keyed by `Target`, which each
//! service gets once with the snapshot, and outlives snapshots, so a config change keeps the
//! connections already open.
//!
//! The request is written whole before the response is read: an upstream that answers early
//! while it stops reading a large body gets `write_timeout` (a 504), as a deaf one does.
mod body;
mod codec;
pub mod http2;

pub use body::PooledBody;
pub(super) use codec::{connection_options, request_line, write_header};

use super::coarse_timer;
use crate::balancer::health::Outcome;
use crate::plugins::RequestBody;
use crate::tls::upstream::UpstreamTls;
use bytes::{Buf, BytesMut};
use codec::{Framing, ResponseHead};
use http::uri::{Authority, Scheme};
use http::{Method, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_rustls::{FixedServerNameResolver, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_io_timeout::TimeoutStream;
use tower::Service;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
pub type Io = TimeoutStream<TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>>;

const MAX_IDLE_PER_UPSTREAM: usize = 256;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Each read asks for room for at least this much.
const READ_CHUNK: usize = 16 * 1024;
/// A buffered request body up to this size leaves in the same write as the head.
const ONE_WRITE: usize = 16 * 1024;

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
    /// How TLS is spoken to it (`https` services): roots, client certificate, SNI.
    tls: Option<Arc<UpstreamTls>>,
    /// Spoken to in HTTP/2 (gRPC services), through `http2`.
    http2: bool,
}

impl Target {
    pub fn new(
        scheme: Scheme,
        authority: Authority,
        connect_timeout: Duration,
        write_timeout: Duration,
        tls: Option<Arc<UpstreamTls>>,
        http2: bool,
    ) -> Target {
        let at = Address {
            scheme,
            authority,
            connect_timeout,
            write_timeout,
            tls,
            http2,
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
    conn: Connection,
    /// On the worker's coarse clock: idle timeouts are a minute, a second either way is fine.
    since: Instant,
}

#[derive(Default)]
struct Pool {
    /// Looked up twice per request (take, give back): foldhash, not SipHash.
    idle: HashMap<Target, Vec<Idle>, foldhash::fast::RandomState>,
    /// By connect timeout, TLS settings and HTTP version: each makes its connections its own way.
    connectors: HashMap<ConnectorKey, Connector>,
}

type ConnectorKey = (Duration, Option<Arc<UpstreamTls>>, bool);

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No target of the upstream can take the request (all unhealthy, open or weight 0).
    #[error("no target is available")]
    NoTarget,
    /// No connection could be made (after the service's `retries`).
    #[error("cannot connect: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The client's request body broke off or was malformed (a bad chunk size, an
    /// over-long chunk extension) while it was being sent on: the client's fault, a 400.
    #[error("the client's request body: {0}")]
    ClientBody(hyper::Error),
    #[error(transparent)]
    Exchange(#[from] io::Error),
}

/// The client's body failing while it streams upstream, carried inside the `io::Error` of
/// the write until `send` tells it apart from the upstream's failures.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ClientBodyError(hyper::Error);

/// A request for the upstream, as the proxy rewrote it.
pub struct Outgoing {
    pub method: Method,
    /// The request line and headers, as `request_line` and `write_header` wrote them, but
    /// the `Host` when each attempt names its own, the body's framing and the blank line,
    /// which `send` adds.
    pub head: Vec<u8>,
    /// Whether the client sent a `Content-Length`.
    pub declared_length: bool,
    pub body: RequestBody,
    /// How many headers the gateway will add to the response: its header map is made with
    /// room for them.
    pub response_room: usize,
    /// The request asks to switch protocols (a WebSocket handshake): a 101 is an answer.
    pub upgrade: bool,
}

/// An upstream's response body: an HTTP/1 exchange's, or an HTTP/2 stream's, or one of
/// them (or a gateway answer) as a plugin rewrites it while it streams.
pub enum UpstreamBody {
    Http1(PooledBody),
    Http2(Incoming),
    Mapped(Box<Mapped>),
}

/// A response body passed through a plugin's `FrameMap`.
pub struct Mapped {
    inner: super::ProxyBody,
    map: Box<dyn crate::plugins::FrameMap>,
    ended: bool,
}

impl Mapped {
    pub fn new(inner: super::ProxyBody, map: Box<dyn crate::plugins::FrameMap>) -> Mapped {
        Mapped {
            inner,
            map,
            ended: false,
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(self.map.frame(frame)))),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                self.ended = true;
                Poll::Ready(self.map.end().map(Ok))
            }
        }
    }
}

impl UpstreamBody {
    /// The connection of an HTTP/1 `101 Switching Protocols`.
    pub fn into_switched(self) -> Option<Switched> {
        match self {
            UpstreamBody::Http1(body) => body.into_switched(),
            UpstreamBody::Http2(_) | UpstreamBody::Mapped(_) => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Http1(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Mapped(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1(b) => b.is_end_stream(),
            UpstreamBody::Http2(b) => b.is_end_stream(),
            UpstreamBody::Mapped(b) => b.ended,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            UpstreamBody::Http1(b) => b.size_hint(),
            UpstreamBody::Http2(b) => b.size_hint(),
            UpstreamBody::Mapped(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// An upstream connection that switched protocols: its socket, and the bytes of the new
/// protocol that came with the 101.
pub struct Switched {
    pub io: Pin<Box<Io>>,
    pub early: bytes::Bytes,
}

/// How long the upstream may take, and how often another attempt is made.
pub struct Limits {
    /// Kong's `read_timeout`: each wait for a part of the response.
    pub read_timeout: Duration,
    /// Kong's `retries`: further attempts after one fails.
    pub retries: u32,
}

/// Where a request's attempts go, and who hears how they failed: a service's one host, or
/// the targets an upstream's balancer picks.
pub trait Attempts {
    /// The next attempt's destination and, when the head carries none, its `Host`; `None`
    /// when nothing can take it.
    fn next(&mut self) -> Option<(Target, Option<http::HeaderValue>)>;
    /// The last attempt got no answer, for this reason.
    fn failed(&mut self, outcome: Outcome);
}

/// Sends `req` to the destinations `attempts` gives, on a pooled or new connection, and
/// returns the response with its body still to be read. A failed connection goes to the next
/// destination, up to `retries` times; so does a request the upstream dropped without
/// answering when it can be sent again (an idempotent one whose body is in memory, as
/// nginx's `proxy_next_upstream error` does). A request whose bytes may have been acted on
/// (anything else once sent, or one that timed out waiting for the answer) is not retried.
pub async fn send(
    req: Outgoing,
    attempts: &mut impl Attempts,
    limits: &Limits,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let body_len = match &req.body {
        RequestBody::Buffered(b) => Some(b.len() as u64),
        RequestBody::Streaming(b) => b.size_hint().exact(),
    };
    let mut head = req.head;
    let base = head.len();
    let mut body = req.body;
    let replayable = req.method.is_idempotent()
        && match &body {
            RequestBody::Buffered(_) => true,
            RequestBody::Streaming(b) => b.is_end_stream(),
        };
    let expect = Expect {
        head_request: req.method == Method::HEAD,
        room: req.response_room,
        upgrade: req.upgrade,
    };
    let frame = |head: &mut Vec<u8>, host: Option<http::HeaderValue>| {
        head.truncate(base);
        if let Some(host) = host {
            codec::write_header(head, b"host", host.as_bytes());
        }
        codec::end_head(&req.method, body_len, req.declared_length, head)
    };
    let (mut target, host) = attempts.next().ok_or(UpstreamError::NoTarget)?;
    let mut framing = frame(&mut head, host);
    let mut failures = 0;
    loop {
        let outcome = match checkout(&target) {
            Some(conn) => Ok((conn, true)),
            None => connect(&target).await.map(|c| (c, false)),
        };
        let failed = match outcome {
            Ok((mut conn, reused)) => {
                conn.set_read_timeout(Some(limits.read_timeout));
                match conn.exchange(&head, &mut body, framing, &expect).await {
                    Ok(h) if h.response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                        let body = PooledBody::switched(conn, target.clone());
                        return Ok(h.response.map(|()| UpstreamBody::Http1(body)));
                    }
                    Ok(h) => {
                        let resp = h.response;
                        let body = PooledBody::new(conn, target.clone(), h.framing, h.keep_alive);
                        return Ok(resp.map(|()| UpstreamBody::Http1(body)));
                    }
                    // A kept-alive connection the upstream had closed meanwhile: nothing came
                    // back, and the request goes again on another connection to the same place.
                    Err(Failure::Silent(_)) if reused && replayable => continue,
                    Err(Failure::Silent(e)) if replayable => UpstreamError::Exchange(e),
                    Err(Failure::Client(e)) => return Err(UpstreamError::ClientBody(e)),
                    Err(Failure::Silent(e) | Failure::Broken(e)) => {
                        attempts.failed(outcome_of(&e));
                        return Err(e.into());
                    }
                }
            }
            Err(e) => UpstreamError::Connect(e),
        };
        attempts.failed(outcome_of(&failed));
        if failures >= limits.retries {
            return Err(failed);
        }
        failures += 1;
        let Some((next, host)) = attempts.next() else {
            return Err(failed);
        };
        target = next;
        framing = frame(&mut head, host);
    }
}

/// What a failed attempt tells the target's health: a timeout, or a TCP failure.
fn outcome_of(e: &(dyn std::error::Error + 'static)) -> Outcome {
    if super::is_timeout(e) {
        Outcome::Timeout
    } else {
        Outcome::TcpFailure
    }
}

/// What shapes the reading of the response head.
struct Expect {
    /// The request was a HEAD: no body follows whatever the head says.
    head_request: bool,
    /// Header slots the response's map keeps free for the gateway.
    room: usize,
    /// A 101 answers the request (it asked to upgrade) rather than breaking the exchange.
    upgrade: bool,
}

/// How an exchange failed: `Silent` when the upstream sent nothing back before the error,
/// `Client` when the client's body did.
enum Failure {
    Silent(io::Error),
    Broken(io::Error),
    Client(hyper::Error),
}

impl Failure {
    /// A failure while the request was written.
    fn writing(e: io::Error) -> Failure {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<ClientBodyError>())
        {
            let inner = e.into_inner().expect("checked above");
            let client = inner.downcast::<ClientBodyError>().expect("checked above");
            return Failure::Client(client.0);
        }
        Failure::silent(e)
    }

    fn silent(e: io::Error) -> Failure {
        // A timeout is a slow upstream, not a closed one.
        if e.kind() == io::ErrorKind::TimedOut {
            Failure::Broken(e)
        } else {
            Failure::Silent(e)
        }
    }
}

/// An upstream connection and what was read from it but not yet used.
struct Connection {
    io: Pin<Box<Io>>,
    buf: BytesMut,
    /// The current request's read timeout (`None` while idle in the pool).
    read_timeout: Option<Duration>,
    /// Its timer, armed while a read waits. Kept between waits, and never moved earlier:
    /// a timer set sooner than the runtime's next wake-up makes the runtime write to its
    /// eventfd (which `TimeoutStream`'s read timeout did after every wait).
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Connection {
    /// Writes the request and reads the response head (informational ones skipped).
    async fn exchange(
        &mut self,
        head: &[u8],
        body: &mut RequestBody,
        framing: Framing,
        expect: &Expect,
    ) -> Result<ResponseHead, Failure> {
        self.write_request(head, body, framing)
            .await
            .map_err(Failure::writing)?;
        let mut received = false;
        loop {
            match codec::response_head(&self.buf, expect.head_request, expect.room) {
                Ok(Some(h)) if h.response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    if expect.upgrade {
                        self.buf.advance(h.len);
                        return Ok(h);
                    }
                    return Err(Failure::Broken(codec::invalid(
                        "the upstream switched protocols, which the proxy does not pass on",
                    )));
                }
                Ok(Some(h)) if h.response.status().is_informational() => {
                    self.buf.advance(h.len);
                    received = true;
                }
                Ok(Some(h)) => {
                    self.buf.advance(h.len);
                    return Ok(h);
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Broken(e)),
            }
            received |= !self.buf.is_empty();
            let failed = match self.fill().await {
                Ok(0) => codec::invalid("the upstream closed the connection before answering"),
                Ok(_) => continue,
                Err(e) => e,
            };
            return Err(if received {
                Failure::Broken(failed)
            } else {
                Failure::silent(failed)
            });
        }
    }

    async fn write_request(
        &mut self,
        head: &[u8],
        body: &mut RequestBody,
        framing: Framing,
    ) -> io::Result<()> {
        match body {
            RequestBody::Buffered(b) if b.len() <= ONE_WRITE && !b.is_empty() => {
                self.io.write_all(&[head, b].concat()).await?
            }
            RequestBody::Buffered(b) => {
                self.io.write_all(head).await?;
                self.io.write_all(b).await?;
            }
            RequestBody::Streaming(_) if framing == Framing::Empty => {
                self.io.write_all(head).await?
            }
            RequestBody::Streaming(incoming) => self.stream_body(head, incoming, framing).await?,
        }
        self.io.flush().await
    }

    /// Writes the head with the client's body as it arrives, each frame as one write.
    async fn stream_body(
        &mut self,
        head: &[u8],
        body: &mut Incoming,
        framing: Framing,
    ) -> io::Result<()> {
        let chunked = framing == Framing::Chunked;
        let mut out = Vec::with_capacity(head.len() + READ_CHUNK);
        out.extend_from_slice(head);
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| io::Error::other(ClientBodyError(e)))?;
            match frame.into_data() {
                Ok(data) if chunked => codec::chunk(&data, &mut out),
                Ok(data) => out.extend_from_slice(&data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
            self.io.write_all(&out).await?;
            out.clear();
        }
        if chunked {
            codec::last_chunk(trailers.as_ref(), &mut out);
        }
        self.io.write_all(&out).await
    }

    /// Reads what the upstream sent into `buf`; `Ok(0)` when it closed the connection, a
    /// `TimedOut` error when it sent nothing for the read timeout.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = tokio_util::io::poll_read_buf(self.io.as_mut(), cx, &mut self.buf);
        if read.is_ready() {
            self.armed = false;
            return read;
        }
        let Some(timeout) = self.read_timeout else {
            return Poll::Pending;
        };
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.armed {
            stall.as_mut().reset(tokio::time::Instant::now() + timeout);
            self.armed = true;
        }
        if stall.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        Poll::Pending
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Bounds each wait for the upstream's answer (`None` while the connection is idle).
    fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
        self.armed = false;
    }

    /// Whether an idle connection is still open and silent: one the upstream closed, or
    /// that has bytes nobody asked for, cannot carry a request.
    fn is_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_fill(&mut cx).is_pending()
    }
}

/// An idle connection to `target` that is still open, if the pool has one.
fn checkout(target: &Target) -> Option<Connection> {
    loop {
        let idle = POOL.with(|p| p.borrow_mut().idle.get_mut(target).and_then(Vec::pop))?;
        let mut conn = idle.conn;
        if coarse_timer::now().saturating_duration_since(idle.since) <= IDLE_TIMEOUT
            && conn.is_idle()
        {
            return Some(conn);
        }
    }
}

/// Puts a connection whose exchange is complete back in the pool.
fn release(mut conn: Connection, target: &Target) {
    conn.set_read_timeout(None);
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.idle.entry(target.clone()).or_default();
        if idle.len() < MAX_IDLE_PER_UPSTREAM {
            idle.push(Idle {
                conn,
                since: coarse_timer::now(),
            });
        }
    });
}

async fn connect(target: &Target) -> Result<Connection, BoxError> {
    Ok(Connection {
        io: Box::pin(dial(target).await?),
        buf: BytesMut::with_capacity(READ_CHUNK),
        read_timeout: None,
        stall: None,
        armed: false,
    })
}

/// A new connection to `target`, TLS and ALPN done, writes bounded by its write timeout.
async fn dial(target: &Target) -> Result<Io, BoxError> {
    let at = &target.at;
    let key = (at.connect_timeout, at.tls.clone(), at.http2);
    let known = POOL.with(|p| p.borrow().connectors.get(&key).cloned());
    let mut connector = match known {
        Some(c) => c,
        None => {
            let made = connector(at.connect_timeout, at.tls.as_deref(), at.http2)?;
            POOL.with(|p| p.borrow_mut().connectors.insert(key, made.clone()));
            made
        }
    };
    let io = connector.call(target.uri()).await?;
    let mut io = TimeoutStream::new(TokioIo::new(io));
    io.set_write_timeout(Some(at.write_timeout));
    Ok(io)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What makes connections with this timeout and TLS: plain HTTP, or TLS as `tls` says
/// (without it, the bundled web roots and the address's own name), offering `h2` by ALPN
/// for HTTP/2 targets and `http/1.1` for the others.
fn connector(
    connect_timeout: Duration,
    tls: Option<&UpstreamTls>,
    http2: bool,
) -> Result<Connector, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match tls {
        None => builder.with_webpki_roots().https_or_http(),
        Some(tls) => builder
            .with_tls_config(tls.client_config()?)
            .https_or_http()
            .with_server_name_resolver(FixedServerNameResolver::new(tls.server_name()?)),
    };
    Ok(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    })
}
