//! The writer: one thread stores the backlog in batches (one transaction
//! each), retrying with backoff and jitter while the database is down.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{backoff, Live, BACKLOG_ROWS, BACKLOG_SAMPLES, FLUSH_EVERY, FLUSH_ROWS};
use crate::store::{SampleRow, SessionRow, Store};

/// Starts the batched writer. Returns its join handle: it ends once the
/// consumer has ended and the backlog is written (or the database has been
/// given up on after `final_deadline`).
pub fn spawn_writer(live: Arc<Live>, store: Store) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut failures = 0u32;
            loop {
                let (sessions, samples, keep) = {
                    let mut b = live.backlog.lock().expect("backlog");
                    if b.len() < FLUSH_ROWS {
                        b = live.wake.wait_timeout(b, FLUSH_EVERY).expect("backlog").0;
                    }
                    if b.len() == 0 {
                        continue;
                    }
                    live.writer.in_flight.store(true, Ordering::Release);
                    let b = std::mem::take(&mut *b);
                    let keep: Vec<(String, u32)> = b.keep.into_iter().collect();
                    (
                        b.sessions.into_values().collect::<Vec<_>>(),
                        b.samples,
                        keep,
                    )
                };
                let t = Instant::now();
                match store.write_batch(&sessions, &samples, &keep) {
                    Ok(()) => {
                        failures = 0;
                        live.store_ok.store(true, Ordering::Relaxed);
                        let w = &live.writer;
                        w.batches.fetch_add(1, Ordering::Relaxed);
                        w.rows
                            .fetch_add((sessions.len() + samples.len()) as u64, Ordering::Relaxed);
                        w.last_batch_us
                            .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        w.in_flight.store(false, Ordering::Release);
                    }
                    Err(e) => {
                        failures += 1;
                        live.store_ok.store(false, Ordering::Relaxed);
                        live.writer.errors.fetch_add(1, Ordering::Relaxed);
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!(
                                error = %e,
                                rows = sessions.len() + samples.len(),
                                attempt = failures,
                                "store write failed; keeping the rows and retrying"
                            );
                        }
                        restore(&live, sessions, samples, keep);
                        live.writer.in_flight.store(false, Ordering::Release);
                        std::thread::sleep(backoff(failures));
                    }
                }
            }
        })
        .map(|_| ())
}

/// Puts a failed batch back; rows queued since then are newer and win.
pub(super) fn restore(
    live: &Live,
    sessions: Vec<SessionRow>,
    samples: Vec<SampleRow>,
    keep: Vec<(String, u32)>,
) {
    let mut b = live.backlog.lock().expect("backlog");
    for (e, k) in keep {
        b.keep.entry(e).or_insert(k);
    }
    for row in sessions {
        if b.sessions.contains_key(&row.id) {
            continue;
        }
        if b.sessions.len() >= BACKLOG_ROWS {
            live.writer.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        b.sessions.insert(row.id.clone(), row);
    }
    let room = BACKLOG_SAMPLES.saturating_sub(b.samples.len());
    let lost = samples.len().saturating_sub(room);
    if lost > 0 {
        live.writer
            .dropped
            .fetch_add(lost as u64, Ordering::Relaxed);
    }
    let mut kept: Vec<SampleRow> = samples.into_iter().take(room).collect();
    kept.append(&mut b.samples);
    b.samples = kept;
}
