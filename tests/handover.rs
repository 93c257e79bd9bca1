//! Binary upgrade, listener handover (SPEC 2 `serve --takeover`, 4.6): the
//! successor takes the running process's listeners over its control socket;
//! no connect is refused or lost across the upgrade.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// One upgrade + echo + close; the error, if any.
fn one_session(url: &str) -> Result<(), String> {
    let (mut ws, _) = connect(url).map_err(|e| format!("connect: {e}"))?;
    ws.send(tungstenite::Message::text("ping"))
        .map_err(|e| format!("send: {e}"))?;
    match ws.read().map_err(|e| format!("read: {e}"))? {
        tungstenite::Message::Text(t) if t.as_str() == "ping" => {}
        other => return Err(format!("echo: {other:?}")),
    }
    let _ = ws.close(None);
    Ok(())
}

#[test]
fn takeover_with_nothing_running_is_one_line_and_exit_2() {
    let (code, err) = run_to_exit(
        &["serve", "--takeover"],
        Some(&(base_config(1) + "control_socket = \"nobody-here.sock\"\n")),
    );
    assert_eq!(code, 2, "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("wsrelay: "))
        .unwrap_or_default();
    assert!(
        line.contains("no wsrelay answers on control socket nobody-here.sock"),
        "{err}"
    );
}

#[test]
fn a_second_serve_beside_a_running_one_is_refused() {
    let t = target(Behaviour::Echo);
    let r = Relay::start(&(base_config(1) + &endpoint("echo", &t.url(), "")));
    let out = std::process::Command::new(bin())
        .args(["serve", "--config"])
        .arg(&r.cfg)
        .current_dir(&r.dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another wsrelay serves") && err.contains("--takeover"),
        "{err}"
    );
}

/// Sessions keep connecting (upgrade, echo, close) from 4 threads while the
/// relay is upgraded twice, from 1 shard to 2 and back to 1: not one fails.
/// The old process stops accepting, closes the session it still had with
/// 1012 at its drain deadline and exits 0; the admin port moves too.
#[test]
fn upgrades_refuse_no_connect_and_the_old_process_exits_0() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1) + &endpoint("echo", &t.url(), "");
    let mut first = Relay::start(&cfg);
    let url = first.url("echo");
    let (mut long, _) = connect(&url).expect("a long-lived session");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, url) = (stop.clone(), ok.clone(), url.clone());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match one_session(&url) {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failed.push(e),
                    }
                }
                failed
            })
        })
        .collect();
    let wait_for_more = |n: u64| {
        let target = ok.load(Ordering::Relaxed) + n;
        admin::eventually("sessions through the current process", || {
            (ok.load(Ordering::Relaxed) >= target).then_some(())
        })
    };
    wait_for_more(50);

    // 1 shard → 2 shards.
    std::fs::write(&first.cfg, cfg.replace("shards = 1", "shards = 2")).unwrap();
    let mut second = first.take_over("second.log");
    assert_eq!(second.data, first.data, "the same data port");
    assert_eq!(second.admin, first.admin, "the same admin port");
    let status = first.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "the old process exits 0: {status:?}");
    let (code, reason) = read_close(&mut long);
    assert_eq!((code, reason.as_str()), (1012, "service restart"));
    assert!(
        first.log_text().contains("listeners handed over"),
        "{}",
        first.log_text()
    );
    wait_for_more(50);

    // 2 shards → 1, again under load.
    std::fs::write(&second.cfg, &cfg).unwrap();
    let third = second.take_over("third.log");
    let status = second.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    wait_for_more(50);

    stop.store(true, Ordering::Relaxed);
    let failed: Vec<String> = failures
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} sessions failed across the upgrades: {:?}",
        failed.len(),
        failed.len() as u64 + ok.load(Ordering::Relaxed),
        &failed[..failed.len().min(5)]
    );
    // The admin port answers from the last process.
    let health = admin::call(third.admin, "GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{:?}", health.body);
    drop(third);
    drop(first); // owns the directory
}

/// A connection the old process accepted before the handover, whose
/// request is still on its way, is served by the old process: upgraded and
/// relayed until the drain deadline, not refused with 503 nor cut off when
/// the old process runs out of sessions (found by `loadtest/restart.sh`:
/// 2 of 85,632 sessions "closed during the handshake").
#[test]
fn a_handshake_under_way_at_the_handover_is_served() {
    use std::io::{Read, Write};
    let t = target(Behaviour::Echo);
    let cfg = base_config(1) + &endpoint("echo", &t.url(), "");
    let mut first = Relay::start(&cfg);
    let mut s = std::net::TcpStream::connect(first.data).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let req = "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    // Half the request now: the old process accepts and waits for the rest.
    s.write_all(&req.as_bytes()[..20]).unwrap();
    one_session(&first.url("echo")).expect("the old process serves");
    let second = first.take_over("second.log");
    s.write_all(&req.as_bytes()[20..]).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed mid-handshake: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // A masked text frame "hi" comes back unmasked.
    s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);
    assert!(first.wait_exit(Duration::from_secs(20)).success());
    drop(second);
    drop(first);
}

/// A successor that dies before it is ready changes nothing: the running
/// process keeps serving and a later successor takes over.
#[test]
fn a_successor_that_fails_before_ready_changes_nothing() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1) + &endpoint("echo", &t.url(), "");
    let mut first = Relay::start(&cfg);
    // This successor fails after it got the listeners: a store it cannot
    // open.
    std::fs::write(
        &first.cfg,
        cfg.replace(
            "[server]\n",
            "[server]\ndatabase = \"sqlite:///nonexistent-dir/x.db\"\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--takeover", "--config"])
        .arg(&first.cfg)
        .current_dir(&first.dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Still serving, still offering the takeover.
    one_session(&first.url("echo")).expect("the old process still serves");
    std::fs::write(&first.cfg, &cfg).unwrap();
    let second = first.take_over("second.log");
    assert!(first.wait_exit(Duration::from_secs(20)).success());
    one_session(&second.url("echo")).expect("the successor serves");
    assert!(
        first
            .log_text()
            .contains("a successor failed before it was ready"),
        "{}",
        first.log_text()
    );
    drop(second);
    drop(first);
}
