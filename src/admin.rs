//! The control side: runs on ordinary threads and one tokio runtime, never
//! on a shard. Its folders follow what it does:
//!
//! - [`start`]: `serve` (start-up, signals, drain, upgrades) and the admin
//!   runtime;
//! - [`control`]: the one control service every change goes through (REST,
//!   `/ops`, SIGHUP, other nodes), and admission under memory pressure;
//! - [`http`]: the admin API, `/metrics`, the echo target and the web
//!   console;
//! - [`ops`]: the `/ops` telemetry feed and its readers;
//! - [`pipeline`]: the shards' events — consumer, live view, store writer;
//! - [`nodes`]: the node directory (heartbeats, sweeps) and LISTEN/NOTIFY;
//! - what they share: [`state`] (the admin state, API errors), [`auth`]
//!   (passwords, tokens, the login throttle), [`bodies`] and [`json`] (the
//!   typed bodies of the API and `/ops`).
//!
//! Dependencies point one way: `start` → `http`/`nodes`/`pipeline` →
//! `control` → `state`.

// The lint bans locks and blocking calls because shard code must never
// block its executor. These modules run only on admin threads (the tokio
// runtime, the event consumer, the store writer), where locks guard admin
// state and never sit on the message path.
#[allow(clippy::disallowed_types)]
pub mod auth;
pub mod bodies;
pub mod control;
pub mod http;
pub mod json;
pub mod nodes;
pub mod ops;
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub mod pipeline;
pub mod start;
#[allow(clippy::disallowed_types)]
pub mod state;
