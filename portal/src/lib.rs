//! The web front ends, rendered on the server with Leptos (no WebAssembly: every page and form
//! works with JavaScript off): the admin console for operators.
pub mod apis;
pub mod console;
pub mod developer;
pub mod management;
pub mod plans;
pub mod web;
