//! `/ops`: the live telemetry WebSocket (SPEC 5). Events are published once
//! into a bounded broadcast ring (`crate::admin::pipeline::feed`); each
//! reader follows it at its own pace and a reader that falls a whole ring
//! behind (or cannot take a message within [`SEND_TIMEOUT`]) is closed with
//! 1008 — never buffered without bound.

mod meta;
mod socket;

pub use socket::{handler, OpsQuery, SEND_TIMEOUT};
