//! Bare reverse proxies for `deploy/bench/ceiling.sh`: they forward a GET to one backend and
//! its answer back, and do nothing else (no routing, headers, metrics or logs). Run against
//! the same backend as nginx and Tollgate, they show how many requests per second each HTTP
//! stack allows on one worker before any gateway work is added. Not for production: they
//! handle only body-less requests to a backend that sends `Content-Length`.
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

/// Header slots for parsing a head with httparse.
pub const MAX_HEADERS: usize = 64;

/// An error for bytes that are not the HTTP/1.1 expected.
pub fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// The `Content-Length` among parsed headers (the first one), if there is one.
pub fn body_length(headers: &[httparse::Header<'_>]) -> std::io::Result<Option<usize>> {
    let Some(h) = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    else {
        return Ok(None);
    };
    let text = std::str::from_utf8(h.value).map_err(invalid)?;
    text.parse().map(Some).map_err(invalid)
}

/// `LISTEN BACKEND` from the command line, both `host:port`.
pub fn addresses() -> (SocketAddr, SocketAddr) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| -> SocketAddr {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("usage: {{bare proxy}} LISTEN BACKEND (host:port each)"))
    };
    (parse(0), parse(1))
}

/// Serves every connection to `listen` with `conn` on one thread, as one Tollgate worker does.
pub fn serve<F, Fut>(listen: SocketAddr, conn: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = TcpListener::bind(listen).await.expect("the listen address");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(conn(stream));
        }
    });
}

/// Serves every connection to `listen` with hyper's HTTP/1 server, each request answered by
/// `forward(request, backend)`.
pub fn serve_hyper<F, Fut, E>(forward: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Copy + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, E>> + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (listen, backend) = addresses();
    serve(listen, move |stream| async move {
        let service = hyper::service::service_fn(move |req| forward(req, backend));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

/// Idle upstream connections of this thread.
pub struct Pool<C>(RefCell<Vec<C>>);

impl<C> Pool<C> {
    pub const fn new() -> Pool<C> {
        Pool(RefCell::new(Vec::new()))
    }

    pub fn take(&self) -> Option<C> {
        self.0.borrow_mut().pop()
    }

    pub fn give_back(&self, conn: C) {
        self.0.borrow_mut().push(conn);
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool::new()
    }
}

/// A new upstream connection, without Nagle's delay.
pub async fn connect(backend: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(backend).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
