//! SPEC 4.2: relaying, closing and the misbehaving targets.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

fn echo_relay(shards: usize, extra: &str) -> (Target, Relay) {
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(shards) + &endpoint("echo", &t.url(), extra)));
    (t, r)
}

#[test]
fn messages_arrive_unchanged_in_order() {
    let (_t, r) = echo_relay(2, "");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    let mut sent = Vec::new();
    for i in 0..200usize {
        let m = if i % 3 == 0 {
            Message::Binary(
                (0..(i * 37) % 70_000)
                    .map(|b| b as u8)
                    .collect::<Vec<u8>>()
                    .into(),
            )
        } else {
            Message::Text(format!("message {i} ✓ {}", "x".repeat(i * 13)).into())
        };
        ws.send(m.clone()).unwrap();
        sent.push(m);
    }
    for want in sent {
        assert_eq!(ws.read().unwrap(), want);
    }
    ws.close(None).unwrap();
}

#[test]
fn fragmented_messages_with_interleaved_pings() {
    let (_t, r) = echo_relay(1, "");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    ws.write(Message::Frame(Frame::message(
        b"hel".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.write(Message::Ping(b"p1".to_vec().into())).unwrap();
    ws.write(Message::Frame(Frame::message(
        b"lo ".to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        b"world".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    ws.flush().unwrap();
    // The target's pong for p1 comes back through the relay, then the echo.
    let mut got = Vec::new();
    while got.len() < 2 {
        match ws.read().unwrap() {
            Message::Pong(p) => got.push(format!("pong {}", String::from_utf8_lossy(&p))),
            Message::Text(t) => got.push(format!("text {t}")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, ["pong p1", "text hello world"]);
}

#[test]
fn upstream_request_carries_host_query_protocol_and_forwarding_headers() {
    let t = target_with_protocol(Behaviour::Echo, Some("v2"));
    let r = Relay::start(
        &(base_config(1) + &endpoint("echo", &format!("ws://{}/target?fixed=1", t.addr), "")),
    );
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{}?q=7",
        r.url("echo")
    ))
    .unwrap();
    let h = req.headers_mut();
    h.insert("Sec-WebSocket-Protocol", "v1, v2".parse().unwrap());
    h.insert(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    h.insert("X-Forwarded-For", "203.0.113.7".parse().unwrap());
    h.insert("Cookie", "session=abc".parse().unwrap());
    let (_ws, resp) = connect_req(req).unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v2",
        "the target's choice reaches the client"
    );
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(seen.uri, "/target?fixed=1&q=7");
    assert_eq!(seen.header("host"), Some(t.addr.to_string().as_str()));
    assert_eq!(seen.header("sec-websocket-protocol"), Some("v1, v2"));
    assert_eq!(
        seen.header("sec-websocket-extensions"),
        None,
        "no compression offer upstream"
    );
    // The client is not a trusted proxy (none are configured): its
    // X-Forwarded-For is replaced, not extended (tests/balancer.rs has the
    // trusted case).
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("cookie"), Some("session=abc"));
    let rid = seen.header("x-request-id").unwrap();
    assert!(
        uuid::Uuid::parse_str(rid).is_ok(),
        "X-Request-Id is the session id: {rid}"
    );
}

#[test]
fn client_close_is_relayed_with_code_and_reason_and_answered() {
    let (t, r) = echo_relay(1, "");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    ws.send(Message::Text("a".into())).unwrap();
    ws.read().unwrap();
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::from(4321),
        reason: "client done".into(),
    }))
    .unwrap();
    // The target got the client's own code; the client gets the target's answer.
    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(4321));
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                assert_eq!(
                    f.map(|f| u16::from(f.code)),
                    Some(4321),
                    "tungstenite echoes the code"
                );
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn target_close_reaches_the_client() {
    let t = target(Behaviour::CloseAfterFirst);
    let r = Relay::start(&(base_config(1) + &endpoint("c", &t.url(), "")));
    let (mut ws, _) = connect(&r.url("c")).unwrap();
    ws.send(Message::Text("hi".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hi".into()));
    assert_eq!(read_close(&mut ws), (4001, "target says bye".into()));
}

#[test]
fn target_dying_without_close_gives_1014() {
    // A raw client: tungstenite reports 1014 (IANA "bad gateway") as a protocol error.
    let t = target(Behaviour::DieAfterFirst);
    let r = Relay::start(&(base_config(1) + &endpoint("d", &t.url(), "")));
    let mut s = raw_client(r.data, "/ws/d");
    s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);
    let mut close = [0u8; 4];
    s.read_exact(&mut close).unwrap();
    assert_eq!(close[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1014);
}

#[test]
fn client_dying_without_close_gives_the_target_1001() {
    let (t, r) = echo_relay(1, "");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    ws.send(Message::Text("hi".into())).unwrap();
    ws.read().unwrap();
    ws.get_ref().shutdown(std::net::Shutdown::Both).unwrap();
    drop(ws);
    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1001));
}

#[test]
fn oversized_messages_close_both_legs_with_1009() {
    // From the client.
    let (t, r) = echo_relay(1, "limits = { max_message_size = 4096 }");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    ws.send(Message::Binary(vec![1u8; 4096].into())).unwrap();
    assert_eq!(ws.read().unwrap().len(), 4096, "exactly the limit passes");
    ws.send(Message::Binary(vec![1u8; 5000].into())).unwrap();
    assert_eq!(read_close(&mut ws).0, 1009);
    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1009));
    // From the target.
    let big = target(Behaviour::SendBig(10_000));
    let r2 = Relay::start(
        &(base_config(1) + &endpoint("big", &big.url(), "limits = { max_message_size = 4096 }")),
    );
    let (mut ws, _) = connect(&r2.url("big")).unwrap();
    assert_eq!(read_close(&mut ws).0, 1009);
    assert_eq!(big.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1009));
}

