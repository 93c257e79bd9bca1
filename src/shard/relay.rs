//! One direction of a relayed session: a [`Pump`] reads frames from its source,
//! checks them, (re)masks them in place and writes them to its destination.
//!
//! Invariants:
//! - Bytes are read only when everything parsed so far has been written
//!   (`start == parsed`), so one buffer per direction bounds what is held:
//!   a destination that stops reading stalls the source.
//! - The buffer is borrowed from the shard's pool and given back whenever a
//!   read would block with nothing buffered: an idle direction holds none.
//! - Frames are forwarded as they are (fragments stay fragments); only the
//!   client → target leg rewrites the masking key. Nothing here allocates.
//! - A control frame written by wsrelay itself (`ctrl`) goes out only at a frame
//!   boundary of the destination stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::bridge::{Direction, Event, EventSink, MessageMeta, Sample};
use crate::shard::frame::{self, ControlFrame, Header, OP_CLOSE, OP_CONT, OP_PING, OP_PONG};
use crate::shard::metrics::EndpointMetrics;
use crate::shard::pool::BufPool;

/// The reading side of a direction: what is done with its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Frames are read and forwarded.
    Relaying,
    /// wsrelay has queued its own close to the destination: the frame in
    /// flight is finished, later frames are read and dropped until the
    /// source's close.
    Draining,
    /// The source's close frame was read, or the source was failed (its
    /// close is not awaited): nothing more is read.
    Closed,
    /// The source ended (EOF or a read error) before its close frame.
    Gone,
}

/// The writing side of a direction: what may still go to its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Frames are written.
    Open,
    /// A close frame (relayed, or wsrelay's own) is queued: it is the last
    /// frame written.
    Closing,
    /// The close frame has been written.
    Closed,
    /// Writing failed, or the session gave up on this destination.
    Gone,
}

/// A reason to close the session, found in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Close code for both legs.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}

/// Per-session settings a pump needs, borrowed for each poll.
pub struct Env<'a> {
    /// The shard's buffer pool.
    pub pool: &'a BufPool,
    /// The endpoint's metrics on this shard.
    pub metrics: &'a EndpointMetrics,
    /// The endpoint's `maxMessageSize`.
    pub max_message_size: u64,
    /// The endpoint's `maxMessagesPerSecond`, if set.
    pub max_messages_per_second: Option<u32>,
    /// `limits.control_frames_per_second` (0: no limit).
    pub max_control_per_second: u32,
    /// Sampling or message metadata, when either is on for this session.
    pub tap: Option<&'a Tap<'a>>,
}

/// Payload bytes kept of a sampled message (SPEC 4.3).
pub const SAMPLE_BYTES: usize = 4096;
/// Sample and metadata events one shard may emit per second; beyond that
/// they are skipped (and counted), so taps cannot crowd session events out
/// of the shard's queue.
pub const TAP_EVENTS_PER_SECOND: u32 = 1000;

/// The shard's budget of tap events (a one-second window).
pub struct TapBudget {
    window: std::cell::Cell<Instant>,
    used: std::cell::Cell<u32>,
    /// Tap events skipped because the budget was spent.
    pub skipped: std::cell::Cell<u64>,
}

impl Default for TapBudget {
    fn default() -> Self {
        TapBudget {
            window: std::cell::Cell::new(Instant::now()),
            used: std::cell::Cell::new(0),
            skipped: std::cell::Cell::new(0),
        }
    }
}

impl TapBudget {
    /// Takes one event from this second's budget.
    pub fn take(&self, now: Instant) -> bool {
        if now.duration_since(self.window.get()) >= Duration::from_secs(1) {
            self.window.set(now);
            self.used.set(0);
        }
        if self.used.get() >= TAP_EVENTS_PER_SECOND {
            self.skipped.set(self.skipped.get() + 1);
            return false;
        }
        self.used.set(self.used.get() + 1);
        true
    }
}

/// What a session copies out of its traffic, and where to.
pub struct Tap<'a> {
    /// The shard's event queue.
    pub sink: &'a EventSink,
    /// The shard's budget.
    pub budget: &'a TapBudget,
    /// Session id.
    pub session: uuid::Uuid,
    /// Endpoint id.
    pub endpoint: &'a str,
    /// Percentage of messages sampled (0: none).
    pub sample_percent: u32,
    /// The endpoint's `maxSamples` (kept by the store).
    pub keep: u32,
    /// Whether `/ops` readers asked for per-message metadata.
    pub meta: bool,
}

