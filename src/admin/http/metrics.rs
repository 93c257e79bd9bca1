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
    /// Histogram (seconds), by endpoint and direction.
    pub const RELAY_LATENCY: &str = "wsrelay_relay_latency_seconds";
    /// Histogram (seconds), by endpoint.
    pub const UPSTREAM_CONNECT: &str = "wsrelay_upstream_connect_seconds";
    /// Counter, by endpoint, close code class and the side that ended it.
    pub const CLOSES: &str = "wsrelay_closes_total";
    /// Counter, by endpoint (empty: the request named no known endpoint)
    /// and reason.
    pub const HANDSHAKE_REJECTIONS: &str = "wsrelay_handshake_rejections_total";
    /// Counter.
    pub const EVENTS_DROPPED: &str = "wsrelay_events_dropped_total";
    /// Gauge, by shard: seconds since the shard last reported (once a
    /// second when it runs).
    pub const SHARD_REPORT_AGE: &str = "wsrelay_shard_report_age_seconds";
    /// Counter: nodes this node marked down (silent 3 heartbeats).
    pub const NODES_MARKED_DOWN: &str = "wsrelay_nodes_marked_down_total";
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
    /// Gauge, always 1, by version.
    pub const BUILD_INFO: &str = "wsrelay_build_info";
    /// Gauge: resident memory, bytes (the standard name).
    pub const RESIDENT: &str = "process_resident_memory_bytes";
    /// Gauge: virtual memory, bytes.
    pub const VIRTUAL: &str = "process_virtual_memory_bytes";
    /// Counter: user + system CPU seconds.
    pub const CPU: &str = "process_cpu_seconds_total";
    /// Gauge: Unix time the process started.
    pub const START_TIME: &str = "process_start_time_seconds";
    /// Gauge: open file descriptors.
    pub const OPEN_FDS: &str = "process_open_fds";
    /// Gauge: the file descriptor limit.
    pub const MAX_FDS: &str = "process_max_fds";
}

/// Upper bounds (µs) of the relay latency buckets: 25 µs to 10 s.
pub const LATENCY_BUCKETS_US: [u64; 18] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Upper bounds (µs) of the upstream connect buckets: 250 µs to 30 s.
pub const CONNECT_BUCKETS_US: [u64; 16] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Cumulative counts at each of `bounds` (µs) from an HDR histogram in
/// µs: a recorded value counts in the first bucket its range's highest
/// equivalent value fits (HDR keeps 2 significant digits, so a value within
/// 1 % above a bound may count in the next bucket; never in an earlier one).
pub fn buckets<const N: usize>(h: &Histogram<u64>, bounds: &[u64; N]) -> [u64; N] {
    let mut per = [0u64; N];
    for v in h.iter_recorded() {
        let top = v.value_iterated_to();
        if let Some(i) = bounds.iter().position(|b| top <= *b) {
            per[i] += v.count_at_value();
        }
    }
    let mut sum = 0;
    per.map(|n| {
        sum += n;
        sum
    })
}

