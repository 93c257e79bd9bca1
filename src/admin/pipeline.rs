//! The admin side of the shards' event queues: one thread drains every
//! shard's queue into the live view (sessions of this node, the latest
//! metrics of each shard), the `/ops` feed and the writer's backlog; one
//! writer thread stores the backlog in batches (one transaction each),
//! retrying with backoff and jitter while the database is down.
//!
//! The backlog is keyed by session id, so a session that changed three times
//! while the database was away is written once, in its latest state, and a
//! retried batch updates the same rows instead of adding new ones. It is
//! bounded: a session that would grow it past [`BACKLOG_ROWS`] is dropped
//! and counted.

mod consumer;
pub mod feed;
mod live;
pub mod stats;
mod writer;

pub use consumer::spawn_consumer;
pub use live::{Live, LiveSession};
pub use writer::spawn_writer;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rand::Rng;

use crate::store::{SampleRow, SessionRow};

/// Session rows the writer keeps while the database is away.
pub const BACKLOG_ROWS: usize = 100_000;
/// Samples the writer keeps while the database is away.
pub const BACKLOG_SAMPLES: usize = 10_000;
/// The writer writes at least this often while there is something to write.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// ...or as soon as this many rows wait.
pub const FLUSH_ROWS: usize = 5_000;
/// Longest pause between retries while the database is down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Counters of the writer (for `/metrics` and `/healthz`).
#[derive(Default, Debug)]
pub struct WriterCounters {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Batches that failed (and were retried).
    pub errors: AtomicU64,
    /// Rows committed (sessions and samples).
    pub rows: AtomicU64,
    /// Rows dropped because the backlog was full.
    pub dropped: AtomicU64,
    /// Duration of the last committed batch, µs.
    pub last_batch_us: AtomicU64,
    /// A batch is being written now.
    pub in_flight: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Backlog {
    sessions: HashMap<String, SessionRow>,
    samples: Vec<SampleRow>,
    /// `maxSamples` of the endpoints that have samples here.
    keep: HashMap<String, u32>,
}

impl Backlog {
    fn len(&self) -> usize {
        self.sessions.len() + self.samples.len()
    }
}

/// Exponential backoff from 100 ms to [`MAX_BACKOFF`], with ±50 % jitter so
/// that several nodes do not retry in step.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(6))
        .min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests;
