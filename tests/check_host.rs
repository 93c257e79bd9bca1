//! `wsrelay check-host` as a user runs it: output and exit code against fake
//! `/proc` trees (the hidden `--proc-root` flag).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fake_proc(name: &str, sysctls: &[(&str, &str)], nofile: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("wsrelay-cli-proc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (key, value) in sysctls {
        let p = root.join("sys").join(key.replace('.', "/"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{value}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("self")).unwrap();
    std::fs::write(
        root.join("self/limits"),
        format!("Max open files            {nofile}  {nofile}  files\nMax locked memory         unlimited  unlimited  bytes\n"),
    )
    .unwrap();
    root
}

fn check_host(root: &Path, connections: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args([
            "check-host",
            "--connections",
            connections,
            "--shards",
            "2",
            "--proc-root",
        ])
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
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
fn a_tuned_host_exits_0() {
    let root = fake_proc("tuned", TUNED, "1048576");
    let (code, out) = check_host(&root, "100000");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all 11 settings are fine"), "{out}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn an_under_tuned_host_exits_1_with_the_fix_for_each_setting() {
    let mut sysctls = TUNED.to_vec();
    sysctls[0] = ("net.core.somaxconn", "128");
    sysctls[8] = ("net.ipv4.tcp_migrate_req", "0");
    let root = fake_proc("stock", &sysctls, "1024");
    let (code, out) = check_host(&root, "100000");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("under-tuned: net.core.somaxconn = 128"),
        "{out}"
    );
    assert!(
        out.contains("fix: sysctl -w net.core.somaxconn=65535"),
        "{out}"
    );
    assert!(
        out.contains("under-tuned: nofile (RLIMIT_NOFILE) = 1024"),
        "{out}"
    );
    assert!(
        out.contains("fix: sysctl -w net.ipv4.tcp_migrate_req=1"),
        "{out}"
    );
    assert!(out.contains("3 of 11 settings under-tuned"), "{out}");
    // The same host is fine for a few hundred sessions except the sysctls
    // that do not depend on the count.
    let (_, few) = check_host(&root, "300");
    assert!(!few.contains("RLIMIT_NOFILE"), "{few}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_bad_connection_count_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args(["check-host", "--connections", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connections"));
}
