//! The Grafana dashboard and the alert rules against a real Prometheus
//! (issue 14): Prometheus scrapes a wsrelay under a little load every
//! 200 ms, loads `deploy/prometheus/wsrelay-rules.yml`, and every panel's
//! query and every rule's query (its expression without the threshold) must
//! parse and return data. Needs Prometheus (`PROMETHEUS`, or `prometheus` on
//! the PATH; `.ci/run` extracts Debian's package).
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tungstenite::Message;

fn prometheus() -> Option<String> {
    let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    tool_present(&bin, &["--version"], "prometheus (set PROMETHEUS)").then_some(bin)
}

/// Stops the process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 100 ms until it gives a value; panics (with the
/// Prometheus log) after `limit`.
fn wait_for<T>(what: &str, limit: Duration, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; Prometheus said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET /api/v1/<path>?query=…` → its `data`, or the error Prometheus gave.
fn api(prom: SocketAddr, path: &str, query: Option<&str>) -> Result<Value, String> {
    let mut req = ureq::get(&format!("http://{prom}/api/v1/{path}"));
    if let Some(q) = query {
        req = req.query("query", q);
    }
    let body: Value = match req.call() {
        Ok(r) => r.into_json().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    if body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(format!("{}: {}", body["errorType"], body["error"]))
    }
}

/// An instant query's result vector.
fn query(prom: SocketAddr, q: &str) -> Result<Vec<Value>, String> {
    let data = api(prom, "query", Some(q))?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// A rule's expression without its final comparison (`a / b > 0.05` →
/// `a / b`): what it measures, which has data whether or not it fires.
fn measured(expr: &str) -> &str {
    let b = expr.as_bytes();
    let (mut depth, mut quoted, mut cut) = (0i32, false, None);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b'(' | b'{' | b'[' if !quoted => depth += 1,
            b')' | b'}' | b']' if !quoted => depth -= 1,
            b' ' if !quoted && depth == 0 => {
                for op in [" >= ", " <= ", " == ", " != ", " > ", " < "] {
                    if expr[i..].starts_with(op) {
                        cut = Some(i);
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    cut.map_or(expr, |c| expr[..c].trim())
}

/// Every `expr` of the dashboard's panels, with its variables filled in as
/// Grafana would for "All" and a 1 minute rate interval.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard"))
        .expect("the dashboard is JSON");
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("a target's expr");
                let filled = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$instance", ".*")
                    .replace("$endpoint", ".*");
                out.push((p["title"].as_str().unwrap_or("?").to_string(), filled));
            }
            walk(&p["panels"], out);
        }
    }
    walk(&d["panels"], &mut out);
    out
}

#[test]
fn measured_drops_only_the_final_comparison() {
    assert_eq!(measured("up{job=\"a > b\"} == 0"), "up{job=\"a > b\"}");
    assert_eq!(
        measured("max by (i) (a / (b > 0)) > 0.8"),
        "max by (i) (a / (b > 0))"
    );
    assert_eq!(measured("sum(rate(x[5m]))"), "sum(rate(x[5m]))");
}

#[test]
fn every_dashboard_panel_and_alert_rule_returns_data_from_a_real_prometheus() {
    let Some(bin) = prometheus() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("deploy/prometheus/wsrelay-rules.yml");
    let t = target(Behaviour::Echo);
    // A memory ceiling far above use, so the memory queries have a value.
    let cfg = base_config(2).replace("[server]\n", "[server]\nnode_heartbeat_ms = 500\n")
        + "\n[limits]\nmax_memory_bytes = 17179869184\n"
        + &endpoint("echo", &t.url(), "");
    let relay = Relay::start(&cfg);

    // A little load for the whole test: 4 sessions echoing, and refusals.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (url, bad, stop) = (relay.url("echo"), relay.url("missing"), stop.clone());
            std::thread::spawn(move || {
                let (mut ws, _) = connect(&url).expect("connect");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    ws.send(Message::Text(format!("{i}-{n}").into())).unwrap();
                    assert_eq!(ws.read().unwrap(), Message::Text(format!("{i}-{n}").into()));
                    n += 1;
                    if n % 50 == 0 {
                        let _ = connect(&bad);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                n
            })
        })
        .collect();

    let dir = TempDir::new();
    let port = free_port();
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let conf = dir.0.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 200ms\n  evaluation_interval: 200ms\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: wsrelay\n    static_configs:\n      - targets: ['{}']\n",
            rules.display(),
            relay.admin
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let _prom = Running(
        Command::new(&bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
    );

    // Until Prometheus has enough scrapes for a 1 minute rate of traffic.
    let started = Instant::now();
    let prom_log = dir.0.join("prometheus.log");
    wait_for(
        "wsrelay's traffic scraped",
        Duration::from_secs(60),
        &prom_log,
        || {
            let q = "sum(rate(wsrelay_messages_total{job=\"wsrelay\"}[1m])) > 0 and on() count_over_time(up{job=\"wsrelay\"}[1m]) > 5";
            query(prom, q).ok().filter(|r| !r.is_empty())
        },
    );
    eprintln!("scraping after {:?}", started.elapsed());

    let mut failures = Vec::new();
    let panels = dashboard_queries(&root.join("deploy/grafana/wsrelay.json"));
    assert!(panels.len() >= 20, "{} queries", panels.len());
    for (title, q) in &panels {
        match query(prom, q) {
            Ok(r) if !r.is_empty() => {}
            Ok(_) => failures.push(format!("panel {title:?}: no data for {q}")),
            Err(e) => failures.push(format!("panel {title:?}: {e} in {q}")),
        }
    }
    // The rules as Prometheus loaded them: all healthy, each measuring
    // something.
    let groups = wait_for(
        "the rules evaluated",
        Duration::from_secs(30),
        &prom_log,
        || {
            let g = api(prom, "rules", None).ok()?["groups"].clone();
            let evaluated = g.as_array()?.iter().all(|g| {
                g["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["health"] == "ok"))
            });
            evaluated.then_some(g)
        },
    );
    let mut names = Vec::new();
    for r in groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let name = r["name"].as_str().unwrap().to_string();
        let expr = r["query"].as_str().unwrap();
        match query(prom, measured(expr)) {
            Ok(v) if !v.is_empty() => {}
            Ok(_) => failures.push(format!("rule {name}: no data for {}", measured(expr))),
            Err(e) => failures.push(format!("rule {name}: {e}")),
        }
        names.push(name);
    }
    for alert in [
        "WsrelayHighErrorRate",
        "WsrelayHighLatency",
        "WsrelayUpgradesRejected",
        "WsrelayEventsDropped",
        "WsrelayStoreRowsDropped",
        "WsrelayStoreErrors",
        "WsrelayNodeDown",
        "WsrelayMemoryPressure",
        "WsrelayShardStall",
    ] {
        assert!(
            names.iter().any(|n| n == alert),
            "{alert} missing: {names:?}"
        );
    }
    // Nothing fires on a healthy relay.
    let firing = query(prom, "ALERTS{alertstate=\"firing\"}").unwrap();
    assert!(
        firing.is_empty(),
        "alerts fire on a healthy relay: {firing:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let echoed: u64 = load
        .into_iter()
        .map(|h| h.join().expect("load thread"))
        .sum();
    assert!(echoed > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