/// A histogram in seconds from an HDR histogram in microseconds.
fn histogram<const N: usize>(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &Histogram<u64>,
    bounds: &[u64; N],
) {
    for (le, n) in bounds.iter().zip(buckets(h, bounds)) {
        let le = *le as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
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

/// The whole exposition. Per-endpoint series are those of `endpoints` (the
/// routing table's ids): present at 0 before the first event, gone once the
/// endpoint is deleted.
pub fn text(st: &AppState, endpoints: &[String]) -> String {
    use names::*;
    // Summed under the lock: the shards' histograms are not copied first.
    let (mut merged, rejections, panics) = {
        let shards = st.live.stats.lock().expect("stats");
        let panics: u64 = shards.iter().flatten().map(|s| s.panics).sum();
        (
            crate::admin::pipeline::stats::merge(&shards),
            crate::admin::pipeline::stats::rejections(&shards),
            panics,
        )
    };
    merged.retain(|id, _| endpoints.binary_search(id).is_ok());
    for id in endpoints {
        merged
            .entry(id.clone())
            .or_insert_with(|| crate::shard::metrics::EndpointStats::new(id));
    }
    let mut out = String::with_capacity(4096);
    head(
        &mut out,
        BUILD_INFO,
        "gauge",
        "Always 1; the version labels it.",
    );
    let _ = writeln!(
        out,
        "{BUILD_INFO}{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

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
                let _ = writeln!(
                    out,
                    "{CLOSES}{{endpoint=\"{id}\",code_class=\"{class}\",side=\"{}\"}} {n}",
                    side.as_str()
                );
            }
        }
    }
    head(
        &mut out,
        RELAY_LATENCY,
        "histogram",
        "Relay latency: last byte of a message read to its last byte written.",
    );
    for (id, t) in &merged {
        for (dir, h) in crate::bridge::Direction::BOTH.iter().zip(&t.latency_us) {
            let labels = format!("endpoint=\"{id}\",direction=\"{}\"", dir.label());
            histogram(&mut out, RELAY_LATENCY, &labels, h, &LATENCY_BUCKETS_US);
        }
    }
    head(
        &mut out,
        UPSTREAM_CONNECT,
        "histogram",
        "Upstream TCP connect and WebSocket upgrade time.",
    );
    for (id, t) in &merged {
        histogram(
            &mut out,
            UPSTREAM_CONNECT,
            &format!("endpoint=\"{id}\""),
            &t.connect_us,
            &CONNECT_BUCKETS_US,
        );
    }
    head(
        &mut out,
        HANDSHAKE_REJECTIONS,
        "counter",
        "Refused upgrades by endpoint (empty: none known was named) and reason.",
    );
    for (reason, n) in rejections {
        let _ = writeln!(
            out,
            "{HANDSHAKE_REJECTIONS}{{endpoint=\"\",reason=\"{reason}\"}} {n}"
        );
    }
    for (id, t) in &merged {
        for (r, n) in crate::shard::metrics::Reject::ALL.iter().zip(t.rejections) {
            let _ = writeln!(
                out,
                "{HANDSHAKE_REJECTIONS}{{endpoint=\"{id}\",reason=\"{}\"}} {n}",
                r.label()
            );
        }
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
    head(
        &mut out,
        SHARD_REPORT_AGE,
        "gauge",
        "Seconds since each shard last reported its metrics (it does once a second while it runs).",
    );
    let now = crate::store::now_ms();
    for (i, at) in st.live.reported_at.iter().enumerate() {
        let age = (now - at.load(Ordering::Relaxed)).max(0) as f64 / 1e3;
        let _ = writeln!(out, "{SHARD_REPORT_AGE}{{shard=\"{i}\"}} {age}");
    }
    single(
        &mut out,
        NODES_MARKED_DOWN,
        "counter",
        "Nodes this node marked down after 3 silent heartbeats (their sessions closed as node lost).",
        st.nodes_marked_down.load(Ordering::Relaxed),
    );
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
    if let Some(p) = crate::sys::process_stats() {
        single(
            &mut out,
            VIRTUAL,
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        );
        single(
            &mut out,
            CPU,
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        );
        single(
            &mut out,
            START_TIME,
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        );
        single(
            &mut out,
            OPEN_FDS,
            "gauge",
            "Number of open file descriptors.",
            p.open_fds,
        );
        single(
            &mut out,
            MAX_FDS,
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds,
        );
    }
    out
}

/// `GET /metrics`
pub async fn render(State(st): State<AppState>) -> impl IntoResponse {
    let endpoints = st.registry.lock().await.endpoint_ids().to_vec();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text(&st, &endpoints),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_a_bound_holds_its_own_value() {
        let mut h = crate::shard::metrics::histogram();
        h.record(25).unwrap(); // exactly the first bound
        h.record(26).unwrap(); // just above it
        h.record_n(900, 3).unwrap();
        h.record(20_000_000).unwrap(); // above every bound: only in +Inf
        let b = buckets(&h, &LATENCY_BUCKETS_US);
        assert_eq!(&b[..6], &[1, 2, 2, 2, 2, 5]);
        assert_eq!(*b.last().unwrap(), 5, "20 s is past the last bound");
        let mut text = String::new();
        histogram(&mut text, "x", "e=\"a\"", &h, &LATENCY_BUCKETS_US);
        assert!(
            text.contains("x_bucket{e=\"a\",le=\"0.000025\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("x_bucket{e=\"a\",le=\"+Inf\"} 6\n"), "{text}");
        assert!(text.contains("x_count{e=\"a\"} 6\n"), "{text}");
    }
}
