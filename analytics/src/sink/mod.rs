//! Where batches of events go: ClickHouse, or the embedded store.
pub mod clickhouse;
pub mod embedded;

use crate::RequestEvent;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A store that takes whole batches: `Ok` means the batch is durably stored.
pub trait Sink: Send + Sync {
    fn write<'a>(&'a self, batch: &'a [RequestEvent]) -> WriteFuture<'a>;
}
