//! Pooled upstream HTTP clients, shared across snapshots so a config change keeps the
//! keep-alive connections already open.
use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A request body sent upstream: the client's streamed body, or none (used for retries).
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamBody>;

/// One client per connect timeout: the timeout lives in the connector, the pool in the client.
#[derive(Default)]
pub struct ClientCache {
    clients: Mutex<HashMap<Duration, UpstreamClient>>,
}

impl ClientCache {
    /// The client for services with this connect timeout. Called only while building a
    /// snapshot, never on the request path.
    pub fn get(&self, connect_timeout: Duration) -> UpstreamClient {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(connect_timeout)
            .or_insert_with(|| build(connect_timeout))
            .clone()
    }
}

fn build(connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .build(https)
}
