//! The control side: runs on ordinary threads and one tokio runtime, never
//! on a shard. It starts the shards, turns signals into drain commands,
//! serves the admin API, `/ops` telemetry, `/metrics` and the built-in echo
//! target, and writes the shards' events to the store.

// The lint bans locks and blocking calls because shard code must never
// block its executor. These modules run only on admin threads (the tokio
// runtime, the event consumer, the store writer), where locks guard admin
// state and never sit on the message path.
#[allow(clippy::disallowed_types)]
pub mod api;
pub mod auth;
pub mod bodies;
pub mod control;
pub mod echo;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod events;
pub mod json;
#[allow(clippy::disallowed_methods)]
pub mod memory;
pub mod metrics;
#[allow(clippy::disallowed_types)]
pub mod nodes;
#[allow(clippy::disallowed_methods)]
pub mod notify;
pub mod ops;
pub mod router;
#[allow(clippy::disallowed_types)]
pub mod runtime;
pub mod serve;
#[allow(clippy::disallowed_types)]
pub mod state;
pub mod stats;
pub mod throttle;
pub mod ui;
