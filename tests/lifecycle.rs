//! Start-up errors (one line, exit 2), exact limits across shards, drain.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::time::Duration;

use support::*;
use tungstenite::Message;

fn one_line_exit_2(args: &[&str], config: Option<&str>, must_contain: &str) {
    let (code, err) = run_to_exit(args, config);
    assert_eq!(code, 2, "exit code; stderr: {err}");
    let lines: Vec<_> = err.lines().filter(|l| l.starts_with("wsrelay:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    assert!(lines[0].contains(must_contain), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn bad_config_bad_url_and_missing_file_exit_2() {
    one_line_exit_2(&["serve"], Some("[server]\nlisten = 5\n"), "`listen = 5`");
    one_line_exit_2(&["serve"], Some("[server\n"), "config");
    one_line_exit_2(
        &["serve"],
        Some("[[endpoints]]\nid = \"a\"\ntarget_url = \"http://nope\"\n"),
        "endpoints[0].target_url",
    );
    one_line_exit_2(
        &["serve"],
        Some("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream_ca_file = \"/nonexistent/ca.pem\"\n"),
        "server.upstream_ca_file",
    );
    one_line_exit_2(
        &["serve", "--config", "/nonexistent/wsrelay.toml"],
        None,
        "/nonexistent/wsrelay.toml",
    );
}

#[test]
fn port_in_use_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = format!(
        "[server]\nlisten = \"{}\"\nadmin_listen = \"127.0.0.1:0\"\nshards = 1\n",
        taken.local_addr().unwrap()
    );
    one_line_exit_2(&["serve"], Some(&cfg), "server.listen");
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{}\"\nshards = 1\n",
        taken.local_addr().unwrap()
    );
    one_line_exit_2(&["serve"], Some(&cfg), "server.admin_listen");
}

#[test]
fn an_unreachable_or_bad_database_exits_2_with_one_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshards = 1\ndatabase = \"postgres://wsrelay:s3cret@127.0.0.1:{port}/wsrelay\"\n"
    );
    one_line_exit_2(&["serve"], Some(&cfg), "database unavailable");
    let (_, err) = run_to_exit(&["serve"], Some(&cfg));
    assert!(
        !err.contains("s3cret"),
        "the password is not printed: {err}"
    );
    one_line_exit_2(
        &["serve"],
        Some("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshards = 1\ndatabase = \"mysql://x\"\n"),
        "server.database",
    );
    one_line_exit_2(
        &["serve"],
        Some("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshards = 1\ndatabase = \"sqlite:///nonexistent-dir/x.db\"\n"),
        "server.database",
    );
}

#[test]
fn too_little_locked_memory_is_a_clear_error() {
    if !tool_present("prlimit", &["--version"], "prlimit (util-linux)") {
        return;
    }
    let dir = TempDir::new();
    let cfg = dir.0.join("c.toml");
    std::fs::write(&cfg, base_config(2)).unwrap();
    let out = std::process::Command::new("prlimit")
        .args(["--memlock=131072:131072", bin(), "serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ulimit -l") && err.contains("128 KiB"),
        "{err}"
    );
}

#[test]
fn endpoint_limit_is_exact_under_concurrent_connects_across_shards() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(2) + &endpoint("lim", &t.url(), "limits = { max_connections = 50 }");
    let r = Relay::start(&cfg);
    let url = r.url("lim");
    let results: Vec<Result<Ws, u16>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let url = url.clone();
                s.spawn(move || connect(&url).map(|(ws, _)| ws).map_err(status_of))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results.iter().filter(|r| matches!(r, Err(503))).count();
    assert_eq!((ok, refused), (50, 150));
    // Every admitted session really relays.
    let mut open: Vec<Ws> = results.into_iter().filter_map(Result::ok).collect();
    for ws in &mut open {
        ws.send(Message::Text("x".into())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text("x".into()));
    }
    // Freed slots are reusable.
    for mut ws in open.drain(..10) {
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    let mut again = 0;
    let mut held = Vec::new();
    for _ in 0..15 {
        // Slots are released when the relay finishes each close handshake.
        for _ in 0..100 {
            match connect(&url) {
                Ok((ws, _)) => {
                    held.push(ws);
                    again += 1;
                    break;
                }
                Err(e) => {
                    assert_eq!(status_of(e), 503);
                    if again == 10 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20)); // retry like a client would
                }
            }
        }
    }
    assert_eq!(again, 10, "exactly the 10 freed slots");
}

