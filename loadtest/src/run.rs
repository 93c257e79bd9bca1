//! The four load modes. Every connection is one task on one glommio executor;
//! a task polls its socket for reading and writing itself (no split, no lock).

use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::ws::Stream;
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::timer::Timer;
use wsrelay::shard::frame::{
    apply_mask, encode_header, parse_header, OP_BINARY, OP_CLOSE, OP_PING,
};

use crate::report::Stats;
use crate::ws::{self, WsUrl};

/// What all modes share.
#[derive(Clone)]
pub struct Common {
    /// Target.
    pub url: WsUrl,
    /// Connections.
    pub connections: usize,
    /// Message size in bytes (at least 16: the payload carries a timestamp).
    pub size: usize,
    /// Seconds of measurement.
    pub duration: Duration,
    /// Seconds before the measurement starts (after the ramp).
    pub warmup: Duration,
    /// Seconds over which connections are opened.
    pub ramp: Duration,
}

/// How a message stream is paced.
#[derive(Clone, Copy)]
pub enum Pace {
    /// Open loop: one message every `interval` per connection, latency taken
    /// from the intended send time (coordinated-omission corrected).
    Rate { interval: Duration },
    /// Closed loop: `window` messages in flight per connection.
    Window { window: usize },
}

/// The clock of a run: `epoch` for timestamps, the measurement window.
#[derive(Clone, Copy)]
pub struct Clock {
    /// Timestamps in payloads are ns since this.
    pub epoch: Instant,
    /// Start of the measurement window.
    pub measure_from: Instant,
    /// End of the measurement window; nothing is sent after it.
    pub stop: Instant,
}

impl Clock {
    fn ns(&self, t: Instant) -> u64 {
        t.duration_since(self.epoch).as_nanos() as u64
    }
}

const IN_BUF: usize = 64 * 1024;
const GRACE: Duration = Duration::from_secs(2);

/// Waits for connection `i`'s point of the ramp (connections open evenly
/// over `c.ramp` from `start`).
async fn ramp_slot(i: usize, c: &Common, start: Instant) {
    let at = start + c.ramp.mul_f64(i as f64 / c.connections.max(1) as f64);
    let now = Instant::now();
    if at > now {
        Timer::new(at - now).await;
    }
}

/// Opens connection `i` of `n` at its point of the ramp, then drives it.
pub async fn connection(
    i: usize,
    c: Common,
    pace: Pace,
    clock: Clock,
    stats: Rc<Stats>,
    start: Instant,
) {
    ramp_slot(i, &c, start).await;
    let (stream, early) = match ws::connect(&c.url).await {
        Ok(x) => x,
        Err(e) => return stats.error(e),
    };
    // Spread the connections' send times evenly over one interval.
    let first = match pace {
        Pace::Rate { interval } => {
            Instant::now() + interval.mul_f64(i as f64 / c.connections.max(1) as f64)
        }
        Pace::Window { .. } => Instant::now(),
    };
    let mut d = Driver {
        stream,
        inbuf: vec![0u8; IN_BUF],
        filled: early.len(),
        parsed: 0,
        out: Vec::with_capacity(4 * (c.size + 14)),
        out_pos: 0,
        payload: (0..c.size).map(|b| b as u8).collect(),
        mask: (i as u32).wrapping_mul(2_654_435_761).to_ne_bytes(),
        pace,
        next_send: first,
        in_flight: 0,
        clock,
        frame_left: 0,
        ts: [0; 8],
        ts_have: 0,
        timer: Timer::new(Duration::from_secs(3600)),
        timer_at: None,
        stats,
    };
    d.inbuf[..early.len()].copy_from_slice(&early);
    poll_fn(|cx| d.poll(cx)).await;
}

struct Driver {
    stream: Stream,
    inbuf: Vec<u8>,
    filled: usize,
    parsed: usize,
    out: Vec<u8>,
    out_pos: usize,
    payload: Vec<u8>,
    mask: [u8; 4],
    pace: Pace,
    next_send: Instant,
    in_flight: usize,
    clock: Clock,
    // The echoed frame being read: bytes left, its timestamp so far.
    frame_left: u64,
    ts: [u8; 8],
    ts_have: usize,
    timer: Timer,
    timer_at: Option<Instant>,
    stats: Rc<Stats>,
}

