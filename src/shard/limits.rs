//! Connect-time admission: the global and per-endpoint connection limits
//! (exact across shards, one atomic each) and the per-address connect rate.
//! Nothing here is touched per message.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A held connection slot; dropping it gives the slot back (also on panic).
pub struct Slot {
    counters: [Option<Arc<AtomicUsize>>; 2],
}

impl Drop for Slot {
    fn drop(&mut self) {
        for c in self.counters.iter().flatten() {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Which limit refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `limits.max_connections`.
    Global,
    /// The endpoint's `maxConnections`.
    Endpoint,
}

fn acquire(c: &Arc<AtomicUsize>, max: usize) -> Option<Arc<AtomicUsize>> {
    // Increment first, then check: concurrent admissions on other shards see
    // each other's increments, so at most `max` ever succeed together.
    if c.fetch_add(1, Ordering::AcqRel) < max {
        Some(c.clone())
    } else {
        c.fetch_sub(1, Ordering::AcqRel);
        None
    }
}

/// Takes one slot of each limit or none.
pub fn admit(
    global: &Arc<AtomicUsize>,
    global_max: usize,
    endpoint: &Arc<AtomicUsize>,
    endpoint_max: usize,
) -> Result<Slot, Full> {
    let g = acquire(global, global_max).ok_or(Full::Global)?;
    let mut slot = Slot {
        counters: [Some(g), None],
    };
    match acquire(endpoint, endpoint_max) {
        Some(e) => {
            slot.counters[1] = Some(e);
            Ok(slot)
        }
        None => Err(Full::Endpoint), // `slot` drops and releases the global one
    }
}

/// Log lines for refused upgrades a shard writes per second at most.
pub const REFUSAL_LINES_PER_SECOND: u32 = 20;

/// A per-second budget of log lines (shard-local, no lock): a flood of
/// refusals costs at most [`REFUSAL_LINES_PER_SECOND`] lines a second.
#[derive(Debug)]
pub struct LogBudget {
    window: std::cell::Cell<Option<std::time::Instant>>,
    used: std::cell::Cell<u32>,
    suppressed: std::cell::Cell<u64>,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget {
            window: std::cell::Cell::new(None),
            used: std::cell::Cell::new(0),
            suppressed: std::cell::Cell::new(0),
        }
    }
}

impl LogBudget {
    /// `Some(n)`: write the line, and say `n` lines were left out before
    /// it; `None`: leave it out (counted).
    pub fn take(&self, now: std::time::Instant) -> Option<u64> {
        let fresh = self
            .window
            .get()
            .is_none_or(|w| now.duration_since(w) >= std::time::Duration::from_secs(1));
        if fresh {
            self.window.set(Some(now));
            self.used.set(0);
        }
        if self.used.get() >= REFUSAL_LINES_PER_SECOND {
            self.suppressed.set(self.suppressed.get() + 1);
            return None;
        }
        self.used.set(self.used.get() + 1);
        Some(self.suppressed.replace(0))
    }
}

/// Token buckets per client address, shared by all shards without a lock:
/// a fixed table of slots, each one `AtomicU64` updated by compare-and-swap.
/// Addresses that hash to the same slot share a bucket, which can only make
/// the limit stricter, never looser.
pub struct IpBuckets {
    rate: u64,
    epoch: Instant,
    hasher: RandomState,
    slots: Box<[AtomicU64]>,
}

const SLOTS: usize = 8192;
const MILLI: u64 = 1000;

impl IpBuckets {
    /// `rate` connects per second per address, burst of `rate`.
    pub fn new(rate: u32) -> IpBuckets {
        IpBuckets {
            rate: u64::from(rate),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Takes a token for `ip`; `Err(seconds)` is the Retry-After value.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, self.epoch.elapsed().as_millis() as u64)
    }

