//! What plugins see and change while a request passes through them.
use crate::snapshot::{ConsumerEntry, CredentialId, Snapshot};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

/// One request on its way through the access phase. It borrows the request from the proxy
/// (moving it in and out copied a few hundred bytes each way).
pub struct Context<'r> {
    /// The request as it will go upstream: plugins may change its headers and query.
    pub parts: &'r mut http::request::Parts,
    /// Its body: streamed through unless a plugin reads it (`Context::body`).
    pub body: &'r mut RequestBody,
    /// The client's address, after `TOLLGATE_TRUSTED_IPS` and the real-IP header were applied.
    pub client_ip: IpAddr,
    /// The request came over TLS to this gateway.
    pub tls: bool,
    /// The peer is a trusted proxy (`TOLLGATE_TRUSTED_IPS`), whose `X-Forwarded-*` count.
    pub trusted_peer: bool,
    pub snapshot: Arc<Snapshot>,
    pub route_id: Uuid,
    pub service_id: Option<Uuid>,
    /// The route's place in the snapshot's router and the normalized path it matched: what
    /// `uri_capture` reads the regex path's captures from.
    pub route_index: usize,
    pub path: &'r str,
    /// Set by an authentication plugin.
    pub consumer: Option<Arc<ConsumerEntry>>,
    /// The credential it authenticated with.
    pub credential: Option<CredentialId>,
    /// The consumer is the anonymous one an authentication plugin fell back to.
    pub anonymous: bool,
    /// The plugin that answered the client instead of the upstream.
    pub rejected_by: Option<&'static str>,
    /// Headers plugins set on the upstream request or take off it (`set_upstream_header`).
    pub upstream_headers: UpstreamHeaders,
    /// A gRPC service gets the path as the route rewrote it (grpc-web's `pass_stripped_path`)
    /// rather than the client's own, which Kong's `grpc_pass` sends otherwise.
    pub grpc_stripped_path: bool,
    /// The path the upstream gets instead of the one the route and service make
    /// (request-transformer's `replace.uri`), already percent-encoded.
    pub upstream_path: Option<String>,
    /// The `Host` the upstream gets instead of the one `preserve_host` or the service picks
    /// (request-transformer's `replace.headers: host:...`).
    pub upstream_host: Option<HeaderValue>,
    /// The query string the upstream gets instead of the client's (`set_query`; empty: none),
    /// kept beside the URI rather than in it: rebuilding the URI parsed it all again. Read it
    /// with `query`, set it with `set_query`.
    pub upstream_query: Option<String>,
    /// Headers added to the client's response, whoever writes it (upstream or a plugin).
    pub response_headers: AddedHeaders,
    /// The instances whose access phase ran and that act on the response or in the log.
    pub response_plugins: Vec<Arc<dyn super::Handler>>,
    /// Values the log entry carries beside Kong's fields (Kong's `kong.log.set_serialize_value`:
    /// correlation-id's `correlation_id`).
    pub serialized: Serialized,
    /// Milliseconds since the Unix epoch, read once per request.
    pub now_ms: u64,
    /// The connection the request came on.
    pub connection: Connection,
    /// A plugin answered from a cache (proxy-cache's hit): the answer counts as proxied.
    pub cache_hit: bool,
    /// When the request arrived (the clock phases are timed on).
    pub started: std::time::Instant,
    /// The phases' timings, kept on routes that trace (opentelemetry).
    pub phases: Option<Arc<Phases>>,
}

/// Timings of a traced request's phases: each plugin's access phase, and the call upstream
/// (`UPSTREAM_PHASE`), for opentelemetry's spans. Kept only on routes with opentelemetry.
#[derive(Default)]
pub struct Phases(std::sync::Mutex<Vec<Phase>>);

/// One timed phase: a plugin's name, or `UPSTREAM_PHASE`.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub name: &'static str,
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

/// The phase name of the call upstream.
pub const UPSTREAM_PHASE: &str = "upstream";

impl Phases {
    pub fn record(&self, name: &'static str, start: std::time::Instant) {
        let end = std::time::Instant::now();
        let mut phases = self.0.lock().unwrap_or_else(|e| e.into_inner());
        phases.push(Phase { name, start, end });
    }

    /// The phases recorded, taken out.
    pub fn taken(&self) -> Vec<Phase> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The connection a request came on, as nginx's variables say it (correlation-id's
/// `tracker` id is made of them).
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The address and port it came in on (`$server_addr`, `$server_port`).
    pub local: (IpAddr, u16),
    /// Its number in this process (`$connection`).
    pub serial: u64,
    /// This request's number on it, from 1 (`$connection_requests`).
    pub request: u64,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            local: (IpAddr::from([0, 0, 0, 0]), 0),
            serial: 0,
            request: 0,
        }
    }
}

/// Headers for a response that does not exist yet, in the order they were set; each replaces
/// any header of its name when applied. A list, not a `HeaderMap`: they are hashed once, into
/// the response, instead of twice.
pub type AddedHeaders = Vec<(http::HeaderName, http::HeaderValue)>;

