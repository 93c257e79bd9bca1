//! The consumer: one thread drains every shard's event queue into the
//! live view and the `/ops` feed.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Select;

use super::Live;
use crate::admin::pipeline::feed::OpsFeed;

/// How long the consumer waits before looking at the queues again after a
/// round that found events (instead of blocking on them).
const BUSY_POLL: Duration = Duration::from_millis(1);

/// Starts the thread that drains the shard queues.
pub fn spawn_consumer(live: Arc<Live>, ops: OpsFeed) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            let queues = live.queues.clone();
            let mut busy = false;
            loop {
                if busy {
                    // Events came in the last round: look again in a
                    // moment instead of blocking. A consumer blocked on
                    // the queues is woken by the shard that sends (a
                    // futex call on the shard, 0.19 per session at 10,000
                    // sessions/s), and the blocking select spins and
                    // yields first; a millisecond's events fit in the
                    // queues many times over.
                    std::thread::sleep(BUSY_POLL);
                } else {
                    let mut sel = Select::new();
                    for q in &queues {
                        sel.recv(q);
                    }
                    // Wakes on any event; the timeout only lets a shutdown
                    // be seen.
                    if sel.ready_timeout(Duration::from_secs(1)).is_err() {
                        continue;
                    }
                }
                let (mut gone, mut applied) = (0, 0);
                for q in &queues {
                    // Up to a queue's worth each round, so one busy shard
                    // cannot starve the others.
                    for _ in 0..crate::bridge::EVENT_QUEUE {
                        match q.try_recv() {
                            Ok(e) => {
                                live.apply(e, &ops);
                                applied += 1;
                            }
                            Err(crossbeam_channel::TryRecvError::Empty) => break,
                            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                                gone += 1;
                                break;
                            }
                        }
                    }
                }
                if gone == queues.len() {
                    live.wake.notify_one();
                    return; // every shard has exited
                }
                busy = applied > 0;
            }
        })
        .map(|_| ())
}
