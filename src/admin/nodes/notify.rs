//! Changes from the other nodes (SPEC 7): on PostgreSQL a thread of its own
//! holds one connection that `LISTEN`s on this schema's channel. Every
//! change to the endpoints notifies it with the new version (a trigger in
//! the changing transaction, `migrations/postgres/0005_endpoint_notify.sql`);
//! a version newer than the one the shards route by is applied by reading
//! the endpoints again ([`crate::admin::control::publish`]). After
//! the connection is lost and made again, the version is read at once, so a
//! change made while this node was not listening is not lost.
//!
//! Session kills for another node go on a second channel
//! ([`crate::admin::control::kill_remote`]); this thread hands what it
//! hears there to [`crate::admin::control::on_kill_note`].

use std::sync::atomic::Ordering;

use postgres::fallible_iterator::FallibleIterator;
use std::time::Duration;

use crate::admin::state::AppState;

/// How long one wait for notifications lasts before the connection is
/// checked.
const WAIT: Duration = Duration::from_secs(1);

/// Starts the listening thread (PostgreSQL only; SQLite is single-node).
/// The receiver hears once the first `LISTEN` is in place: a node should not
/// say it is ready before it hears the other nodes.
pub fn spawn(
    url: String,
    st: AppState,
    rt: tokio::runtime::Handle,
) -> std::io::Result<std::sync::mpsc::Receiver<()>> {
    let (listening, heard) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let mut failures = 0u32;
            loop {
                match listen(&url, &st, &rt, &listening) {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!(
                                error = %e,
                                attempt = failures,
                                "listening for other nodes' changes failed; retrying"
                            );
                        }
                    }
                }
                std::thread::sleep(crate::admin::pipeline::backoff(failures.max(1)));
            }
        })
        .map(|_| heard)
}

/// The channel endpoint changes of this schema are notified on.
pub const ENDPOINTS_CHANNEL: &str = "left('wsrelay_endpoints_' || current_schema(), 63)";

/// One listening connection, until it fails.
fn listen(
    url: &str,
    st: &AppState,
    rt: &tokio::runtime::Handle,
    listening: &std::sync::mpsc::Sender<()>,
) -> Result<(), String> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
    let row = c
        .query_one(
            &format!("SELECT {ENDPOINTS_CHANNEL}, left($1 || current_schema(), 63)"),
            &[&crate::admin::control::KILL_PREFIX],
        )
        .map_err(|e| e.to_string())?;
    let (endpoints, kills): (String, String) = (row.get(0), row.get(1));
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    c.batch_execute(&format!(
        "LISTEN {}; LISTEN {}",
        quote(&endpoints),
        quote(&kills)
    ))
    .map_err(|e| e.to_string())?;
    tracing::debug!(%endpoints, %kills, "listening for other nodes' changes");
    let _ = listening.send(());
    // Listening: anything changed from now on is notified. What changed
    // before (while this node was not listening) is read now.
    catch_up(st, rt, None);
    loop {
        {
            let mut n = c.notifications();
            let mut it = n.timeout_iter(WAIT);
            loop {
                match it.next() {
                    // Applied at once; in a burst, the first read has the
                    // newest version and the rest are skipped.
                    Ok(Some(note)) if note.channel() == kills => {
                        crate::admin::control::on_kill_note(st, rt, note.payload())
                    }
                    Ok(Some(note)) => catch_up(st, rt, note.payload().parse().ok()),
                    Ok(None) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        if c.is_closed() {
            return Err("the listening connection closed".into());
        }
        // A connection that died without a word: a round trip finds out.
        c.simple_query("").map_err(|e| e.to_string())?;
    }
}

/// Applies the stored endpoints if they are newer than what the shards have
/// (`seen`: the version a notification named; `None`: read it).
fn catch_up(st: &AppState, rt: &tokio::runtime::Handle, seen: Option<i64>) {
    if seen.is_some_and(|v| v <= st.endpoints_applied.load(Ordering::Acquire)) {
        return; // this node made the change, or has applied a newer one
    }
    // A plain thread: the blocking read is fine here.
    let Ok(stored) = st.store.endpoints_version() else {
        return; // the database is away; the next connection catches up
    };
    if stored <= st.endpoints_applied.load(Ordering::Acquire) {
        return;
    }
    match rt.block_on(crate::admin::control::publish(st)) {
        Ok(()) => tracing::info!(
            version = st.endpoints_applied.load(Ordering::Acquire),
            "endpoints changed on another node: routing table updated"
        ),
        Err(e) => {
            tracing::warn!(error = %e.message, "applying another node's endpoint change failed")
        }
    }
}