#[test]
fn idle_sessions_close_with_1001() {
    let (t, r) = echo_relay(1, "limits = { timeout_ms = 1000 }");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    let start = Instant::now();
    let (code, reason) = read_close(&mut ws);
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1001));
}

#[test]
fn message_rate_limit_closes_with_1008() {
    let (_t, r) = echo_relay(1, "limits = { max_messages_per_second = 5 }");
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    for i in 0..10 {
        if ws.send(Message::Text(format!("{i}").into())).is_err() {
            break;
        }
    }
    assert_eq!(read_close(&mut ws).0, 1008);
}

/// A raw client: writes masked frames by hand and never answers pings.
fn raw_client(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[test]
fn heartbeat_pings_and_reaps_a_silent_client() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + "[heartbeat]\nping_interval_ms = 200\npong_timeout_ms = 100\nmax_missed_pongs = 2\n"
        + &endpoint("echo", &t.url(), "");
    let r = Relay::start(&cfg);
    let mut s = raw_client(r.data, "/ws/echo");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(n >= 2 && buf[0] == 0x89, "a ping arrives: {:?}", &buf[..n]);
    // Never answer: after two missed pongs the target is told the client went away.
    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1001));
}

#[test]
fn heartbeat_pong_keeps_the_session_and_is_not_relayed() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + "[heartbeat]\nping_interval_ms = 200\npong_timeout_ms = 150\nmax_missed_pongs = 1\n"
        + &endpoint("echo", &t.url(), "");
    let r = Relay::start(&cfg);
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    // tungstenite answers pings while reading; three rounds of ping/pong.
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        match ws.read() {
            Ok(Message::Ping(_)) => ws.flush().unwrap(),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("session was dropped: {e}"),
        }
    }
    ws.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ws.send(Message::Text("still here".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("still here".into()));
    assert!(t.closes.try_recv().is_err(), "the target saw no close");
}

#[test]
fn a_target_that_never_reads_stalls_the_client_without_growing_memory() {
    let t = target(Behaviour::NeverRead);
    let r = Relay::start(
        &(base_config(1) + &endpoint("stall", &t.url(), "limits = { max_message_size = 1048576 }")),
    );
    let (ws, _) = connect(&r.url("stall")).unwrap();
    let mut s = ws.into_inner();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let rss_before = rss_kib(r.child.id());
    // Write masked 64 KiB frames until the relay stops taking bytes.
    let payload = vec![0u8; 65536];
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&(65536u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&payload);
    let mut written = 0usize;
    loop {
        match s.write(&frame) {
            Ok(n) => written += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            written < 512 << 20,
            "the relay kept accepting: no backpressure"
        );
    }
    let rss_after = rss_kib(r.child.id());
    // What was accepted sits in kernel socket buffers plus one relay buffer.
    assert!(
        rss_after < rss_before + 2048,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(written < 64 << 20, "accepted {written} bytes");
}

#[test]
fn wss_targets_verify_the_certificate() {
    let (addr, ca_pem) = tls_echo_target();
    let dir = TempDir::new();
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let url = format!("wss://localhost:{}/", addr.port());
    // Trusted through upstream_ca_file: relays.
    let cfg = base_config(1).replace(
        "[server]\n",
        &format!("[server]\nupstream_ca_file = \"{}\"\n", ca.display()),
    ) + &endpoint("tls", &url, "");
    let r = Relay::start(&cfg);
    let (mut ws, _) = connect(&r.url("tls")).unwrap();
    for i in 0..20 {
        let m = Message::Binary(vec![i as u8; 1000 * i].into());
        ws.send(m.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), m);
    }
    // Not trusted (webpki roots only): the upgrade fails with 502.
    let r2 = Relay::start(&(base_config(1) + &endpoint("tls", &url, "")));
    assert_eq!(status_of(connect(&r2.url("tls")).unwrap_err()), 502);
}
