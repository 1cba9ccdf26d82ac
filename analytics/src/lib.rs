//! Request events: the record the proxy's log phase makes of every request.
//!
//! The gateway's metrics read these today; the batching pipeline and its sinks (ClickHouse,
//! embedded) consume the same record once they exist, so the proxy builds it exactly once.
pub mod event;

pub use event::RequestEvent;
