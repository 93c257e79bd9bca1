//! Results: the percentile summary, the one-line JSON, the HdrHistogram
//! percentile-distribution (`.hgrm`) file, and the per-second progress line.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latency histogram in nanoseconds: 1 ns .. 1 h, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("static bounds")
}

/// Counters shared by the tasks of one run (all on one executor).
pub struct Stats {
    /// Recorded latencies (ns) inside the measurement window.
    pub hist: RefCell<Histogram<u64>>,
    /// Messages (or sessions) sent / started.
    pub sent: Cell<u64>,
    /// Messages echoed (or sessions completed).
    pub received: Cell<u64>,
    /// Messages received inside the measurement window.
    pub measured: Cell<u64>,
    /// Failed connects, refused upgrades, dropped connections.
    pub errors: Cell<u64>,
    /// The first error, for the report.
    pub first_error: RefCell<Option<String>>,
}

impl Stats {
    /// Empty.
    pub fn new() -> Rc<Stats> {
        Rc::new(Stats {
            hist: RefCell::new(histogram()),
            sent: Cell::new(0),
            received: Cell::new(0),
            measured: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
        })
    }

    /// Counts an error, keeping the first message.
    /// One message echoed (or session completed) that started at `t`;
    /// its latency is recorded when `t` is inside the measurement window.
    pub fn done(&self, t: Instant, measure_from: Instant) {
        self.received.set(self.received.get() + 1);
        if t >= measure_from {
            let _ = self
                .hist
                .borrow_mut()
                .record(t.elapsed().as_nanos().max(1) as u64);
            self.measured.set(self.measured.get() + 1);
        }
    }

    pub fn error(&self, e: impl Into<String>) {
        self.errors.set(self.errors.get() + 1);
        let mut f = self.first_error.borrow_mut();
        if f.is_none() {
            *f = Some(e.into());
        }
    }
}

/// Prints a progress line to stderr every second until `until`.
pub async fn progress(stats: Rc<Stats>, start: Instant, until: Instant, what: &'static str) {
    let mut last = (0u64, Instant::now());
    while Instant::now() < until {
        glommio::timer::Timer::new(Duration::from_secs(1)).await;
        let now = Instant::now();
        let r = stats.received.get();
        let rate = (r - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
        last = (r, now);
        let h = stats.hist.borrow();
        eprintln!(
            "[{:>4.0}s] {what} sent={} received={} {rate:.0}/s p50={:.1}us p99={:.1}us errors={}",
            now.duration_since(start).as_secs_f64(),
            stats.sent.get(),
            r,
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            stats.errors.get()
        );
    }
}

/// The final figures of a run.
pub struct Summary {
    /// `latency`, `throughput`, `connect`, `idle`.
    pub mode: &'static str,
    /// Free-form label (target name).
    pub label: String,
    /// Per-second rate over the measurement window (messages or sessions).
    pub rate: f64,
    /// Errors.
    pub errors: u64,
    /// Extra key/values for the JSON line.
    pub extra: Vec<(&'static str, serde_json::Value)>,
}

/// Percentiles (µs) reported everywhere.
pub const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

/// Prints the human summary and the one-line JSON; returns the JSON.
pub fn print(s: &Summary, h: &Histogram<u64>) -> serde_json::Value {
    let us = |v: u64| v as f64 / 1e3;
    let mut line = format!("{} [{}]:", s.mode, s.label);
    let mut json = serde_json::Map::new();
    json.insert("mode".into(), s.mode.into());
    json.insert("label".into(), s.label.clone().into());
    for (name, q) in PERCENTILES {
        let v = us(h.value_at_quantile(q));
        let _ = write!(line, " {name}={v:.1}us");
        json.insert(format!("{name}_us"), round1(v));
    }
    let max = us(h.max());
    let _ = write!(
        line,
        " max={max:.1}us rate={:.0}/s samples={} errors={}",
        s.rate,
        h.len(),
        s.errors
    );
    json.insert("max_us".into(), round1(max));
    json.insert("rate_per_s".into(), round1(s.rate));
    json.insert("samples".into(), h.len().into());
    json.insert("errors".into(), s.errors.into());
    for (k, v) in &s.extra {
        json.insert((*k).into(), v.clone());
    }
    println!("{line}");
    let v = serde_json::Value::Object(json);
    println!("{v}");
    v
}

fn round1(v: f64) -> serde_json::Value {
    ((v * 10.0).round() / 10.0).into()
}

/// HdrHistogram's percentile distribution text (values in milliseconds, 5
/// ticks per half distance), readable by HdrHistogram's plotter and `plot`.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if h.is_empty() {
        return out;
    }
    let ms = |v: u64| v as f64 / 1e6;
    let mut total = 0u64;
    for it in h.iter_quantiles(5) {
        let q = it.quantile_iterated_to();
        let v = ms(it.value_iterated_to());
        total += it.count_since_last_iteration();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{v:12.3} {q:14.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{v:12.3} {q:14.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_lists_percentiles_in_ms_up_to_the_max() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap(); // 1 µs .. 1 ms
        }
        let text = hgrm(&h);
        let rows: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| {
                l.trim_start()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
            .map(|l| {
                let mut f = l.split_whitespace();
                (
                    f.next().unwrap().parse().unwrap(),
                    f.next().unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert!(rows.len() > 20);
        assert!(
            rows.windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
            "monotonic"
        );
        let last = rows.last().unwrap();
        assert!((last.0 - 1.0).abs() < 0.01 && last.1 == 1.0, "{last:?}");
        assert!(text.contains("Total count    =         1000"));
    }
}
