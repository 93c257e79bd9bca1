use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite};

use super::*;
use crate::shard::frame::{parse_header, OP_BINARY, OP_TEXT};
use crate::shard::metrics::{Direction, ShardMetrics};

/// A source that hands out its bytes in reads of the sizes in `chunks`
/// (cycled), then either ends (EOF) or blocks forever.
pub(super) struct Src {
    pub data: Vec<u8>,
    pub at: usize,
    pub chunks: Vec<usize>,
    pub turn: usize,
    pub eof: bool,
}

impl AsyncRead for Src {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.at == self.data.len() {
            return if self.eof {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            };
        }
        let chunk = self.chunks[self.turn % self.chunks.len()];
        self.turn += 1;
        let n = buf.len().min(chunk).min(self.data.len() - self.at);
        let at = self.at;
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

/// A destination that accepts at most `room` bytes in all, each write at
/// most the next of `sizes` (cycled; a 0 blocks that write), then blocks.
pub(super) struct Dst {
    pub out: Vec<u8>,
    pub room: usize,
    pub sizes: Vec<usize>,
    pub turn: usize,
}

impl AsyncWrite for Dst {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = buf.len().min(self.room - self.out.len()).min(size);
        if n == 0 {
            return Poll::Pending;
        }
        self.out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = Vec::new();
    frame::encode(&mut v, fin, opcode, payload, mask);
    v
}

/// Decodes frames: (fin, opcode, unmasked payload, mask).
type Decoded = (bool, u8, Vec<u8>, Option<[u8; 4]>);

fn decode(mut b: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = parse_header(b).unwrap().expect("whole frames only");
        let mut p = b[h.header_len..h.header_len + h.len as usize].to_vec();
        if let Some(k) = h.mask {
            frame::apply_mask(&mut p, k, 0);
        }
        out.push((h.fin, h.opcode, p, h.mask));
        b = &b[h.header_len + h.len as usize..];
    }
    out
}

pub(super) struct Rig {
    pool: std::rc::Rc<BufPool>,
    metrics: std::rc::Rc<ShardMetrics>,
    /// `control_frames_per_second` (0: off).
    control_rate: u32,
}

impl Rig {
    pub(super) fn new(buf: usize) -> Rig {
        Rig {
            pool: BufPool::new(buf, 8),
            metrics: ShardMetrics::new(),
            control_rate: 0,
        }
    }
    pub(super) fn run(
        &self,
        pump: &mut Pump,
        src: &mut Src,
        dst: &mut Dst,
        max: u64,
        rate: Option<u32>,
    ) -> Poll<()> {
        self.run_tap(pump, src, dst, max, rate, None)
    }
    fn run_tap(
        &self,
        pump: &mut Pump,
        src: &mut Src,
        dst: &mut Dst,
        max: u64,
        rate: Option<u32>,
        tap: Option<&Tap<'_>>,
    ) -> Poll<()> {
        let m = self.metrics.endpoint("e");
        let env = Env {
            pool: &self.pool,
            metrics: &m,
            max_message_size: max,
            max_messages_per_second: rate,
            max_control_per_second: self.control_rate,
            tap,
        };
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        pump.poll(&mut cx, Pin::new(src), Pin::new(dst), &env)
    }
}

fn src(data: Vec<u8>, chunk: usize, eof: bool) -> Src {
    Src {
        data,
        at: 0,
        chunks: vec![chunk],
        turn: 0,
        eof,
    }
}

pub(super) fn dst() -> Dst {
    Dst {
        out: Vec::new(),
        room: usize::MAX,
        sizes: vec![usize::MAX],
        turn: 0,
    }
}