impl Driver {
    fn queue(&mut self, stamp: Instant) {
        let ns = self.clock.ns(stamp);
        self.payload[..8].copy_from_slice(&ns.to_le_bytes());
        encode_header(
            &mut self.out,
            true,
            OP_BINARY,
            self.payload.len(),
            Some(self.mask),
        );
        let at = self.out.len();
        self.out.extend_from_slice(&self.payload);
        apply_mask(&mut self.out[at..], self.mask, 0);
        self.in_flight += 1;
        self.stats.sent.set(self.stats.sent.get() + 1);
    }

    fn received(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let sent_ns = u64::from_le_bytes(self.ts);
        let now_ns = self.clock.ns(now);
        self.stats.received.set(self.stats.received.get() + 1);
        if sent_ns >= self.clock.ns(self.clock.measure_from)
            && sent_ns <= self.clock.ns(self.clock.stop)
        {
            let _ = self
                .stats
                .hist
                .borrow_mut()
                .record(now_ns.saturating_sub(sent_ns).max(1));
            self.stats.measured.set(self.stats.measured.get() + 1);
        }
        if let Pace::Window { .. } = self.pace {
            if now < self.clock.stop {
                self.queue(now);
            }
        }
    }

    /// Parses echoed frames; returns false on a protocol error or a close.
    fn parse(&mut self, now: Instant) -> bool {
        loop {
            if self.frame_left > 0 {
                let k = (self.filled - self.parsed).min(self.frame_left as usize);
                if k == 0 {
                    return true;
                }
                if self.ts_have < 8 {
                    let t = k.min(8 - self.ts_have);
                    self.ts[self.ts_have..self.ts_have + t]
                        .copy_from_slice(&self.inbuf[self.parsed..self.parsed + t]);
                    self.ts_have += t;
                }
                self.parsed += k;
                self.frame_left -= k as u64;
                if self.frame_left == 0 {
                    self.received(now);
                }
                continue;
            }
            let h = match parse_header(&self.inbuf[self.parsed..self.filled]) {
                Ok(Some(h)) => h,
                Ok(None) => return true,
                Err(e) => {
                    self.stats.error(format!("bad frame from the target: {e}"));
                    return false;
                }
            };
            if h.is_control() {
                if h.opcode == OP_CLOSE {
                    self.stats.error("the target closed the connection");
                    return false;
                }
                let total = h.header_len + h.len as usize;
                if self.filled - self.parsed < total {
                    return true;
                }
                if h.opcode == OP_PING {
                    let mut p = [0u8; 125];
                    let n = h.len as usize;
                    p[..n].copy_from_slice(
                        &self.inbuf[self.parsed + h.header_len..self.parsed + total],
                    );
                    encode_header(&mut self.out, true, 0xA, n, Some(self.mask));
                    let at = self.out.len();
                    self.out.extend_from_slice(&p[..n]);
                    apply_mask(&mut self.out[at..], self.mask, 0);
                }
                self.parsed += total;
                continue;
            }
            self.parsed += h.header_len;
            self.frame_left = h.len;
            self.ts_have = 0;
            if h.len == 0 {
                self.received(now);
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let now = Instant::now();
            match self.pace {
                Pace::Rate { interval } => {
                    // Open loop: everything due is queued now, stamped with the
                    // time it should have been sent.
                    while self.next_send <= now && self.next_send < self.clock.stop {
                        let t = self.next_send;
                        self.queue(t);
                        self.next_send += interval;
                    }
                }
                Pace::Window { window } => {
                    while self.in_flight < window && now < self.clock.stop {
                        self.queue(now);
                    }
                }
            }
            while self.out_pos < self.out.len() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.out[self.out_pos..]) {
                    Poll::Ready(Ok(n)) if n > 0 => self.out_pos += n,
                    Poll::Ready(r) => {
                        self.stats.error(format!("write failed: {r:?}"));
                        return Poll::Ready(());
                    }
                    Poll::Pending => break,
                }
            }
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
            if now >= self.clock.stop && (self.in_flight == 0 || now >= self.clock.stop + GRACE) {
                return Poll::Ready(());
            }
            if self.parsed == self.filled {
                self.parsed = 0;
                self.filled = 0;
            } else if self.filled == self.inbuf.len() {
                self.inbuf.copy_within(self.parsed..self.filled, 0);
                self.filled -= self.parsed;
                self.parsed = 0;
            }
            let mut progressed = false;
            match Pin::new(&mut self.stream).poll_read(cx, &mut self.inbuf[self.filled..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.filled += n;
                    if !self.parse(Instant::now()) {
                        return Poll::Ready(());
                    }
                    progressed = true;
                }
                Poll::Ready(r) => {
                    if now < self.clock.stop {
                        self.stats.error(format!("connection ended: {r:?}"));
                    }
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            if progressed {
                continue;
            }
            // Sleep until the next send (or the end of the grace period).
            let wake = match self.pace {
                Pace::Rate { .. } if self.next_send < self.clock.stop => self.next_send,
                _ if now < self.clock.stop => self.clock.stop,
                _ => self.clock.stop + GRACE,
            };
            if self.timer_at != Some(wake) {
                self.timer_at = Some(wake);
                self.timer
                    .reset(wake.saturating_duration_since(Instant::now()));
                if Pin::new(&mut self.timer).poll(cx).is_ready() {
                    continue;
                }
            } else if Instant::now() >= wake {
                self.timer_at = None;
                continue;
            }
            return Poll::Pending;
        }
    }
}

use std::future::Future as _;

/// `connect` mode: `connections` workers open an upgraded session, close it
/// with a close handshake, and start over, until the window ends. Latency is
/// one whole cycle (TCP connect + upgrade through the proxy + close).
pub async fn connect_worker(c: Common, clock: Clock, stats: Rc<Stats>, echo: bool) {
    while Instant::now() < clock.stop {
        let t = Instant::now();
        stats.sent.set(stats.sent.get() + 1);
        match cycle(&c.url, echo).await {
            Ok(()) => stats.done(t, clock.measure_from),
            Err(e) => stats.error(e),
        }
    }
}

async fn cycle(url: &WsUrl, echo: bool) -> Result<(), String> {
    let (mut s, early) = ws::connect(url).await?;
    if echo {
        let mut frames = Frames::new(early);
        let msg = b"connect-echo";
        send_text(&mut s, msg, [1, 2, 3, 4]).await?;
        let got = frames.next_text(&mut s).await?;
        if got != msg {
            return Err(format!("wrong echo: {:?}", String::from_utf8_lossy(&got)));
        }
    }
    // close(1000), masked with a zero key.
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
        .await
        .map_err(|e| e.to_string())?;
    let mut b = [0u8; 64];
    // Read until the close frame (or EOF) comes back.
    loop {
        let n = s.read(&mut b).await.map_err(|e| e.to_string())?;
        if n == 0 || b[..n].contains(&0x88) {
            return Ok(());
        }
    }
}

/// Sends one masked text frame (payload under 126 bytes).
async fn send_text(s: &mut Stream, payload: &[u8], mask: [u8; 4]) -> Result<(), String> {
    debug_assert!(payload.len() < 126);
    let mut f = Vec::with_capacity(6 + payload.len());
    f.extend_from_slice(&[0x81, 0x80 | payload.len() as u8]);
    f.extend_from_slice(&mask);
    let at = f.len();
    f.extend_from_slice(payload);
    apply_mask(&mut f[at..], mask, 0);
    s.write_all(&f).await.map_err(|e| e.to_string())
}

/// Unmasked frames from the server side of a connection.
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    fn new(early: Vec<u8>) -> Frames {
        Frames { buf: early }
    }