/// A sampled message being copied.
struct Capture {
    data: Vec<u8>,
}

/// One direction of a session.
pub struct Pump {
    dir: Direction,
    /// Client → target: frames arrive masked and leave with a fresh key.
    from_client: bool,
    buf: Option<Box<[u8]>>,
    start: usize,
    parsed: usize,
    filled: usize,
    // The frame whose payload is passing through.
    frame_left: u64,
    frame_forward: bool,
    frame_fin_data: bool,
    frame_xor: [u8; 4],
    frame_phase: usize,
    // The message in progress.
    msg_open: bool,
    msg_size: u64,
    msg_total: u64,
    msg_opcode: u8,
    // The source's masking key of the frame in progress (for captures).
    frame_mask: [u8; 4],
    capture: Option<Box<Capture>>,
    source: Source,
    sink: Sink,
    /// A reason to close found in the stream, for the session to act on.
    fault: Option<Fault>,
    /// The close frame the source sent: its code (1005 when it had none)
    /// and reason (boxed: made once per session, at its end).
    peer_close: Option<Box<(u16, String)>>,
    ctrl: Option<ControlFrame>,
    ctrl_pos: usize,
    // Latency batch: messages whose last byte is in [start..parsed).
    batch_t: Instant,
    batch_msgs: u64,
    batch_bytes: u64,
    // One one-second window for both rate limits.
    rate_window: Instant,
    rate_count: u32,
    ctrl_count: u32,
    /// Since when a write toward the destination has made no progress.
    stalled_since: Option<Instant>,
    /// Time of the last read that completed a message.
    last_msg: Instant,
    /// Time of the last successful read.
    last_rx: Instant,
    /// wsrelay's heartbeat pong payload to swallow (client → target only).
    pong_token: Option<[u8; 8]>,
    /// Set when the client answered wsrelay's ping.
    pong_seen: bool,
    /// Messages relayed.
    messages: u64,
    /// Bytes relayed.
    bytes: u64,
    mask_seed: u64,
    /// Binary upgrade: read no further than the end of the frame in
    /// progress, so the pump comes to rest at a frame boundary.
    parking: bool,
}

/// What a pump at rest hands to the successor of a binary upgrade: at a
/// frame boundary no masking state is live, so counters, the message in
/// progress, unparsed bytes and times are all there is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PumpState {
    /// Messages relayed.
    pub messages: u64,
    /// Bytes relayed.
    pub bytes: u64,
    /// A fragmented message is in progress (its next frame is a continuation).
    pub msg_open: bool,
    /// Its size so far.
    pub msg_size: u64,
    /// Its opcode.
    pub msg_opcode: u8,
    /// Bytes read but not parsed: the start of the next frame (less than a
    /// header, or a control frame not yet whole).
    pub pending: Vec<u8>,
    /// Milliseconds since the last read that completed a message.
    pub last_msg_ago_ms: u64,
    /// Milliseconds since the last read.
    pub last_rx_ago_ms: u64,
    /// wsrelay's heartbeat pong still expected (client → target).
    pub pong_token: Option<[u8; 8]>,
}

/// `now` minus `ms` milliseconds (no earlier than the clock allows).
pub fn ago(now: Instant, ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
}

enum Step {
    /// Everything parsed; more bytes are needed.
    NeedMore,
    /// Output must be written before parsing can go on.
    Flush,
}

