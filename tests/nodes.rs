//! Several nodes on one PostgreSQL (SPEC 7, issue 13): node rows, their
//! heartbeat, `GET /api/nodes`, and no ghosts — a killed node is marked down
//! and its sessions closed (`node lost`) by a live one. PostgreSQL only
//! (SQLite is single-node); skipped without `DATABASE_URL`, a failure with
//! `CI=true`.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::admin::{backends, call, eventually, login, pg_schema_url};
use support::*;

/// Heartbeat of the test nodes, ms.
const HEARTBEAT_MS: u64 = 200;

fn postgres() -> Option<String> {
    backends().into_iter().flatten().next()
}

fn node_config(t: &Target) -> String {
    base_config(1).replace(
        "[server]\n",
        &format!("[server]\nnode_heartbeat_ms = {HEARTBEAT_MS}\n"),
    ) + &endpoint("echo", &t.url(), "")
}

/// Two nodes on a fresh schema (PostgreSQL only), their echo target and an
/// admin token.
fn two_nodes(test: &str) -> Option<(Target, Relay, Relay, String)> {
    let db = pg_schema_url(&postgres()?, test);
    let t = target(Behaviour::Echo);
    let cfg = node_config(&t);
    let a = Relay::start_with(&cfg, &[("DATABASE_URL", db.as_str())]);
    let b = Relay::start_with(&cfg, &[("DATABASE_URL", db.as_str())]);
    let token = login(&a, ADMIN_EMAIL, ADMIN_PASSWORD).unwrap();
    Some((t, a, b, token))
}

/// `GET /api/nodes` through `r`, by id.
fn nodes(r: &Relay, token: &str) -> Vec<Value> {
    let rep = call(r.admin, "GET", "/api/nodes", Some(token), None);
    assert_eq!(rep.status, 200, "{}", rep.text);
    rep.body["items"].as_array().unwrap().clone()
}

fn state_of<'a>(nodes: &'a [Value], id: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["state"].as_str())
}

/// Two nodes started at the same moment on an empty database both come up
/// (the migrations run once, under an advisory lock) and list each other.
#[test]
fn nodes_that_start_together_both_come_up_and_list_each_other() {
    let Some(url) = postgres() else { return };
    let db = pg_schema_url(&url, "nodes_together");
    let t = target(Behaviour::Echo);
    let cfg = node_config(&t);
    let env = [("DATABASE_URL", db.as_str())];
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Relay::start_with(&cfg, &env));
        let b = s.spawn(|| Relay::start_with(&cfg, &env));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut c = postgres::Client::connect(&db, postgres::NoTls).unwrap();
    let applied: i64 = c
        .query_one("SELECT COUNT(*) FROM schema_migration", &[])
        .unwrap()
        .get(0);
    let distinct: i64 = c
        .query_one("SELECT COUNT(DISTINCT version) FROM schema_migration", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, distinct, "each migration once");
    let token = login(&a, ADMIN_EMAIL, ADMIN_PASSWORD).unwrap();
    let (ida, idb) = (node_id(&a), node_id(&b));
    let listed = eventually("both nodes up", || {
        let n = nodes(&a, &token);
        (state_of(&n, &ida) == Some("up") && state_of(&n, &idb) == Some("up")).then_some(n)
    });
    for n in &listed {
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"), "{n}");
        assert!(
            n["startedAt"].is_string() && n["lastHeartbeat"].is_string(),
            "{n}"
        );
    }
    // /healthz?detailed=true shows them too.
    let h = call(b.admin, "GET", "/healthz?detailed=true", None, None);
    assert_eq!(
        h.body["nodes"].as_array().map(Vec::len),
        Some(2),
        "{}",
        h.text
    );
}

