//! hyper's HTTP/1 server with a hand-written upstream client polled inside the request's own
//! future (httparse, a thread-local pool of connections): the ceiling of a proxy that keeps
//! hyper downstream but drops its client's separate connection task.
use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_bench_ceiling::{body_length, connect, invalid, serve_hyper, Pool, MAX_HEADERS};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Upstream {
    stream: TcpStream,
    buf: BytesMut,
}

thread_local! {
    static POOL: Pool<Upstream> = const { Pool::new() };
}

fn main() {
    serve_hyper(forward);
}

async fn forward(
    req: Request<Incoming>,
    backend: SocketAddr,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let mut up = match POOL.with(Pool::take) {
        Some(up) => up,
        None => Upstream {
            stream: connect(backend).await?,
            buf: BytesMut::with_capacity(4096),
        },
    };
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    up.stream.write_all(&head).await?;
    let Head {
        mut resp,
        len,
        body_len,
        close,
    } = loop {
        if let Some(parsed) = parse_response(&up.buf)? {
            break parsed;
        }
        up.buf.reserve(4096);
        if up.stream.read_buf(&mut up.buf).await? == 0 {
            let mut r = Response::new(Full::default());
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(r);
        }
    };
    while up.buf.len() < len + body_len {
        if up.stream.read_buf(&mut up.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    let body = up.buf.split_to(len + body_len).split_off(len).freeze();
    *resp.body_mut() = Full::new(body);
    if !close {
        POOL.with(|p| p.give_back(up));
    }
    Ok(resp)
}

/// A response head read from the upstream.
struct Head {
    resp: Response<Full<Bytes>>,
    /// Bytes of the head itself.
    len: usize,
    /// The body's `Content-Length`.
    body_len: usize,
    /// The backend closes the connection after this response (nginx does after
    /// `keepalive_requests`): it does not go back to the pool.
    close: bool,
}

/// A response head as hyper's `Response`, with the head's and the body's lengths.
fn parse_response(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(buf).map_err(invalid)? else {
        return Ok(None);
    };
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::from_u16(parsed.code.unwrap_or(502)).map_err(invalid)?;
    let body_len = body_length(parsed.headers)?.unwrap_or(0);
    let mut close = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
            continue;
        }
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(invalid)?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(invalid)?;
        resp.headers_mut().append(name, value);
    }
    Ok(Some(Head {
        resp,
        len,
        body_len,
        close,
    }))
}
