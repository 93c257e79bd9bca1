//! Property tests of the relay pump (issue 11): random messages, fragments,
//! interleaved control frames and a close, read in random short chunks and
//! written through a destination that takes random short writes. Whatever
//! the sequence, the pump never panics, never holds more than one buffer of
//! bytes it has read but not written, delivers every message unchanged and
//! in order, remasks the client → target leg, and sends only valid close
//! codes.

use std::time::Instant;

use proptest::prelude::*;

use super::tests::{dst, Dst, Rig, Src};
use super::*;
use crate::shard::frame::{check_close_payload, parse_header, OP_BINARY, OP_TEXT};
use crate::shard::metrics::Direction;

/// The pool's buffer size in these tests: small, so that messages span
/// many buffers and every boundary case is hit.
const BUF: usize = 1024;

/// One message: its opcode, payload, how it is cut into fragments, and the
/// control frames slipped in between its fragments.
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    payload: Vec<u8>,
    cuts: Vec<usize>,
    pings: Vec<(bool, Vec<u8>)>,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
        prop::collection::vec(0usize..3000, 0..4),
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..=125)),
            0..3,
        ),
    )
        .prop_map(|(text, payload, mut cuts, pings)| {
            // Text payloads must be UTF-8 for a peer; the pump does not check
            // it, but keep the input honest.
            let payload = if text {
                String::from_utf8_lossy(&payload).into_owned().into_bytes()
            } else {
                payload
            };
            cuts.retain(|c| *c < payload.len());
            cuts.sort_unstable();
            cuts.dedup();
            Msg {
                text,
                payload,
                cuts,
                pings,
            }
        })
}

fn encode(out: &mut Vec<u8>, fin: bool, op: u8, p: &[u8], masked: bool, seed: &mut u32) {
    let mask = masked.then(|| {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        seed.to_be_bytes()
    });
    frame::encode(out, fin, op, p, mask);
}

/// Where `m`'s fragments start and end (`n + 1` bounds for `n` fragments;
/// an empty message is one empty frame).
fn bounds(m: &Msg) -> Vec<usize> {
    let mut b = vec![0];
    b.extend(&m.cuts);
    b.push(m.payload.len());
    b.dedup();
    if b.len() == 1 {
        b.push(0);
    }
    b
}

/// The wire bytes of `msgs` (and a close, if any) as a peer sends them.
fn wire(msgs: &[Msg], close: Option<(u16, &str)>, masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seed = 7u32;
    for m in msgs {
        let bounds = bounds(m);
        let pieces = bounds.len() - 1;
        for i in 0..pieces {
            let op = if i > 0 {
                OP_CONT
            } else if m.text {
                OP_TEXT
            } else {
                OP_BINARY
            };
            let p = &m.payload[bounds[i]..bounds[i + 1]];
            encode(&mut out, i + 1 == pieces, op, p, masked, &mut seed);
            if let Some((pong, body)) = m.pings.get(i) {
                let op = if *pong { OP_PONG } else { OP_PING };
                encode(&mut out, true, op, body, masked, &mut seed);
            }
        }
    }
    if let Some((code, reason)) = close {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        encode(&mut out, true, OP_CLOSE, &p, masked, &mut seed);
    }
    out
}

/// What came out: data messages (opcode, payload), control frames, and
/// whether every frame was masked (or none was).
struct Out {
    messages: Vec<(u8, Vec<u8>)>,
    controls: Vec<(u8, Vec<u8>)>,
    masks: Vec<bool>,
}

fn read_out(mut b: &[u8]) -> Out {
    let mut o = Out {
        messages: Vec::new(),
        controls: Vec::new(),
        masks: Vec::new(),
    };
    let mut open: Option<(u8, Vec<u8>)> = None;
    while !b.is_empty() {
        let h = parse_header(b)
            .unwrap()
            .expect("only whole frames are written");
        let end = h.header_len + h.len as usize;
        let mut p = b[h.header_len..end].to_vec();
        if let Some(k) = h.mask {
            frame::apply_mask(&mut p, k, 0);
        }
        o.masks.push(h.mask.is_some());
        if h.is_control() {
            o.controls.push((h.opcode, p));
        } else {
            let m = open.get_or_insert((h.opcode, Vec::new()));
            m.1.extend_from_slice(&p);
            if h.fin {
                o.messages.extend(open.take());
            }
        }
        b = &b[end..];
    }
    assert!(open.is_none(), "a message was left unfinished");
    o
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_pump_delivers_every_message_unchanged(
        msgs in prop::collection::vec(msg(), 0..12),
        close in prop::option::of((prop::sample::select(vec![1000u16, 1001, 1008, 1011, 3000, 4001, 4999]), "[a-z ]{0,40}")),
        reads in prop::collection::vec(1usize..700, 1..6),
        writes in prop::collection::vec(0usize..700, 1..6),
        from_client in any::<bool>(),
    ) {
        // A destination that never takes anything would stall forever.
        prop_assume!(writes.iter().any(|w| *w > 0));
        let input = wire(&msgs, close.as_ref().map(|(c, r)| (*c, r.as_str())), from_client);
        let rig = Rig::new(BUF); // no rate limits
        let dir = if from_client { Direction::In } else { Direction::Out };
        let mut pump = Pump::new(dir, Instant::now(), 42);
        let mut src = Src { data: input.clone(), at: 0, chunks: reads, turn: 0, eof: false };
        let mut dst = Dst { sizes: writes, ..dst() };
        let mut idle = 0;
        for _ in 0..100_000 {
            let before = (src.at, dst.out.len());
            let r = rig.run(&mut pump, &mut src, &mut dst, 1 << 20, None);
            // Bytes read but not yet written: at most one buffer.
            prop_assert!(src.at - dst.out.len() <= BUF, "{} read, {} written", src.at, dst.out.len());
            if r.is_ready() {
                break;
            }
            idle = if (src.at, dst.out.len()) == before { idle + 1 } else { 0 };
            if idle > 2 * dst.sizes.len() + 2 {
                break; // nothing moves any more: everything was delivered
            }
        }
        prop_assert!(pump.fault.is_none(), "{:?}", pump.fault);
        prop_assert_eq!(src.at, input.len(), "everything was read");
        let out = read_out(&dst.out);
        // Unchanged and in order.
        let want: Vec<(u8, Vec<u8>)> = msgs
            .iter()
            .map(|m| (if m.text { OP_TEXT } else { OP_BINARY }, m.payload.clone()))
            .collect();
        prop_assert_eq!(&out.messages, &want);
        // Control frames relayed as sent, the close last.
        let mut want_ctrl: Vec<(u8, Vec<u8>)> = msgs
            .iter()
            .flat_map(|m| {
                let frames = bounds(m).len() - 1;
                m.pings
                    .iter()
                    .take(frames)
                    .map(|(pong, b)| (if *pong { OP_PONG } else { OP_PING }, b.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some((code, reason)) = &close {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason.as_bytes());
            want_ctrl.push((OP_CLOSE, p));
            prop_assert_eq!((pump.source, pump.sink), (Source::Closed, Sink::Closed));
            prop_assert_eq!(pump.peer_close.as_deref().map(|c| c.0), Some(*code));
        }
        prop_assert_eq!(&out.controls, &want_ctrl);
        for (op, p) in &out.controls {
            if *op == OP_CLOSE {
                prop_assert!(check_close_payload(p).is_ok(), "invalid close {:?}", p);
            }
        }
        // Masked toward the target, unmasked toward the client.
        prop_assert!(out.masks.iter().all(|m| *m == from_client));
        prop_assert_eq!(pump.messages, msgs.len() as u64);
    }
}
