//! `GET /metrics`: Prometheus text format. Every metric name is defined in
//! [`names`]; nothing else in the code spells one.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use hdrhistogram::Histogram;

use crate::admin::api::AppState;

/// The metric names (SPEC 5: all start `wsrelay_`).
pub mod names {
    /// Gauge, by endpoint.
    pub const SESSIONS_ACTIVE: &str = "wsrelay_sessions_active";
    /// Counter, by endpoint.
    pub const SESSIONS: &str = "wsrelay_sessions_total";
    /// Counter, by endpoint and direction.
    pub const MESSAGES: &str = "wsrelay_messages_total";
    /// Counter, by endpoint and direction.
    pub const BYTES: &str = "wsrelay_bytes_total";
    /// Summary (seconds), by endpoint and direction.
    pub const RELAY_LATENCY: &str = "wsrelay_relay_latency_seconds";
    /// Summary (seconds), by endpoint.
    pub const UPSTREAM_CONNECT: &str = "wsrelay_upstream_connect_seconds";
    /// Counter, by reason.
    pub const HANDSHAKE_REJECTIONS: &str = "wsrelay_handshake_rejections_total";
    /// Counter.
    pub const EVENTS_DROPPED: &str = "wsrelay_events_dropped_total";
    /// Gauge, by shard.
    pub const EVENT_QUEUE_DEPTH: &str = "wsrelay_event_queue_depth";
    /// Counter.
    pub const STORE_BATCHES: &str = "wsrelay_store_write_batches_total";
    /// Counter.
    pub const STORE_ERRORS: &str = "wsrelay_store_write_errors_total";
    /// Counter.
    pub const STORE_ROWS: &str = "wsrelay_store_rows_written_total";
    /// Counter.
    pub const STORE_DROPPED: &str = "wsrelay_store_rows_dropped_total";
    /// Gauge.
    pub const STORE_BACKLOG: &str = "wsrelay_store_backlog_rows";
    /// Counter.
    pub const SESSION_PANICS: &str = "wsrelay_session_panics_total";
    /// Gauge.
    pub const UPTIME: &str = "wsrelay_uptime_seconds";
}

/// Quantiles exported for the latency summaries.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A summary in seconds from a histogram in microseconds.
fn summary(out: &mut String, name: &str, labels: &str, h: &Histogram<u64>) {
    for q in QUANTILES {
        let _ = writeln!(
            out,
            "{name}{{{labels},quantile=\"{q}\"}} {}",
            h.value_at_quantile(q) as f64 / 1e6
        );
    }
    let sum = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
}

/// The whole exposition.
pub fn text(st: &AppState) -> String {
    use names::*;
    let shards = st.live.stats.lock().expect("stats").clone();
    let merged = crate::admin::stats::merge(&shards);
    let mut out = String::with_capacity(4096);
    let dirs = ["in", "out"];

    head(&mut out, SESSIONS_ACTIVE, "gauge", "Sessions open now.");
    for (id, t) in &merged {
        let _ = writeln!(out, "{SESSIONS_ACTIVE}{{endpoint=\"{id}\"}} {}", t.active);
    }
    head(
        &mut out,
        SESSIONS,
        "counter",
        "Sessions opened since start.",
    );
    for (id, t) in &merged {
        let _ = writeln!(out, "{SESSIONS}{{endpoint=\"{id}\"}} {}", t.total);
    }
    head(
        &mut out,
        MESSAGES,
        "counter",
        "Messages relayed (in: client to target).",
    );
    for (id, t) in &merged {
        for (d, dir) in dirs.iter().enumerate() {
            let _ = writeln!(
                out,
                "{MESSAGES}{{endpoint=\"{id}\",direction=\"{dir}\"}} {}",
                t.messages[d]
            );
        }
    }
    head(
        &mut out,
        BYTES,
        "counter",
        "Bytes relayed, frame headers included.",
    );
    for (id, t) in &merged {
        for (d, dir) in dirs.iter().enumerate() {
            let _ = writeln!(
                out,
                "{BYTES}{{endpoint=\"{id}\",direction=\"{dir}\"}} {}",
                t.bytes[d]
            );
        }
    }
    head(
        &mut out,
        RELAY_LATENCY,
        "summary",
        "Relay latency: last byte of a message read to its last byte written.",
    );
    for (id, t) in &merged {
        for (d, dir) in dirs.iter().enumerate() {
            summary(
                &mut out,
                RELAY_LATENCY,
                &format!("endpoint=\"{id}\",direction=\"{dir}\""),
                &t.latency[d],
            );
        }
    }
    head(
        &mut out,
        UPSTREAM_CONNECT,
        "summary",
        "Upstream TCP connect and WebSocket upgrade time.",
    );
    for (id, t) in &merged {
        summary(
            &mut out,
            UPSTREAM_CONNECT,
            &format!("endpoint=\"{id}\""),
            &t.connect,
        );
    }
    head(
        &mut out,
        HANDSHAKE_REJECTIONS,
        "counter",
        "Refused upgrades by reason.",
    );
    for (reason, n) in crate::admin::stats::rejections(&shards) {
        let _ = writeln!(out, "{HANDSHAKE_REJECTIONS}{{reason=\"{reason}\"}} {n}");
    }
    head(
        &mut out,
        EVENTS_DROPPED,
        "counter",
        "Events dropped because a shard's queue was full.",
    );
    let _ = writeln!(out, "{EVENTS_DROPPED} {}", st.live.events_dropped());
    head(
        &mut out,
        EVENT_QUEUE_DEPTH,
        "gauge",
        "Events waiting in each shard's queue.",
    );
    for (i, q) in st.live.queues.iter().enumerate() {
        let _ = writeln!(out, "{EVENT_QUEUE_DEPTH}{{shard=\"{i}\"}} {}", q.len());
    }
    let w = &st.live.writer;
    head(
        &mut out,
        STORE_BATCHES,
        "counter",
        "Batches written to the store.",
    );
    let _ = writeln!(out, "{STORE_BATCHES} {}", w.batches.load(Ordering::Relaxed));
    head(
        &mut out,
        STORE_ERRORS,
        "counter",
        "Store batches that failed and were retried.",
    );
    let _ = writeln!(out, "{STORE_ERRORS} {}", w.errors.load(Ordering::Relaxed));
    head(
        &mut out,
        STORE_ROWS,
        "counter",
        "Session and sample rows written.",
    );
    let _ = writeln!(out, "{STORE_ROWS} {}", w.rows.load(Ordering::Relaxed));
    head(
        &mut out,
        STORE_DROPPED,
        "counter",
        "Rows dropped because the store backlog was full.",
    );
    let _ = writeln!(out, "{STORE_DROPPED} {}", w.dropped.load(Ordering::Relaxed));
    head(
        &mut out,
        STORE_BACKLOG,
        "gauge",
        "Rows waiting to be written.",
    );
    let _ = writeln!(out, "{STORE_BACKLOG} {}", st.live.backlog_len());
    head(
        &mut out,
        SESSION_PANICS,
        "counter",
        "Session tasks that panicked (the shard went on).",
    );
    let panics: u64 = shards.iter().flatten().map(|s| s.panics).sum();
    let _ = writeln!(out, "{SESSION_PANICS} {panics}");
    head(
        &mut out,
        UPTIME,
        "gauge",
        "Seconds since the process started.",
    );
    let _ = writeln!(out, "{UPTIME} {}", st.started.elapsed().as_secs());
    out
}

/// `GET /metrics`
pub async fn render(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text(&st),
    )
}
