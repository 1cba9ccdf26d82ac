//! hyper's HTTP/1 server and client, as Tollgate uses them, with nothing between: the
//! ceiling of a hyper-based proxy on one worker.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tollgate_bench_ceiling::{connect, serve_hyper, Pool};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Sender = SendRequest<Incoming>;

thread_local! {
    static POOL: Pool<Sender> = const { Pool::new() };
}

fn main() {
    serve_hyper(forward);
}

async fn forward(
    req: Request<Incoming>,
    backend: SocketAddr,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let Some(mut sender) = ready_sender(backend).await else {
        let mut resp = Response::new(Full::default());
        *resp.status_mut() = StatusCode::BAD_GATEWAY;
        return Ok(resp);
    };
    let (parts, body) = sender.send_request(req).await?.into_parts();
    // The backend's bodies are a few bytes: read whole, then the connection is free again.
    let body = body.collect().await?.to_bytes();
    POOL.with(|p| p.give_back(sender));
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A pooled connection that can take a request (one the backend closed is dropped), or a new one.
async fn ready_sender(backend: SocketAddr) -> Option<Sender> {
    while let Some(mut sender) = POOL.with(Pool::take) {
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
    let stream = connect(backend).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::task::spawn_local(conn);
    Some(sender)
}
