//! The only types that cross threads: endpoint snapshots going to shards and
//! commands for them. Plain data, no logic beyond constructors.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::config::{EndpointConfig, TargetUrl};

/// A client-JWT check compiled once per endpoint version.
pub struct ClientAuth {
    /// The key (HS256 secret or RS256 public key).
    pub key: jsonwebtoken::DecodingKey,
    /// Algorithm pinned, `exp` required, leeway, audience and issuer.
    pub validation: jsonwebtoken::Validation,
}

/// One endpoint as a shard sees it: immutable, shared by `Arc`.
pub struct Endpoint {
    /// The endpoint's configuration.
    pub cfg: EndpointConfig,
    /// The parsed target.
    pub target: TargetUrl,
    /// Set when clients must present a JWT.
    pub auth: Option<ClientAuth>,
    /// Sessions of this endpoint on all shards. The only shared counter a
    /// session touches, and only at admission and at its end.
    pub active: Arc<AtomicUsize>,
}

/// The whole routing table, replaced as a unit.
#[derive(Default)]
pub struct EndpointSnapshot {
    /// Increases with every change.
    pub version: u64,
    /// By endpoint id.
    pub endpoints: HashMap<String, Arc<Endpoint>>,
}

/// What the control side tells a shard.
pub enum ShardCommand {
    /// Replace the routing table.
    Snapshot(Arc<EndpointSnapshot>),
    /// Stop accepting sessions, answer `/healthz` 503, close sessions after
    /// the drain timeout, then exit.
    Drain,
    /// A successor took the listeners over (binary upgrade): stop accepting
    /// at once, move every session that can move to the successor (through
    /// this channel, to the control thread), then drain as for `Drain`,
    /// closing what is left with 1012.
    HandedOver(async_channel::Sender<Parcel>),
    /// Binary upgrade, successor side: resume relaying a session the old
    /// process handed over.
    Adopt(Box<Adoption>),
    /// Close every session now with this code and reason.
    CloseAll(u16, &'static str),
    /// Close this session with 1008 `terminated by operator`, if it is here;
    /// the reply says whether it was.
    Kill(uuid::Uuid, async_channel::Sender<bool>),
    /// The data port's TLS certificate was reloaded (SIGHUP): new
    /// connections use this one.
    Tls(Arc<futures_rustls::rustls::ServerConfig>),
    /// Turn per-message metadata for an endpoint's sessions on or off.
    MessageMeta {
        /// Endpoint id.
        endpoint: String,
        /// On or off.
        on: bool,
    },
}

/// What a shard of the old process sends its control thread during a
/// binary upgrade.
pub enum Parcel {
    /// A session at rest, for the successor.
    Session {
        /// Its state.
        record: Box<crate::handover::wire::SessionRecord>,
        /// Copies of its client's and its target's descriptors.
        fds: crate::handover::wire::SessionFds,
        /// The successor's answer: adopted, or why not (the session stays).
        reply: async_channel::Sender<Result<(), String>>,
    },
    /// This shard has sent every session it will send.
    ShardDone,
}

/// A session the successor's shard is to adopt.
pub struct Adoption {
    /// Its state.
    pub record: Box<crate::handover::wire::SessionRecord>,
    /// Its descriptors.
    pub fds: crate::handover::wire::SessionFds,
    /// Refused when handled after this (the control thread answered the
    /// old process by then).
    pub deadline: std::time::Instant,
    /// Adopted, or why not.
    pub reply: std::sync::mpsc::SyncSender<Result<(), String>>,
}

/// Messages and bytes of one session so far, by direction (`[in, out]`;
/// "in" is client → target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages.
    pub msgs: [u64; 2],
    /// Bytes.
    pub bytes: [u64; 2],
}

/// A session as it starts.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// Session id.
    pub id: uuid::Uuid,
    /// Endpoint id.
    pub endpoint: String,
    /// Shard index.
    pub shard: usize,
    /// The client's address.
    pub client: std::net::SocketAddr,
    /// Unix ms.
    pub at_ms: i64,
}

