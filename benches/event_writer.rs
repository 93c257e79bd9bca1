//! The event pipeline under load: two "shards" (threads) enqueue session
//! events at a fixed rate with `try_send` (as shards do; a full queue drops
//! and counts) into the real consumer and batched writer, which store them.
//! Each step raises the rate; a step passes when nothing was dropped and the
//! store caught up within a second of the step's end.
//!
//! `cargo bench --bench event_writer` (PostgreSQL from `DATABASE_URL`, each
//! run in a fresh schema; SQLite side by side). Env: `STEP_S` (default 3),
//! `RATES` (events/s, default `25000,50000,100000,200000`), `SHAPE`
//! (`lifecycle`: 5 events a session, coalesced into about one row write;
//! `starts`: one event a session, so every event is a row written).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // plain threads, not shards

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsrelay::admin::pipeline::feed::OpsFeed;
use wsrelay::admin::pipeline::{self, Live};
use wsrelay::bridge::{Counts, Event, EventSink, SessionStart, EVENT_QUEUE};
use wsrelay::store::{SessionFilter, Store};

/// Events per session: started, three updates, ended; with `SHAPE=starts`
/// only the start, so that every event is a row of its own.
fn per_session() -> u64 {
    if std::env::var("SHAPE").as_deref() == Ok("starts") {
        1
    } else {
        5
    }
}
const SHARDS: usize = 2;

fn store_for(name: &str) -> Option<Store> {
    if name == "sqlite" {
        let dir = std::env::temp_dir().join(format!("wsrelay-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = Store::connect(&format!("sqlite://{}", dir.join("b.db").display())).unwrap();
        s.migrate().unwrap();
        return Some(s);
    }
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = format!("bench_{}", std::process::id());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("DATABASE_URL reachable");
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .unwrap();
    let mut cfg: postgres::Config = url.parse().unwrap();
    cfg.options(&format!("-c search_path={schema}"));
    let db = wsrelay::store::postgres::PostgresDb::with_config(cfg).unwrap();
    let s = Store::from_db(Arc::new(db));
    s.migrate().unwrap();
    Some(s)
}

/// One shard's producer: `rate` events/s for `dur`; returns (sent, worst
/// enqueue time).
fn produce(sink: EventSink, shard: usize, rate: u64, dur: Duration, base: u64) -> (u64, Duration) {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut worst = Duration::ZERO;
    let mut session = base;
    while start.elapsed() < dur {
        // Open loop: catch up to where the clock says we should be.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let per = per_session();
        while sent + per <= due {
            let id = uuid::Uuid::from_u64_pair(shard as u64, session);
            session += 1;
            let now = wsrelay::store::now_ms();
            let mut counts = Counts::default();
            let mut evs = vec![Event::Started(Box::new(SessionStart {
                id,
                endpoint: "bench".into(),
                shard,
                client: "127.0.0.1:9".parse().unwrap(),
                at_ms: now,
            }))];
            for i in 1..per.saturating_sub(1) {
                counts.msgs = [i, i];
                counts.bytes = [i * 100, i * 100];
                evs.push(Event::Updated {
                    id,
                    counts,
                    at_ms: now,
                });
            }
            if per > 1 {
                evs.push(Event::Ended {
                    id,
                    counts,
                    end: wsrelay::bridge::SessionEnd {
                        code: 1000,
                        reason: "".into(),
                        by: wsrelay::bridge::Side::Client,
                    },
                    at_ms: now,
                });
            }
            for e in evs {
                let t = Instant::now();
                sink.send(e);
                worst = worst.max(t.elapsed());
            }
            sent += per;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    (sent, worst)
}

fn main() {
    let step = Duration::from_secs(
        std::env::var("STEP_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    );
    let rates: Vec<u64> = std::env::var("RATES")
        .unwrap_or_else(|_| "25000,50000,100000,200000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    println!(
        "backend  rate_ev/s  sent      q_dropped  backlog_dropped  stored_rows  catch_up_ms  worst_enqueue_us  result"
    );
    for backend in ["postgres", "sqlite"] {
        let Some(store) = store_for(backend) else {
            println!("skipped: {backend} (DATABASE_URL not set)");
            continue;
        };
        let mut sinks = Vec::new();
        let mut queues = Vec::new();
        for _ in 0..SHARDS {
            let (sink, rx, dropped) = EventSink::bounded(EVENT_QUEUE);
            sinks.push(sink);
            queues.push((rx, dropped));
        }
        let live = Live::new("bench", queues);
        pipeline::spawn_consumer(live.clone(), OpsFeed::default()).unwrap();
        pipeline::spawn_writer(live.clone(), store.clone()).unwrap();
        let mut base = 0u64;
        for &rate in &rates {
            let dropped_before = live.events_dropped();
            let backlog_dropped_before = live.writer.dropped.load(Ordering::Relaxed);
            let rows_before = live.writer.rows.load(Ordering::Relaxed);
            let handles: Vec<_> = sinks
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let s = s.clone();
                    let b = base;
                    std::thread::spawn(move || produce(s, i, rate / SHARDS as u64, step, b))
                })
                .collect();
            let results: Vec<(u64, Duration)> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            let end = Instant::now();
            let sent: u64 = results.iter().map(|r| r.0).sum();
            let worst = results.iter().map(|r| r.1).max().unwrap_or_default();
            base += sent; // distinct ids per step
                          // Caught up: nothing queued, waiting or being written. (The
                          // consumer may hold one event between queue and backlog; a
                          // second look after a pause covers it.)
            let deadline = end + Duration::from_secs(30);
            loop {
                while !live.idle() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(2));
                if live.idle() || Instant::now() >= deadline {
                    break;
                }
            }
            let catch_up = end.elapsed() - Duration::from_millis(2);
            let stored = live.writer.rows.load(Ordering::Relaxed) - rows_before;
            let dropped = live.events_dropped() - dropped_before;
            let bl_dropped = live.writer.dropped.load(Ordering::Relaxed) - backlog_dropped_before;
            let ok = dropped == 0 && bl_dropped == 0 && catch_up < Duration::from_secs(1);
            println!(
                "{backend:<8} {rate:>9}  {sent:>8}  {dropped:>9}  {bl_dropped:>15}  {stored:>11}  {:>11}  {:>16}  {}",
                catch_up.as_millis(),
                worst.as_micros(),
                if ok { "kept up" } else { "fell behind" }
            );
        }
        let total = store
            .list_sessions(
                &SessionFilter::default(),
                wsrelay::store::Page { page: 1, limit: 1 },
            )
            .unwrap()
            .1;
        println!(
            "{backend}: {total} session rows in the table; writer batches {}, errors {}",
            live.writer.batches.load(Ordering::Relaxed),
            live.writer.errors.load(Ordering::Relaxed)
        );
    }
}