impl Pump {
    /// A pump for one direction (`In`: its source is the client).
    pub fn new(dir: Direction, now: Instant, mask_seed: u64) -> Pump {
        Pump {
            dir,
            from_client: dir.from_client(),
            buf: None,
            start: 0,
            parsed: 0,
            filled: 0,
            frame_left: 0,
            frame_forward: true,
            frame_fin_data: false,
            frame_xor: [0; 4],
            frame_phase: 0,
            msg_open: false,
            msg_size: 0,
            msg_total: 0,
            msg_opcode: 0,
            frame_mask: [0; 4],
            capture: None,
            source: Source::Relaying,
            sink: Sink::Open,
            fault: None,
            peer_close: None,
            ctrl: None,
            ctrl_pos: 0,
            batch_t: now,
            batch_msgs: 0,
            batch_bytes: 0,
            rate_window: now,
            rate_count: 0,
            ctrl_count: 0,
            stalled_since: None,
            last_msg: now,
            last_rx: now,
            pong_token: None,
            pong_seen: false,
            messages: 0,
            bytes: 0,
            mask_seed: mask_seed | 1,
            parking: false,
        }
    }

    /// Resumes, in the successor, what `state` describes (on a pump just
    /// made, holding nothing).
    pub fn resume(&mut self, now: Instant, state: &PumpState, pool: &BufPool) {
        self.messages = state.messages;
        self.bytes = state.bytes;
        self.msg_open = state.msg_open;
        self.msg_size = if state.msg_open { state.msg_size } else { 0 };
        self.msg_total = self.msg_size;
        self.msg_opcode = state.msg_opcode;
        self.last_msg = ago(now, state.last_msg_ago_ms);
        self.last_rx = ago(now, state.last_rx_ago_ms);
        self.batch_t = now;
        self.pong_token = state.pong_token.filter(|_| self.from_client);
        self.preload(pool, &state.pending);
    }

    /// Binary upgrade: from now on read only what finishes the frame in
    /// progress, then stop at the boundary ([`Pump::at_rest`]).
    pub fn park(&mut self) {
        self.parking = true;
    }

    /// Relays as usual again (the session stays in this process).
    pub fn unpark(&mut self) {
        self.parking = false;
    }

    /// Parked at a frame boundary: everything parsed is written, nothing of
    /// wsrelay's own is queued, no close is under way, and what is buffered
    /// unparsed is the start of the next frame. The session can move.
    pub fn at_rest(&self) -> bool {
        self.parking
            && self.frame_left == 0
            && self.start == self.parsed
            && self.ctrl.is_none()
            && self.fault.is_none()
            && self.source == Source::Relaying
            && self.sink == Sink::Open
    }

    /// The state a successor needs to resume this direction (see
    /// [`Pump::at_rest`]).
    pub fn export(&self, now: Instant) -> PumpState {
        let pending = match &self.buf {
            Some(b) => b[self.parsed..self.filled].to_vec(),
            None => Vec::new(),
        };
        PumpState {
            messages: self.messages,
            bytes: self.bytes,
            msg_open: self.msg_open,
            msg_size: self.msg_size,
            msg_opcode: self.msg_opcode,
            pending,
            last_msg_ago_ms: now.saturating_duration_since(self.last_msg).as_millis() as u64,
            last_rx_ago_ms: now.saturating_duration_since(self.last_rx).as_millis() as u64,
            pong_token: self.pong_token,
        }
    }

    /// Seeds the buffer with bytes read during the handshake.
    pub fn preload(&mut self, pool: &BufPool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut b = self.buf.take().unwrap_or_else(|| pool.take());
        let n = bytes.len().min(b.len());
        b[..n].copy_from_slice(&bytes[..n]);
        self.filled = n;
        self.buf = Some(b);
    }

    /// Is a buffer held right now?
    pub fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// Can nothing more be read from the source?
    pub fn finished_reading(&self) -> bool {
        matches!(self.source, Source::Closed | Source::Gone)
    }

    /// The reading side's state.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The writing side's state.
    pub fn sink(&self) -> Sink {
        self.sink
    }

    /// Writes nothing more to the destination: the session gave up on it
    /// (its peer is gone or stalled past `send_timeout_ms`).
    pub fn abandon_sink(&mut self) {
        self.sink = Sink::Gone;
    }

    /// Is a close still to be written to the destination (none is queued
    /// or written, and the destination is there)?
    pub fn may_close(&self) -> bool {
        self.sink == Sink::Open
    }

    /// The fault found in the stream, once.
    pub fn take_fault(&mut self) -> Option<Fault> {
        self.fault.take()
    }

    /// The code of the source's close frame (1005 when it had none), if one
    /// was read.
    pub fn peer_close_code(&self) -> Option<u16> {
        self.peer_close.as_ref().map(|c| c.0)
    }

