//! The admin HTTP side: the REST API (handlers parse, call the control
//! service and answer with typed bodies), `/metrics`, the built-in echo
//! target and the web console.

#[allow(clippy::disallowed_types)]
pub mod api;
pub mod echo;
pub mod metrics;
pub mod router;
pub mod ui;
