//! `wsrelay check-host [--connections N]`: reads the live sysctls and limits
//! and prints each one that is under-tuned for N relayed sessions, with the
//! line that fixes it. The values come from a [`HostView`] so tests can point
//! it at a fake `/proc` tree.

use std::path::{Path, PathBuf};

use crate::admin::start::serve::MEMLOCK_PER_SHARD;
use crate::shard::BACKLOG;

/// Where host values are read from.
pub struct HostView {
    /// Normally `/proc`.
    pub proc_root: PathBuf,
}

impl HostView {
    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(rel))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn sysctl(&self, name: &str) -> Option<String> {
        self.read(&format!("sys/{}", name.replace('.', "/")))
    }

    fn sysctl_u64s(&self, name: &str) -> Option<Vec<u64>> {
        self.sysctl(name)?
            .split_whitespace()
            .map(|v| v.parse().ok())
            .collect()
    }

    /// Soft limit from `self/limits` (`None` = unlimited or unreadable).
    fn limit(&self, label: &str) -> Option<Option<u64>> {
        let text = self.read("self/limits")?;
        let line = text.lines().find(|l| l.starts_with(label))?;
        let soft = line[label.len()..].split_whitespace().next()?;
        Some(if soft == "unlimited" {
            None
        } else {
            soft.parse().ok()
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The setting, e.g. `net.core.somaxconn`.
    pub name: &'static str,
    /// What it is now.
    pub current: String,
    /// What N sessions need.
    pub wanted: String,
    /// The line that fixes it.
    pub fix: String,
}

/// Collects findings and counts the settings checked.
#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
    checked: usize,
}

impl Report {
    fn require(
        &mut self,
        name: &'static str,
        ok: bool,
        current: String,
        wanted: String,
        fix: String,
    ) {
        self.checked += 1;
        if !ok {
            self.findings.push(Finding {
                name,
                current,
                wanted,
                fix,
            });
        }
    }

    fn at_least(&mut self, name: &'static str, current: Option<u64>, want: u64, fix: String) {
        self.require(
            name,
            current.is_some_and(|v| v >= want),
            show(current),
            format!(">= {want}"),
            fix,
        );
    }

    fn exactly(&mut self, name: &'static str, current: Option<u64>, want: u64) {
        self.require(
            name,
            current == Some(want),
            show(current),
            want.to_string(),
            format!("sysctl -w {name}={want}"),
        );
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or("unreadable".into(), |v| v.to_string())
}

/// All checks for `connections` sessions on `shards` shards. Returns the
/// under-tuned settings and how many settings were checked.
pub fn check(host: &HostView, connections: u64, shards: u64) -> (Vec<Finding>, usize) {
    let mut r = Report::default();
    let fds = 2 * connections + 256;
    let first = |name: &str| host.sysctl_u64s(name).and_then(|v| v.first().copied());
    let backlog = BACKLOG as u64;
    for name in ["net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"] {
        r.at_least(
            name,
            first(name),
            backlog,
            format!("sysctl -w {name}=65535"),
        );
    }
    r.at_least(
        "fs.file-max",
        first("fs.file-max"),
        fds,
        format!("sysctl -w fs.file-max={}", fds.max(4_194_304)),
    );
    r.at_least(
        "fs.nr_open",
        first("fs.nr_open"),
        fds,
        format!("sysctl -w fs.nr_open={}", fds.max(1_048_576)),
    );
    let nofile = fds.max(1_048_576);
    r.at_least(
        "nofile (RLIMIT_NOFILE)",
        host.limit("Max open files").map(|v| v.unwrap_or(u64::MAX)),
        fds,
        format!("LimitNOFILE={nofile} in the systemd unit (or ulimit -n {nofile})"),
    );
    // One ephemeral port per session per target address; past 64k, spread
    // targets over several addresses.
    let ports = host
        .sysctl_u64s("net.ipv4.ip_local_port_range")
        .and_then(|v| (v.len() == 2).then(|| v[1].saturating_sub(v[0]) + 1));
    r.at_least(
        "net.ipv4.ip_local_port_range",
        ports,
        connections.min(64_000),
        "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"".into(),
    );
    r.exactly("net.ipv4.tcp_tw_reuse", first("net.ipv4.tcp_tw_reuse"), 1);
    for name in ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"] {
        // Idle sessions cost kernel memory by the default size; throughput
        // needs a large maximum.
        let v = host.sysctl_u64s(name);
        let ok = v
            .as_ref()
            .is_some_and(|v| v.len() == 3 && v[1] <= 65_536 && v[2] >= 4_194_304);
        let current = v.map_or("unreadable".into(), |v| {
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
        });
        r.require(
            name,
            ok,
            current,
            "default <= 65536, max >= 4194304".into(),
            format!("sysctl -w {name}=\"4096 16384 4194304\""),
        );
    }
    let need = 2 * shards * MEMLOCK_PER_SHARD;
    let kib = need.div_ceil(1024);
    r.at_least(
        "memlock (RLIMIT_MEMLOCK)",
        host.limit("Max locked memory")
            .map(|v| v.unwrap_or(u64::MAX)),
        need,
        format!("LimitMEMLOCK={kib}K in the systemd unit (or ulimit -l {kib})"),
    );
    r.exactly(
        "net.ipv4.tcp_migrate_req",
        first("net.ipv4.tcp_migrate_req"),
        1,
    );
    (r.findings, r.checked)
}

/// Runs the command: prints findings; `Ok(true)` when all is well.
pub fn run(proc_root: &Path, connections: u64, shards: u64) -> bool {
    let host = HostView {
        proc_root: proc_root.to_path_buf(),
    };
    let (findings, checked) = check(&host, connections, shards);
    println!("check-host: {connections} connections on {shards} shard(s), {checked} settings checked under {}", proc_root.display());
    for f in &findings {
        println!(
            "under-tuned: {} = {} (want {})\n  fix: {}",
            f.name, f.current, f.wanted, f.fix
        );
    }
    if findings.is_empty() {
        println!("check-host: all {checked} settings are fine");
    } else {
        println!("check-host: {} of {checked} settings under-tuned; deploy/sysctl.d/60-wsrelay.conf and deploy/wsrelay.service set them all", findings.len());
    }
    findings.is_empty()
}

#[cfg(test)]
mod tests;
