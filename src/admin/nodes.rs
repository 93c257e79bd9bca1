//! Several nodes on one PostgreSQL: the node directory (heartbeats, sweeps
//! of lost nodes) and the LISTEN/NOTIFY thread that carries endpoint
//! changes and kills between nodes.

#[allow(clippy::disallowed_types)]
pub mod directory;
#[allow(clippy::disallowed_methods)]
pub mod notify;