#[test]
fn client_frames_are_remasked_with_boundaries_and_fragments_kept() {
    let rig = Rig::new(4096);
    let key = Some([9, 8, 7, 6]);
    let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut input = frame(true, OP_TEXT, b"hello", key);
    input.extend(frame(false, OP_BINARY, b"part1", key));
    input.extend(frame(true, OP_PING, b"pp", key)); // control frame between fragments
    input.extend(frame(true, OP_CONT, b"part2", key));
    input.extend(frame(true, OP_BINARY, &big, key));
    input.extend(frame(true, OP_TEXT, b"", key));
    for chunk in [1, 7, 100, 4096] {
        let mut p = Pump::new(Direction::In, Instant::now(), 42);
        let (mut s, mut d) = (src(input.clone(), chunk, false), dst());
        assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
        let got = decode(&d.out);
        let want: Vec<(bool, u8, &[u8])> = vec![
            (true, OP_TEXT, b"hello"),
            (false, OP_BINARY, b"part1"),
            (true, OP_PING, b"pp"),
            (true, OP_CONT, b"part2"),
            (true, OP_BINARY, &big),
            (true, OP_TEXT, b""),
        ];
        assert_eq!(got.len(), want.len(), "chunk {chunk}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.0, g.1, g.2.as_slice()), (w.0, w.1, w.2), "chunk {chunk}");
            assert!(
                g.3.is_some() && g.3 != key,
                "a fresh mask on the target leg"
            );
        }
        assert_eq!(p.messages, 4);
        assert!(!p.holds_buffer(), "an idle direction gives its buffer back");
        assert_eq!(d.out.len(), input.len(), "same wire size");
    }
    let s = rig.metrics.snapshot(0);
    assert_eq!(s.endpoints[0].messages[Direction::In.index()], 16);
}

#[test]
fn target_frames_pass_unchanged() {
    let rig = Rig::new(4096);
    let mut input = frame(true, OP_BINARY, &[1, 2, 3], None);
    input.extend(frame(true, OP_TEXT, &vec![b'x'; 70_000], None));
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let (mut s, mut d) = (src(input.clone(), 1000, false), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
    assert_eq!(d.out, input);
    assert_eq!(p.messages, 2);
}

#[test]
fn a_message_over_the_limit_faults_with_1009_and_is_not_forwarded() {
    let rig = Rig::new(4096);
    let mut input = frame(true, OP_TEXT, b"ok", Some([1, 1, 1, 1]));
    input.extend(frame(false, OP_BINARY, &[0; 600], Some([1, 1, 1, 1])));
    input.extend(frame(true, OP_CONT, &[0; 600], Some([1, 1, 1, 1])));
    let mut p = Pump::new(Direction::In, Instant::now(), 1);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1024, None).is_ready());
    assert_eq!(
        p.fault,
        Some(Fault {
            code: 1009,
            reason: "message too big"
        })
    );
    let got = decode(&d.out);
    assert_eq!(
        got.len(),
        2,
        "the first fragment went through, the one that overflows did not"
    );
    assert_eq!(got[0].2, b"ok");
}

#[test]
fn protocol_errors_fault_with_1002_or_1007() {
    let rig = Rig::new(4096);
    let cases: Vec<(Vec<u8>, bool, u16)> = vec![
        (frame(true, OP_TEXT, b"x", None), true, 1002), // unmasked from the client
        (frame(true, OP_TEXT, b"x", Some([1, 2, 3, 4])), false, 1002), // masked from the target
        (frame(true, OP_CONT, b"x", None), false, 1002), // continuation with nothing open
        (frame(true, 0x3, b"x", None), false, 1002),    // reserved opcode
        (
            [
                frame(false, OP_TEXT, b"a", None),
                frame(true, OP_TEXT, b"b", None),
            ]
            .concat(),
            false,
            1002,
        ),
        (frame(true, OP_CLOSE, &[3], None), false, 1002), // close with 1 byte
        (
            frame(true, OP_CLOSE, &1005u16.to_be_bytes(), None),
            false,
            1002,
        ),
        (frame(true, OP_CLOSE, &[3, 232, 0xff], None), false, 1007), // reason not UTF-8
        (vec![0xC1, 0x00], false, 1002),                             // RSV1 without an extension
    ];
    for (input, from_client, code) in cases {
        let dir = if from_client {
            Direction::In
        } else {
            Direction::Out
        };
        let mut p = Pump::new(dir, Instant::now(), 1);
        let (mut s, mut d) = (src(input.clone(), 4096, false), dst());
        assert!(
            rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_ready(),
            "{input:?}"
        );
        assert_eq!(p.fault.map(|f| f.code), Some(code), "{input:?}");
    }
}

#[test]
fn a_close_is_relayed_then_nothing_more_is_read() {
    let rig = Rig::new(4096);
    let mut input = frame(true, OP_TEXT, b"last", Some([5, 5, 5, 5]));
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    input.extend(frame(true, OP_CLOSE, &close, Some([5, 5, 5, 5])));
    input.extend(frame(true, OP_TEXT, b"after close", Some([5, 5, 5, 5])));
    let mut p = Pump::new(Direction::In, Instant::now(), 1);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_ready());
    let got = decode(&d.out);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[1].1, got[1].2.as_slice()),
        (OP_CLOSE, close.as_slice())
    );
    assert_eq!((p.source, p.sink), (Source::Closed, Sink::Closed));
    assert!(p.fault.is_none());
    // The peer's own code and reason are kept for the session's record.
    assert_eq!(p.peer_close.as_deref(), Some(&(1000, "bye".to_string())));
}

