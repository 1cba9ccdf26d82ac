//! Tollgate's gateway: the entities, the store, the router and proxy that serve traffic, and
//! the admin API and declarative files that configure it.
pub mod admin;
pub mod balancer;
pub mod control;
pub mod declarative;
pub mod header_numbers;
pub mod hex;
pub mod listener;
pub mod model;
pub mod origin;
pub mod penlight;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod tls;