#[test]
fn sigterm_drains_healthz_503_sessions_closed_1001_exit_0() {
    let t = target(Behaviour::Echo);
    let r0 = Relay::start(&(base_config(2) + &endpoint("echo", &t.url(), "")));
    let mut r = r0;
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    ws.send(Message::Text("before".into())).unwrap();
    ws.read().unwrap();
    r.sigterm();
    // The session keeps relaying during the drain...
    ws.send(Message::Text("during".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("during".into()));
    // ...health checks fail and new sessions are refused...
    // (The signal reaches each shard asynchronously: look until every shard
    // answers 503, 10 times in a row, within a bounded time.)
    let start = std::time::Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "healthz never turned 503 on every shard; log:\n{}",
            r.log_text()
        );
        let health = raw(r.data, b"GET /healthz HTTP/1.1\r\n\r\n");
        eprintln!("healthz: {:?}", health.lines().next());
        in_a_row = if health.starts_with("HTTP/1.1 503") {
            in_a_row + 1
        } else {
            0
        };
    }
    assert_eq!(status_of(connect(&r.url("echo")).unwrap_err()), 503);
    // ...and at drain_timeout_ms (2 s) the session is closed with 1001.
    assert_eq!(read_close(&mut ws), (1001, "going away".into()));
    let _ = ws.flush(); // tungstenite sends its close reply

    assert_eq!(t.closes.recv_timeout(IO_TIMEOUT).unwrap(), Some(1001));
    let status = r.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sighup_writes_the_files_endpoints_to_the_store_and_every_shard() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(2) + &endpoint("keep", &t.url(), "") + &endpoint("other", &t.url(), "");
    let r = Relay::start(&cfg);
    let (mut keep, _) = connect(&r.url("keep")).unwrap();
    let (mut other, _) = connect(&r.url("other")).unwrap();
    assert_eq!(status_of(connect(&r.url("new")).unwrap_err()), 404);

    // A bad file changes nothing.
    std::fs::write(&r.cfg, base_config(2) + "[[endpoints]]\nid = \"BAD\"\n").unwrap();
    r.signal("-HUP");
    let start = std::time::Instant::now();
    while !r.log_text().contains("reload failed") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no reload error logged"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling the log file
    }
    keep.send(Message::Text("a".into())).unwrap();
    assert_eq!(keep.read().unwrap(), Message::Text("a".into()));

    // A new endpoint in the file, and "keep" disabled. "other" is no longer
    // in the file but stays: the store holds it (the API deletes endpoints).
    std::fs::write(
        &r.cfg,
        base_config(2)
            + &endpoint("keep", &t.url(), "enabled = false")
            + &endpoint("new", &t.url(), ""),
    )
    .unwrap();
    r.signal("-HUP");
    let start = std::time::Instant::now();
    while !r.log_text().contains("endpoints reloaded") {
        assert!(start.elapsed() < Duration::from_secs(5), "no reload logged");
        std::thread::sleep(Duration::from_millis(20)); // polling the log file
    }
    // Sessions already open are untouched...
    for ws in [&mut keep, &mut other] {
        ws.send(Message::Text("still".into())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text("still".into()));
    }
    // ...and every shard routes the new table (several connects spread over both).
    for _ in 0..8 {
        let (mut ws, _) = connect(&r.url("new")).unwrap();
        ws.send(Message::Text("n".into())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text("n".into()));
        assert_eq!(status_of(connect(&r.url("keep")).unwrap_err()), 403);
        connect(&r.url("other")).unwrap();
    }
}

#[test]
fn summary_line_counts_messages_and_json_logs_parse() {
    let t = target(Behaviour::Echo);
    let cfg = base_config(1).replace("summary_interval_s = 0", "summary_interval_s = 1")
        + &endpoint("echo", &t.url(), "");
    let r = Relay::start_with(&cfg, &[("WSRELAY_LOG_FORMAT", "json")]);
    let (mut ws, _) = connect(&r.url("echo")).unwrap();
    for i in 0..7 {
        ws.send(Message::Text(format!("{i}").into())).unwrap();
        ws.read().unwrap();
    }
    assert_eq!(status_of(connect(&r.url("nope")).unwrap_err()), 404);
    let start = std::time::Instant::now();
    loop {
        let log = r.log_text();
        let hit = log.lines().any(|l| {
            l.contains("shard 0 summary")
                && l.contains("msgs_in=7")
                && l.contains("msgs_out=7")
                && l.contains("not_found=1")
        });
        if hit {
            for line in log.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                // Flat: the event's fields beside level and message.
                assert!(
                    v.get("level").is_some()
                        && v.get("message").is_some()
                        && v.get("fields").is_none(),
                    "{line}"
                );
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no matching summary line:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50)); // polling the log file
    }
}