/// What a shard reports to the admin runtime, through its bounded queue
/// (`try_send`; a full queue drops the event and counts it).
pub enum Event {
    /// A session began relaying.
    Started(Box<SessionStart>),
    /// A session's counters changed (at most once a second per session).
    Updated {
        /// Session id.
        id: uuid::Uuid,
        /// Counters so far.
        counts: Counts,
        /// Unix ms of the last change seen.
        at_ms: i64,
    },
    /// A session ended.
    Ended {
        /// Session id.
        id: uuid::Uuid,
        /// Final counters.
        counts: Counts,
        /// How it ended.
        end: SessionEnd,
        /// Unix ms.
        at_ms: i64,
    },
    /// A session moved to the successor (binary upgrade): it leaves this
    /// process's view without an end.
    Moved {
        /// Session id.
        id: uuid::Uuid,
    },
    /// A session came from the predecessor and relays here, with its
    /// counters so far (no new start).
    Adopted(Box<SessionStart>, Counts),
    /// The shard's metrics, once a second.
    Stats(Box<crate::shard::metrics::ShardStats>),
    /// A sampled message (SPEC 4.3).
    Sample(Box<Sample>),
    /// One message's metadata, for `/ops` readers that asked.
    Meta(Box<MessageMeta>),
}

/// Which way bytes go through a session. "In" is client → target (SPEC
/// 4.4); the one type for it everywhere: metrics arrays, samples, `/ops`,
/// the store and the stats JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → target.
    In,
    /// Target → client.
    Out,
}

impl Direction {
    /// Both, in index order.
    pub const BOTH: [Direction; 2] = [Direction::In, Direction::Out];

    /// Index into `[in, out]` arrays.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
        }
    }

    /// `in` | `out`: metric labels and stats keys.
    pub fn label(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    /// `client_to_target` | `target_to_client`: samples in the store and on
    /// `/ops`.
    pub fn stored(self) -> &'static str {
        match self {
            Direction::In => "client_to_target",
            Direction::Out => "target_to_client",
        }
    }

    /// The direction [`Direction::stored`] names.
    pub fn from_stored(s: &str) -> Option<Direction> {
        Direction::BOTH.into_iter().find(|d| d.stored() == s)
    }

    /// Whether the source of this direction is the client (its frames are
    /// masked, and remasked on the way).
    #[inline]
    pub fn from_client(self) -> bool {
        self == Direction::In
    }
}

/// The side whose action ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent a close frame, or went away.
    Client,
    /// The target sent a close frame, or went away.
    Target,
    /// wsrelay decided: a limit, a protocol fault, the idle timeout, an
    /// operator's kill, a drain.
    Wsrelay,
}

impl Side {
    /// Every side, in index order.
    pub const ALL: [Side; 3] = [Side::Client, Side::Target, Side::Wsrelay];

    /// Index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Target => 1,
            Side::Wsrelay => 2,
        }
    }

    /// `client` | `target` | `wsrelay` (stored, and shown as `closedBy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Target => "target",
            Side::Wsrelay => "wsrelay",
        }
    }
}

/// How a session ended: the code and reason of the close that ended it (a
/// peer's own, as it sent them, or wsrelay's), and who ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// Close code (1005 for a peer close frame without one).
    pub code: u16,
    /// Close reason.
    pub reason: std::borrow::Cow<'static, str>,
    /// Who ended it.
    pub by: Side,
}

/// A sampled message.
pub struct Sample {
    /// Session id.
    pub session: uuid::Uuid,
    /// Endpoint id.
    pub endpoint: String,
    /// Which way the message went.
    pub dir: Direction,
    /// 1 text, 2 binary.
    pub opcode: u8,
    /// The whole message's size.
    pub size: u64,
    /// Its first 4 KiB, unmasked.
    pub payload: Vec<u8>,
    /// Unix ms.
    pub at_ms: i64,
    /// The endpoint's `maxSamples`: how many the store keeps.
    pub keep: u32,
}

/// One relayed message's metadata.
pub struct MessageMeta {
    /// Session id.
    pub session: uuid::Uuid,
    /// Endpoint id.
    pub endpoint: String,
    /// Which way the message went.
    pub dir: Direction,
    /// 1 text, 2 binary.
    pub opcode: u8,
    /// Size in bytes.
    pub size: u64,
    /// Unix ms.
    pub at_ms: i64,
}

/// Capacity of each shard's event queue.
pub const EVENT_QUEUE: usize = 16 * 1024;

/// The shard's end of its event queue.
#[derive(Clone)]
pub struct EventSink {
    tx: crossbeam_channel::Sender<Event>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl EventSink {
    /// A queue of `capacity` events: the sink for the shard, the receiver and
    /// the drop counter for the admin side.
    pub fn bounded(
        capacity: usize,
    ) -> (
        EventSink,
        crossbeam_channel::Receiver<Event>,
        Arc<std::sync::atomic::AtomicU64>,
    ) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        (
            EventSink {
                tx,
                dropped: dropped.clone(),
            },
            rx,
            dropped,
        )
    }

    /// Queues `e` or, if the queue is full (or the admin side is gone),
    /// drops it and counts the drop. Never blocks.
    pub fn send(&self, e: Event) {
        if self.tx.try_send(e).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
