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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};
use rand::Rng;

use crate::admin::ops::{OpsEvent, OpsFeed};
use crate::bridge::{Counts, Event};
use crate::shard::metrics::ShardStats;
use crate::store::{SampleRow, SessionRow, Store};

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

/// What both threads and the API share.
pub struct Live {
    /// Sessions running on this node, by id (compact: the store row is
    /// built from it when one is published or written).
    pub sessions: Mutex<HashMap<uuid::Uuid, LiveSession>>,
    /// The latest metrics of each shard.
    pub stats: Mutex<Vec<Option<ShardStats>>>,
    /// Events each shard dropped because its queue was full.
    pub dropped: Vec<Arc<AtomicU64>>,
    /// Each shard's queue (for its depth).
    pub queues: Vec<Receiver<Event>>,
    /// The writer's counters.
    pub writer: WriterCounters,
    /// Whether the last write (or ping) reached the database.
    pub store_ok: std::sync::atomic::AtomicBool,
    backlog: Mutex<Backlog>,
    wake: Condvar,
    node_id: String,
}

/// A running session as the live view keeps it: about 130 bytes where its
/// `SessionRow` takes 500 (five strings, among them the node id and the
/// state), for each of possibly hundreds of thousands of sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSession {
    /// Endpoint id.
    pub endpoint: String,
    /// Shard index.
    pub shard: u16,
    /// Client address.
    pub client: std::net::SocketAddr,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms of the last traffic seen.
    pub last_seen: i64,
    /// Counters as last reported.
    pub counts: Counts,
}

impl LiveSession {
    /// The store row of session `id` on node `node_id` (`ACTIVE`).
    pub fn row(&self, id: uuid::Uuid, node_id: &str) -> SessionRow {
        let mut row = SessionRow::started(
            id.hyphenated().to_string(),
            node_id,
            &self.endpoint,
            i64::from(self.shard),
            self.client.to_string(),
            self.started_at,
        );
        row.last_seen = self.last_seen;
        set_counts(&mut row, self.counts);
        row
    }
}

impl Live {
    /// A live view for `queues` (one per shard) of node `node_id`.
    pub fn new(node_id: &str, queues: Vec<(Receiver<Event>, Arc<AtomicU64>)>) -> Arc<Live> {
        let n = queues.len();
        let (queues, dropped) = queues.into_iter().unzip();
        Arc::new(Live {
            sessions: Mutex::new(HashMap::new()),
            stats: Mutex::new(vec![None; n]),
            dropped,
            queues,
            writer: WriterCounters::default(),
            store_ok: std::sync::atomic::AtomicBool::new(true),
            backlog: Mutex::new(Backlog::default()),
            wake: Condvar::new(),
            node_id: node_id.to_string(),
        })
    }