/// Headers set on the upstream request (`Some`) or taken off it (`None`), each replacing what
/// the client sent under its name, at most one entry per name. A list written straight into
/// the upstream request, not edits of `parts.headers` (each of those hashes the name).
pub type UpstreamHeaders = Vec<(HeaderName, Option<HeaderValue>)>;

/// Kong's headers telling the upstream who the consumer is. Once an authentication plugin
/// identified one, whichever plugin it was, the proxy writes them from the consumer
/// (`consumer_headers`) in place of any the client sent.
pub static CONSUMER_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-consumer-id"),
    HeaderName::from_static("x-consumer-custom-id"),
    HeaderName::from_static("x-consumer-username"),
    HeaderName::from_static("x-credential-identifier"),
    HeaderName::from_static("x-anonymous-consumer"),
];

/// The value of each of `CONSUMER_HEADERS` for an identified consumer (`None`: left out).
pub fn consumer_headers<'a>(
    consumer: &'a ConsumerEntry,
    credential: Option<&'a CredentialId>,
    anonymous: bool,
) -> [Option<&'a HeaderValue>; 5] {
    static TRUE: HeaderValue = HeaderValue::from_static("true");
    [
        Some(&consumer.id_header),
        consumer.custom_id_header.as_ref(),
        consumer.username_header.as_ref(),
        credential.map(|c| &c.header),
        anonymous.then_some(&TRUE),
    ]
}

/// Top-level values of a request's log entry, by name.
pub type Serialized = Vec<(&'static str, Arc<str>)>;

/// Applies `added` to `to`, each replacing any header of its name.
pub fn apply(added: impl IntoIterator<Item = (http::HeaderName, HeaderValue)>, to: &mut HeaderMap) {
    for (name, value) in added {
        to.insert(name, value);
    }
}

/// Bodies larger than this are not read into memory for a plugin (413).
pub const MAX_BUFFERED_BODY: usize = 8 * 1024 * 1024;

/// A request body on its way upstream.
pub enum RequestBody {
    Streaming(Incoming),
    Buffered(Bytes),
}

impl<'r> Context<'r> {
    /// A request entering the access phase on a route (and its service): no consumer yet,
    /// nothing set.
    pub fn new(
        parts: &'r mut http::request::Parts,
        body: &'r mut RequestBody,
        snapshot: Arc<Snapshot>,
        (route_id, service_id): (Uuid, Option<Uuid>),
        client_ip: IpAddr,
        now_ms: u64,
    ) -> Context<'r> {
        Context {
            parts,
            body,
            client_ip,
            tls: false,
            trusted_peer: false,
            snapshot,
            route_id,
            service_id,
            route_index: 0,
            path: "/",
            consumer: None,
            credential: None,
            anonymous: false,
            rejected_by: None,
            upstream_headers: Vec::new(),
            grpc_stripped_path: false,
            upstream_path: None,
            upstream_host: None,
            upstream_query: None,
            response_headers: Vec::new(),
            response_plugins: Vec::new(),
            serialized: Vec::new(),
            now_ms,
            connection: Connection::default(),
            cache_hit: false,
            started: std::time::Instant::now(),
            phases: None,
        }
    }

    /// The whole request body, read into memory the first time a plugin asks.
    pub async fn body(&mut self) -> Result<&Bytes, Reply> {
        let taken = std::mem::replace(self.body, RequestBody::Buffered(Bytes::new()));
        *self.body = match taken {
            RequestBody::Streaming(incoming) => RequestBody::Buffered(read_all(incoming).await?),
            buffered => buffered,
        };
        match &*self.body {
            RequestBody::Buffered(b) => Ok(b),
            RequestBody::Streaming(_) => Err(Reply::new(StatusCode::BAD_REQUEST, "Bad request")),
        }
    }

    /// Sets (`Some`) or takes off (`None`) a header of the upstream request, whatever the
    /// client sent under that name. Not for the headers the gateway writes itself (`Host`,
    /// `Content-Length`, `X-Forwarded-*`, `X-Real-IP`, `Via`, `X-Request-Id`, and
    /// `CONSUMER_HEADERS` once a consumer is identified).
    pub fn set_upstream_header(&mut self, name: HeaderName, value: Option<HeaderValue>) {
        match self
            .upstream_headers
            .iter_mut()
            .find(|(set, _)| *set == name)
        {
            Some(set) => set.1 = value,
            None => self.upstream_headers.push((name, value)),
        }
    }

    /// A request header as the upstream will get it: the identified consumer's, as a plugin
    /// set it, else the client's.
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        if let Some(consumer) = &self.consumer {
            if let Some(i) = CONSUMER_HEADERS.iter().position(|h| h == name) {
                return consumer_headers(consumer, self.credential.as_ref(), self.anonymous)[i];
            }
        }
        match self.upstream_headers.iter().find(|(set, _)| set == name) {
            Some((_, value)) => value.as_ref(),
            None => self.parts.headers.get(name),
        }
    }

    /// The capture `name` (a group's name or number) of the route's regex path on this
    /// request's path, as Kong's `uri_captures`.
    pub fn uri_capture(&self, name: &str) -> Option<String> {
        self.snapshot
            .router
            .capture(self.route_index, self.path, name)
    }

    /// The query string as the upstream will get it (as a plugin set it, else the client's),
    /// still encoded.
    pub fn query(&self) -> Option<&str> {
        match &self.upstream_query {
            Some(q) => (!q.is_empty()).then_some(q.as_str()),
            None => self.parts.uri.query(),
        }
    }

    /// The query string's parameters, decoded, in the order they go upstream.
    pub fn query_params(&self) -> Vec<(String, String)> {
        let query = self.query().unwrap_or("");
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// Takes every `name` parameter off the query string the upstream gets.
    pub fn drop_query_param(&mut self, name: &str) {
        let query = self.query().unwrap_or("");
        let kept: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != name))
            .finish();
        self.set_query(kept);
    }

    /// Replaces the query string the upstream gets with `query` (encoded; empty: none).
    pub fn set_query(&mut self, query: String) {
        self.upstream_query = Some(query);
    }

    /// Moves the headers set with `set_upstream_header` into the request's own, so a plugin
    /// that edits many headers (request-transformer) sees and changes one map.
    pub fn fold_upstream_headers(&mut self) {
        for (name, value) in self.upstream_headers.drain(..) {
            match value {
                Some(v) => {
                    self.parts.headers.insert(name, v);
                }
                None => {
                    self.parts.headers.remove(name);
                }
            }
        }
    }

    /// Replaces the body the upstream gets, with its length.
    pub fn set_body(&mut self, bytes: Bytes) {
        self.parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        *self.body = RequestBody::Buffered(bytes);
    }
}

