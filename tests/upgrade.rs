//! SPEC 4.1: every row of the upgrade status table, with literal request
//! bytes or a real client.
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

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_bytes(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n").into_bytes()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn malformed_and_missing_upgrade() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(1) + &endpoint("echo", &t.url(), "")));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), "HTTP/1.1 400 "),
        (
            b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "HTTP/1.1 426 ",
        ),
        (
            String::from_utf8(upgrade_bytes("/ws/echo", ""))
                .unwrap()
                .replace("Version: 13", "Version: 12")
                .into_bytes(),
            "HTTP/1.1 400 ",
        ),
        (
            String::from_utf8(upgrade_bytes("/ws/echo", ""))
                .unwrap()
                .replace(KEY, "bad")
                .into_bytes(),
            "HTTP/1.1 400 ",
        ),
    ];
    for (req, want) in cases {
        let resp = raw(r.data, &req);
        assert!(
            resp.starts_with(want),
            "{:?} -> {:?}",
            String::from_utf8_lossy(&req),
            status_line(&resp)
        );
    }
    let resp = raw(r.data, b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        resp.contains("Upgrade: websocket"),
        "426 names the upgrade: {resp}"
    );
}

#[test]
fn headers_too_large_is_431() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(
        &(base_config(1) + "[limits]\nmax_header_bytes = 1024\n" + &endpoint("echo", &t.url(), "")),
    );
    let big = upgrade_bytes("/ws/echo", &format!("X-Pad: {}\r\n", "p".repeat(2000)));
    let resp = raw(r.data, &big);
    assert!(resp.starts_with("HTTP/1.1 431 "), "{}", status_line(&resp));
}

#[test]
fn slow_request_is_408_then_closed() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(
        &(base_config(1)
            + "[limits]\nhandshake_timeout_ms = 300\n"
            + &endpoint("echo", &t.url(), "")),
    );
    let mut s = TcpStream::connect(r.data).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n")
        .unwrap(); // never finished
    let start = Instant::now();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap(); // returns at EOF: the relay closed
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn unknown_endpoint_is_404_and_unknown_path_too() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(1) + &endpoint("echo", &t.url(), "")));
    assert_eq!(status_of(connect(&r.url("nope")).unwrap_err()), 404);
    assert!(raw(r.data, b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
}

#[test]
fn disabled_endpoint_and_foreign_origin_are_403() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + &endpoint("off", &t.url(), "enabled = false")
        + &endpoint(
            "strict",
            &t.url(),
            "allowed_origins = [\"https://good.example\"]",
        );
    let r = Relay::start(&cfg);
    assert_eq!(status_of(connect(&r.url("off")).unwrap_err()), 403);
    assert_eq!(
        status_of(connect(&r.url("strict")).unwrap_err()),
        403,
        "no Origin at all"
    );
    let resp = raw(
        r.data,
        &upgrade_bytes("/ws/strict", "Origin: https://evil.example\r\n"),
    );
    assert!(resp.starts_with("HTTP/1.1 403 "), "{resp}");
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(r.url("strict")).unwrap();
    req.headers_mut()
        .insert("Origin", "https://good.example".parse().unwrap());
    let (mut ws, _) = connect_req(req).unwrap();
    ws.send(tungstenite::Message::Text("hi".into())).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "hi");
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        seen.header("origin"),
        Some("https://good.example"),
        "Origin is passed on"
    );
}

#[test]
fn jwt_is_required_checked_and_stripped() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + &endpoint(
            "auth",
            &t.url(),
            "auth = { jwt_secret = \"s3cret\", audience = \"relay\", issuer = \"me\" }",
        );
    let r = Relay::start(&cfg);
    let good = hs256(
        "s3cret",
        serde_json::json!({"exp": unix_now() + 60, "aud": "relay", "iss": "me"}),
    );
    let refused = [
        String::new(),
        hs256(
            "wrong",
            serde_json::json!({"exp": unix_now() + 60, "aud": "relay", "iss": "me"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() - 120, "aud": "relay", "iss": "me"}),
        ), // expired past leeway
        hs256("s3cret", serde_json::json!({"aud": "relay", "iss": "me"})), // no exp
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 60, "aud": "other", "iss": "me"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 60, "aud": "relay", "iss": "you"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 600, "nbf": unix_now() + 300, "aud": "relay", "iss": "me"}),
        ),
        // A configured audience or issuer must be there, not only right.
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 60, "iss": "me"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 60, "aud": "relay"}),
        ),
        // Claims of the wrong type are refused, never skipped (CVE-2026-25537).
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 600, "nbf": (unix_now() + 300).to_string(), "aud": "relay", "iss": "me"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": "never", "aud": "relay", "iss": "me"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 60, "aud": 7, "iss": "me"}),
        ),
        hs256(
            "s3cret",
            serde_json::json!({"exp": unix_now() + 60, "aud": "relay", "iss": 7}),
        ),
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &serde_json::json!({"exp": unix_now() + 60, "aud": "relay", "iss": "me"}),
            &jsonwebtoken::EncodingKey::from_secret(b"s3cret").unwrap(),
        )
        .unwrap(), // algorithm pinned to HS256
    ];
    for (i, tok) in refused.iter().enumerate() {
        let url = format!("{}?token={tok}", r.url("auth"));
        match connect(&url) {
            Ok(_) => panic!("token {i} was accepted: {tok}"),
            Err(e) => assert_eq!(status_of(e), 401, "token {i}: {tok:?}"),
        }
    }
    // Query token: accepted, and removed before the target sees the query.
    let (mut ws, _) = connect(&format!("{}?a=1&token={good}&b=2", r.url("auth"))).unwrap();
    ws.send(tungstenite::Message::Text("x".into())).unwrap();
    ws.read().unwrap();
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(seen.uri, "/target?a=1&b=2");
    assert_eq!(seen.header("authorization"), None);
    // Header token.
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(r.url("auth")).unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {good}").parse().unwrap());
    let (_ws2, _) = connect_req(req).unwrap();
    let seen = t.seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        seen.header("authorization"),
        None,
        "the endpoint's token is not passed on"
    );
    drop(ws);
    assert!(
        !r.log_text().contains(&good),
        "the token never reaches the log"
    );
}

