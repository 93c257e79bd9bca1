//! Merges the shards' metric copies into per-endpoint totals (counters
//! summed, HDR histograms added), for the stats route, `/ops` and `/metrics`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::shard::metrics::{EndpointStats, ShardStats};

/// Per-endpoint totals of the shards that have reported (each an
/// [`EndpointStats`] summed over the shards).
pub fn merge(shards: &[Option<ShardStats>]) -> BTreeMap<String, EndpointStats> {
    let mut out: BTreeMap<String, EndpointStats> = BTreeMap::new();
    for s in shards.iter().flatten() {
        for e in &s.endpoints {
            let t = out
                .entry(e.id.clone())
                .or_insert_with(|| EndpointStats::new(&e.id));
            t.sessions_active += e.sessions_active;
            t.sessions_total += e.sessions_total;
            for d in 0..2 {
                t.messages[d] += e.messages[d];
                t.bytes[d] += e.bytes[d];
                let _ = t.latency_us[d].add(&e.latency_us[d]);
            }
            let _ = t.connect_us.add(&e.connect_us);
            for (n, m) in t.rejections.iter_mut().zip(&e.rejections) {
                *n += m;
            }
            for (side, classes) in t.closes.iter_mut().zip(&e.closes) {
                for (n, m) in side.iter_mut().zip(classes) {
                    *n += m;
                }
            }
        }
    }
    out
}

/// Relay latency of the messages counted since `prev` (by direction): the
/// difference of two cumulative histograms. If counts went down (a shard
/// was replaced), the cumulative histogram is returned.
pub fn since(cur: &EndpointStats, prev: Option<&EndpointStats>) -> [Histogram<u64>; 2] {
    let mut out = cur.latency_us.clone();
    if let Some(p) = prev {
        for (w, old) in out.iter_mut().zip(&p.latency_us) {
            let whole = w.clone();
            if old.len() > w.len() || w.subtract(old).is_err() {
                *w = whole;
            }
        }
    }
    out
}

/// Refused upgrades by reason, over all shards.
pub fn rejections(shards: &[Option<ShardStats>]) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for s in shards.iter().flatten() {
        for (label, n) in &s.rejections {
            *out.entry(*label).or_default() += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::metrics::{Direction, ShardMetrics};

    #[test]
    fn shards_are_summed_and_histograms_added() {
        let a = ShardMetrics::new();
        a.endpoint("e").record_batch(Direction::In, 2, 200, 100);
        let b = ShardMetrics::new();
        b.endpoint("e").record_batch(Direction::In, 1, 50, 1000);
        b.endpoint("e").record_batch(Direction::Out, 1, 10, 7);
        b.endpoint("f").record_batch(Direction::Out, 4, 40, 9);
        let merged = merge(&[Some(a.snapshot(0)), None, Some(b.snapshot(2))]);
        let e = &merged["e"];
        assert_eq!(e.messages, [3, 1]);
        assert_eq!(e.bytes, [250, 10]);
        assert_eq!(e.latency_us[0].len(), 3);
        assert!(e.latency_us[0].max() >= 1000 && e.latency_us[0].value_at_quantile(0.5) < 200);
        assert_eq!(merged["f"].messages, [0, 4]);
    }

    #[test]
    fn a_window_holds_only_the_newer_messages() {
        let m = ShardMetrics::new();
        m.endpoint("e").record_batch(Direction::In, 100, 100, 5_000);
        let before = merge(&[Some(m.snapshot(0))]);
        m.endpoint("e").record_batch(Direction::In, 10, 10, 40);
        let after = merge(&[Some(m.snapshot(0))]);
        let w = since(&after["e"], before.get("e"));
        assert_eq!(w[0].len(), 10);
        assert!(
            w[0].max() < 100,
            "the old slow messages are not in the window"
        );
        assert_eq!(since(&after["e"], None)[0].len(), 110);
    }
}