    /// Events dropped by all shards.
    pub fn events_dropped(&self) -> u64 {
        self.dropped.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// Nothing queued, waiting or being written.
    pub fn idle(&self) -> bool {
        self.queues.iter().all(|q| q.is_empty())
            && self.backlog_len() == 0
            && !self.writer.in_flight.load(Ordering::Acquire)
    }

    /// Waits (polling; used once, at exit) until [`Live::idle`], at most
    /// `limit`; whether it got there.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while !self.idle() {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Rows waiting for the writer.
    pub fn backlog_len(&self) -> usize {
        self.backlog.lock().expect("backlog").len()
    }

    /// Queues a session row for the writer (newest state wins).
    fn queue_row(&self, row: SessionRow) {
        let mut b = self.backlog.lock().expect("backlog");
        if !b.sessions.contains_key(&row.id) && b.sessions.len() >= BACKLOG_ROWS {
            self.writer.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        b.sessions.insert(row.id.clone(), row);
        if b.len() >= FLUSH_ROWS {
            self.wake.notify_one();
        }
    }

    /// Queues a sample for the writer; the store keeps the newest `keep`
    /// of its endpoint.
    pub fn queue_sample(&self, s: SampleRow, keep: u32) {
        let mut b = self.backlog.lock().expect("backlog");
        if b.samples.len() >= BACKLOG_SAMPLES {
            self.writer.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        b.keep.insert(s.endpoint_id.clone(), keep);
        b.samples.push(s);
    }

    /// A session that begins relaying here (started, or adopted from the
    /// predecessor): into the live view before `/ops` hears of it as `kind`
    /// — a reader that kills a session as soon as it sees it must find it —
    /// then queued for the store.
    fn enter(
        &self,
        s: crate::bridge::SessionStart,
        last_seen: i64,
        counts: Counts,
        kind: &'static str,
        ops: &OpsFeed,
    ) {
        let live = LiveSession {
            endpoint: s.endpoint,
            shard: s.shard as u16,
            client: s.client,
            started_at: s.at_ms,
            last_seen,
            counts,
        };
        let row = live.row(s.id, &self.node_id);
        self.sessions.lock().expect("sessions").insert(s.id, live);
        if ops.has_readers() {
            ops.publish(OpsEvent::session(kind, &row));
        }
        self.queue_row(row);
    }

    /// Applies one event from shard queues.
    pub fn apply(&self, e: Event, ops: &OpsFeed) {
        match e {
            Event::Started(s) => {
                let at = s.at_ms;
                self.enter(*s, at, Counts::default(), "sessionStarted", ops);
            }
            Event::Adopted(s, counts) => {
                // A session handed over by the predecessor of a binary
                // upgrade: the same id and row, with its counters so far.
                self.enter(*s, crate::store::now_ms(), counts, "sessionUpdated", ops);
            }
            Event::Moved { id } => {
                // The successor writes its row from now on; a row of ours
                // still waiting would only set older counters.
                self.sessions.lock().expect("sessions").remove(&id);
                self.backlog
                    .lock()
                    .expect("backlog")
                    .sessions
                    .remove(&id.hyphenated().to_string());
            }
            Event::Updated { id, counts, at_ms } => {
                let row = {
                    let mut map = self.sessions.lock().expect("sessions");
                    let Some(live) = map.get_mut(&id) else {
                        return; // its start was dropped (counted)
                    };
                    live.counts = counts;
                    live.last_seen = at_ms;
                    live.row(id, &self.node_id)
                };
                if ops.has_readers() {
                    ops.publish(OpsEvent::session("sessionUpdated", &row));
                }
                self.queue_row(row);
            }
            Event::Ended {
                id,
                counts,
                end,
                at_ms,
            } => {
                let Some(live) = self.sessions.lock().expect("sessions").remove(&id) else {
                    return;
                };
                let mut row = live.row(id, &self.node_id);
                set_counts(&mut row, counts);
                row.state = "CLOSED".into();
                row.ended_at = Some(at_ms);
                row.close_code = Some(i64::from(end.code));
                // A peer's reason is any UTF-8; NUL is the one character no
                // store keeps (PostgreSQL refuses it, and the batch with it).
                row.close_reason = Some(end.reason.replace('\0', "\u{fffd}"));
                row.closed_by = Some(end.by.as_str().to_string());
                if counts != Counts::default() {
                    row.last_seen = row.last_seen.max(at_ms);
                }
                if ops.has_readers() {
                    ops.publish(OpsEvent::session("sessionEnded", &row));
                }
                self.queue_row(row);
            }
            Event::Sample(s) => {
                let row = SampleRow {
                    session_id: s.session.hyphenated().to_string(),
                    endpoint_id: s.endpoint,
                    direction: s.dir,
                    opcode: i64::from(s.opcode),
                    size: s.size as i64,
                    payload: s.payload,
                    captured_at: s.at_ms,
                };
                if ops.has_readers() {
                    ops.publish(OpsEvent::sample(&row));
                }
                self.queue_sample(row, s.keep);
            }
            Event::Meta(m) => {
                if ops.has_readers() {
                    ops.publish(OpsEvent::meta(&m));
                }
            }
            Event::Stats(s) => {
                // A shard reports only the endpoints that changed; the
                // others keep their last copy.
                let mut stats = self.stats.lock().expect("stats");
                let Some(slot) = stats.get_mut(s.shard) else {
                    return;
                };
                match slot {
                    None => *slot = Some(*s),
                    Some(old) => {
                        let s = *s;
                        for e in s.endpoints {
                            match old.endpoints.iter_mut().find(|o| o.id == e.id) {
                                Some(o) => *o = e,
                                None => old.endpoints.push(e),
                            }
                        }
                        old.rejections = s.rejections;
                        old.panics = s.panics;
                    }
                }
            }
        }
    }
}

fn set_counts(row: &mut SessionRow, c: Counts) {
    row.msgs_in = c.msgs[0] as i64;
    row.msgs_out = c.msgs[1] as i64;
    row.bytes_in = c.bytes[0] as i64;
    row.bytes_out = c.bytes[1] as i64;
}

/// How long the consumer waits before looking at the queues again after a
/// round that found events (instead of blocking on them).
const BUSY_POLL: Duration = Duration::from_millis(1);

/// Starts the thread that drains the shard queues.
pub fn spawn_consumer(live: Arc<Live>, ops: OpsFeed) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            let queues = live.queues.clone();
            let mut busy = false;
            loop {
                if busy {
                    // Events came in the last round: look again in a
                    // moment instead of blocking. A consumer blocked on
                    // the queues is woken by the shard that sends (a
                    // futex call on the shard, 0.19 per session at 10,000
                    // sessions/s), and the blocking select spins and
                    // yields first; a millisecond's events fit in the
                    // queues many times over.
                    std::thread::sleep(BUSY_POLL);
                } else {
                    let mut sel = Select::new();
                    for q in &queues {
                        sel.recv(q);
                    }
                    // Wakes on any event; the timeout only lets a shutdown
                    // be seen.
                    if sel.ready_timeout(Duration::from_secs(1)).is_err() {
                        continue;
                    }
                }
                let (mut gone, mut applied) = (0, 0);
                for q in &queues {
                    // Up to a queue's worth each round, so one busy shard
                    // cannot starve the others.
                    for _ in 0..crate::bridge::EVENT_QUEUE {
                        match q.try_recv() {
                            Ok(e) => {
                                live.apply(e, &ops);
                                applied += 1;
                            }
                            Err(crossbeam_channel::TryRecvError::Empty) => break,
                            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                                gone += 1;
                                break;
                            }
                        }
                    }
                }
                if gone == queues.len() {
                    live.wake.notify_one();
                    return; // every shard has exited
                }
                busy = applied > 0;
            }
        })
        .map(|_| ())
}