    /// The next text or binary message's payload (single-frame; pings are
    /// skipped); a close frame or the end of the stream is an error.
    async fn next_text(&mut self, s: &mut Stream) -> Result<Vec<u8>, String> {
        loop {
            if let Ok(Some(h)) = parse_header(&self.buf) {
                let total = h.header_len + h.len as usize;
                if self.buf.len() >= total {
                    let payload = self.buf[h.header_len..total].to_vec();
                    self.buf.drain(..total);
                    match h.opcode {
                        OP_CLOSE => {
                            let code = payload
                                .get(..2)
                                .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                            return Err(format!("closed by the relay with {code}"));
                        }
                        OP_PING | 0xA => continue,
                        _ if !h.fin => return Err("a fragmented echo".into()),
                        _ => return Ok(payload),
                    }
                }
            }
            let mut b = [0u8; 512];
            let n = s.read(&mut b).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the connection ended".into());
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }
}

/// `hold` mode: one long-lived session sending message `i:seq` every
/// `every` and checking each echo (the same bytes, in order) until the
/// clock stops; whether it survived to the end.
pub async fn hold_session(
    i: usize,
    c: Common,
    every: Duration,
    clock: Clock,
    start: Instant,
    stats: Rc<Stats>,
) -> bool {
    ramp_slot(i, &c, start).await;
    let r = async {
        let (mut s, early) = ws::connect(&c.url).await?;
        let mut frames = Frames::new(early);
        let mask = (i as u32).wrapping_mul(2_654_435_761).to_ne_bytes();
        // Spread the sessions' sends over one interval.
        let mut next = Instant::now() + every.mul_f64(i as f64 / c.connections.max(1) as f64);
        let mut seq = 0u64;
        loop {
            let now = Instant::now();
            if now >= clock.stop {
                return Ok::<_, String>(());
            }
            if next > now {
                Timer::new(next - now).await;
            }
            let msg = format!("{i}:{seq}");
            let t = Instant::now();
            stats.sent.set(stats.sent.get() + 1);
            send_text(&mut s, msg.as_bytes(), mask)
                .await
                .map_err(|e| format!("session {i}, message {seq}: send: {e}"))?;
            let got = frames
                .next_text(&mut s)
                .await
                .map_err(|e| format!("session {i}, message {seq}: {e}"))?;
            if got != msg.as_bytes() {
                return Err(format!(
                    "session {i}: sent {msg:?}, echo {:?} (lost, reordered or corrupted)",
                    String::from_utf8_lossy(&got)
                ));
            }
            stats.done(t, clock.measure_from);
            seq += 1;
            next += every;
        }
    }
    .await;
    match r {
        Ok(()) => true,
        Err(e) => {
            stats.error(e);
            false
        }
    }
}

/// `idle` mode: open a session, relay one message both ways, hold it.
pub async fn idle_connection(
    i: usize,
    c: Common,
    stats: Rc<Stats>,
    start: Instant,
    hold_until: Instant,
) -> Option<Stream> {
    ramp_slot(i, &c, start).await;
    let r = async {
        let (mut s, _) = ws::connect(&c.url).await?;
        s.write_all(&[0x82, 0x81, 1, 2, 3, 4, 7 ^ 1])
            .await
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        if b != [0x82, 1, 7] {
            return Err(format!("unexpected echo {b:?}"));
        }
        Ok::<_, String>(s)
    }
    .await;
    stats.sent.set(stats.sent.get() + 1);
    match r {
        Ok(s) => {
            stats.received.set(stats.received.get() + 1);
            let _ = hold_until;
            Some(s)
        }
        Err(e) => {
            stats.error(e);
            None
        }
    }
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Parses `host:port` for the echo server.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:9001"))
}

/// CPU seconds `pid` used so far: (user, system).
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after ") ".
    let rest = &s[s.rfind(") ")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // USER_HZ is 100 on every Linux architecture wsrelay targets.
    let secs = |i: usize| Some(f.get(i)?.parse::<f64>().ok()? / 100.0);
    Some((secs(11)?, secs(12)?))
}

/// CPU seconds (user, system) `pid` used between the start and the end of
/// the measurement window.
pub async fn cpu_over_window(pid: Option<u32>, clock: Clock) -> Option<(f64, f64)> {
    let pid = pid?;
    let now = Instant::now();
    if clock.measure_from > now {
        Timer::new(clock.measure_from - now).await;
    }
    let a = cpu_seconds(pid)?;
    let now = Instant::now();
    if clock.stop > now {
        Timer::new(clock.stop - now).await;
    }
    let b = cpu_seconds(pid)?;
    Some((b.0 - a.0, b.1 - a.1))
}