#[test]
fn a_close_without_a_code_is_recorded_as_1005() {
    let rig = Rig::new(4096);
    let input = frame(true, OP_CLOSE, b"", None);
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_ready());
    assert_eq!(p.peer_close.as_deref(), Some(&(1005, String::new())));
}

#[test]
fn a_control_frame_flood_closes_with_1008() {
    let mut rig = Rig::new(4096);
    rig.control_rate = 3;
    let input: Vec<u8> = (0..50)
        .flat_map(|_| frame(true, OP_PING, b"p", Some([1, 2, 3, 4])))
        .collect();
    let mut p = Pump::new(Direction::In, Instant::now(), 1);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_ready());
    let f = p.fault.expect("a fault");
    assert_eq!((f.code, f.reason), (1008, "control frame rate exceeded"));
    assert_eq!(decode(&d.out).len(), 3, "the budget's worth is relayed");
    // Off (0): all pass.
    rig.control_rate = 0;
    let input: Vec<u8> = (0..50)
        .flat_map(|_| frame(true, OP_PONG, b"p", None))
        .collect();
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    let _ = rig.run(&mut p, &mut s, &mut d, 1 << 20, None);
    assert!(p.fault.is_none());
    assert_eq!(decode(&d.out).len(), 50);
}

#[test]
fn wsrelays_own_pong_is_swallowed_and_others_pass() {
    let rig = Rig::new(4096);
    let token = *b"hb000001";
    let mut input = frame(true, OP_PONG, &token, Some([1, 2, 3, 4]));
    input.extend(frame(true, OP_PONG, b"peer", Some([1, 2, 3, 4])));
    input.extend(frame(true, OP_TEXT, b"m", Some([1, 2, 3, 4])));
    let mut p = Pump::new(Direction::In, Instant::now(), 1);
    p.pong_token = Some(token);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    let _ = rig.run(&mut p, &mut s, &mut d, 1 << 20, None);
    let got = decode(&d.out);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].2, b"peer");
    assert!(p.pong_seen && p.pong_token.is_none());
}

#[test]
fn the_message_rate_limit_closes_with_1008() {
    let rig = Rig::new(4096);
    let input: Vec<u8> = (0..5)
        .flat_map(|_| frame(true, OP_TEXT, b"m", None))
        .collect();
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let (mut s, mut d) = (src(input, 4096, false), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, Some(3)).is_ready());
    assert_eq!(p.fault.map(|f| f.code), Some(1008));
    assert_eq!(decode(&d.out).len(), 3);
}

#[test]
fn a_stalled_destination_stalls_the_source() {
    let rig = Rig::new(4096);
    let input: Vec<u8> = (0..1000)
        .flat_map(|_| frame(true, OP_BINARY, &[7; 200], None))
        .collect();
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let mut s = src(input.clone(), 65536, false);
    let mut d = Dst {
        room: 10_000,
        ..dst()
    };
    assert!(p.stalled_since.is_none());
    for _ in 0..10 {
        assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
    }
    assert_eq!(d.out.len(), 10_000);
    let since = p.stalled_since.expect("a blocked write is a stall");
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
    assert_eq!(
        p.stalled_since,
        Some(since),
        "it dates from the first blocked write"
    );
    assert!(
        s.at <= 10_000 + 4096,
        "read {} bytes with 10000 written: at most one buffer ahead",
        s.at
    );
    // The reader catches up once the destination drains.
    d.room = usize::MAX;
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
    assert_eq!(d.out, input);
    assert!(p.stalled_since.is_none(), "progress ends the stall");
}

#[test]
fn eof_without_close_marks_the_source_dead() {
    let rig = Rig::new(4096);
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let (mut s, mut d) = (src(frame(true, OP_TEXT, b"x", None), 4096, true), dst());
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_ready());
    assert_eq!(p.source, Source::Gone);
    assert_eq!(decode(&d.out).len(), 1);
}

