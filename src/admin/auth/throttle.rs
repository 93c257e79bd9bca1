//! Login throttling: every login attempt is counted against its client
//! address and its account *before* the password is checked (a reservation),
//! and refunded when it turns out not to be a failure. So concurrency cannot
//! get more guesses verified than the limits allow: with N attempts in
//! flight, only those that found room were admitted to hashing.
//!
//! Policy (README, "Login throttling"): per client address at most 20
//! verified failures per 15 minutes, over any accounts; per account at most
//! 100 per 15 minutes from all addresses together (NIST SP 800-63B's
//! ceiling). A success does not clear an account's failures (else the owner
//! logging in would give a guesser a fresh 100), and the account limit is high
//! enough that a handful of failures from elsewhere never locks its owner out.
//! Memory is bounded: at most `max_entries` addresses and accounts are kept.
//!
//! Time is passed in, so the behaviour is tested without sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures allowed per client address per window.
    pub per_address: u32,
    /// Failures allowed per account per window, from all addresses.
    pub per_account: u32,
    /// Window length.
    pub window: Duration,
    /// Addresses (and, separately, accounts) remembered at most.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            per_address: 20,
            per_account: 100,
            window: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

#[derive(Debug)]
struct Counter<K> {
    limit: u32,
    entries: HashMap<K, Window>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    /// The window of `key` as it stands at `now` (a fresh one if it ended).
    fn current(&self, key: &K, now: Instant, window: Duration) -> Option<Window> {
        self.entries
            .get(key)
            .copied()
            .filter(|w| now < w.start + window)
    }

    /// How long `key` must wait, if its window is full.
    fn blocked_for(&self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let w = self.current(key, now, window)?;
        (w.failures >= self.limit).then(|| w.start + window - now)
    }

    /// Counts one attempt; the start of the window it was counted in.
    fn count(&mut self, key: &K, now: Instant, cfg: &ThrottleConfig) -> Instant {
        if !self.entries.contains_key(key) && self.entries.len() >= cfg.max_entries {
            self.evict(now, cfg);
        }
        let w = self.entries.entry(key.clone()).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= w.start + cfg.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.start
    }

    /// Takes back an attempt counted in the window that started at `start`
    /// (nothing if that window is gone).
    fn uncount(&mut self, key: &K, start: Instant) {
        if let Some(w) = self.entries.get_mut(key).filter(|w| w.start == start) {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    /// Drops expired windows; if still full, the oldest half.
    fn evict(&mut self, now: Instant, cfg: &ThrottleConfig) {
        self.entries.retain(|_, w| now < w.start + cfg.window);
        if self.entries.len() >= cfg.max_entries {
            let mut starts: Vec<Instant> = self.entries.values().map(|w| w.start).collect();
            starts.sort_unstable();
            let cut = starts[starts.len() / 2];
            self.entries.retain(|_, w| w.start > cut);
        }
    }
}

/// Failed-login bookkeeping for the admin API.
#[derive(Debug)]
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    addresses: Counter<IpAddr>,
    accounts: Counter<String>,
}

/// A login attempt counted before its password is checked. Dropping it
/// leaves it counted as a failure; [`LoginThrottle::refund`] takes it back.
#[derive(Debug)]
#[must_use = "an attempt counts as a failure unless refunded"]
pub struct Attempt {
    addr: IpAddr,
    account: String,
    addr_window: Instant,
    account_window: Instant,
}

impl LoginThrottle {
    /// A throttle with these limits.
    pub fn new(cfg: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            cfg,
            addresses: Counter {
                limit: cfg.per_address,
                entries: HashMap::new(),
            },
            accounts: Counter {
                limit: cfg.per_account,
                entries: HashMap::new(),
            },
        }
    }

    /// Counts an attempt from `addr` for `account` if both have room, before
    /// any password is checked; `Err(retry_after)` if either is full (the
    /// attempt is refused and costs no hashing).
    pub fn reserve(
        &mut self,
        addr: IpAddr,
        account: &str,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let account = account.to_lowercase();
        let a = self.addresses.blocked_for(&addr, now, self.cfg.window);
        let b = self.accounts.blocked_for(&account, now, self.cfg.window);
        if let Some(d) = a.max(b) {
            return Err(d.max(Duration::from_secs(1)));
        }
        let cfg = self.cfg;
        let addr_window = self.addresses.count(&addr, now, &cfg);
        let account_window = self.accounts.count(&account, now, &cfg);
        Ok(Attempt {
            addr,
            account,
            addr_window,
            account_window,
        })
    }

    /// The attempt was no failure (the right password, or refused before
    /// its password was checked): it stops counting.
    pub fn refund(&mut self, a: Attempt) {
        self.addresses.uncount(&a.addr, a.addr_window);
        self.accounts.uncount(&a.account, a.account_window);
    }

    /// Addresses and accounts currently remembered.
    pub fn remembered(&self) -> (usize, usize) {
        (self.addresses.entries.len(), self.accounts.entries.len())
    }
}

#[cfg(test)]
mod tests;
