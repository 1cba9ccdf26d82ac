//! What the console and the developer portal share as web front ends: passwords, sessions,
//! the same-origin check on form posts (`tollgate_gateway::origin`, which the admin API uses
//! too), and throttling of login attempts.
pub mod admin_api;
pub mod markdown;
pub use tollgate_gateway::origin;
pub mod page;
pub use tollgate_gateway::model::password as passwords;
pub mod sessions;
pub mod throttle;
