//! Commands that reach a shard while it drains (issue 11: one command
//! dispatch for the run and drain loops), and kills of ended sessions. That
//! a kill is answered from the shard's reply (404 when the shard no longer
//! has the session, even while the live view still lists it) is tested at
//! the shard (`shard::tests::a_kill_is_answered_with_whether_the_session_was_here`).
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use support::admin::*;
use support::*;
use tungstenite::Message;

#[test]
fn an_endpoint_deleted_while_draining_closes_its_sessions_at_once() {
    let t = target(Behaviour::Echo);
    // A long drain: the session would stay open for 30 s if the deletion
    // were dropped by the draining shard.
    let cfg = base_config(2).replace("drain_timeout_ms = 2000", "drain_timeout_ms = 30000")
        + &endpoint("e", &t.url(), "");
    let a = start_config(&None, "drain-delete", &cfg);
    let (mut ws, _) = connect(&a.relay.url("e")).unwrap();
    ws.send(Message::Text("x".into())).unwrap();
    ws.read().unwrap();
    a.relay.sigterm();
    // Draining: the data port refuses new sessions, the admin API serves.
    eventually("the drain to start", || {
        let r = raw(a.relay.data, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        r.starts_with("HTTP/1.1 503").then_some(())
    });
    assert_eq!(a.req("DELETE", "/api/endpoints/e", None).status, 204);
    assert_eq!(read_close(&mut ws), (1001, "endpoint removed".to_string()));
}

#[test]
fn a_kill_of_a_session_that_ended_is_404() {
    let t = target(Behaviour::Echo);
    let a = start(&None, "kill-gone", &endpoint("e", &t.url(), ""));
    let (mut ws, _) = connect(&a.relay.url("e")).unwrap();
    ws.send(Message::Text("x".into())).unwrap();
    ws.read().unwrap();
    let id = eventually("the session listed", || {
        let r = a.req("GET", "/api/sessions", None);
        r.body["items"][0]["id"].as_str().map(str::to_string)
    });
    assert_eq!(
        a.req("DELETE", &format!("/api/sessions/{id}"), None).status,
        204
    );
    assert_eq!(read_close(&mut ws).0, 1008);
    let _ = ws.flush(); // answers the close: the session ends
    drop(ws);
    eventually("the session ended", || {
        let r = a.req("GET", "/api/sessions?state=CLOSED", None);
        (r.body["items"][0]["id"] == id.as_str()).then_some(())
    });
    let again = a.req("DELETE", &format!("/api/sessions/{id}"), None);
    assert_eq!(again.status, 404, "{}", again.text);
}
