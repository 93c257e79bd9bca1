//! Start-up: `wsrelay serve` (shards, signals, drain, binary upgrades) and
//! the admin runtime it starts.

pub mod preflight;
#[allow(clippy::disallowed_types)]
pub mod runtime;
pub mod serve;
