//! Changes from the other nodes (SPEC 7): on PostgreSQL a thread of its own
//! holds one connection that `LISTEN`s on this schema's channel. Every
//! change to the endpoints notifies it with the new version (a trigger in
//! the changing transaction, `migrations/postgres/0005_endpoint_notify.sql`);
//! a version newer than the one the shards route by is applied by reading
//! the endpoints again ([`crate::admin::control::publish`]). After
//! the connection is lost and made again, the version is read at once, so a
//! change made while this node was not listening is not lost.
//!
//! Session kills for another node go on a second channel: the node serving
//! `DELETE /api/sessions/:id` sends `{"kill", "node", "from", "request"}`,
//! the session's node kills it and answers `{"reply", "to", "killed"}`.

use std::sync::atomic::Ordering;

use postgres::fallible_iterator::FallibleIterator;
use std::time::Duration;

use crate::admin::api::AppState;

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
                std::thread::sleep(crate::admin::events::backoff(failures.max(1)));
            }
        })
        .map(|_| heard)
}

/// The channel endpoint changes of this schema are notified on.
pub const ENDPOINTS_CHANNEL: &str = "left('wsrelay_endpoints_' || current_schema(), 63)";
/// How long a kill sent to another node waits before it is sent again.
const KILL_RESEND: Duration = Duration::from_secs(1);

/// Prefix of the channel (+ schema) of kills between nodes.
pub const KILL_PREFIX: &str = "wsrelay_kill_";

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
            &[&KILL_PREFIX],
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
                    Ok(Some(note)) if note.channel() == kills => on_kill(st, rt, note.payload()),
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

/// A kill request or answer from another node.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum KillNote {
    Request {
        kill: uuid::Uuid,
        node: String,
        from: String,
        request: u64,
    },
    Reply {
        reply: u64,
        to: String,
        killed: bool,
    },
}

fn on_kill(st: &AppState, rt: &tokio::runtime::Handle, payload: &str) {
    tracing::debug!(payload, "kill note");
    match serde_json::from_str::<KillNote>(payload) {
        Ok(KillNote::Request {
            kill,
            node,
            from,
            request,
        }) if node == st.node_id && !st.handed_over.load(Ordering::Acquire) => {
            let st = st.clone();
            rt.spawn(async move {
                let shard = st
                    .live
                    .sessions
                    .lock()
                    .expect("sessions")
                    .get(&kill)
                    .map(|l| l.shard as usize);
                let killed = match shard {
                    Some(s) => crate::admin::control::kill_local(&st, kill, s)
                        .await
                        .unwrap_or(false),
                    None => false,
                };
                tracing::info!(session = %kill, from = %from, killed, "kill from another node");
                let reply = KillNote::Reply {
                    reply: request,
                    to: from,
                    killed,
                };
                let text = serde_json::to_string(&reply).unwrap_or_default();
                let store = st.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.notify(KILL_PREFIX, &text)).await;
            });
        }
        Ok(KillNote::Reply { reply, to, killed }) if to == st.node_id => {
            if let Some(w) = st.remote_kills.lock().expect("kills").remove(&reply) {
                let _ = w.send(killed);
            }
        }
        Ok(_) => {} // for another node
        Err(e) => tracing::warn!(error = %e, "a kill note that is not one"),
    }
}

/// Asks node `node` to kill session `id`; whether it did. No answer within
/// [`crate::admin::control::KILL_REPLY_TIMEOUT`] is 504.
pub async fn kill_remote(
    st: &AppState,
    node: &str,
    id: uuid::Uuid,
) -> Result<bool, crate::admin::api::ApiError> {
    use crate::admin::api::ApiError;
    let request: u64 = rand::random();
    let (tx, rx) = tokio::sync::oneshot::channel();
    st.remote_kills.lock().expect("kills").insert(request, tx);
    let note = KillNote::Request {
        kill: id,
        node: node.to_string(),
        from: st.node_id.clone(),
        request,
    };
    let text = serde_json::to_string(&note).map_err(|_| ApiError::internal())?;
    let until = tokio::time::Instant::now() + crate::admin::control::KILL_REPLY_TIMEOUT;
    let mut rx = rx;
    let answer = loop {
        // Sent again each second until answered: a node whose listening
        // connection was being made again missed it (a kill is idempotent).
        let text = text.clone();
        if let Err(e) = crate::admin::api::db(st, move |s| s.notify(KILL_PREFIX, &text)).await {
            st.remote_kills.lock().expect("kills").remove(&request);
            return Err(e);
        }
        let wait = (until - tokio::time::Instant::now()).min(KILL_RESEND);
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(r) => break r.ok(),
            Err(_) if tokio::time::Instant::now() >= until => break None,
            Err(_) => {}
        }
    };
    st.remote_kills.lock().expect("kills").remove(&request);
    match answer {
        Some(killed) => Ok(killed),
        None => Err(ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "node_timeout",
            format!("node {node} did not answer the kill; it may be down (its sessions are closed when it is marked down)"),
        )),
    }
}
