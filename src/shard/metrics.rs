//! Shard-local metrics: plain counters in `Cell`s and HDR histograms in
//! `RefCell`s, per endpoint. Nothing here is shared with another thread; the
//! admin runtime will ask each shard for a [`ShardStats`] copy and merge.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use hdrhistogram::Histogram;

pub use crate::bridge::Direction;

pub use wsrelay_proto::Reject;

/// Close code classes of `wsrelay_closes_total`: each registered code
/// 1000–1015 by itself, then the application ranges (bounded cardinality).
pub const CLOSE_CLASSES: [&str; 19] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011",
    "1012", "1013", "1014", "1015", "3xxx", "4xxx", "other",
];

/// The index in [`CLOSE_CLASSES`] of `code`.
pub fn close_class(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

/// Sessions ended, by side that ended them and close code class.
pub type Closes = [[u64; CLOSE_CLASSES.len()]; 3];

/// An empty latency histogram (µs).
pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h, 2 significant digits (values within 1 %): 26 KB of
    // counts. With 3 digits a histogram was 188 KB, three per endpoint per
    // shard, each copied whenever it changed — 0.45 KB per session in the
    // idle-memory measurement (5,000 sessions on one endpoint, 2 shards).
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds")
}

/// Counters and histograms of one endpoint on one shard.
pub struct EndpointMetrics {
    /// Sessions opened.
    pub sessions_total: Cell<u64>,
    /// Sessions open now.
    pub sessions_active: Cell<u64>,
    /// Messages relayed, by direction.
    pub messages: [Cell<u64>; 2],
    /// Payload + header bytes relayed, by direction.
    pub bytes: [Cell<u64>; 2],
    /// Relay latency in µs (last byte read → last byte written), by direction.
    pub latency_us: [RefCell<Histogram<u64>>; 2],
    /// Upstream TCP connect + upgrade time in µs.
    pub connect_us: RefCell<Histogram<u64>>,
    /// Sessions ended, by side and close code class.
    closes: [[Cell<u64>; CLOSE_CLASSES.len()]; 3],
    /// Refused upgrades for this endpoint, by reason (`Reject::ALL` order).
    rejections: [Cell<u64>; Reject::ALL.len()],
    /// Counters as of the last report to the admin runtime.
    reported: Cell<Option<Totals>>,
}

/// The counters that change whenever anything in an endpoint's metrics does.
type Totals = (u64, u64, [u64; 2], [u64; 2], u64);

impl EndpointMetrics {
    fn new() -> EndpointMetrics {
        EndpointMetrics {
            sessions_total: Cell::new(0),
            sessions_active: Cell::new(0),
            messages: [Cell::new(0), Cell::new(0)],
            bytes: [Cell::new(0), Cell::new(0)],
            latency_us: [RefCell::new(histogram()), RefCell::new(histogram())],
            connect_us: RefCell::new(histogram()),
            closes: std::array::from_fn(|_| std::array::from_fn(|_| Cell::new(0))),
            rejections: std::array::from_fn(|_| Cell::new(0)),
            reported: Cell::new(None),
        }
    }

    /// Counts a session that ended with `code`, ended by `by`.
    pub fn record_close(&self, code: u16, by: crate::bridge::Side) {
        let c = &self.closes[by.index()][close_class(code)];
        c.set(c.get() + 1);
    }

    /// Counts a refused upgrade for this endpoint.
    pub fn reject(&self, r: Reject) {
        let c = &self.rejections[r.index()];
        c.set(c.get() + 1);
    }

    /// Records `n` messages that completed in one write, `us` after being read.
    #[inline]
    pub fn record_batch(&self, dir: Direction, msgs: u64, bytes: u64, us: u64) {
        let dir = dir.index();
        self.bytes[dir].set(self.bytes[dir].get() + bytes);
        if msgs > 0 {
            self.messages[dir].set(self.messages[dir].get() + msgs);
            let _ = self.latency_us[dir].borrow_mut().record_n(us.max(1), msgs);
        }
    }
}

