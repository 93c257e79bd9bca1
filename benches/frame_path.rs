//! The relay's frame path without sockets: parse each frame header, unmask +
//! remask (client → target) or pass through (target → client), and hand the
//! bytes to the destination, for messages of 64 B, 1 KiB, 16 KiB and 1 MiB.
//!
//!     cargo bench --bench frame_path
//!
//! Prints ns/message and GB/s per size and direction; a `baseline` line (a
//! plain memcpy of the same bytes through the same buffer size) gives the
//! scale for this machine.

use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use wsrelay::shard::frame::encode;
use wsrelay::shard::metrics::{Direction, ShardMetrics};
use wsrelay::shard::pool::BufPool;
use wsrelay::shard::relay::{Env, Pump};

const BUF: usize = 32 * 1024;

struct Src<'a> {
    data: &'a [u8],
    at: usize,
}

impl AsyncRead for Src<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.at == self.data.len() {
            return Poll::Pending;
        }
        let n = buf.len().min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

struct Sink(u64);

impl AsyncWrite for Sink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0 += black_box(buf).len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn frames(size: usize, count: usize, masked: bool) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(count * (size + 14));
    for _ in 0..count {
        encode(
            &mut out,
            true,
            0x2,
            &payload,
            masked.then_some([0x11, 0x22, 0x33, 0x44]),
        );
    }
    out
}

fn run(dir: Direction, size: usize) -> (f64, f64) {
    let from_client = dir.from_client();
    let count = ((64 << 20) / (size + 14)).clamp(16, 1_000_000);
    let input = frames(size, count, from_client);
    let pool = BufPool::new(BUF, 4);
    let metrics = ShardMetrics::new();
    let m = metrics.endpoint("bench");
    let env = Env {
        pool: &pool,
        metrics: &m,
        max_message_size: 64 << 20,
        max_messages_per_second: None,
        max_control_per_second: 100,
        tap: None,
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let mut pump = Pump::new(dir, Instant::now(), 7);
        let mut src = Src {
            data: &input,
            at: 0,
        };
        let mut sink = Sink(0);
        let t = Instant::now();
        let r = pump.poll(&mut cx, Pin::new(&mut src), Pin::new(&mut sink), &env);
        let el = t.elapsed();
        assert!(r.is_pending() && sink.0 == input.len() as u64 && pump.messages() == count as u64);
        best = best.min(el);
    }
    let ns = best.as_nanos() as f64 / count as f64;
    let gbs = input.len() as f64 / best.as_secs_f64() / 1e9;
    (ns, gbs)
}

fn baseline(size: usize) -> (f64, f64) {
    let count = ((64 << 20) / (size + 14)).clamp(16, 1_000_000);
    let input = frames(size, count, false);
    let mut buf = vec![0u8; BUF];
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for chunk in input.chunks(BUF) {
            buf[..chunk.len()].copy_from_slice(chunk);
            black_box(&buf);
        }
        best = best.min(t.elapsed());
    }
    (
        best.as_nanos() as f64 / count as f64,
        input.len() as f64 / best.as_secs_f64() / 1e9,
    )
}

fn main() {
    println!("frame_path: best of 5 runs over ~64 MiB per size, relay buffer {BUF} B");
    println!(
        "{:<10} {:>14} {:>10} {:>14} {:>10} {:>14} {:>10}",
        "size", "c->t ns/msg", "GB/s", "t->c ns/msg", "GB/s", "memcpy ns/msg", "GB/s"
    );
    for (label, size) in [
        ("64 B", 64),
        ("1 KiB", 1024),
        ("16 KiB", 16 * 1024),
        ("1 MiB", 1 << 20),
    ] {
        let (ni, gi) = run(Direction::In, size);
        let (no, go) = run(Direction::Out, size);
        let (nb, gb) = baseline(size);
        println!("{label:<10} {ni:>14.1} {gi:>10.2} {no:>14.1} {go:>10.2} {nb:>14.1} {gb:>10.2}");
        println!(
            "{{\"bench\":\"frame_path\",\"size\":{size},\"client_to_target_ns\":{ni:.1},\"client_to_target_gbps\":{gi:.3},\"target_to_client_ns\":{no:.1},\"target_to_client_gbps\":{go:.3},\"memcpy_ns\":{nb:.1}}}"
        );
    }
}