#[test]
fn per_ip_connect_rate_is_429_with_retry_after() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(2)
        + "[limits]\nconnects_per_ip_per_second = 3\n"
        + &endpoint("echo", &t.url(), "");
    let r = Relay::start(&cfg);
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..8 {
        let resp = raw(r.data, b"GET /healthz HTTP/1.1\r\n\r\n");
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "healthz is not rate limited"
        );
    }
    let mut keep = Vec::new();
    for _ in 0..6 {
        match connect(&r.url("echo")) {
            Ok(ws) => {
                ok += 1;
                keep.push(ws);
            }
            Err(e) => {
                let tungstenite::Error::Http(resp) = e else {
                    panic!("{e}")
                };
                assert_eq!(resp.status().as_u16(), 429);
                assert!(resp.headers().get("retry-after").is_some());
                limited += 1;
            }
        }
    }
    assert_eq!(
        (ok, limited),
        (3, 3),
        "a burst of the rate, then refusals, across both shards"
    );
}

#[test]
fn connection_limits_are_503_with_retry_after() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + "[limits]\nmax_connections = 3\n"
        + &endpoint("small", &t.url(), "limits = { max_connections = 1 }")
        + &endpoint("big", &t.url(), "");
    let r = Relay::start(&cfg);
    let a = connect(&r.url("small")).unwrap();
    let e = connect(&r.url("small")).unwrap_err();
    let tungstenite::Error::Http(resp) = e else {
        panic!()
    };
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let b = connect(&r.url("big")).unwrap();
    let c = connect(&r.url("big")).unwrap();
    assert_eq!(
        status_of(connect(&r.url("big")).unwrap_err()),
        503,
        "global limit of 3"
    );
    drop((a, b, c));
}

#[test]
fn target_refusal_is_502_and_silence_is_504() {
    let refusing = target(Behaviour::Refuse);
    let silent = target(Behaviour::Silent);
    let hole = blackhole();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = base_config(1)
        + "[limits]\nupstream_connect_timeout_ms = 500\n"
        + &endpoint("refuse", &refusing.url(), "")
        + &endpoint("closed", &format!("ws://{closed_port}/"), "")
        + &endpoint("silent", &silent.url(), "")
        + &endpoint("hole", &format!("ws://{}/", hole.addr), "");
    let r = Relay::start(&cfg);
    assert_eq!(
        status_of(connect(&r.url("refuse")).unwrap_err()),
        502,
        "upgrade refused"
    );
    assert_eq!(
        status_of(connect(&r.url("closed")).unwrap_err()),
        502,
        "connection refused"
    );
    let start = Instant::now();
    assert_eq!(
        status_of(connect(&r.url("silent")).unwrap_err()),
        504,
        "upgrade never answered"
    );
    assert_eq!(
        status_of(connect(&r.url("hole")).unwrap_err()),
        504,
        "TCP connect never answered"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn healthz_answers_ok() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(2) + &endpoint("echo", &t.url(), "")));
    let resp = raw(r.data, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        resp.starts_with("HTTP/1.1 200 ") && resp.ends_with("ok\n"),
        "{resp}"
    );
}

#[test]
fn rs256_public_key_auth_and_no_algorithm_confusion() {
    let public = include_str!("fixtures/rs256-public.pem");
    let private = include_str!("fixtures/rs256-private.pem");
    let t = target(Behaviour::Echo);
    let cfg = base_config(1)
        + &endpoint(
            "rs",
            &t.url(),
            &format!("auth = {{ jwt_public_key_pem = \"\"\"\n{public}\"\"\" }}"),
        );
    let r = Relay::start(&cfg);
    let claims = serde_json::json!({"exp": unix_now() + 60, "sub": "u1"});
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    let (mut ws, _) = connect(&format!("{}?token={good}", r.url("rs"))).unwrap();
    ws.send(tungstenite::Message::Text("ok".into())).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "ok");
    // The classic confusion: HS256 "signed" with the public key as the secret.
    let forged = hs256(public, claims);
    assert_eq!(
        status_of(connect(&format!("{}?token={forged}", r.url("rs"))).unwrap_err()),
        401
    );
}
