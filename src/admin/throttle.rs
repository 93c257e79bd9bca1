//! Login throttling: failed logins are counted per client address and per
//! account in fixed windows; past the limit, logins from that address or for
//! that account are refused (429 with `Retry-After`) until the window ends.
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
    /// Failures allowed per account per window (well before 100).
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
            per_account: 10,
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
    fn blocked_for(&self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let w = self.entries.get(key)?;
        let end = w.start + window;
        (w.failures >= self.limit && now < end).then(|| end - now)
    }

    fn fail(&mut self, key: &K, now: Instant, cfg: &ThrottleConfig) {
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

    /// `Err(retry_after)` if a login from `addr` for `account` must be
    /// refused now. Checked before the password is (so a throttled attacker
    /// costs no hashing).
    pub fn check(&self, addr: IpAddr, account: &str, now: Instant) -> Result<(), Duration> {
        let a = self.addresses.blocked_for(&addr, now, self.cfg.window);
        let b = self
            .accounts
            .blocked_for(&account.to_lowercase(), now, self.cfg.window);
        match a.max(b) {
            Some(d) => Err(d.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn failed(&mut self, addr: IpAddr, account: &str, now: Instant) {
        let cfg = self.cfg;
        self.addresses.fail(&addr, now, &cfg);
        self.accounts.fail(&account.to_lowercase(), now, &cfg);
    }

    /// A successful login clears the account's failures (not the address's:
    /// one valid account must not reset an address that guesses others).
    pub fn succeeded(&mut self, account: &str) {
        self.accounts.entries.remove(&account.to_lowercase());
    }

    /// Addresses and accounts currently remembered.
    pub fn remembered(&self) -> (usize, usize) {
        (self.addresses.entries.len(), self.accounts.entries.len())
    }
}

#[cfg(test)]
mod tests;
