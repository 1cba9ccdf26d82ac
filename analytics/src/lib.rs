//! Analytics: the record the proxy's log phase makes of every request, and the pipeline that
//! carries those records in batches to ClickHouse or the embedded store without ever slowing
//! the proxy down (`pipeline`), surviving sink outages and crashes on disk (`spill`).
pub mod event;
pub mod histogram;
pub mod ip_text;
mod packed;
pub mod pipeline;
pub mod query;
pub mod sample;
pub mod sink;
mod spill;
mod wal;

pub use event::RequestEvent;
pub use pipeline::Recorder;

/// Unix time now, in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
