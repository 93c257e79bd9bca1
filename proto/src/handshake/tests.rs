use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(extra: &str) -> String {
    format!(
        "GET /ws/echo?a=1&token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

#[test]
fn a_valid_upgrade() {
    let raw = upgrade("Sec-WebSocket-Protocol: chat, superchat\r\nOrigin: https://a.example\r\nCookie: c=1\r\nSec-WebSocket-Extensions: permessage-deflate\r\nAuthorization: Bearer t0k\r\n");
    let r = parse_request(raw.as_bytes(), 8192).unwrap().unwrap();
    assert_eq!(r.route, Route::Endpoint("echo".into()));
    assert_eq!(r.key, KEY);
    assert_eq!(r.protocols.as_deref(), Some("chat, superchat"));
    assert_eq!(r.origin.as_deref(), Some("https://a.example"));
    assert_eq!(r.consumed, raw.len());
    let names: Vec<_> = r.passthrough.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Cookie"],
        "extensions offer, auth and hop-by-hop headers are not passed"
    );
    assert_eq!(r.token(), Some("t0k"), "the header wins over ?token=");
    assert_eq!(r.query_without_token().as_deref(), Some("a=1"));
    assert!(r.origin_allowed(&["https://A.example".into()]));
    assert!(!r.origin_allowed(&["https://b.example".into()]));
    assert!(r.origin_allowed(&[]));
}

#[test]
fn incomplete_then_too_large() {
    let raw = upgrade("");
    assert!(parse_request(&raw.as_bytes()[..40], 8192)
        .unwrap()
        .is_none());
    let e = parse_request(&raw.as_bytes()[..40], 40).unwrap_err();
    assert_eq!((e.status, e.reason), (431, Reject::HeadersTooLarge));
    let big = upgrade(&format!("X-Big: {}\r\n", "a".repeat(9000)));
    assert_eq!(parse_request(big.as_bytes(), 8192).unwrap_err().status, 431);
    let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        parse_request(upgrade(&many).as_bytes(), 8192)
            .unwrap_err()
            .status,
        431
    );
}

#[test]
fn each_refusal() {
    let cases: Vec<(String, u16)> = vec![
        ("GARBAGE\r\n\r\n".into(), 400),
        ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".into(), 404),
        ("GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n".into(), 426),
        (
            upgrade("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            400,
        ),
        (upgrade("").replace(KEY, "short"), 400),
        (
            upgrade("").replace("keep-alive, Upgrade", "keep-alive"),
            400,
        ),
        (upgrade("").replace("GET ", "POST "), 400),
        (upgrade("").replace("/ws/echo", "/ws/BAD_ID"), 404),
    ];
    for (raw, status) in cases {
        let e = parse_request(raw.as_bytes(), 8192).unwrap_err();
        assert_eq!(e.status, status, "{raw:?}");
    }
}

#[test]
fn healthz() {
    let r = parse_request(b"GET /healthz HTTP/1.1\r\n\r\n", 8192)
        .unwrap()
        .unwrap();
    assert_eq!(r.route, Route::Healthz);
}

#[test]
fn token_from_query_only() {
    let raw = upgrade("");
    let r = parse_request(raw.as_bytes(), 8192).unwrap().unwrap();
    assert_eq!(r.token(), Some("abc"));
}

#[test]
fn responses() {
    let r = String::from_utf8(simple_response(503, "full", Some(2))).unwrap();
    assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    assert!(r.contains("Retry-After: 2\r\n"));
    assert!(r.ends_with("\r\n\r\nfull\n"));
    let ok = String::from_utf8(switching_protocols(KEY, Some("chat"))).unwrap();
    // RFC 6455 section 1.3's example.
    assert!(ok.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(ok.contains("Sec-WebSocket-Protocol: chat\r\n"));
}

#[test]
fn bare_lf_line_endings_are_refused() {
    let raw = upgrade("").replace("\r\n", "\n");
    let e = parse_request(raw.as_bytes(), 8192).unwrap_err();
    assert_eq!((e.status, e.reason), (400, Reject::BadRequest));
    // One bare LF among CRLFs is enough.
    let raw = upgrade("X-A: 1\nX-B: 2\r\n");
    let e = parse_request(raw.as_bytes(), 8192).unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn headers_that_must_be_unique_are_refused_twice() {
    for dup in [
        "Host: y\r\n",
        &format!("Sec-WebSocket-Key: {KEY}\r\n"),
        "Sec-WebSocket-Version: 13\r\n",
        "upgrade: websocket\r\n",
    ] {
        let e = parse_request(upgrade(dup).as_bytes(), 8192).unwrap_err();
        assert_eq!((e.status, e.reason), (400, Reject::BadRequest), "{dup}");
    }
}

#[test]
fn headers_named_in_connection_are_not_passed_on() {
    let raw = format!(
        "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Secret-Hop, keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nX-Secret-Hop: 1\r\nX-Kept: 2\r\n\r\n"
    );
    let r = parse_request(raw.as_bytes(), 8192).unwrap().unwrap();
    let names: Vec<_> = r.passthrough.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["X-Kept"]);
}

#[test]
fn the_end_of_headers_is_found_in_new_bytes_only() {
    let raw = upgrade("");
    let b = raw.as_bytes();
    // Byte by byte, only the last byte completes the block.
    let complete: Vec<usize> = (1..=b.len())
        .filter(|&n| may_be_complete(&b[..n], n - 1))
        .collect();
    assert_eq!(complete, [b.len()]);
    assert!(may_be_complete(b"GET / HTTP/1.1\n\n", 15));
}