/// All metrics of one shard.
pub struct ShardMetrics {
    endpoints: RefCell<HashMap<String, Rc<EndpointMetrics>>>,
    rejections: RefCell<HashMap<Reject, u64>>,
    /// Session tasks that panicked (the shard lives on).
    pub panics: Cell<u64>,
}

impl ShardMetrics {
    /// Empty metrics.
    pub fn new() -> Rc<ShardMetrics> {
        Rc::new(ShardMetrics {
            endpoints: RefCell::new(HashMap::new()),
            rejections: RefCell::new(HashMap::new()),
            panics: Cell::new(0),
        })
    }

    /// The metrics of endpoint `id` (created on first use).
    pub fn endpoint(&self, id: &str) -> Rc<EndpointMetrics> {
        if let Some(m) = self.endpoints.borrow().get(id) {
            return m.clone();
        }
        let m = Rc::new(EndpointMetrics::new());
        self.endpoints
            .borrow_mut()
            .insert(id.to_string(), m.clone());
        m
    }

    /// Counts a refused upgrade.
    pub fn reject(&self, r: Reject) {
        *self.rejections.borrow_mut().entry(r).or_default() += 1;
    }

    /// A plain copy of everything, to send to another thread or log.
    pub fn snapshot(&self, shard: usize) -> ShardStats {
        self.copy(shard, false)
    }

    /// Like [`ShardMetrics::snapshot`], but only the endpoints that changed
    /// since the last call (histograms are copied only when they changed).
    pub fn changes(&self, shard: usize) -> ShardStats {
        self.copy(shard, true)
    }

    fn copy(&self, shard: usize, changed_only: bool) -> ShardStats {
        let mut endpoints: Vec<_> = self
            .endpoints
            .borrow()
            .iter()
            .filter(|(_, m)| {
                let now = (
                    m.sessions_total.get(),
                    m.sessions_active.get(),
                    [m.messages[0].get(), m.messages[1].get()],
                    [m.bytes[0].get(), m.bytes[1].get()],
                    m.rejections.iter().map(Cell::get).sum(),
                );
                if !changed_only {
                    return true;
                }
                let changed = m.reported.get() != Some(now);
                m.reported.set(Some(now));
                changed
            })
            .map(|(id, m)| EndpointStats {
                id: id.clone(),
                sessions_total: m.sessions_total.get(),
                sessions_active: m.sessions_active.get(),
                messages: [m.messages[0].get(), m.messages[1].get()],
                bytes: [m.bytes[0].get(), m.bytes[1].get()],
                latency_us: [
                    m.latency_us[0].borrow().clone(),
                    m.latency_us[1].borrow().clone(),
                ],
                connect_us: m.connect_us.borrow().clone(),
                closes: m.closes.each_ref().map(|by| by.each_ref().map(Cell::get)),
                rejections: m.rejections.each_ref().map(Cell::get),
            })
            .collect();
        endpoints.sort_by(|a, b| a.id.cmp(&b.id));
        ShardStats {
            shard,
            endpoints,
            rejections: Reject::ALL
                .iter()
                .map(|r| {
                    (
                        r.label(),
                        self.rejections.borrow().get(r).copied().unwrap_or(0),
                    )
                })
                .collect(),
            panics: self.panics.get(),
        }
    }
}

/// A copy of one endpoint's metrics on one shard (`Send`).
#[derive(Clone)]
pub struct EndpointStats {
    /// Endpoint id.
    pub id: String,
    /// Sessions opened.
    pub sessions_total: u64,
    /// Sessions open at the time of the copy.
    pub sessions_active: u64,
    /// Messages by direction.
    pub messages: [u64; 2],
    /// Bytes by direction.
    pub bytes: [u64; 2],
    /// Relay latency by direction, µs.
    pub latency_us: [Histogram<u64>; 2],
    /// Upstream connect time, µs.
    pub connect_us: Histogram<u64>,
    /// Sessions ended, by side and close code class.
    pub closes: Closes,
    /// Refused upgrades for this endpoint, by reason (`Reject::ALL` order).
    pub rejections: [u64; Reject::ALL.len()],
}

