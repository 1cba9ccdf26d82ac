//! Pooled upstream HTTP clients, one set per proxy worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its clients, their keep-alive pools
//! and the tasks driving their connections all stay on that thread: no request crosses
//! threads on its way upstream. Clients outlive snapshots, so a config change keeps the
//! connections already open.
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// A request body sent upstream: the client's, streamed, or one held in memory (read by a
/// plugin, or resent on a retry).
pub type UpstreamBody = Either<Incoming, Full<Bytes>>;
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamBody>;

thread_local! {
    /// This thread's clients, one per connect timeout: the timeout lives in the connector,
    /// the pool in the client.
    static CLIENTS: RefCell<HashMap<Duration, UpstreamClient>> = RefCell::new(HashMap::new());
}

/// This thread's client for services with this connect timeout (a cheap handle clone).
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    CLIENTS.with(|clients| {
        clients
            .borrow_mut()
            .entry(connect_timeout)
            .or_insert_with(|| build(connect_timeout))
            .clone()
    })
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
