use super::writer::restore;
use super::*;
use crate::admin::pipeline::feed::OpsFeed;
use crate::bridge::Counts;
use crate::bridge::Event;
use crate::bridge::{EventSink, SessionStart};
use std::sync::atomic::Ordering;

fn start(id: uuid::Uuid) -> Event {
    Event::Started(Box::new(SessionStart {
        id,
        endpoint: "e".into(),
        shard: 0,
        client: "127.0.0.1:5".parse().unwrap(),
        at_ms: 1000,
    }))
}

#[test]
fn a_full_queue_drops_and_counts_exactly() {
    let (sink, rx, dropped) = EventSink::bounded(3);
    for _ in 0..10 {
        sink.send(start(uuid::Uuid::new_v4()));
    }
    assert_eq!(rx.len(), 3);
    assert_eq!(dropped.load(Ordering::Relaxed), 7);
}

#[test]
fn a_session_is_one_backlog_row_in_its_latest_state() {
    let (_, rx, d) = EventSink::bounded(1);
    let live = Live::new("n1", vec![(rx, d)]);
    let ops = OpsFeed::default();
    let id = uuid::Uuid::new_v4();
    live.apply(start(id), &ops);
    let counts = Counts {
        msgs: [3, 4],
        bytes: [30, 40],
    };
    live.apply(
        Event::Updated {
            id,
            counts,
            at_ms: 2000,
        },
        &ops,
    );
    assert_eq!(live.sessions.lock().unwrap().len(), 1);
    live.apply(
        Event::Ended {
            id,
            counts,
            end: crate::bridge::SessionEnd {
                code: 1008,
                reason: "terminated by operator".into(),
                by: crate::bridge::Side::Wsrelay,
            },
            at_ms: 3000,
        },
        &ops,
    );
    assert!(live.sessions.lock().unwrap().is_empty());
    let b = live.backlog.lock().unwrap();
    assert_eq!(b.sessions.len(), 1);
    let row = &b.sessions[&id.hyphenated().to_string()];
    assert_eq!(row.state, "CLOSED");
    assert_eq!((row.msgs_in, row.bytes_out), (3, 40));
    assert_eq!(row.close_code, Some(1008));
    assert_eq!(row.closed_by.as_deref(), Some("wsrelay"));
    assert_eq!(row.node_id, "n1");
}

#[test]
fn a_failed_batch_is_restored_without_overwriting_newer_rows() {
    let (_, rx, d) = EventSink::bounded(1);
    let live = Live::new("n1", vec![(rx, d)]);
    let ops = OpsFeed::default();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    live.apply(start(a), &ops);
    live.apply(start(b), &ops);
    let taken = std::mem::take(&mut *live.backlog.lock().unwrap());
    // While the batch was failing, session a moved on.
    live.apply(
        Event::Updated {
            id: a,
            counts: Counts {
                msgs: [9, 9],
                bytes: [9, 9],
            },
            at_ms: 5000,
        },
        &ops,
    );
    restore(
        &live,
        taken.sessions.into_values().collect(),
        taken.samples,
        Vec::new(),
    );
    let bl = live.backlog.lock().unwrap();
    assert_eq!(bl.sessions.len(), 2);
    assert_eq!(bl.sessions[&a.hyphenated().to_string()].msgs_in, 9);
    assert_eq!(bl.sessions[&b.hyphenated().to_string()].msgs_in, 0);
}

#[test]
fn backoff_grows_to_a_cap_with_jitter() {
    let first = backoff(1);
    assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
    for n in [10, 20, 1000] {
        assert!(backoff(n) <= MAX_BACKOFF.mul_f64(1.5));
        assert!(backoff(n) >= MAX_BACKOFF.mul_f64(0.5));
    }
}

#[test]
fn partial_stats_keep_the_endpoints_that_did_not_move() {
    use crate::shard::metrics::{Direction, ShardMetrics};
    let (_, rx, d) = EventSink::bounded(1);
    let live = Live::new("n1", vec![(rx, d)]);
    let ops = OpsFeed::default();
    let m = ShardMetrics::new();
    m.endpoint("a").record_batch(Direction::In, 1, 10, 5);
    m.endpoint("b").record_batch(Direction::In, 1, 10, 5);
    live.apply(Event::Stats(Box::new(m.changes(0))), &ops);
    m.endpoint("b").record_batch(Direction::In, 4, 40, 5);
    live.apply(Event::Stats(Box::new(m.changes(0))), &ops);
    let merged = crate::admin::pipeline::stats::merge(&live.stats.lock().unwrap());
    assert_eq!(merged["a"].messages[0], 1);
    assert_eq!(merged["b"].messages[0], 5);
}
