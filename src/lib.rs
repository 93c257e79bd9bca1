//! wsrelay: a shard-per-core WebSocket relay.
//!
//! The folders show the thread boundary:
//! - [`shard`]: runs on one glommio executor per core (`!Send`, no locks);
//!   a message's whole walk stays inside it.
//! - [`admin`]: the control side (start-up, signals, the built-in echo target;
//!   later the admin API and the store).
//! - [`bridge`]: the plain types that cross between them.
//! - [`config`]: plain, validated configuration data.
//! - [`store`]: the database (SQLite or PostgreSQL), used from the admin side.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod handover;
pub mod registry;
pub mod shard;
pub mod store;
pub mod sys;
pub mod tls;
