//! Where batches of events go: ClickHouse, or the embedded store.
pub mod clickhouse;
pub mod embedded;

use crate::RequestEvent;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

/// Events sent to a sink together. The id makes a retried write idempotent: a sink that
/// cannot tell whether an earlier attempt landed (its answer was lost) looks the id up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: Uuid,
    pub events: Vec<RequestEvent>,
}

impl Batch {
    pub fn new(events: Vec<RequestEvent>) -> Batch {
        Batch {
            id: Uuid::new_v4(),
            events,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A store that takes whole batches: `Ok` means the batch is durably stored. With `retry`, an
/// earlier attempt may have landed, and the sink must not store the batch twice.
pub trait Sink: Send + Sync {
    fn write<'a>(&'a self, batch: &'a Batch, retry: bool) -> WriteFuture<'a>;
}