    /// The source's close frame, code and reason, once.
    pub fn take_peer_close(&mut self) -> Option<(u16, String)> {
        self.peer_close.take().map(|c| *c)
    }

    /// Swallows the client's pong carrying `token` (wsrelay's own ping), or
    /// none.
    pub fn expect_pong(&mut self, token: Option<[u8; 8]>) {
        self.pong_token = token;
    }

    /// Whether the client answered wsrelay's ping since the last call.
    pub fn take_pong(&mut self) -> bool {
        std::mem::take(&mut self.pong_seen)
    }

    /// Since when a write toward the destination has made no progress.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Time of the last read that completed a message.
    pub fn last_msg(&self) -> Instant {
        self.last_msg
    }

    /// Time of the last successful read.
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Messages relayed.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Bytes relayed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Queues a control frame of wsrelay's own for the destination. A close
    /// replaces a pending ping; nothing is queued after a close.
    pub fn queue_control(&mut self, f: ControlFrame) -> bool {
        if self.sink != Sink::Open || (self.ctrl.is_some() && f.opcode != OP_CLOSE) {
            return false;
        }
        if self.ctrl.is_some() && self.ctrl_pos > 0 {
            // A ping is half written; the close follows it.
            return false;
        }
        if f.opcode == OP_CLOSE {
            self.sink = Sink::Closing;
        }
        self.ctrl = Some(f);
        self.ctrl_pos = 0;
        true
    }

    /// Is a control frame waiting to be written?
    pub fn control_pending(&self) -> bool {
        self.ctrl.is_some()
    }

    /// Reads nothing more from the source: it was failed, and its close is
    /// not awaited.
    pub fn stop_reading(&mut self) {
        self.source = Source::Closed;
        self.filled = self.parsed;
    }

    /// Switches to draining (after wsrelay queued its own close).
    pub fn drain(&mut self) {
        if self.source == Source::Relaying {
            self.source = Source::Draining;
        }
    }

