//! HTTP/2 upstream exchanges, for gRPC services: hyper's HTTP/2 client, one multiplexed
//! connection per target and proxy worker thread (h2c for `grpc`, h2 by ALPN for `grpcs`).
//!
//! The request arrives as the HTTP/1 head the proxy wrote for every upstream (so its headers
//! are made by the same rules), and is read back into an HTTP/2 request: the `Host` becomes
//! `:authority`. The response body streams back with its trailers, which gRPC's status rides in.
//! A failed connection goes to the next target up to `retries` times; a request that reached
//! the upstream is not sent again (its body has streamed away).
use super::{dial, Attempts, BoxError, Limits, Outgoing, Target, UpstreamError};
use crate::plugins::RequestBody;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;

/// The request body as hyper's client takes it: the client's, streamed, or one in memory.
type OutBody = Either<Incoming, Full<Bytes>>;

/// Headers the upstream head may carry at most (the client's were bounded before).
const MAX_HEADERS: usize = 256;

thread_local! {
    /// Each target's open connection on this worker thread.
    static CONNECTIONS: RefCell<HashMap<Target, SendRequest<OutBody>, foldhash::fast::RandomState>> =
        RefCell::default();
}

/// Sends `req` over HTTP/2 to the destinations `attempts` gives; the response's head within
/// the read timeout.
pub async fn send(
    req: Outgoing,
    attempts: &mut impl Attempts,
    limits: &Limits,
) -> Result<Response<super::UpstreamBody>, UpstreamError> {
    let mut failures = 0;
    let (mut sender, host) = loop {
        let (target, host) = attempts.next().ok_or(UpstreamError::NoTarget)?;
        match connection(&target).await {
            Ok(sender) => break (sender, host),
            Err(e) => {
                attempts.failed(super::outcome_of(&*e));
                if failures >= limits.retries {
                    return Err(UpstreamError::Connect(e));
                }
                failures += 1;
            }
        }
    };
    let request = request(req, host).map_err(UpstreamError::Exchange)?;
    let answer = tokio::time::timeout(limits.read_timeout, sender.send_request(request)).await;
    let failed = match answer {
        Ok(Ok(resp)) => return Ok(resp.map(super::UpstreamBody::Http2)),
        Ok(Err(e)) if e.is_user() => return Err(UpstreamError::ClientBody(e)),
        Ok(Err(e)) => io::Error::other(e),
        Err(_) => io::ErrorKind::TimedOut.into(),
    };
    attempts.failed(super::outcome_of(&failed));
    Err(UpstreamError::Exchange(failed))
}

/// The open connection to `target`, or a new one.
async fn connection(target: &Target) -> Result<SendRequest<OutBody>, BoxError> {
    let open = CONNECTIONS.with(|c| c.borrow().get(target).cloned());
    if let Some(mut sender) = open {
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let io = dial(target).await?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(Box::pin(io)))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "an HTTP/2 upstream connection ended");
        }
    });
    CONNECTIONS.with(|c| c.borrow_mut().insert(target.clone(), sender.clone()));
    Ok(sender)
}

/// The HTTP/2 request for the proxy's upstream head (request line and headers, no framing):
/// `host` is the attempt's `Host` when the head has none.
fn request(req: Outgoing, host: Option<HeaderValue>) -> io::Result<Request<OutBody>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let mut head = req.head;
    head.extend_from_slice(b"\r\n");
    parsed
        .parse(&head)
        .map_err(|e| super::codec::invalid(e.to_string()))?;
    let mut authority = host;
    let mut builder = Request::builder().method(req.method);
    for h in parsed.headers.iter() {
        let value = HeaderValue::from_bytes(h.value).map_err(io::Error::other)?;
        if h.name.eq_ignore_ascii_case(header::HOST.as_str()) {
            authority = Some(value);
        } else {
            builder = builder.header(h.name, value);
        }
    }
    let authority = authority.ok_or_else(|| super::codec::invalid("no host for :authority"))?;
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.as_bytes())
        .path_and_query(parsed.path.unwrap_or("/"))
        .build()
        .map_err(io::Error::other)?;
    let body = match req.body {
        RequestBody::Streaming(incoming) => Either::Left(incoming),
        RequestBody::Buffered(bytes) => Either::Right(Full::new(bytes)),
    };
    builder
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(body)
        .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POST with `head` as the proxy writes it, and an empty body.
    fn outgoing(head: &[u8]) -> Outgoing {
        Outgoing {
            method: http::Method::POST,
            head: head.to_vec(),
            declared_length: false,
            body: RequestBody::Buffered(Bytes::new()),
            response_room: 0,
            upgrade: false,
        }
    }

    #[test]
    fn the_upstream_head_becomes_an_http2_request_with_the_host_as_authority() {
        let head = b"POST /pkg.Svc/Call?x=1 HTTP/1.1\r\ncontent-type: application/grpc\r\n\
                     te: trailers\r\nhost: grpc.test:50051\r\nx-forwarded-for: 10.0.0.1\r\n";
        let r = request(outgoing(head), None).unwrap();
        assert_eq!(r.uri().authority().unwrap(), "grpc.test:50051");
        assert_eq!(r.uri().path_and_query().unwrap(), "/pkg.Svc/Call?x=1");
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert!(r.headers().get("host").is_none());
        assert_eq!(r.headers()["te"], "trailers");
        assert_eq!(r.headers()["x-forwarded-for"], "10.0.0.1");
    }

    #[test]
    fn the_attempts_host_is_the_authority_when_the_head_has_none() {
        let head = b"POST /a.B/C HTTP/1.1\r\n";
        let host = HeaderValue::from_static("target-2:9000");
        let r = request(outgoing(head), Some(host)).unwrap();
        assert_eq!(r.uri().authority().unwrap(), "target-2:9000");
        assert!(request(outgoing(head), None).is_err());
    }
}