/// This node's id, from `/healthz`.
fn node_id(r: &Relay) -> String {
    call(r.admin, "GET", "/healthz", None, None).body["node"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A node killed with SIGKILL: a live node marks it down and closes its
/// `ACTIVE` sessions with `node lost` within a few heartbeats; restarted
/// (same node id), the dead node does not redo that work and is up again.
#[test]
fn a_killed_node_is_marked_down_and_its_sessions_closed_by_a_live_one() {
    let Some(url) = postgres() else { return };
    let db = pg_schema_url(&url, "nodes_ghosts");
    let t = target(Behaviour::Echo);
    let cfg = node_config(&t);
    let a = Relay::start_with(&cfg, &[("DATABASE_URL", db.as_str())]);
    let b_env = [("DATABASE_URL", db.as_str()), ("WSRELAY_NODE_ID", "node-b")];
    let mut b = Relay::start_with(&cfg, &b_env);
    let token = login(&a, ADMIN_EMAIL, ADMIN_PASSWORD).unwrap();
    let (mut ws, _) = connect(&b.url("echo")).unwrap();
    ws.send(tungstenite::Message::text("hi")).unwrap();
    ws.read().unwrap();
    let session = eventually("node-b's session in the store", || {
        let rep = call(a.admin, "GET", "/api/sessions", Some(&token), None);
        rep.body["items"]
            .as_array()?
            .iter()
            .find(|s| s["node"] == "node-b")
            .map(|s| s["id"].as_str().unwrap().to_string())
    });

    b.child.kill().unwrap();
    let _ = b.child.wait();
    let killed = Instant::now();
    let closed = eventually("node-b's session closed by node a", || {
        let rep = call(
            a.admin,
            "GET",
            "/api/sessions?state=CLOSED&limit=100",
            Some(&token),
            None,
        );
        rep.body["items"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == session.as_str())
            .cloned()
    });
    let took = killed.elapsed();
    eprintln!("node-b's session closed {took:?} after SIGKILL (heartbeat {HEARTBEAT_MS} ms)");
    assert_eq!(closed["closeReason"], "node lost", "{closed}");
    assert_eq!(closed["closedBy"], "wsrelay", "{closed}");
    assert!(
        took < Duration::from_millis(10 * HEARTBEAT_MS),
        "closed {took:?} after the kill"
    );
    assert_eq!(state_of(&nodes(&a, &token), "node-b"), Some("down"));
    assert!(a.log_text().contains("marked down"), "{}", a.log_text());

    // The dead node comes back: up again, and the session stays as node a
    // closed it (its own start-up cleanup finds nothing ACTIVE).
    let b2 = Relay::spawn(&b.dir, &b.cfg, "b2.log", &[], &b_env);
    eventually("node-b up again", || {
        (state_of(&nodes(&a, &token), "node-b") == Some("up")).then_some(())
    });
    let rep = call(
        b2.admin,
        "GET",
        "/api/sessions?state=CLOSED&limit=100",
        Some(&token),
        None,
    );
    let again = rep.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == session.as_str())
        .cloned()
        .unwrap();
    assert_eq!(again["closeReason"], "node lost", "{again}");
    assert_eq!(again["endedAt"], closed["endedAt"], "not closed twice");
}

/// SQLite is single-node: a second process on the same file says so at
/// start (and still starts).
#[test]
fn a_second_process_on_one_sqlite_file_is_told_sqlite_is_single_node() {
    let t = target(Behaviour::Echo);
    let dir = TempDir::new();
    let cfg = node_config(&t).replace(
        "[server]\n",
        &format!(
            "[server]\ndatabase = \"sqlite://{}\"\ncontrol_socket = \"\"\n",
            dir.0.join("shared.db").display()
        ),
    );
    let a = Relay::start(&cfg);
    assert!(!a.log_text().contains("single-node"), "{}", a.log_text());
    let b = Relay::start(&cfg);
    assert!(
        b.log_text().contains("SQLite is single-node"),
        "{}",
        b.log_text()
    );
    drop((a, b));
}

/// The status node `r` answers an upgrade to `/ws/<id>` with (101 when it
/// routes the endpoint).
fn upgrade_status(r: &Relay, id: &str) -> u16 {
    match connect(&r.url(id)) {
        Ok((mut ws, _)) => {
            let _ = ws.close(None);
            101
        }
        Err(e) => status_of(e),
    }
}

/// Polls until node `r` answers `/ws/<id>` with `want`; how long it took.
fn time_until(r: &Relay, id: &str, want: u16) -> Duration {
    let t0 = Instant::now();
    loop {
        if upgrade_status(r, id) == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node never answered {want} for {id}"
        );
    }
}