    /// A fresh masking key (xorshift64*, seeded per session from the shard RNG).
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_seed;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_seed = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 32) as u32).to_ne_bytes()
    }

    fn fail(&mut self, code: u16, reason: &'static str) -> Step {
        // Drop the offending frame and all after it.
        self.filled = self.parsed;
        self.fault.get_or_insert(Fault { code, reason });
        Step::Flush
    }

    fn skip(&mut self, n: usize) -> bool {
        if self.start != self.parsed {
            return false;
        }
        self.parsed += n;
        self.start = self.parsed;
        true
    }

    fn message_done(&mut self, env: &Env<'_>) {
        self.batch_msgs += 1;
        self.messages += 1;
        self.last_msg = self.batch_t;
        if let Some(t) = env.tap {
            self.tap_message(t);
        }
    }

    /// Sends a finished message's sample and metadata, within the budget.
    #[cold]
    fn tap_message(&mut self, t: &Tap<'_>) {
        let capture = self.capture.take();
        if capture.is_none() && !t.meta {
            return;
        }
        if !t.budget.take(self.batch_t) {
            return;
        }
        let at_ms = crate::store::now_ms();
        if let Some(c) = capture {
            t.sink.send(Event::Sample(Box::new(Sample {
                session: t.session,
                endpoint: t.endpoint.to_string(),
                dir: self.dir,
                opcode: self.msg_opcode,
                size: self.msg_total,
                payload: c.data,
                at_ms,
                keep: t.keep,
            })));
        }
        if t.meta {
            t.sink.send(Event::Meta(Box::new(MessageMeta {
                session: t.session,
                endpoint: t.endpoint.to_string(),
                dir: self.dir,
                opcode: self.msg_opcode,
                size: self.msg_total,
                at_ms,
            })));
        }
    }

    /// Decides whether the message starting now is sampled.
    #[cold]
    fn maybe_capture(&mut self, t: &Tap<'_>, len: u64) {
        self.capture = None;
        if t.sample_percent == 0 {
            return;
        }
        let roll = u32::from_ne_bytes(self.next_mask()) % 100;
        if roll < t.sample_percent {
            let cap = (len as usize).min(SAMPLE_BYTES);
            self.capture = Some(Box::new(Capture {
                data: Vec::with_capacity(cap),
            }));
        }
    }

    /// Copies (unmasked) payload bytes `[at, at + k)` into the capture.
    #[cold]
    fn capture_bytes(&mut self, at: usize, k: usize) {
        let Some(c) = self.capture.as_mut() else {
            return;
        };
        let take = k.min(SAMPLE_BYTES - c.data.len());
        if take == 0 {
            return;
        }
        let from = c.data.len();
        let buf = self.buf.as_ref().expect("buffer");
        c.data.extend_from_slice(&buf[at..at + take]);
        if self.from_client {
            frame::apply_mask(&mut c.data[from..], self.frame_mask, self.frame_phase);
        }
    }

    /// Counts a message start against `maxMessagesPerSecond`.
    fn over_rate(&mut self, env: &Env<'_>) -> bool {
        let Some(limit) = env.max_messages_per_second else {
            return false;
        };
        self.roll_rate_window();
        self.rate_count += 1;
        self.rate_count > limit
    }

    /// Starts a new one-second window for the rate limits when the last ended.
    fn roll_rate_window(&mut self) {
        if self.batch_t.duration_since(self.rate_window) >= Duration::from_secs(1) {
            self.rate_window = self.batch_t;
            self.rate_count = 0;
            self.ctrl_count = 0;
        }
    }

    /// Counts a control frame against `control_frames_per_second`.
    fn over_control_rate(&mut self, env: &Env<'_>) -> bool {
        let limit = env.max_control_per_second;
        if limit == 0 {
            return false;
        }
        self.roll_rate_window();
        self.ctrl_count += 1;
        self.ctrl_count > limit
    }

    /// Parses and transforms what is in the buffer.
    fn process(&mut self, env: &Env<'_>) -> Step {
        loop {
            if self.frame_left > 0 {
                let avail = (self.filled - self.parsed) as u64;
                if avail == 0 {
                    return Step::NeedMore;
                }
                let k = avail.min(self.frame_left) as usize;
                if self.frame_forward {
                    if self.capture.is_some() {
                        self.capture_bytes(self.parsed, k);
                    }
                    if self.from_client {
                        let buf = self.buf.as_mut().expect("buffer");
                        frame::apply_mask(
                            &mut buf[self.parsed..self.parsed + k],
                            self.frame_xor,
                            self.frame_phase,
                        );
                        self.frame_phase += k;
                    }
                    self.parsed += k;
                    self.batch_bytes += k as u64;
                } else if !self.skip(k) {
                    return Step::Flush;
                }
                self.frame_left -= k as u64;
                if self.frame_left == 0 && self.frame_fin_data && self.frame_forward {
                    self.message_done(env);
                }
                continue;
            }
            if self.source == Source::Closed {
                self.filled = self.parsed;
                return Step::NeedMore;
            }
            let parsed =
                frame::parse_header(&self.buf.as_ref().expect("buffer")[self.parsed..self.filled]);
            let h: Header = match parsed {
                Ok(Some(h)) => h,
                Ok(None) => return Step::NeedMore,
                Err(_) => return self.fail(1002, "protocol error"),
            };
            if h.mask.is_some() != self.from_client {
                return self.fail(1002, "protocol error");
            }
            if h.is_control() {
                if self.filled - self.parsed < h.header_len + h.len as usize {
                    return Step::NeedMore; // control frames are handled whole (<= 131 bytes)
                }
                if self.source == Source::Relaying && self.over_control_rate(env) {
                    return self.fail(1008, "control frame rate exceeded");
                }
                if let Some(step) = self.control(h) {
                    return step;
                }
                continue;
            }
            // Data frame.
            let continuation = h.opcode == OP_CONT;
            if continuation != self.msg_open {
                return self.fail(1002, "protocol error");
            }
            let size = if continuation {
                self.msg_size + h.len
            } else {
                h.len
            };
            if size > env.max_message_size {
                return self.fail(1009, "message too big");
            }
            let forward = self.source == Source::Relaying;
            if forward && !continuation && self.over_rate(env) {
                return self.fail(1008, "message rate exceeded");
            }
            if forward {
                if !continuation {
                    self.msg_opcode = h.opcode;
                    if let Some(t) = env.tap {
                        self.maybe_capture(t, h.len);
                    }
                }
                self.msg_total = size;
                if let Some(old) = h.mask {
                    self.frame_mask = old;
                    let new = self.next_mask();
                    let at = self.parsed + h.header_len - 4;
                    self.buf.as_mut().expect("buffer")[at..at + 4].copy_from_slice(&new);
                    self.frame_xor = xor4(old, new);
                }
                self.parsed += h.header_len;
                self.batch_bytes += h.header_len as u64;
            } else if !self.skip(h.header_len) {
                return Step::Flush; // parsed again after the flush
            }
            self.msg_open = !h.fin;
            self.msg_size = if h.fin { 0 } else { size };
            self.frame_fin_data = h.fin;
            self.frame_left = h.len;
            self.frame_phase = 0;
            self.frame_forward = forward;
            if h.len == 0 && h.fin && forward {
                self.message_done(env);
            }
        }
    }

    /// Handles one whole control frame at `parsed`; `Some` stops processing.
    fn control(&mut self, h: Header) -> Option<Step> {
        let total = h.header_len + h.len as usize;
        let at = self.parsed;
        let mut payload = [0u8; 125];
        let p = &mut payload[..h.len as usize];
        p.copy_from_slice(&self.buf.as_ref().expect("buffer")[at + h.header_len..at + total]);
        if let Some(m) = h.mask {
            frame::apply_mask(p, m, 0);
        }
        let ours = h.opcode == OP_PONG
            && self.from_client
            && self.pong_token.is_some_and(|t| t[..] == p[..]);
        match h.opcode {
            OP_CLOSE => {
                if let Err(e) = frame::check_close_payload(p) {
                    return Some(self.fail(e.code(), "invalid close frame"));
                }
                let code = match p {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1005,
                };
                let reason =
                    std::str::from_utf8(p.get(2..).unwrap_or_default()).unwrap_or_default();
                self.peer_close = Some(Box::new((code, reason.to_string())));
            }
            OP_PING | OP_PONG => {}
            _ => return Some(self.fail(1002, "protocol error")),
        }
        // wsrelay's own heartbeat pong is not the target's business.
        let forward = self.source == Source::Relaying && !ours;
        if forward {
            if let Some(old) = h.mask {
                let new = self.next_mask();
                let buf = self.buf.as_mut().expect("buffer");
                buf[at + h.header_len - 4..at + h.header_len].copy_from_slice(&new);
                frame::apply_mask(&mut buf[at + h.header_len..at + total], xor4(old, new), 0);
            }
            self.parsed += total;
            self.batch_bytes += total as u64;
        } else if !self.skip(total) {
            return Some(Step::Flush); // handled again after the flush
        }
        if ours {
            self.pong_token = None;
            self.pong_seen = true;
        }
        if h.opcode == OP_CLOSE {
            self.source = Source::Closed;
            self.msg_open = false;
            if forward && self.sink == Sink::Open {
                self.sink = Sink::Closing; // the relayed close is the last frame out
            }
            self.filled = self.parsed;
            return Some(Step::Flush);
        }
        None
    }

    /// Writes what is ready. `Ready(())` when nothing is left to write now.
    fn poll_flush<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut dst: Pin<&mut W>,
        env: &Env<'_>,
    ) -> Poll<()> {
        if self.sink == Sink::Gone {
            self.start = self.parsed;
            self.ctrl = None;
            self.batch_msgs = 0;
            self.batch_bytes = 0;
            return Poll::Ready(());
        }
        let mut wrote = false;
        while self.start < self.parsed {
            let buf = self
                .buf
                .as_ref()
                .expect("unwritten bytes live in the buffer");
            match dst.as_mut().poll_write(cx, &buf[self.start..self.parsed]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return self.dead_dst(),
                Poll::Ready(Ok(n)) => {
                    self.start += n;
                    self.stalled_since = None;
                    wrote = true;
                }
                Poll::Pending => return self.stalled(),
            }
        }
        if wrote || self.batch_bytes > 0 {
            let us = self.batch_t.elapsed().as_micros() as u64;
            env.metrics
                .record_batch(self.dir, self.batch_msgs, self.batch_bytes, us);
            self.bytes += self.batch_bytes;
            self.batch_msgs = 0;
            self.batch_bytes = 0;
        }
        let at_boundary = self.frame_left == 0 || !self.frame_forward;
        if at_boundary
            && self.source == Source::Closed
            && self.sink == Sink::Closing
            && self.ctrl.is_none()
        {
            // The relayed close frame has been written.
            self.sink = Sink::Closed;
        }
        if at_boundary {
            if let Some(c) = self.ctrl {
                let mut frame = [0u8; frame::MAX_CONTROL_FRAME];
                let n = c.render(&mut frame);
                let bytes = &frame[..n];
                while self.ctrl_pos < bytes.len() {
                    match dst.as_mut().poll_write(cx, &bytes[self.ctrl_pos..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return self.dead_dst(),
                        Poll::Ready(Ok(n)) => {
                            self.ctrl_pos += n;
                            self.stalled_since = None;
                            wrote = true;
                        }
                        Poll::Pending => return self.stalled(),
                    }
                }
                if c.opcode == OP_CLOSE {
                    self.sink = Sink::Closed;
                }
                self.ctrl = None;
                self.ctrl_pos = 0;
            }
        }
        if wrote {
            match dst.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.dead_dst(),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// The destination takes nothing now: remember since when.
    #[cold]
    fn stalled(&mut self) -> Poll<()> {
        if self.stalled_since.is_none() {
            self.stalled_since = Some(Instant::now());
        }
        Poll::Pending
    }

    fn dead_dst(&mut self) -> Poll<()> {
        self.sink = Sink::Gone;
        self.start = self.parsed;
        self.ctrl = None;
        Poll::Ready(())
    }

    /// Moves bytes along until the source or the destination would block, or
    /// this direction has nothing more to do.
    pub fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut src: Pin<&mut R>,
        mut dst: Pin<&mut W>,
        env: &Env<'_>,
    ) -> Poll<()>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.poll_flush(cx, dst.as_mut(), env).is_pending() {
                return Poll::Pending;
            }
            if self.buf.is_some() && self.parsed < self.filled {
                if let Step::Flush = self.process(env) {
                    continue;
                }
                if self.start < self.parsed {
                    continue;
                }
            }
            if self.fault.is_some() || self.finished_reading() {
                self.release(env.pool);
                return Poll::Ready(());
            }
            if self.parking && self.frame_left == 0 {
                // At the boundary: nothing more is read here (the session
                // sees `at_rest` and moves, or unparks).
                self.release(env.pool);
                return Poll::Pending;
            }
            // Everything written; make room and read.
            let mut buf = self.buf.take().unwrap_or_else(|| env.pool.take());
            if self.parsed > 0 {
                buf.copy_within(self.parsed..self.filled, 0);
                self.filled -= self.parsed;
                self.parsed = 0;
                self.start = 0;
            }
            let mut end = buf.len();
            if self.parking {
                // The rest of this frame and not a byte more: every byte
                // buffered was parsed, so the frame's remaining payload is
                // exactly what is still to come.
                end = end.min(self.filled + self.frame_left.min(end as u64) as usize);
            }
            let r = src.as_mut().poll_read(cx, &mut buf[self.filled..end]);
            self.buf = Some(buf);
            match r {
                Poll::Pending => {
                    if self.filled == 0 {
                        self.release(env.pool);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.source = Source::Gone;
                    self.filled = self.parsed;
                    self.release(env.pool);
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(n)) => {
                    self.filled += n;
                    let now = Instant::now();
                    self.batch_t = now;
                    self.last_rx = now;
                }
            }
        }
    }

    /// Gives the buffer back if it holds nothing unwritten or unparsed.
    fn release(&mut self, pool: &BufPool) {
        if self.start == self.parsed && self.parsed == self.filled {
            if let Some(b) = self.buf.take() {
                pool.give(b);
            }
            self.start = 0;
            self.parsed = 0;
            self.filled = 0;
        }
    }

    /// Returns the buffer at the end of the session.
    pub fn finish(&mut self, pool: &BufPool) {
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }
}

fn xor4(a: [u8; 4], b: [u8; 4]) -> [u8; 4] {
    [a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]]
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
