//! Starts the admin side: the event consumer and batched writer threads, and
//! the tokio runtime ("admin" threads) that serves the API. Nothing here runs
//! on a shard; shards reach it only through their event queues and it
//! reaches them only through their command channels.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::admin::auth::throttle::{LoginThrottle, ThrottleConfig};
use crate::admin::pipeline::feed::{OpsEvent, OpsFeed};
use crate::admin::pipeline::{self, Live};
use crate::admin::state::{AdminState, AppState};
use crate::bridge::{Event, ShardCommand};
use crate::registry::Registry;
use crate::store::Store;

/// Tokio worker threads of the admin runtime.
pub const WORKERS: usize = 2;

/// A start-up failure: printed as one line, exit code 2.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the admin runtime is started with.
pub struct RuntimeSpec {
    /// The migrated store.
    pub store: Store,
    /// JWT secret.
    pub secret: Vec<u8>,
    /// This node's id.
    pub node_id: String,
    /// The registry that built the first snapshot.
    pub registry: Registry,
    /// One per shard.
    pub commands: Vec<async_channel::Sender<ShardCommand>>,
    /// One per shard: its event queue and drop counter.
    pub events: Vec<(Receiver<Event>, Arc<AtomicU64>)>,
    /// The bound admin listener.
    pub listener: std::net::TcpListener,
    /// Allowed CORS origins (empty: CORS off).
    pub cors_origins: Vec<String>,
    /// Resident memory against `limits.max_memory_bytes`.
    pub memory: Arc<crate::shard::limits::MemoryPressure>,
    /// `server.node_heartbeat_ms`.
    pub node_heartbeat: Duration,
    /// The endpoints' version the first snapshot was read at.
    pub endpoints_version: i64,
    /// systemd's watchdog interval (`WatchdogSec`), when it asks for pings.
    pub watchdog: Option<Duration>,
}

/// A running admin side.
pub struct Running {
    /// Shared state (for the signal thread).
    pub state: AppState,
    /// A handle on the runtime, to run admin work from other threads.
    pub handle: tokio::runtime::Handle,
    /// Notified once: the admin port stops accepting (a successor took the
    /// listener over); connections already open are served to their end.
    pub stop_accepting: Arc<tokio::sync::Notify>,
}

/// Starts the event threads and the admin runtime; returns once it serves.
pub fn start(spec: RuntimeSpec) -> Result<Running, StartError> {
    let live = Live::new(&spec.node_id, spec.events);
    let ops = OpsFeed::default();
    let err = |what: &str, e: std::io::Error| StartError(format!("cannot start {what}: {e}"));
    pipeline::spawn_consumer(live.clone(), ops.clone()).map_err(|e| err("the event thread", e))?;
    pipeline::spawn_writer(live.clone(), spec.store.clone())
        .map_err(|e| err("the store writer", e))?;
    let state: AppState = Arc::new(AdminState {
        store: spec.store,
        secret: spec.secret,
        node_id: spec.node_id,
        started: Instant::now(),
        registry: tokio::sync::Mutex::new(spec.registry),
        commands: spec.commands,
        throttle: Mutex::new(LoginThrottle::new(ThrottleConfig::default())),
        hashing: Default::default(),
        users: Default::default(),
        live,
        ops,
        echo_active: Default::default(),
        meta_subs: Default::default(),
        memory: spec.memory,
        draining: Default::default(),
        node_heartbeat: spec.node_heartbeat,
        endpoints_applied: std::sync::atomic::AtomicI64::new(spec.endpoints_version),
        remote_kills: Default::default(),
        nodes_marked_down: Default::default(),
        handed_over: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(16)
        .thread_name("admin")
        .enable_all()
        .build()
        .map_err(|e| err("the admin runtime", e))?;
    let handle = rt.handle().clone();
    spec.listener
        .set_nonblocking(true)
        .map_err(|e| err("the admin listener", e))?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(spec.listener)
            .map_err(|e| err("the admin listener", e))?
    };
    let app = crate::admin::http::router::router(state.clone(), &spec.cors_origins);
    let st = state.clone();
    let stop_accepting = Arc::new(tokio::sync::Notify::new());
    let watchdog = spec.watchdog;
    let stop = stop_accepting.clone();
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            rt.block_on(async move {
                tokio::spawn(crate::admin::nodes::directory::run(st.clone()));
                if let Some(every) = watchdog {
                    tokio::spawn(watchdog_pings(st.clone(), every));
                }
                tokio::spawn(tick(st));
                let served = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.notified().await })
                .await;
                if let Err(e) = served {
                    tracing::error!("admin server stopped: {e}");
                }
            })
        })
        .map_err(|e| err("the admin thread", e))?;
    Ok(Running {
        state,
        handle,
        stop_accepting,
    })
}

/// Once a second: per-endpoint `stats` on `/ops`.
async fn tick(st: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut prev = std::collections::BTreeMap::new();
    loop {
        every.tick().await;
        if st.ops.has_readers() {
            let merged =
                crate::admin::pipeline::stats::merge(&st.live.stats.lock().expect("stats"));
            for (id, t) in &merged {
                let mut v = crate::admin::json::stats(id, Some(t));
                // Latency of the messages since the previous tick, for charts.
                let window = crate::admin::pipeline::stats::since(t, prev.get(id));
                v.window_us = Some(crate::admin::json::latency_pair(&window));
                st.ops.publish(OpsEvent::stats(id, v));
            }
            prev = merged;
        }
    }
}

/// Whether the process is well enough for a watchdog ping: every shard
/// reported within `limit` (they do once a second) — or the process is
/// draining or handed over, when shards end on purpose and the stop timeout
/// bounds the rest.
pub fn watchdog_healthy(
    reported_at: &[i64],
    now_ms: i64,
    limit: Duration,
    winding_down: bool,
) -> bool {
    winding_down
        || reported_at
            .iter()
            .all(|at| now_ms - at <= limit.as_millis() as i64)
}

/// `WATCHDOG=1` to systemd twice per interval while [`watchdog_healthy`];
/// sent from the admin runtime, so a stuck runtime stops the pings too.
async fn watchdog_pings(st: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_healthy = true;
    loop {
        tick.tick().await;
        let at: Vec<i64> = st
            .live
            .reported_at
            .iter()
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let winding_down = st.draining.load(std::sync::atomic::Ordering::Relaxed)
            || st.handed_over.load(std::sync::atomic::Ordering::Relaxed);
        let healthy = watchdog_healthy(&at, crate::store::now_ms(), every, winding_down);
        if healthy {
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                tracing::warn!("cannot ping the systemd watchdog: {e}");
            }
        } else if was_healthy {
            tracing::error!(
                "a shard has not reported for {} ms: no more watchdog pings (systemd restarts the service after WatchdogSec)",
                every.as_millis()
            );
        }
        was_healthy = healthy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_fed_only_while_every_shard_reports_or_the_process_winds_down() {
        let limit = Duration::from_secs(30);
        let now = 1_000_000;
        assert!(watchdog_healthy(
            &[now - 1_000, now - 29_000],
            now,
            limit,
            false
        ));
        assert!(!watchdog_healthy(
            &[now - 1_000, now - 31_000],
            now,
            limit,
            false
        ));
        assert!(watchdog_healthy(
            &[now - 1_000, now - 31_000],
            now,
            limit,
            true
        ));
    }
}
