use super::*;

/// Builds a fake `/proc` with the given sysctls and limits.
fn fake_proc(sysctls: &[(&str, &str)], nofile: &str, memlock: &str) -> (PathBuf, HostView) {
    let root = std::env::temp_dir().join(format!(
        "wsrelay-fakeproc-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    for (name, value) in sysctls {
        let p = root.join("sys").join(name.replace('.', "/"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{value}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("self")).unwrap();
    std::fs::write(
        root.join("self/limits"),
        format!(
            "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            {nofile}                {nofile}                files     \nMax locked memory         {memlock}              {memlock}              bytes     \n"
        ),
    )
    .unwrap();
    (root.clone(), HostView { proc_root: root })
}

const TUNED: &[(&str, &str)] = &[
    ("net.core.somaxconn", "65535"),
    ("net.ipv4.tcp_max_syn_backlog", "65535"),
    ("fs.file-max", "4194304"),
    ("fs.nr_open", "4194304"),
    ("net.ipv4.ip_local_port_range", "1024\t65535"),
    ("net.ipv4.tcp_tw_reuse", "1"),
    ("net.ipv4.tcp_rmem", "4096\t16384\t4194304"),
    ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
    ("net.ipv4.tcp_migrate_req", "1"),
];

#[test]
fn a_tuned_host_has_no_findings() {
    let (root, host) = fake_proc(TUNED, "1048576", "67108864");
    let (findings, checked) = check(&host, 100_000, 2);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(checked, 11);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_stock_host_lists_each_under_tuned_setting_with_its_fix() {
    let stock = [
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.tcp_max_syn_backlog", "512"),
        ("fs.file-max", "9223372036854775807"),
        ("fs.nr_open", "1048576"),
        ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("net.ipv4.tcp_tw_reuse", "2"),
        ("net.ipv4.tcp_rmem", "4096\t131072\t6291456"),
        ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
        ("net.ipv4.tcp_migrate_req", "0"),
    ];
    let (root, host) = fake_proc(&stock, "1024", "8388608");
    let (findings, _) = check(&host, 100_000, 2);
    let names: Vec<_> = findings.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "net.ipv4.tcp_max_syn_backlog",
            "nofile (RLIMIT_NOFILE)",
            "net.ipv4.ip_local_port_range",
            "net.ipv4.tcp_tw_reuse",
            "net.ipv4.tcp_rmem",
            "net.ipv4.tcp_migrate_req",
        ]
    );
    let nofile = &findings[1];
    assert_eq!(nofile.current, "1024");
    assert!(nofile.fix.contains("LimitNOFILE="), "{nofile:?}");
    assert_eq!(
        findings[0].fix,
        "sysctl -w net.ipv4.tcp_max_syn_backlog=65535"
    );
    // 8 MiB of memlock is enough for 2 shards and a restart; 64 shards are not.
    let (findings, _) = check(&host, 100_000, 64);
    assert!(findings
        .iter()
        .any(|f| f.name == "memlock (RLIMIT_MEMLOCK)"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn fewer_connections_need_less() {
    let (root, host) = fake_proc(TUNED, "1024", "unlimited");
    let (few, _) = check(&host, 100, 1);
    assert!(few.is_empty(), "{few:?}");
    let (many, _) = check(&host, 10_000, 1);
    assert_eq!(
        many.iter().map(|f| f.name).collect::<Vec<_>>(),
        ["nofile (RLIMIT_NOFILE)"]
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn an_unreadable_tree_reports_every_setting() {
    let host = HostView {
        proc_root: PathBuf::from("/nonexistent/proc"),
    };
    let (findings, checked) = check(&host, 10, 1);
    assert_eq!(findings.len(), checked);
    assert!(findings.iter().all(|f| f.current == "unreadable"));
}

/// The shipped deploy files are what check-host asks for: a host with
/// `deploy/sysctl.d/60-wsrelay.conf` applied and the unit's limits has no
/// finding, every sysctl fix names a key of that file, and every setting in
/// the file carries a comment.
#[test]
fn the_deploy_files_fix_every_finding() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let sysctl_conf = std::fs::read_to_string(deploy.join("sysctl.d/60-wsrelay.conf")).unwrap();
    let mut sysctls = Vec::new();
    let mut previous_was_comment = false;
    for line in sysctl_conf.lines().map(str::trim) {
        if let Some((key, value)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            assert!(previous_was_comment, "no comment above `{line}`");
            sysctls.push((key.trim().to_string(), value.trim().replace(' ', "\t")));
        }
        previous_was_comment = line.starts_with('#');
    }
    let unit = std::fs::read_to_string(deploy.join("wsrelay.service")).unwrap();
    let unit_value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing from wsrelay.service"))
            .trim()
            .to_string()
    };
    let nofile = unit_value("LimitNOFILE=");
    let memlock = unit_value("LimitMEMLOCK=");
    let memlock_bytes = memlock.strip_suffix('M').unwrap().parse::<u64>().unwrap() << 20;

    let pairs: Vec<(&str, &str)> = sysctls
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (root, host) = fake_proc(&pairs, &nofile, &memlock_bytes.to_string());
    let (findings, _) = check(&host, 100_000, 2);
    assert!(findings.is_empty(), "{findings:?}");
    let _ = std::fs::remove_dir_all(root);

    let nowhere = HostView {
        proc_root: PathBuf::from("/nonexistent/proc"),
    };
    for f in check(&nowhere, 100_000, 2).0 {
        if let Some(rest) = f.fix.strip_prefix("sysctl -w ") {
            let key = rest.split('=').next().unwrap();
            assert!(
                sysctls.iter().any(|(k, _)| k == key),
                "{key} is not set by deploy/sysctl.d/60-wsrelay.conf"
            );
        }
    }
}
