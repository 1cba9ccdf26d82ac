//! TLS termination for every listener (proxy, admin API, console, portal): rustls with the
//! ring provider, TLS 1.2 and 1.3, certificates chosen by SNI from the configured
//! `certificates` and `snis` (see [`sni`]), else a default self-signed one.
pub mod client;
pub mod default_cert;
pub mod pem;
pub mod sni;
pub mod upstream;

use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// ALPN for a listener that speaks HTTP/2 and HTTP/1.1, HTTP/2 preferred.
pub const ALPN_H2_HTTP1: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server configuration choosing certificates with `resolver`, offering `alpn`.
pub fn server_config(resolver: Arc<sni::Resolver>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A new connection on a TLS port, after its handshake; `None` when the client sent nothing,
/// took longer than `timeout` over its handshake, or sent cleartext HTTP (answered with
/// nginx's 400 and closed).
pub async fn accept(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    timeout: Duration,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    match starts_like_tls(&stream, timeout).await {
        None => return Ok(None),
        Some(false) => {
            refuse_cleartext(stream).await?;
            return Ok(None);
        }
        Some(true) => {}
    }
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(done) => done.map(Some),
        Err(_) => Ok(None),
    }
}

/// Whether a new connection opens with a TLS handshake record (content type 22); `None` when
/// the client closed, failed or sent nothing within `timeout`.
async fn starts_like_tls(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(timeout, stream.peek(&mut first)).await;
    let n = peeked.ok()?.ok()?;
    (n > 0).then_some(first[0] == 0x16)
}

/// nginx's answer to cleartext HTTP on a TLS port (its `NGX_HTTP_TO_HTTPS` error page).
async fn refuse_cleartext(mut stream: TcpStream) -> std::io::Result<()> {
    const BODY: &str = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n\
        <body>\r\n<center><h1>400 Bad Request</h1></center>\r\n\
        <center>The plain HTTP request was sent to HTTPS port</center>\r\n</body>\r\n</html>\r\n";
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(BODY.as_bytes()).await?;
    stream.shutdown().await
}