#[test]
fn an_injected_close_waits_for_the_frame_in_flight() {
    let rig = Rig::new(4096);
    // A 10 kB frame of which only 3 kB has arrived.
    let whole = frame(true, OP_BINARY, &[1; 10_000], None);
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let mut s = src(whole[..3000].to_vec(), 4096, false);
    let mut d = dst();
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
    assert!(p.queue_control(ControlFrame::close(1001, "going away", None)));
    p.drain();
    assert!(rig.run(&mut p, &mut s, &mut d, 1 << 20, None).is_pending());
    assert_eq!(d.out.len(), 3000, "no close in the middle of a frame");
    s.data.extend_from_slice(&whole[3000..]);
    s.data.extend(frame(true, OP_TEXT, b"dropped", None));
    let _ = rig.run(&mut p, &mut s, &mut d, 1 << 20, None);
    let got = decode(&d.out);
    assert_eq!(
        got.len(),
        2,
        "the frame in flight, then the close; later data dropped"
    );
    assert_eq!(got[1].1, OP_CLOSE);
    assert_eq!(p.sink, Sink::Closed);
}

/// A tap of endpoint `e` keeping 10 samples.
fn tap<'a>(
    sink: &'a crate::bridge::EventSink,
    budget: &'a TapBudget,
    sample_percent: u32,
    meta: bool,
) -> Tap<'a> {
    Tap {
        sink,
        budget,
        session: uuid::Uuid::nil(),
        endpoint: "e",
        sample_percent,
        keep: 10,
        meta,
    }
}

#[test]
fn sampled_messages_are_copied_unmasked_capped_with_metadata() {
    let rig = Rig::new(4096);
    let key = Some([1, 2, 3, 4]);
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut input = frame(false, OP_TEXT, b"hel", key);
    input.extend(frame(true, OP_CONT, b"lo", key));
    input.extend(frame(true, OP_BINARY, &big, key));
    for chunk in [3, 4096] {
        let (sink, rx, dropped) = crate::bridge::EventSink::bounded(64);
        let budget = TapBudget::default();
        let tap = tap(&sink, &budget, 100, true);
        let mut p = Pump::new(Direction::In, Instant::now(), 42);
        let (mut s, mut d) = (src(input.clone(), chunk, false), dst());
        assert!(rig
            .run_tap(&mut p, &mut s, &mut d, 1 << 20, None, Some(&tap))
            .is_pending());
        let events: Vec<Event> = rx.try_iter().collect();
        let samples: Vec<&crate::bridge::Sample> = events
            .iter()
            .filter_map(|e| match e {
                Event::Sample(s) => Some(&**s),
                _ => None,
            })
            .collect();
        let metas: Vec<(u8, u64)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Meta(m) => Some((m.opcode, m.size)),
                _ => None,
            })
            .collect();
        assert_eq!(samples.len(), 2, "chunk {chunk}");
        assert_eq!(samples[0].payload, b"hello", "fragments joined, unmasked");
        assert_eq!((samples[0].opcode, samples[0].size), (OP_TEXT, 5));
        assert_eq!(samples[1].payload, &big[..SAMPLE_BYTES], "capped at 4 KiB");
        assert_eq!(samples[1].size, 10_000);
        assert_eq!(metas, [(OP_TEXT, 5), (OP_BINARY, 10_000)]);
        assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
        // The relayed bytes are unchanged by the tap.
        let got = decode(&d.out);
        assert_eq!(got[2].2, big);
    }
}

#[test]
fn no_tap_no_percent_no_copies_and_the_budget_caps_events() {
    let rig = Rig::new(4096);
    let input: Vec<u8> = (0..50)
        .flat_map(|_| frame(true, OP_TEXT, b"x", None))
        .collect();
    let (sink, rx, _) = crate::bridge::EventSink::bounded(4096);
    let budget = TapBudget::default();
    let tap = tap(&sink, &budget, 0, false);
    let mut p = Pump::new(Direction::Out, Instant::now(), 1);
    let (mut s, mut d) = (src(input.clone(), 4096, false), dst());
    let _ = rig.run_tap(&mut p, &mut s, &mut d, 1 << 20, None, Some(&tap));
    assert_eq!(rx.len(), 0);
    assert_eq!(p.messages, 50);

    for _ in 0..TAP_EVENTS_PER_SECOND {
        assert!(budget.take(Instant::now()));
    }
    assert!(!budget.take(Instant::now()));
    assert_eq!(budget.skipped.get(), 1);
}
