//! A hand-written HTTP/1.1 proxy loop (httparse, one buffer each way, the upstream connection
//! driven by the client connection's own task): the ceiling of a Rust proxy on tokio that
//! owns its HTTP/1 code, to compare with hyper's.
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_bench_ceiling::{addresses, body_length, connect, invalid, serve, MAX_HEADERS};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let (listen, backend) = addresses();
    serve(listen, move |stream| async move {
        let _ = proxy(stream, backend).await;
    });
}

/// One client connection: each request goes to this connection's upstream connection, which
/// is opened on the first request and again whenever the backend closed it.
async fn proxy(mut client: TcpStream, backend: SocketAddr) -> std::io::Result<()> {
    let mut upstream: Option<TcpStream> = None;
    let (mut from_client, mut from_upstream) = (BytesMut::new(), BytesMut::new());
    let mut out = Vec::with_capacity(1024);
    loop {
        let head = read_head(&mut client, &mut from_client, |buf| {
            request_head(buf, &mut out)
        })
        .await?;
        let Some(head) = head else {
            return Ok(());
        };
        let _ = from_client.split_to(head);
        let up = match &mut upstream {
            Some(up) => up,
            None => upstream.insert(connect(backend).await?),
        };
        up.write_all(&out).await?;
        let Some((head, body_len, close)) =
            read_head(up, &mut from_upstream, |buf| response_head(buf, &mut out)).await?
        else {
            return Ok(());
        };
        while from_upstream.len() < head + body_len {
            if up.read_buf(&mut from_upstream).await? == 0 {
                return Ok(());
            }
        }
        out.extend_from_slice(&from_upstream.split_to(head + body_len)[head..]);
        if close {
            upstream = None;
            from_upstream.clear();
        }
        client.write_all(&out).await?;
    }
}

/// Reads until `parse` finds a whole head in the buffer; `None` when the peer closed first.
async fn read_head<T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut parse: impl FnMut(&[u8]) -> std::io::Result<Option<T>>,
) -> std::io::Result<Option<T>> {
    loop {
        if let Some(done) = parse(buf)? {
            return Ok(Some(done));
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Parses a request head into `out` as it goes upstream; returns the head's length.
fn request_head(buf: &[u8], out: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).map_err(invalid)? else {
        return Ok(None);
    };
    out.clear();
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(req.headers, out);
    Ok(Some(len))
}

/// Parses a response head into `out` as it goes to the client; returns the head's length,
/// the body's and whether the backend closes the connection after it.
fn response_head(buf: &[u8], out: &mut Vec<u8>) -> std::io::Result<Option<(usize, usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = resp.parse(buf).map_err(invalid)? else {
        return Ok(None);
    };
    let body_len = body_length(resp.headers)?
        .ok_or_else(|| invalid("the backend must send Content-Length"))?;
    let close = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("connection"))
        .is_some_and(|h| h.value.eq_ignore_ascii_case(b"close"));
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.code.unwrap_or(502).to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(resp.headers, out);
    Ok(Some((len, body_len, close)))
}

/// Writes the headers but `Connection`, which is for this hop only (as nginx does).
fn write_headers(headers: &[httparse::Header<'_>], out: &mut Vec<u8>) {
    for h in headers
        .iter()
        .filter(|h| !h.name.eq_ignore_ascii_case("connection"))
    {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
