use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn cfg() -> ThrottleConfig {
    ThrottleConfig {
        per_address: 5,
        per_account: 3,
        window: Duration::from_secs(60),
        max_entries: 100,
    }
}

/// Attempts that fail (are never refunded).
fn fail(t: &mut LoginThrottle, addr: IpAddr, account: &str, now: Instant) {
    let _counted = t.reserve(addr, account, now).expect("room for an attempt");
}

#[test]
fn an_account_is_throttled_after_its_limit_from_any_address() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    for i in 0..3 {
        fail(&mut t, ip(i), "Admin@x.io", now);
    }
    let retry = t
        .reserve(ip(9), "admin@x.io", now + Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(retry, Duration::from_secs(50));
    // Other accounts from a fresh address are not affected.
    assert!(t.reserve(ip(9), "other@x.io", now).is_ok());
    // The window ends.
    assert!(t
        .reserve(ip(9), "admin@x.io", now + Duration::from_secs(60))
        .is_ok());
}

#[test]
fn attempts_in_flight_count_before_they_are_verified() {
    // Concurrency: 50 attempts reserved before any is verified; only the
    // limit's worth is admitted.
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    let admitted: Vec<Attempt> = (0..50)
        .filter_map(|_| t.reserve(ip(1), "a@x.io", now).ok())
        .collect();
    assert_eq!(admitted.len(), 3, "the account's limit");
    let from_one_address: Vec<Attempt> = (0..50)
        .filter_map(|i| t.reserve(ip(2), &format!("u{i}@x.io"), now).ok())
        .collect();
    assert_eq!(from_one_address.len(), 5, "the address's limit");
}

#[test]
fn a_refunded_attempt_does_not_count_and_success_does_not_clear_failures() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    fail(&mut t, ip(1), "a@x.io", now);
    fail(&mut t, ip(2), "a@x.io", now);
    // The owner logs in any number of times: refunded, so never locked.
    for _ in 0..10 {
        let ok = t.reserve(ip(3), "a@x.io", now).unwrap();
        t.refund(ok);
    }
    // The two failures still count: one more fills the account.
    fail(&mut t, ip(4), "a@x.io", now);
    assert!(t.reserve(ip(5), "a@x.io", now).is_err());
}

#[test]
fn a_refund_from_an_ended_window_changes_nothing() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    let old = t.reserve(ip(1), "a@x.io", now).unwrap();
    let later = now + Duration::from_secs(61);
    for _ in 0..3 {
        fail(&mut t, ip(2), "a@x.io", later);
    }
    t.refund(old);
    assert!(t.reserve(ip(3), "a@x.io", later).is_err());
}

#[test]
fn an_address_is_throttled_across_accounts() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    for i in 0..5 {
        fail(&mut t, ip(1), &format!("user{i}@x.io"), now);
    }
    assert!(t.reserve(ip(1), "fresh@x.io", now).is_err());
    assert!(t.reserve(ip(2), "fresh@x.io", now).is_ok());
}

#[test]
fn the_default_policy_is_20_per_address_and_100_per_account() {
    let mut t = LoginThrottle::new(ThrottleConfig::default());
    let now = Instant::now();
    // 10 wrong attempts from 10 other addresses do not lock the owner out.
    for i in 0..10 {
        fail(&mut t, ip(i), "admin@x.io", now);
    }
    assert!(t.reserve(ip(200), "admin@x.io", now).is_ok());
    // 100 from all addresses together do.
    for i in 0..89u8 {
        fail(&mut t, IpAddr::from([10, 1, 0, i]), "admin@x.io", now);
    }
    assert!(t.reserve(ip(201), "admin@x.io", now).is_err());
    for i in 0..20 {
        fail(&mut t, ip(250), &format!("u{i}@x.io"), now);
    }
    assert!(t.reserve(ip(250), "other@x.io", now).is_err());
}

#[test]
fn memory_stays_bounded_under_many_addresses() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    for i in 0..10_000u32 {
        let addr = IpAddr::from(i.to_be_bytes());
        fail(
            &mut t,
            addr,
            &format!("u{i}@x.io"),
            now + Duration::from_millis(u64::from(i)),
        );
    }
    let (addrs, accounts) = t.remembered();
    assert!(addrs <= 100 && accounts <= 100, "{addrs} {accounts}");
    // The newest entries are the ones kept.
    let last = IpAddr::from(9_999u32.to_be_bytes());
    for i in 0..4 {
        fail(
            &mut t,
            last,
            &format!("x{i}@x.io"),
            now + Duration::from_secs(10),
        );
    }
    assert!(t
        .reserve(last, "y@x.io", now + Duration::from_secs(10))
        .is_err());
}
