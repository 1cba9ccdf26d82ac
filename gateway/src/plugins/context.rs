//! What plugins see and change while a request passes through them.
use crate::snapshot::{ConsumerEntry, Snapshot};
use http::{HeaderMap, StatusCode};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

/// One request on its way through the access phase.
pub struct Context {
    /// The request as it will go upstream: plugins may change its headers and query.
    pub parts: http::request::Parts,
    /// The client's address, after `TOLLGATE_TRUSTED_IPS` and the real-IP header were applied.
    pub client_ip: IpAddr,
    pub snapshot: Arc<Snapshot>,
    pub route_id: Uuid,
    pub service_id: Option<Uuid>,
    /// Set by an authentication plugin.
    pub consumer: Option<Arc<ConsumerEntry>>,
    pub credential_id: Option<Uuid>,
    /// Headers added to the client's response, whoever writes it (upstream or a plugin).
    pub response_headers: HeaderMap,
    /// Milliseconds since the Unix epoch, read once per request.
    pub now_ms: u64,
}

/// Whether the request goes on to the next plugin and the upstream.
pub enum Flow {
    Continue,
    Respond(Reply),
}

/// A response a plugin writes instead of the upstream's, in Kong's `{"message": ...}` shape.
pub struct Reply {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub headers: HeaderMap,
}

impl Reply {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            status,
            message: message.into(),
            headers: HeaderMap::new(),
        }
    }
}