#[cfg(test)]
impl Context<'static> {
    /// A context for `parts` on an empty snapshot, as unit tests of plugins need one (the
    /// request is leaked: a test's few bytes).
    pub fn for_test(parts: http::request::Parts) -> Context<'static> {
        let parts = Box::leak(Box::new(parts));
        let body = Box::leak(Box::new(RequestBody::Buffered(Bytes::new())));
        let snapshot = Arc::new(Snapshot::empty());
        let client_ip = IpAddr::from([127, 0, 0, 1]);
        Context::new(
            parts,
            body,
            snapshot,
            (Uuid::nil(), None),
            client_ip,
            1_000_000,
        )
    }
}

async fn read_all(incoming: Incoming) -> Result<Bytes, Reply> {
    match Limited::new(incoming, MAX_BUFFERED_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        )),
        Err(_) => Err(Reply::new(StatusCode::BAD_REQUEST, "Bad request")),
    }
}

/// Whether the request goes on to the next plugin and the upstream.
pub enum Flow {
    Continue,
    Respond(Reply),
}

/// A response a plugin writes instead of the upstream's, in Kong's `{"message": ...}` shape
/// (or another body: `shape`).
pub struct Reply {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub headers: HeaderMap,
    pub shape: Shape,
}

/// What a `Reply`'s body is.
#[derive(Debug, PartialEq)]
pub enum Shape {
    /// Kong's `{"message": ...}` (or its HTML, text or gRPC form, as the client asked).
    Message,
    /// No body at all: a CORS preflight's 200.
    Empty,
    /// A JSON document of the plugin's own, as Kong's `kong.response.exit(status, table)`
    /// sends it (jwt's `{"exp": "token expired"}`).
    Json(serde_json::Value),
    /// A body as it is, with `headers` saying what it is (a response served from a cache).
    Body(Bytes),
}

impl Reply {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            status,
            message: message.into(),
            headers: HeaderMap::new(),
            shape: Shape::Message,
        }
    }

    /// A response of `status` with `document` as its JSON body.
    pub fn json(status: StatusCode, document: serde_json::Value) -> Reply {
        let mut reply = Reply::new(status, "");
        reply.shape = Shape::Json(document);
        reply
    }

    /// A response of `status` and `headers` alone, as Kong's `kong.response.exit(status)`.
    pub fn bodyless(status: StatusCode, headers: HeaderMap) -> Reply {
        Reply {
            status,
            message: Cow::Borrowed(""),
            headers,
            shape: Shape::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_as_the_upstream_will_get_it() {
        let request = http::Request::get("/")
            .header("x-consumer-username", "mallory")
            .header("apikey", "secret")
            .body(())
            .unwrap();
        let mut ctx = Context::for_test(request.into_parts().0);
        let name = HeaderName::from_static;
        assert_eq!(ctx.header(&name("x-consumer-username")).unwrap(), "mallory");
        let ann = ConsumerEntry::new(Uuid::nil(), Some("ann".into()), None);
        ctx.consumer = Some(Arc::new(ann));
        assert_eq!(ctx.header(&name("x-consumer-username")).unwrap(), "ann");
        assert_eq!(ctx.header(&name("x-anonymous-consumer")), None);
        ctx.anonymous = true;
        assert_eq!(ctx.header(&name("x-anonymous-consumer")).unwrap(), "true");
        ctx.set_upstream_header(name("apikey"), None);
        assert_eq!(ctx.header(&name("apikey")), None);
    }
}
