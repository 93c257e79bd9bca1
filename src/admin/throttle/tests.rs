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

#[test]
fn an_account_is_throttled_after_its_limit_from_any_address() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    for i in 0..3 {
        assert!(t.check(ip(i), "Admin@x.io", now).is_ok());
        t.failed(ip(i), "Admin@x.io", now);
    }
    let retry = t
        .check(ip(9), "admin@x.io", now + Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(retry, Duration::from_secs(50));
    // Other accounts from a fresh address are not affected.
    assert!(t.check(ip(9), "other@x.io", now).is_ok());
    // The window ends.
    assert!(t
        .check(ip(9), "admin@x.io", now + Duration::from_secs(60))
        .is_ok());
}

#[test]
fn an_address_is_throttled_across_accounts_and_success_does_not_reset_it() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    for i in 0..5 {
        assert!(t.check(ip(1), &format!("user{i}@x.io"), now).is_ok());
        t.failed(ip(1), &format!("user{i}@x.io"), now);
    }
    t.succeeded("user0@x.io");
    assert!(t.check(ip(1), "fresh@x.io", now).is_err());
    assert!(t.check(ip(2), "fresh@x.io", now).is_ok());
}

#[test]
fn success_clears_the_account() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    t.failed(ip(1), "a@x.io", now);
    t.failed(ip(1), "a@x.io", now);
    t.succeeded("a@x.io");
    t.failed(ip(1), "a@x.io", now);
    t.failed(ip(1), "a@x.io", now);
    assert!(t.check(ip(1), "a@x.io", now).is_ok());
}

#[test]
fn memory_stays_bounded_under_many_addresses() {
    let mut t = LoginThrottle::new(cfg());
    let now = Instant::now();
    for i in 0..10_000u32 {
        let addr = IpAddr::from(i.to_be_bytes());
        t.failed(
            addr,
            &format!("u{i}@x.io"),
            now + Duration::from_millis(u64::from(i)),
        );
    }
    let (addrs, accounts) = t.remembered();
    assert!(addrs <= 100 && accounts <= 100, "{addrs} {accounts}");
    // The newest entries are the ones kept.
    let last = IpAddr::from(9_999u32.to_be_bytes());
    for _ in 0..4 {
        t.failed(last, "x@x.io", now + Duration::from_secs(10));
    }
    assert!(t
        .check(last, "y@x.io", now + Duration::from_secs(10))
        .is_err());
}
