//! The live view: this node's running sessions and each shard's latest
//! metrics, fed by the consumer and read by the API, `/ops` and `/metrics`;
//! it also queues the rows the writer stores.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::{Backlog, WriterCounters, BACKLOG_ROWS, BACKLOG_SAMPLES, FLUSH_ROWS};
use crate::admin::pipeline::feed::{OpsEvent, OpsFeed};
use crate::bridge::{Counts, Event};
use crate::shard::metrics::ShardStats;
use crate::store::{SampleRow, SessionRow};

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
    /// When each shard last reported its metrics (Unix ms; it does once a
    /// second, so an old time means the shard is stuck).
    pub reported_at: Vec<std::sync::atomic::AtomicI64>,
    /// Whether the last write (or ping) reached the database.
    pub store_ok: std::sync::atomic::AtomicBool,
    pub(super) backlog: Mutex<Backlog>,
    pub(super) wake: Condvar,
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
            reported_at: (0..n)
                .map(|_| std::sync::atomic::AtomicI64::new(crate::store::now_ms()))
                .collect(),
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
                if let Some(at) = self.reported_at.get(s.shard) {
                    at.store(crate::store::now_ms(), Ordering::Relaxed);
                }
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