/// 100 endpoint changes made on node A (50 creations, 50 disablings): node
/// B routes by each within a second (LISTEN/NOTIFY). Prints p50/p99/max.
#[test]
fn endpoint_changes_on_one_node_reach_the_other_within_a_second() {
    let Some((t, a, b, token)) = two_nodes("nodes_notify") else {
        return;
    };
    let mut took = Vec::new();
    for i in 0..50 {
        let id = format!("n{i}");
        let made = call(
            a.admin,
            "POST",
            "/api/endpoints",
            Some(&token),
            Some(&serde_json::json!({"id": id, "targetUrl": t.url()})),
        );
        assert_eq!(made.status, 201, "{}", made.text);
        took.push(time_until(&b, &id, 101));
        let off = call(
            a.admin,
            "PATCH",
            &format!("/api/endpoints/{id}"),
            Some(&token),
            Some(&serde_json::json!({"enabled": false})),
        );
        assert_eq!(off.status, 200, "{}", off.text);
        took.push(time_until(&b, &id, 403));
    }
    took.sort();
    let p = |q: f64| took[((took.len() as f64 * q).ceil() as usize).min(took.len()) - 1];
    eprintln!(
        "endpoint change on node A -> routed by node B: {} changes, p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        p(0.5),
        p(0.99),
        took[took.len() - 1]
    );
    assert!(p(0.99) < Duration::from_secs(1), "p99 {:?}", p(0.99));
}

/// A change made while node B could not listen (its database link cut) is
/// not lost: once the link is back, B reads the version and catches up.
#[test]
fn a_change_made_while_a_node_was_cut_off_is_caught_up() {
    let Some(url) = postgres() else { return };
    let db = pg_schema_url(&url, "nodes_catch_up");
    let link = db_link(&db);
    let t = target(Behaviour::Echo);
    let cfg = node_config(&t);
    let a = Relay::start_with(&cfg, &[("DATABASE_URL", db.as_str())]);
    let b = Relay::start_with(&cfg, &[("DATABASE_URL", via_link(&db, &link).as_str())]);
    let token = login(&a, ADMIN_EMAIL, ADMIN_PASSWORD).unwrap();
    assert_eq!(upgrade_status(&b, "late"), 404);
    link.cut();
    let made = call(
        a.admin,
        "POST",
        "/api/endpoints",
        Some(&token),
        Some(&serde_json::json!({"id": "late", "targetUrl": t.url()})),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    // B goes on routing by what it had.
    assert_eq!(upgrade_status(&b, "late"), 404);
    assert_eq!(upgrade_status(&b, "echo"), 101);
    link.restore();
    let took = time_until(&b, "late", 101);
    eprintln!("node B caught up {took:?} after its link came back");
    assert!(
        b.log_text().contains("endpoints changed on another node"),
        "{}",
        b.log_text()
    );
}

/// `DELETE /api/sessions/:id` on node A kills a session that runs on node
/// B (204; the client gets 1008), audited once on A; once it is gone the
/// answer is 404.
#[test]
fn a_session_on_another_node_is_killed_through_it() {
    let Some((_t, a, b, token)) = two_nodes("nodes_kill") else {
        return;
    };
    let (mut ws, _) = connect(&b.url("echo")).unwrap();
    ws.send(tungstenite::Message::text("hi")).unwrap();
    ws.read().unwrap();
    let b_id = node_id(&b);
    let session = eventually("B's session in the store", || {
        let rep = call(a.admin, "GET", "/api/sessions", Some(&token), None);
        rep.body["items"]
            .as_array()?
            .iter()
            .find(|s| s["node"] == b_id.as_str())
            .map(|s| s["id"].as_str().unwrap().to_string())
    });
    let path = format!("/api/sessions/{session}");
    let killed = call(a.admin, "DELETE", &path, Some(&token), None);
    assert_eq!(killed.status, 204, "{}", killed.text);
    let (code, reason) = read_close(&mut ws);
    assert_eq!((code, reason.as_str()), (1008, "terminated by operator"));
    let _ = ws.flush(); // the close reply
    eventually("the killed session closed in the store", || {
        let rep = call(
            a.admin,
            "GET",
            "/api/sessions?state=CLOSED",
            Some(&token),
            None,
        );
        rep.body["items"]
            .as_array()?
            .iter()
            .any(|s| s["id"] == session.as_str())
            .then_some(())
    });
    let again = call(a.admin, "DELETE", &path, Some(&token), None);
    assert_eq!(again.status, 404, "{}", again.text);
    let audit = call(
        a.admin,
        "GET",
        "/api/audit?action=session.kill",
        Some(&token),
        None,
    );
    assert_eq!(audit.body["total"], 1, "{}", audit.text);
    assert!(
        b.log_text().contains("kill from another node"),
        "{}",
        b.log_text()
    );
}
