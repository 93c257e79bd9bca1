//! `GET /metrics`: Prometheus text format. Every metric name is defined in
//! [`names`]; nothing else in the code spells one.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use hdrhistogram::Histogram;

use crate::admin::state::AppState;

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
    /// Counter, by endpoint, close code class and the side that ended it.
    pub const CLOSES: &str = "wsrelay_closes_total";
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
    /// Gauge: 1 while new upgrades are shed for memory.
    pub const MEMORY_SHEDDING: &str = "wsrelay_memory_shedding";
    /// Gauge: `limits.max_memory_bytes` (0: off).
    pub const MEMORY_LIMIT: &str = "wsrelay_memory_limit_bytes";
    /// Gauge: resident memory, bytes (the standard name).
    pub const RESIDENT: &str = "process_resident_memory_bytes";
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

/// A metric with one value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A metric by endpoint and direction (`in`: client to target).
fn by_direction<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    endpoints: impl Iterator<Item = (&'a String, [u64; 2])>,
) {
    head(out, name, "counter", help);
    for (id, v) in endpoints {
        for (dir, n) in crate::bridge::Direction::BOTH.iter().zip(v) {
            let dir = dir.label();
            let _ = writeln!(out, "{name}{{endpoint=\"{id}\",direction=\"{dir}\"}} {n}");
        }
    }
}

/// The whole exposition.
pub fn text(st: &AppState) -> String {
    use names::*;
    // Summed under the lock: the shards' histograms are not copied first.
    let (merged, rejections, panics) = {
        let shards = st.live.stats.lock().expect("stats");
        let panics: u64 = shards.iter().flatten().map(|s| s.panics).sum();
        (
            crate::admin::pipeline::stats::merge(&shards),
            crate::admin::pipeline::stats::rejections(&shards),
            panics,
        )
    };
    let mut out = String::with_capacity(4096);

    head(&mut out, SESSIONS_ACTIVE, "gauge", "Sessions open now.");
    for (id, t) in &merged {
        let _ = writeln!(
            out,
            "{SESSIONS_ACTIVE}{{endpoint=\"{id}\"}} {}",
            t.sessions_active
        );
    }
    head(
        &mut out,
        SESSIONS,
        "counter",
        "Sessions opened since start.",
    );
    for (id, t) in &merged {
        let _ = writeln!(out, "{SESSIONS}{{endpoint=\"{id}\"}} {}", t.sessions_total);
    }
    by_direction(
        &mut out,
        MESSAGES,
        "Messages relayed (in: client to target).",
        merged.iter().map(|(id, t)| (id, t.messages)),
    );
    by_direction(
        &mut out,
        BYTES,
        "Bytes relayed, frame headers included.",
        merged.iter().map(|(id, t)| (id, t.bytes)),
    );
    head(
        &mut out,
        CLOSES,
        "counter",
        "Sessions ended, by close code (registered codes by themselves, 3xxx/4xxx for application codes) and the side that ended them (client, target, wsrelay).",
    );
    for (id, t) in &merged {
        for side in crate::bridge::Side::ALL {
            for (class, n) in crate::shard::metrics::CLOSE_CLASSES
                .iter()
                .zip(t.closes[side.index()])
            {
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "{CLOSES}{{endpoint=\"{id}\",code_class=\"{class}\",side=\"{}\"}} {n}",
                        side.as_str()
                    );
                }
            }
        }
    }
    head(
        &mut out,
        RELAY_LATENCY,
        "summary",
        "Relay latency: last byte of a message read to its last byte written.",
    );
    for (id, t) in &merged {
        for (dir, h) in crate::bridge::Direction::BOTH.iter().zip(&t.latency_us) {
            let labels = format!("endpoint=\"{id}\",direction=\"{}\"", dir.label());
            summary(&mut out, RELAY_LATENCY, &labels, h);
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
            &t.connect_us,
        );
    }
    head(
        &mut out,
        HANDSHAKE_REJECTIONS,
        "counter",
        "Refused upgrades by reason.",
    );
    for (reason, n) in rejections {
        let _ = writeln!(out, "{HANDSHAKE_REJECTIONS}{{reason=\"{reason}\"}} {n}");
    }
    single(
        &mut out,
        EVENTS_DROPPED,
        "counter",
        "Events dropped because a shard's queue was full.",
        st.live.events_dropped(),
    );
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
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    single(
        &mut out,
        STORE_BATCHES,
        "counter",
        "Batches written to the store.",
        n(&w.batches),
    );
    single(
        &mut out,
        STORE_ERRORS,
        "counter",
        "Store batches that failed and were retried.",
        n(&w.errors),
    );
    single(
        &mut out,
        STORE_ROWS,
        "counter",
        "Session and sample rows written.",
        n(&w.rows),
    );
    single(
        &mut out,
        STORE_DROPPED,
        "counter",
        "Rows dropped because the store backlog was full.",
        n(&w.dropped),
    );
    single(
        &mut out,
        STORE_BACKLOG,
        "gauge",
        "Rows waiting to be written.",
        st.live.backlog_len(),
    );
    single(
        &mut out,
        SESSION_PANICS,
        "counter",
        "Session tasks that panicked (the shard went on).",
        panics,
    );
    single(
        &mut out,
        UPTIME,
        "gauge",
        "Seconds since the process started.",
        st.started.elapsed().as_secs(),
    );
    single(
        &mut out,
        MEMORY_SHEDDING,
        "gauge",
        "1 while new upgrades get 503 because resident memory passed 90 % of limits.max_memory_bytes (until it is below 80 %).",
        u8::from(st.memory.shedding()),
    );
    single(
        &mut out,
        MEMORY_LIMIT,
        "gauge",
        "limits.max_memory_bytes (0: no ceiling).",
        st.memory.limit,
    );
    single(
        &mut out,
        RESIDENT,
        "gauge",
        "Resident memory size in bytes.",
        crate::sys::resident_bytes().unwrap_or(0),
    );
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
