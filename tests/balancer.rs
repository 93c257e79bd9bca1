//! Behind a balancer (issue 14): the PROXY protocol (v1 text, v2 binary)
//! on the data listener gives the real client's address — in sessions,
//! `X-Forwarded-For` and the per-IP rate limit — and malformed, forged or
//! missing headers are refused; `server.trusted_proxies` decides whose
//! `X-Forwarded-For`/`-Proto` count.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::admin::*;
use support::*;
use tungstenite::Message;

/// A v2 header: PROXY command, TCP over `family` (0x11 IPv4, 0x21 IPv6).
fn v2(family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.push(0x21);
    b.push(family);
    b.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    b.extend_from_slice(addresses);
    b
}

/// `header` (in `parts` writes, a pause between), then a WebSocket upgrade
/// to `id` on the same connection.
fn via_proxy(r: &Relay, id: &str, header: &[u8], parts: usize) -> Result<Ws, u16> {
    let mut s = TcpStream::connect(r.data).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let step = header.len().div_ceil(parts.max(1));
    for chunk in header.chunks(step.max(1)) {
        s.write_all(chunk).unwrap();
        s.flush().unwrap();
        if parts > 1 {
            std::thread::sleep(Duration::from_millis(30)); // the balancer is slow, on purpose
        }
    }
    let req = tungstenite::client::IntoClientRequest::into_client_request(r.url(id)).unwrap();
    match tungstenite::client(req, s) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(resp.status().as_u16())
        }
        Err(_) => Err(0), // closed without an HTTP answer
    }
}

fn echo(ws: &mut Ws) {
    ws.send(Message::Text("hi".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hi".into()));
}

/// The active sessions' client addresses, sorted.
fn session_clients(a: &Admin, n: usize) -> Vec<String> {
    eventually("the sessions listed", || {
        let list = a.req("GET", "/api/sessions", None);
        let mut v: Vec<String> = list.body["items"]
            .as_array()?
            .iter()
            .filter_map(|s| s["clientAddr"].as_str().map(str::to_string))
            .collect();
        v.sort();
        (v.len() == n).then_some(v)
    })
}

#[test]
fn proxy_headers_give_the_real_client_everywhere() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(2).replace("[server]\n", "[server]\nproxy_protocol = true\n")
        + "\n[limits]\nconnects_per_ip_per_second = 1\n"
        + &endpoint("echo", &t.url(), "");
    let a = start_config(&None, "proxy", &cfg);
    let r = &a.relay;

    // v1, in three pieces.
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 8080\r\n";
    let mut one = via_proxy(r, "echo", v1, 3).expect("v1 accepted");
    echo(&mut one);
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.7"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    // v2 over IPv6.
    let mut addrs = Vec::new();
    addrs.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    addrs.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    addrs.extend_from_slice(&4000u16.to_be_bytes());
    addrs.extend_from_slice(&443u16.to_be_bytes());
    let mut two = via_proxy(r, "echo", &v2(0x21, &addrs), 1).expect("v2 accepted");
    echo(&mut two);
    assert_eq!(
        t.seen
            .recv_timeout(IO_TIMEOUT)
            .unwrap()
            .header("x-forwarded-for"),
        Some("2001:db8::7")
    );
    assert_eq!(
        session_clients(&a, 2),
        ["203.0.113.7:5555", "[2001:db8::7]:4000"]
    );
    // The per-IP limit counts the real clients: a second connect from
    // 203.0.113.7 within the second is limited, one from elsewhere is not.
    assert_eq!(via_proxy(r, "echo", v1, 1).err(), Some(429));
    let mut other = via_proxy(
        r,
        "echo",
        b"PROXY TCP4 198.51.100.1 127.0.0.1 1 8080\r\n",
        1,
    )
    .expect("another client");
    echo(&mut other);

    // The balancer's own health check: v2 LOCAL, then /healthz.
    let mut s = TcpStream::connect(r.data).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    s.write_all(&local).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // No header, a malformed one, a forged one, an oversized one: closed
    // without an answer, each counted.
    let refused: [&[u8]; 4] = [
        b"",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 notaport 8080\r\n",
        b"PROXY TCP4 1.2.3.4\r\n",
        &[b"PROXY TCP4 ".as_slice(), &[b'9'; 200], b"\r\n"].concat(),
    ];
    for h in refused {
        assert_eq!(
            via_proxy(r, "echo", h, 1).err(),
            Some(0),
            "{:?}",
            String::from_utf8_lossy(h)
        );
    }
    eventually("the refusals counted", || {
        call(r.admin, "GET", "/metrics", None, None)
            .text
            .contains("wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"proxy_header\"} 4")
            .then_some(())
    });
}

#[test]
fn only_trusted_proxies_may_say_who_the_client_is() {
    let t = target(Behaviour::Echo);
    // 127.0.0.1 (the test) is a trusted proxy.
    let trusted = base_config(1).replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n",
    ) + &endpoint("echo", &t.url(), "");
    let a = start_config(&None, "trusted", &trusted);
    let xff = [
        ("X-Forwarded-For", "6.6.6.6, 198.51.100.4, 10.1.2.3"),
        ("X-Forwarded-Proto", "https"),
    ];
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(a.relay.url("echo")).unwrap();
    for (k, v) in xff {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    let (mut ws, _) = connect_req(req).unwrap();
    echo(&mut ws);
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("6.6.6.6, 198.51.100.4, 10.1.2.3, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    // The rightmost address that is not a trusted proxy; the forged
    // leftmost one is not believed.
    assert_eq!(session_clients(&a, 1), ["198.51.100.4:0"]);
    drop(ws);

    // Not trusted: the same headers are replaced.
    let t2 = target(Behaviour::Echo);
    let untrusted = base_config(1).replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    ) + &endpoint("echo", &t2.url(), "");
    let b = start_config(&None, "untrusted", &untrusted);
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(b.relay.url("echo")).unwrap();
    for (k, v) in xff {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    let (mut ws, _) = connect_req(req).unwrap();
    echo(&mut ws);
    let seen = t2.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let clients = session_clients(&b, 1);
    assert!(clients[0].starts_with("127.0.0.1:"), "{clients:?}");
}

/// A connection that never completes its PROXY header is closed at
/// `handshake_timeout_ms`, and counted.
#[test]
fn a_proxy_header_that_never_completes_times_out() {
    let cfg = base_config(1).replace(
        "[server]\n",
        "[limits]\nhandshake_timeout_ms = 300\n\n[server]\nproxy_protocol = true\n",
    );
    let r = Relay::start(&cfg);
    for partial in [
        &b""[..],
        b"PROXY TCP4 203.0.113.7 ",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0",
    ] {
        let mut s = TcpStream::connect(r.data).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(partial).unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without an answer");
        assert!(
            started.elapsed() < IO_TIMEOUT,
            "closed by the relay, not the test"
        );
    }
    eventually("the timeouts counted", || {
        call(r.admin, "GET", "/metrics", None, None)
            .text
            .contains(
                "wsrelay_handshake_rejections_total{endpoint=\"\",reason=\"handshake_timeout\"} 3",
            )
            .then_some(())
    });
}
