//! The data plane under abuse (issue 10): control-frame floods, peers that
//! stop reading, kernel buffers of relayed sockets, trickled handshakes.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::admin::*;
use support::*;
use tungstenite::Message;

#[test]
fn a_ping_flood_is_closed_with_1008() {
    let t = target(Behaviour::Echo);
    // The default budget: 100 control frames per second and direction.
    let r = Relay::start(&(base_config(1) + &endpoint("e", &t.url(), "")));
    let (mut ws, _) = connect(&r.url("e")).unwrap();
    for _ in 0..1000 {
        if ws.write(Message::Ping(vec![1u8; 8].into())).is_err() {
            break;
        }
    }
    let _ = ws.flush();
    assert_eq!(
        read_close(&mut ws),
        (1008, "control frame rate exceeded".to_string())
    );
    // The target was told too.
    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1008));

    // Pings within the budget pass (and their pongs come back).
    let (mut ws, _) = connect(&r.url("e")).unwrap();
    for _ in 0..50 {
        ws.send(Message::Ping(vec![2u8; 4].into())).unwrap();
    }
    ws.send(Message::Text("after".into())).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => break assert_eq!(t.as_str(), "after"),
            Message::Pong(_) => continue,
            m => panic!("unexpected {m:?}"),
        }
    }
}

/// `(rb, tb)` of the established TCP socket on local port `port` whose peer
/// is `peer_port`, from `ss -tmn` (what the kernel allots it).
fn kernel_buffers(port: u16, peer_port: u16) -> Option<(u64, u64)> {
    let out = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let ends = |a: &str, p: u16| a.rsplit(':').next() == Some(&p.to_string());
        if f.len() >= 4 && ends(f[2], port) && ends(f[3], peer_port) {
            let mem = lines.next()?;
            let num = |k: &str| -> Option<u64> {
                let at = mem.find(&format!(",{k}"))? + k.len() + 1;
                mem[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            };
            return Some((num("rb")?, num("tb")?));
        }
    }
    None
}

#[test]
fn a_peer_that_takes_nothing_is_closed_after_send_timeout_and_buffers_are_bounded() {
    let t = target(Behaviour::SendBig(16 << 20));
    let config = "[limits]\nsend_timeout_ms = 500\nsocket_send_buffer_bytes = 16384\nsocket_recv_buffer_bytes = 16384\n".to_string()
        + &endpoint("big", &t.url(), "limits = { max_message_size = 67108864 }");
    let a = start(&None, "stall", &config);
    let (mut ops, _) = connect(&format!("ws://{}/ops?token={}", a.relay.admin, a.token)).unwrap();
    next(&mut ops, "hello");
    // A client that never reads.
    let (ws, _) = connect(&a.relay.url("big")).unwrap();
    let local = ws.get_ref().local_addr().unwrap();
    socket2::SockRef::from(ws.get_ref())
        .set_recv_buffer_size(4096)
        .unwrap();
    // wsrelay's socket toward this client holds at most what it was given
    // (the kernel doubles the configured value).
    let (rb, tb) = kernel_buffers(a.relay.data.port(), local.port())
        .expect("ss shows wsrelay's socket toward the client");
    assert!(rb <= 2 * 16384 && tb <= 2 * 16384, "rb {rb} tb {tb}");
    let ended = next(&mut ops, "sessionEnded")["session"].clone();
    assert_eq!(ended["closeCode"], 1008, "{ended}");
    assert_eq!(ended["closeReason"], "send timeout", "{ended}");
    assert_eq!(ended["closedBy"], "wsrelay", "{ended}");
    // It ended because of the stall, not before: the client was sent bytes.
    assert!(ended["bytesOut"].as_u64().unwrap() > 0, "{ended}");
    drop(ws);
}

#[test]
fn a_trickled_handshake_is_refused_after_a_bounded_number_of_reads() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(1) + &endpoint("e", &t.url(), "")));
    let request = format!(
        "GET /ws/e HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let mut s = TcpStream::connect(r.data).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut s = s.try_clone().unwrap();
        let answered = answered.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            answered.store(true, Ordering::SeqCst);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    // One byte per segment, as the attack sends it (paced so that each
    // byte is its own read); stops as soon as wsrelay has answered.
    let mut sent = 0;
    for b in request.bytes() {
        if answered.load(Ordering::SeqCst) || s.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let answer = reader.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(
        sent < 200,
        "refused only after {sent} of {} bytes",
        request.len()
    );
}
