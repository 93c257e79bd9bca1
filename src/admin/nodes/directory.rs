//! The node directory (SPEC 7): this node's row is refreshed every
//! `server.node_heartbeat_ms` (state and session count), and nodes silent
//! for [`LOST_AFTER`] intervals are marked down, their `ACTIVE` sessions
//! closed with reason `node lost`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use crate::admin::state::AppState;
use crate::store::NodeRow;

/// Heartbeat intervals of silence after which a node is down.
pub const LOST_AFTER: u32 = 3;

/// Heartbeats this node and sweeps lost ones, forever.
pub async fn run(st: AppState) {
    let mut every = tokio::time::interval(st.node_heartbeat);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let store = st.store.clone();
        let me = st.node_id.clone();
        let state = if st.draining.load(Ordering::Relaxed) {
            "draining"
        } else {
            "up"
        };
        let sessions = st.live.sessions.lock().expect("sessions").len() as u64;
        let cutoff = crate::store::now_ms() - lost_after_ms(st.node_heartbeat);
        let swept = tokio::task::spawn_blocking(move || {
            store.heartbeat_node(&me, state, sessions)?;
            store.sweep_lost_nodes(&me, cutoff)
        })
        .await;
        match swept {
            Ok(Ok((lost, closed))) => {
                st.nodes_marked_down
                    .fetch_add(lost.len() as u64, Ordering::Relaxed);
                if !lost.is_empty() || closed > 0 {
                    tracing::warn!(
                        nodes = ?lost,
                        sessions = closed,
                        "nodes silent for {LOST_AFTER} heartbeats marked down; their sessions closed (node lost)"
                    );
                }
            }
            // The writer and /healthz report the database; a heartbeat that
            // did not land is retried at the next tick.
            Ok(Err(e)) => tracing::debug!(error = %e, "node heartbeat failed"),
            Err(_) => {}
        }
    }
}

/// Milliseconds of silence after which a node is down.
pub fn lost_after_ms(heartbeat: Duration) -> i64 {
    heartbeat.as_millis() as i64 * i64::from(LOST_AFTER)
}

/// A node as `GET /api/nodes` shows it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBody<'a> {
    id: &'a str,
    host: &'a str,
    version: &'a str,
    started_at: String,
    last_heartbeat: String,
    state: &'a str,
    sessions: i64,
}

/// A node as `GET /api/nodes` shows it: a node whose row says `up` or
/// `draining` but that has been silent for [`LOST_AFTER`] intervals is
/// `down` even before a live node has marked it.
pub fn json(n: &NodeRow, heartbeat: Duration, now_ms: i64) -> Value {
    let silent = now_ms - n.last_heartbeat > lost_after_ms(heartbeat);
    let state = if silent { "down" } else { n.state.as_str() };
    crate::admin::json::to_value(NodeBody {
        id: &n.id,
        host: &n.host,
        version: &n.version,
        started_at: crate::admin::json::time(n.started_at),
        last_heartbeat: crate::admin::json::time(n.last_heartbeat),
        state,
        sessions: if state == "down" { 0 } else { n.sessions },
    })
}
