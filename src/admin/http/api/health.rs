//! `GET /healthz` (SPEC 5): process, database and shards; `?detailed=true`
//! adds per-shard sessions and queue depth and the store's latency.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::AppState;

/// How long the database check may take.
pub const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the database answers and every shard runs, else 503; the body
/// says which check failed.
pub async fn healthz(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Json<HealthBody>) {
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
    let detailed = q.get("detailed").is_some_and(|v| v == "true" || v == "1");
    let body = HealthBody {
        status: if ok { "ok" } else { "degraded" },
        uptime: st.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        node: st.node_id.clone(),
        checks: Checks {
            database: db_text,
            shards: if shards_ok {
                "ok".to_string()
            } else {
                format!("{running} of {} running", st.commands.len())
            },
            memory: if shedding {
                format!(
                    "shedding: resident {} of {} bytes",
                    memory.rss.load(Ordering::Relaxed),
                    memory.limit
                )
            } else {
                "ok".to_string()
            },
        },
        detail: if detailed {
            Some(detail(&st, latency).await)
        } else {
            None
        },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /healthz`.
#[derive(Serialize)]
pub struct HealthBody {
    status: &'static str,
    uptime: u64,
    version: &'static str,
    node: String,
    checks: Checks,
    /// `?detailed=true` only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    detail: Option<Detail>,
}

/// Each check: `ok`, or what is wrong.
#[derive(Serialize)]
struct Checks {
    database: String,
    shards: String,
    memory: String,
}

/// What `?detailed=true` adds.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    shards: Vec<ShardHealth>,
    ops_readers: usize,
    store: StoreHealth,
    /// Every node sharing the store (one of them: this one); null when the
    /// store cannot be read.
    nodes: Option<Vec<Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShardHealth {
    shard: usize,
    running: bool,
    sessions: u64,
    event_queue_depth: usize,
    events_dropped: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoreHealth {
    backend: String,
    latency_ms: Option<f64>,
    last_batch_ms: f64,
    backlog_rows: usize,
    write_batches: u64,
    write_errors: u64,
    rows_dropped: u64,
}

/// Per shard, the store writer and the nodes; only the per-shard session
/// counts are read from the stats (no copy of the histograms).
async fn detail(st: &AppState, latency: Option<std::time::Duration>) -> Detail {
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
    let shards = (0..st.commands.len())
        .map(|i| ShardHealth {
            shard: i,
            running: !st.commands[i].is_closed(),
            sessions: sessions[i],
            event_queue_depth: st.live.queues[i].len(),
            events_dropped: st.live.dropped[i].load(Ordering::Relaxed),
        })
        .collect();
    let w = &st.live.writer;
    Detail {
        shards,
        ops_readers: st.ops.readers(),
        store: StoreHealth {
            backend: format!("{:?}", st.store.backend()).to_lowercase(),
            latency_ms: latency.map(|d| d.as_secs_f64() * 1000.0),
            last_batch_ms: w.last_batch_us.load(Ordering::Relaxed) as f64 / 1000.0,
            backlog_rows: st.live.backlog_len(),
            write_batches: w.batches.load(Ordering::Relaxed),
            write_errors: w.errors.load(Ordering::Relaxed),
            rows_dropped: w.dropped.load(Ordering::Relaxed),
        },
        nodes: super::nodes::list_json(st).await.ok(),
    }
}
