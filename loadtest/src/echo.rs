//! `wsrelay-loadtest echo`: a lean WebSocket echo target on glommio, so that
//! the target is never the bottleneck of a comparison. Text and binary frames
//! come back unmasked as they arrive (fragments stay fragments), pings get
//! pongs, a close is answered and ends the connection. Output is bounded: a
//! client that does not read stalls its own echo.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use wsrelay::shard::frame::{apply_mask, encode_header, parse_header, OP_CLOSE, OP_PING, OP_PONG};

const IN_BUF: usize = 64 * 1024;
const OUT_HIGH: usize = 256 * 1024;

/// Serves until the process ends; prints `echo listening on ADDR` first.
pub async fn serve(listen: SocketAddr) -> Result<(), String> {
    let l =
        TcpListener::bind(listen).map_err(|e| format!("echo: cannot listen on {listen}: {e}"))?;
    println!(
        "echo listening on {}",
        l.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        match l.accept().await {
            Ok(s) => {
                glommio::spawn_local(conn(s)).detach();
            }
            Err(e) => eprintln!("echo: accept: {e}"),
        };
    }
}

async fn conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let Ok(early) = crate::ws::accept(&mut s).await else {
        return;
    };
    let mut e = Echo {
        inbuf: vec![0u8; IN_BUF],
        filled: 0,
        parsed: 0,
        out: Vec::with_capacity(16 * 1024),
        out_pos: 0,
        frame_left: 0,
        mask: [0; 4],
        phase: 0,
        closed: false,
    };
    e.inbuf[..early.len()].copy_from_slice(&early);
    e.filled = early.len();
    futures_lite::future::poll_fn(|cx| e.poll(cx, &mut s)).await;
}

struct Echo {
    inbuf: Vec<u8>,
    filled: usize,
    parsed: usize,
    out: Vec<u8>,
    out_pos: usize,
    frame_left: u64,
    mask: [u8; 4],
    phase: usize,
    closed: bool,
}

impl Echo {
    fn process(&mut self) {
        loop {
            if self.frame_left > 0 {
                let k = (self.filled - self.parsed).min(self.frame_left as usize);
                if k == 0 {
                    return;
                }
                let at = self.out.len();
                self.out
                    .extend_from_slice(&self.inbuf[self.parsed..self.parsed + k]);
                apply_mask(&mut self.out[at..], self.mask, self.phase);
                self.phase += k;
                self.parsed += k;
                self.frame_left -= k as u64;
                continue;
            }
            let h = match parse_header(&self.inbuf[self.parsed..self.filled]) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            };
            if h.is_control() {
                let total = h.header_len + h.len as usize;
                if self.filled - self.parsed < total {
                    return;
                }
                let mut p = [0u8; 125];
                let p = &mut p[..h.len as usize];
                p.copy_from_slice(&self.inbuf[self.parsed + h.header_len..self.parsed + total]);
                apply_mask(p, h.mask.unwrap_or([0; 4]), 0);
                self.parsed += total;
                match h.opcode {
                    OP_CLOSE => {
                        encode_header(&mut self.out, true, OP_CLOSE, p.len(), None);
                        self.out.extend_from_slice(p);
                        self.closed = true;
                        return;
                    }
                    OP_PING => {
                        encode_header(&mut self.out, true, OP_PONG, p.len(), None);
                        self.out.extend_from_slice(p);
                    }
                    _ => {}
                }
                continue;
            }
            encode_header(&mut self.out, h.fin, h.opcode, h.len as usize, None);
            self.parsed += h.header_len;
            self.frame_left = h.len;
            self.mask = h.mask.unwrap_or([0; 4]);
            self.phase = 0;
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, s: &mut TcpStream) -> Poll<()> {
        loop {
            while self.out_pos < self.out.len() {
                match Pin::new(&mut *s).poll_write(cx, &self.out[self.out_pos..]) {
                    Poll::Ready(Ok(n)) if n > 0 => self.out_pos += n,
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
                if self.closed {
                    return Poll::Ready(());
                }
            }
            if self.closed || self.out.len() >= OUT_HIGH {
                return Poll::Pending; // wait for the client to read
            }
            if self.parsed == self.filled {
                self.parsed = 0;
                self.filled = 0;
            } else if self.filled == self.inbuf.len() {
                self.inbuf.copy_within(self.parsed..self.filled, 0);
                self.filled -= self.parsed;
                self.parsed = 0;
            }
            match Pin::new(&mut *s).poll_read(cx, &mut self.inbuf[self.filled..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.filled += n;
                    self.process();
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
