//! The control side: runs on ordinary threads, never on a shard. It starts
//! the shards, turns signals into drain commands and serves the built-in echo
//! target. (The admin API, store and telemetry join it later.)

pub mod auth;
pub mod check_host;
pub mod echo;
pub mod serve;
pub mod throttle;