impl EndpointStats {
    /// Nothing counted yet (what the admin side sums shards into).
    pub fn new(id: &str) -> EndpointStats {
        EndpointStats {
            id: id.to_string(),
            sessions_total: 0,
            sessions_active: 0,
            messages: [0; 2],
            bytes: [0; 2],
            latency_us: [histogram(), histogram()],
            connect_us: histogram(),
            closes: [[0; CLOSE_CLASSES.len()]; 3],
            rejections: [0; Reject::ALL.len()],
        }
    }
}

/// A copy of one shard's metrics (`Send`), merged by the admin side.
#[derive(Clone)]
pub struct ShardStats {
    /// Shard index.
    pub shard: usize,
    /// Per endpoint.
    pub endpoints: Vec<EndpointStats>,
    /// Refused upgrades that named no known endpoint, by reason label.
    pub rejections: Vec<(&'static str, u64)>,
    /// Panicked session tasks.
    pub panics: u64,
}

impl ShardStats {
    /// One summary line for the log.
    pub fn summary_line(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("shard {} summary:", self.shard);
        for e in &self.endpoints {
            let l = &e.latency_us;
            let _ = write!(
                s,
                " [{} active={} total={} msgs_in={} msgs_out={} bytes_in={} bytes_out={} p50_in_us={} p99_in_us={} p50_out_us={} p99_out_us={} connect_p99_us={}]",
                e.id,
                e.sessions_active,
                e.sessions_total,
                e.messages[0],
                e.messages[1],
                e.bytes[0],
                e.bytes[1],
                l[0].value_at_quantile(0.5),
                l[0].value_at_quantile(0.99),
                l[1].value_at_quantile(0.5),
                l[1].value_at_quantile(0.99),
                e.connect_us.value_at_quantile(0.99),
            );
        }
        let rej: Vec<String> = self
            .rejections
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(l, n)| format!("{l}={n}"))
            .collect();
        if !rej.is_empty() {
            let _ = write!(s, " rejected: {}", rej.join(" "));
        }
        if self.panics > 0 {
            let _ = write!(s, " panics={}", self.panics);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let m = ShardMetrics::new();
        let e = m.endpoint("echo");
        e.record_batch(Direction::In, 3, 300, 50);
        e.record_batch(Direction::Out, 0, 10, 5);
        assert!(Rc::ptr_eq(&e, &m.endpoint("echo")));
        m.reject(Reject::NotFound);
        m.reject(Reject::NotFound);
        let s = m.snapshot(1);
        assert_eq!(s.endpoints[0].messages, [3, 0]);
        assert_eq!(s.endpoints[0].bytes, [300, 10]);
        assert_eq!(s.endpoints[0].latency_us[0].len(), 3);
        assert_eq!(s.endpoints[0].latency_us[1].len(), 0);
        let line = s.summary_line();
        assert!(
            line.contains("not_found=2") && line.contains("msgs_in=3"),
            "{line}"
        );
    }

    #[test]
    fn changes_lists_only_endpoints_that_moved() {
        let m = ShardMetrics::new();
        m.endpoint("a").record_batch(Direction::In, 1, 10, 5);
        m.endpoint("b").record_batch(Direction::In, 1, 10, 5);
        assert_eq!(m.changes(0).endpoints.len(), 2);
        assert_eq!(m.changes(0).endpoints.len(), 0, "nothing moved");
        m.endpoint("b").record_batch(Direction::Out, 2, 20, 5);
        let c = m.changes(0);
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(
            (c.endpoints[0].id.as_str(), c.endpoints[0].messages),
            ("b", [1, 2])
        );
        assert_eq!(
            m.snapshot(0).endpoints.len(),
            2,
            "the full copy is unaffected"
        );
    }
}
