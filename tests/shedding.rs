//! Load shedding on resident memory (`limits.max_memory_bytes`, issue 13):
//! above 90 % of the ceiling new upgrades get 503 `memory` with
//! `Retry-After`, `/healthz` says `degraded` (503 on the data port too) and
//! the metrics show it; below 80 % upgrades are admitted again.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use support::*;

/// The relay's resident size in bytes, as it reports it.
fn resident(r: &Relay) -> u64 {
    rss_kib(r.child.id()) * 1024
}

/// The value of metric `name` (unlabelled).
fn metric(r: &Relay, name: &str) -> u64 {
    let m = admin::call(r.admin, "GET", "/metrics", None, None).text;
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .parse()
        .unwrap()
}

/// A ceiling just above the idle footprint: sessions are opened until new
/// ones are shed, then closed until they are admitted again.
#[test]
fn upgrades_are_shed_above_90_percent_of_the_memory_ceiling_and_resume_below_80() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1) + &endpoint("echo", &t.url(), "limits = { max_connections = 100000 }");
    // The idle footprint of this configuration.
    let idle = {
        let probe = Relay::start(&cfg);
        one_echo(&probe);
        resident(&probe)
    };
    // 80 % of the ceiling is 5 MiB above the idle footprint (room for the
    // relay buffers the shard keeps for reuse once traffic has been seen);
    // 90 % is some 9 MiB above it.
    let limit = (idle + (5 << 20)) * 10 / 8;
    let r = Relay::start(&cfg.replace(
        "[server]\n",
        &format!("[limits]\nmax_memory_bytes = {limit}\n[server]\n"),
    ));
    one_echo(&r);
    assert_eq!(metric(&r, "wsrelay_memory_limit_bytes"), limit);
    assert_eq!(metric(&r, "wsrelay_memory_shedding"), 0);

    // Open sessions (each relaying one message) until one is refused.
    let mut open = Vec::new();
    let refused = loop {
        assert!(
            open.len() < 20_000,
            "no shedding after {} sessions (resident {} of {limit} bytes)",
            open.len(),
            resident(&r)
        );
        match connect(&r.url("echo")) {
            Ok((mut ws, _)) => {
                ws.send(tungstenite::Message::binary(vec![7u8; 4096]))
                    .unwrap();
                ws.read().unwrap();
                open.push(ws);
            }
            Err(tungstenite::Error::Http(resp)) => break resp,
            Err(e) => panic!("after {} sessions: {e}", open.len()),
        }
    };
    eprintln!(
        "shed after {} sessions: resident {} of {limit} bytes (idle {idle})",
        open.len(),
        resident(&r)
    );
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let health = admin::call(r.admin, "GET", "/healthz", None, None);
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.body["status"], "degraded");
    assert!(
        health.body["checks"]["memory"]
            .as_str()
            .unwrap()
            .starts_with("shedding"),
        "{}",
        health.text
    );
    assert!(raw(r.data, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 503"));
    assert_eq!(metric(&r, "wsrelay_memory_shedding"), 1);
    let m = admin::call(r.admin, "GET", "/metrics", None, None).text;
    assert!(
        m.contains("reason=\"memory\"") || m.contains("reason=\"memory\","),
        "the rejection is counted by reason"
    );
    // The sessions already open are served as usual.
    for ws in open.iter_mut().take(10) {
        ws.send(tungstenite::Message::text("still here")).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::text("still here"));
    }

    // Closing them brings the footprint under 80 %: admitted again.
    for mut ws in open.drain(..) {
        let _ = ws.close(None);
        let _ = ws.read();
    }
    let resumed = (0..100).any(|_| {
        if metric(&r, "wsrelay_memory_shedding") == 0 {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(
        resumed,
        "still shedding with every session closed: resident {} of {limit} bytes (idle {idle})",
        resident(&r)
    );
    one_echo(&r);
    let health = admin::call(r.admin, "GET", "/healthz", None, None);
    assert_eq!(health.body["status"], "ok", "{}", health.text);
    assert!(r.log_text().contains("admitting again"));
}

/// One upgrade and echo through `r`.
fn one_echo(r: &Relay) {
    let (mut ws, _) = connect(&r.url("echo")).expect("admitted");
    ws.send(tungstenite::Message::text("x")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("x"));
    let _ = ws.close(None);
}
