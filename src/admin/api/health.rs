//! `GET /healthz` (SPEC 5): process, database and shards; `?detailed=true`
//! adds per-shard sessions and queue depth and the store's latency.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

/// How long the database check may take.
pub const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the database answers and every shard runs, else 503; the body
/// says which check failed.
pub async fn healthz(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let store = st.store.clone();
    let ping = tokio::time::timeout(
        DB_CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || store.ping()),
    )
    .await;
    let (db_ok, db_text, latency) = match ping {
        Ok(Ok(Ok(d))) => (true, "ok".to_string(), Some(d)),
        Ok(Ok(Err(e))) => (false, format!("error: {e}"), None),
        _ => (false, "error: no answer within 2 s".to_string(), None),
    };
    st.live.store_ok.store(db_ok, Ordering::Relaxed);
    let running = st.commands.iter().filter(|c| !c.is_closed()).count();
    let shards_ok = running == st.commands.len();
    let memory = &st.memory;
    let shedding = memory.shedding();
    let ok = db_ok && shards_ok && !shedding;
    let mut body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "uptime": st.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "node": st.node_id,
        "checks": {
            "database": db_text,
            "shards": if shards_ok { "ok".to_string() } else { format!("{running} of {} running", st.commands.len()) },
            "memory": if shedding {
                format!("shedding: resident {} of {} bytes", memory.rss.load(Ordering::Relaxed), memory.limit)
            } else {
                "ok".to_string()
            },
        },
    });
    if q.get("detailed").is_some_and(|v| v == "true" || v == "1") {
        // Only the per-shard session counts: no copy of the histograms.
        let sessions: Vec<u64> = {
            let stats = st.live.stats.lock().expect("stats");
            (0..st.commands.len())
                .map(|i| {
                    stats
                        .get(i)
                        .and_then(|s| s.as_ref())
                        .map_or(0, |s| s.endpoints.iter().map(|e| e.sessions_active).sum())
                })
                .collect()
        };
        let shards: Vec<Value> = (0..st.commands.len())
            .map(|i| {
                let sessions = sessions[i];
                json!({
                    "shard": i,
                    "running": !st.commands[i].is_closed(),
                    "sessions": sessions,
                    "eventQueueDepth": st.live.queues[i].len(),
                    "eventsDropped": st.live.dropped[i].load(Ordering::Relaxed),
                })
            })
            .collect();
        let w = &st.live.writer;
        body["shards"] = Value::Array(shards);
        body["opsReaders"] = st.ops.readers().into();
        body["store"] = json!({
            "backend": format!("{:?}", st.store.backend()).to_lowercase(),
            "latencyMs": latency.map(|d| d.as_secs_f64() * 1000.0),
            "lastBatchMs": w.last_batch_us.load(Ordering::Relaxed) as f64 / 1000.0,
            "backlogRows": st.live.backlog_len(),
            "writeBatches": w.batches.load(Ordering::Relaxed),
            "writeErrors": w.errors.load(Ordering::Relaxed),
            "rowsDropped": w.dropped.load(Ordering::Relaxed),
        });
        // Every node sharing the store (one of them: this one).
        body["nodes"] = match super::nodes::list_json(&st).await {
            Ok(n) => Value::Array(n),
            Err(_) => Value::Null,
        };
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
