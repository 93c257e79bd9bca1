//! Command-line tools beside `serve` (SPEC 2): they run once and exit.
//! `check-host` reads the host's limits; `check-config` validates a
//! configuration without starting; `migrate` and `user add` are thin
//! calls into the store and `crate::admin::auth` from `main.rs`.

pub mod check_config;
pub mod check_host;
