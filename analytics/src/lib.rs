//! Analytics: the record the proxy's log phase makes of every request, and the pipeline that
//! carries those records in batches to ClickHouse or the embedded store without ever slowing
//! the proxy down (`pipeline`), surviving sink outages and crashes on disk (`spill`).
pub mod event;
pub mod pipeline;
pub mod sink;
mod spill;

pub use event::RequestEvent;
pub use pipeline::Recorder;