    /// [`IpBuckets::check`] at a given time (ms since the epoch), for tests.
    pub fn check_at(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let cap = self.rate * MILLI; // in milli-tokens
        let slot = &self.slots[(self.hasher.hash_one(ip) as usize) % SLOTS];
        // Layout: high 32 bits = milli-tokens spent below capacity ("debt"),
        // low 32 bits = time of the last update in ms (wrapping).
        let now32 = now_ms as u32;
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let (debt, last) = ((cur >> 32), cur as u32);
            let elapsed = u64::from(now32.wrapping_sub(last));
            let refill = elapsed.saturating_mul(self.rate); // milli-tokens since `last`
            let debt = if cur == 0 {
                0
            } else {
                debt.saturating_sub(refill)
            };
            if debt + MILLI > cap {
                let wait_ms = (debt + MILLI - cap).div_ceil(self.rate);
                return Err(wait_ms.div_ceil(1000).max(1));
            }
            let new = ((debt + MILLI) << 32) | u64::from(now32.max(1));
            match slot.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_shedding_starts_above_90_and_stops_below_80_percent() {
        let m = MemoryPressure::new(1000);
        assert_eq!(m.update(900), None, "90 % is not above 90 %");
        assert!(!m.shedding());
        assert_eq!(m.update(901), Some(true));
        assert!(m.shedding());
        assert_eq!(m.update(850), None, "between 80 and 90 %: still shedding");
        assert_eq!(m.update(800), None);
        assert_eq!(m.update(799), Some(false));
        assert!(!m.shedding());
        assert_eq!(m.update(850), None, "not again until above 90 %");
        let off = MemoryPressure::new(0);
        assert_eq!(off.update(u64::MAX), None);
        assert!(!off.shedding());
        assert_eq!(off.rss.load(Ordering::Relaxed), u64::MAX);
        let huge = MemoryPressure::new(u64::MAX);
        assert_eq!(huge.update(u64::MAX - 1), Some(true), "no overflow");
    }

    #[test]
    fn admission_is_exact_under_threads() {
        let global = Arc::new(AtomicUsize::new(0));
        let ep = Arc::new(AtomicUsize::new(0));
        let slots: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (g, e) = (global.clone(), ep.clone());
                    s.spawn(move || {
                        (0..50)
                            .filter_map(|_| admit(&g, 1000, &e, 50).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(slots.len(), 50);
        assert_eq!(ep.load(Ordering::SeqCst), 50);
        assert_eq!(
            global.load(Ordering::SeqCst),
            50,
            "refused endpoint admissions gave the global slot back"
        );
        drop(slots);
        assert_eq!(global.load(Ordering::SeqCst), 0);
        assert_eq!(ep.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn global_limit_refuses_first() {
        let global = Arc::new(AtomicUsize::new(0));
        let ep = Arc::new(AtomicUsize::new(0));
        let _a = admit(&global, 1, &ep, 10).unwrap();
        assert_eq!(admit(&global, 1, &ep, 10).err(), Some(Full::Global));
        assert_eq!(ep.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn bucket_allows_rate_then_refuses_then_refills() {
        let b = IpBuckets::new(3);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "::1".parse().unwrap();
        for _ in 0..3 {
            b.check_at(ip, 5000).unwrap();
        }
        assert_eq!(b.check_at(ip, 5000), Err(1));
        b.check_at(other, 5000).unwrap();
        assert!(b.check_at(ip, 5100).is_err(), "0.3 token after 100 ms");
        b.check_at(ip, 5334).unwrap();
        assert!(b.check_at(ip, 5334).is_err());
        for _ in 0..3 {
            b.check_at(ip, 9000).unwrap();
        }
        assert!(b.check_at(ip, 9000).is_err(), "burst is capped at the rate");
    }

    #[test]
    fn zero_rate_is_off() {
        let b = IpBuckets::new(0);
        for _ in 0..100 {
            b.check_at("1.1.1.1".parse().unwrap(), 0).unwrap();
        }
    }
}

/// Load shedding on resident memory (`limits.max_memory_bytes`): set above
/// 90 % of the ceiling, cleared below 80 % (the gap keeps it from flapping).
/// A sampling thread on the admin side updates it; shards read one atomic
/// at admission.
#[derive(Debug, Default)]
pub struct MemoryPressure {
    /// The ceiling in bytes (0: off).
    pub limit: u64,
    /// The last resident size sampled, bytes.
    pub rss: AtomicU64,
    shedding: AtomicBool,
}

impl MemoryPressure {
    /// Shedding above 90 % of `limit` bytes (0: never).
    pub fn new(limit: u64) -> MemoryPressure {
        MemoryPressure {
            limit,
            ..Default::default()
        }
    }

    /// Whether new upgrades are refused now.
    pub fn shedding(&self) -> bool {
        self.shedding.load(Ordering::Relaxed)
    }

    /// Takes a sample of the resident size; returns the new state when it
    /// changed.
    pub fn update(&self, rss: u64) -> Option<bool> {
        self.rss.store(rss, Ordering::Relaxed);
        if self.limit == 0 {
            return None;
        }
        let was = self.shedding();
        // u128: no overflow for any ceiling.
        let pct = |p: u128| (self.limit as u128 * p / 100) as u64;
        let now = if was { rss >= pct(80) } else { rss > pct(90) };
        (now != was).then(|| {
            self.shedding.store(now, Ordering::Relaxed);
            now
        })
    }
}