/// Starts the batched writer. Returns its join handle: it ends once the
/// consumer has ended and the backlog is written (or the database has been
/// given up on after `final_deadline`).
pub fn spawn_writer(live: Arc<Live>, store: Store) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut failures = 0u32;
            loop {
                let (sessions, samples, keep) = {
                    let mut b = live.backlog.lock().expect("backlog");
                    if b.len() < FLUSH_ROWS {
                        b = live.wake.wait_timeout(b, FLUSH_EVERY).expect("backlog").0;
                    }
                    if b.len() == 0 {
                        continue;
                    }
                    live.writer.in_flight.store(true, Ordering::Release);
                    let b = std::mem::take(&mut *b);
                    let keep: Vec<(String, u32)> = b.keep.into_iter().collect();
                    (
                        b.sessions.into_values().collect::<Vec<_>>(),
                        b.samples,
                        keep,
                    )
                };
                let t = Instant::now();
                match store.write_batch(&sessions, &samples, &keep) {
                    Ok(()) => {
                        failures = 0;
                        live.store_ok.store(true, Ordering::Relaxed);
                        let w = &live.writer;
                        w.batches.fetch_add(1, Ordering::Relaxed);
                        w.rows
                            .fetch_add((sessions.len() + samples.len()) as u64, Ordering::Relaxed);
                        w.last_batch_us
                            .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        w.in_flight.store(false, Ordering::Release);
                    }
                    Err(e) => {
                        failures += 1;
                        live.store_ok.store(false, Ordering::Relaxed);
                        live.writer.errors.fetch_add(1, Ordering::Relaxed);
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!(
                                error = %e,
                                rows = sessions.len() + samples.len(),
                                attempt = failures,
                                "store write failed; keeping the rows and retrying"
                            );
                        }
                        restore(&live, sessions, samples, keep);
                        live.writer.in_flight.store(false, Ordering::Release);
                        std::thread::sleep(backoff(failures));
                    }
                }
            }
        })
        .map(|_| ())
}

/// Puts a failed batch back; rows queued since then are newer and win.
fn restore(
    live: &Live,
    sessions: Vec<SessionRow>,
    samples: Vec<SampleRow>,
    keep: Vec<(String, u32)>,
) {
    let mut b = live.backlog.lock().expect("backlog");
    for (e, k) in keep {
        b.keep.entry(e).or_insert(k);
    }
    for row in sessions {
        if b.sessions.contains_key(&row.id) {
            continue;
        }
        if b.sessions.len() >= BACKLOG_ROWS {
            live.writer.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        b.sessions.insert(row.id.clone(), row);
    }
    let room = BACKLOG_SAMPLES.saturating_sub(b.samples.len());
    let lost = samples.len().saturating_sub(room);
    if lost > 0 {
        live.writer
            .dropped
            .fetch_add(lost as u64, Ordering::Relaxed);
    }
    let mut kept: Vec<SampleRow> = samples.into_iter().take(room).collect();
    kept.append(&mut b.samples);
    b.samples = kept;
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
