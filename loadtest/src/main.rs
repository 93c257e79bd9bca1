//! `wsrelay-loadtest`: WebSocket load generator with HDR latency reports.
//!
//! Modes: `latency` (open loop, fixed aggregate rate, coordinated-omission
//! corrected), `throughput` (closed loop, window per connection), `idle` (hold
//! N sessions), `connect` (session open/close rate), `hold` (long-lived
//! sessions, every echo checked in order); plus `echo` (a lean echo
//! target), `floor` (a minimal TCP byte relay: the cost of relaying on this
//! machine, to compare proxies with) and `plot` (SVG of several `.hgrm` runs). Each run prints a
//! progress line per second, p50/p90/p99/p99.9/max in µs, the rate, errors and
//! a one-line JSON summary.

mod echo;
mod floor;
mod plot;
mod report;
mod run;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};

use report::{Stats, Summary};
use run::{Clock, Common, Pace};

#[derive(Parser)]
#[command(
    name = "wsrelay-loadtest",
    version,
    about = "WebSocket load generator with HDR latency reports"
)]
struct Cli {
    /// Pin the generator to this CPU.
    #[arg(long, global = true)]
    cpu: Option<usize>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Clone)]
struct Load {
    /// Target URL, e.g. ws://127.0.0.1:8080/ws/echo (or wss://…)
    #[arg(long)]
    url: String,
    /// PEM file of CA certificates trusted for a wss:// URL (besides the
    /// webpki roots), e.g. a test certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Message size in bytes (min 16: the payload carries a timestamp).
    #[arg(long, short = 's', default_value_t = 64)]
    size: usize,
    /// Seconds of measurement.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up after the ramp, not recorded.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds over which the connections are opened.
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Write the latency distribution here (HdrHistogram .hgrm, ms).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Label for the report (e.g. the target's name).
    #[arg(long, default_value = "run")]
    label: String,
    /// A process (the proxy) whose CPU time over the measurement window is
    /// reported, with messages per CPU-second.
    #[arg(long)]
    proxy_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Mode {
    /// Open loop at a fixed aggregate rate; latency from the intended send time.
    Latency {
        #[command(flatten)]
        load: Load,
        /// Messages per second, all connections together.
        #[arg(long, short = 'r')]
        rate: f64,
    },
    /// Closed loop: a window of messages in flight per connection.
    Throughput {
        #[command(flatten)]
        load: Load,
        /// Messages in flight per connection.
        #[arg(long, short = 'w', default_value_t = 16)]
        window: usize,
    },
    /// Open N sessions (each relays one message), hold them, report RSS of --pid.
    Idle {
        #[command(flatten)]
        load: Load,
        /// Seconds to hold the sessions open.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
        /// A process whose RSS growth per session is reported (the proxy).
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Sessions opened and closed per second by `connections` workers.
    Connect {
        #[command(flatten)]
        load: Load,
        /// Each session relays one message both ways (checked) before its close.
        #[arg(long)]
        echo: bool,
    },
    /// Long-lived sessions: each sends one numbered message every
    /// `--every` seconds and checks that every echo comes back, in order,
    /// unchanged, until the end. A session that ends or sees a wrong echo
    /// fails; the summary counts failed sessions and checked messages.
    Hold {
        #[command(flatten)]
        load: Load,
        /// Seconds between a session's messages.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
    },
    /// A lean echo target.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: String,
    },
    /// A minimal TCP byte relay (one thread, edge-triggered epoll, no parsing):
    /// the floor a WebSocket relay is measured against.
    Floor {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9002")]
        listen: String,
        /// Where every connection is relayed to.
        #[arg(long)]
        target: String,
    },
    /// Latency-by-percentile SVG of several .hgrm files (NAME=FILE or FILE).
    Plot {
        /// Output SVG.
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Chart title.
        #[arg(long, default_value = "Latency by percentile")]
        title: String,
        /// Runs: NAME=FILE.hgrm
        runs: Vec<String>,
    },
}

fn common(l: &Load) -> Result<Common, String> {
    if l.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if l.size < 16 {
        return Err("--size must be at least 16 bytes (the payload carries a timestamp)".into());
    }
    let secs = |v: f64, name: &str| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("--{name} must be a number of seconds >= 0"))
        }
    };
    Ok(Common {
        url: {
            let ca = match &l.ca {
                Some(p) => {
                    Some(std::fs::read(p).map_err(|e| format!("--ca {}: {e}", p.display()))?)
                }
                None => None,
            };
            ws::WsUrl::parse(&l.url, ca.as_deref())?
        },
        connections: l.connections,
        size: l.size,
        duration: secs(l.duration, "duration")?,
        warmup: secs(l.warmup, "warmup")?,
        ramp: secs(l.ramp, "ramp")?,
    })
}

fn finish(
    mode: &'static str,
    l: &Load,
    stats: &Stats,
    window: Duration,
    extra: Vec<(&'static str, serde_json::Value)>,
) -> Result<(), String> {
    let h = stats.hist.borrow();
    let rate = stats.measured.get() as f64 / window.as_secs_f64().max(1e-9);
    let mut extra = extra;
    extra.push(("connections", l.connections.into()));
    extra.push(("size", l.size.into()));
    extra.push(("duration_s", l.duration.into()));
    if let Some(e) = stats.first_error.borrow().as_ref() {
        eprintln!("first error: {e}");
        extra.push(("first_error", e.clone().into()));
    }
    report::print(
        &Summary {
            mode,
            label: l.label.clone(),
            rate,
            errors: stats.errors.get(),
            extra,
        },
        &h,
    );
    if let Some(p) = &l.hgrm {
        std::fs::write(p, report::hgrm(&h)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

async fn run_messages(
    mode: &'static str,
    l: Load,
    pace: Pace,
    extra: Vec<(&'static str, serde_json::Value)>,
) -> Result<(), String> {
    let c = common(&l)?;
    let stats = Stats::new();
    let start = Instant::now();
    let measure_from = start + c.ramp + c.warmup;
    let clock = Clock {
        epoch: start,
        measure_from,
        stop: measure_from + c.duration,
    };
    let progress = glommio::spawn_local(report::progress(stats.clone(), start, clock.stop, mode));
    let cpu = glommio::spawn_local(run::cpu_over_window(l.proxy_pid, clock));
    let tasks: Vec<_> = (0..c.connections)
        .map(|i| {
            glommio::spawn_local(run::connection(
                i,
                c.clone(),
                pace,
                clock,
                stats.clone(),
                start,
            ))
        })
        .collect();
    for t in tasks {
        t.await;
    }
    drop(progress);
    let mut extra = extra;
    add_cpu(&mut extra, cpu.await, stats.measured.get());
    finish(mode, &l, &stats, c.duration, extra)
}

async fn run_connect(l: Load, echo: bool) -> Result<(), String> {
    let c = common(&l)?;
    let stats = Stats::new();
    let start = Instant::now();
    let measure_from = start + c.warmup;
    let clock = Clock {
        epoch: start,
        measure_from,
        stop: measure_from + c.duration,
    };
    let progress = glommio::spawn_local(report::progress(
        stats.clone(),
        start,
        clock.stop,
        "connect",
    ));
    let cpu = glommio::spawn_local(run::cpu_over_window(l.proxy_pid, clock));
    let tasks: Vec<_> = (0..c.connections)
        .map(|_| glommio::spawn_local(run::connect_worker(c.clone(), clock, stats.clone(), echo)))
        .collect();
    for t in tasks {
        t.await;
    }
    drop(progress);
    let mut extra = vec![];
    add_cpu(&mut extra, cpu.await, stats.measured.get());
    finish("connect", &l, &stats, c.duration, extra)
}

async fn run_hold(l: Load, every: f64) -> Result<(), String> {
    let c = common(&l)?;
    if !(every > 0.0 && every.is_finite()) {
        return Err("--every must be a number of seconds > 0".into());
    }
    let every = Duration::from_secs_f64(every);
    let stats = Stats::new();
    let start = Instant::now();
    let stop = start + c.ramp + c.warmup + c.duration;
    let clock = Clock {
        epoch: start,
        measure_from: start + c.ramp + c.warmup,
        stop,
    };
    let progress = glommio::spawn_local(report::progress(stats.clone(), start, stop, "hold"));
    let tasks: Vec<_> = (0..c.connections)
        .map(|i| {
            glommio::spawn_local(run::hold_session(
                i,
                c.clone(),
                every,
                clock,
                start,
                stats.clone(),
            ))
        })
        .collect();
    let mut survived = 0u64;
    for t in tasks {
        survived += u64::from(t.await);
    }
    drop(progress);
    let extra = vec![
        ("sessions", (c.connections as u64).into()),
        ("survived", survived.into()),
        ("messages_checked", stats.received.get().into()),
    ];
    finish("hold", &l, &stats, c.duration, extra)
}

/// Adds the proxy's CPU seconds over the window (and their user / kernel
/// split) and work per CPU-second.
fn add_cpu(
    extra: &mut Vec<(&'static str, serde_json::Value)>,
    cpu_s: Option<(f64, f64)>,
    measured: u64,
) {
    if let Some((user, sys)) = cpu_s {
        let ms = |v: f64| serde_json::Value::from((v * 1000.0).round() / 1000.0);
        let cpu = user + sys;
        extra.push(("proxy_cpu_s", ms(cpu)));
        extra.push(("proxy_user_s", ms(user)));
        extra.push(("proxy_sys_s", ms(sys)));
        if cpu > 0.0 {
            extra.push(("per_proxy_cpu_s", (measured as f64 / cpu).round().into()));
        }
    }
}

async fn run_idle(l: Load, hold: f64, pid: Option<u32>) -> Result<(), String> {
    let c = common(&l)?;
    let stats = Stats::new();
    let before = pid.and_then(run::rss_kib);
    let start = Instant::now();
    let hold_until = start + c.ramp + Duration::from_secs_f64(hold.max(0.0));
    let tasks: Vec<_> = (0..c.connections)
        .map(|i| {
            glommio::spawn_local(run::idle_connection(
                i,
                c.clone(),
                stats.clone(),
                start,
                hold_until,
            ))
        })
        .collect();
    let mut held = Vec::with_capacity(c.connections);
    for (i, t) in tasks.into_iter().enumerate() {
        if let Some(s) = t.await {
            held.push(s);
        }
        if (i + 1) % 1000 == 0 {
            eprintln!("idle: {}/{} sessions open", i + 1, c.connections);
        }
    }
    let after = pid.and_then(run::rss_kib);
    let now = Instant::now();
    if hold_until > now {
        glommio::timer::Timer::new(hold_until - now).await;
    }
    let open = held.len();
    let mut extra = vec![("open", serde_json::Value::from(open))];
    if let (Some(b), Some(a)) = (before, after) {
        let per = a.saturating_sub(b) as f64 * 1024.0 / open.max(1) as f64;
        println!(
            "idle: {open} sessions held; pid {} RSS {b} KiB -> {a} KiB: {per:.0} bytes per session",
            pid.unwrap_or(0)
        );
        extra.push(("rss_before_kib", b.into()));
        extra.push(("rss_after_kib", a.into()));
        extra.push(("bytes_per_session", (per.round() as u64).into()));
    }
    drop(held);
    let window = Duration::from_secs_f64(hold.max(1e-3));
    stats.measured.set(open as u64);
    finish("idle", &l, &stats, window, extra)
}

fn plot(out: &PathBuf, title: &str, runs: &[String]) -> Result<(), String> {
    if runs.is_empty() {
        return Err("plot: name at least one .hgrm file".into());
    }
    let mut series = Vec::new();
    for r in runs {
        let (name, file) = r.split_once('=').unwrap_or((r.as_str(), r.as_str()));
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        let points = plot::parse_hgrm(&text);
        if points.is_empty() {
            return Err(format!("{file}: no percentile rows"));
        }
        series.push(plot::Series {
            name: name.to_string(),
            points,
        });
    }
    std::fs::write(out, plot::svg(title, &series))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!("plot: wrote {} ({} runs)", out.display(), series.len());
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Mode::Plot { out, title, runs } = &cli.mode {
        return match plot(out, title, runs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsrelay-loadtest: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Mode::Floor { listen, target } = &cli.mode {
        let r = run::listen_addr(listen).and_then(|l| {
            let t = target
                .parse()
                .map_err(|e| format!("--target {target:?}: {e}"))?;
            if let Some(c) = cli.cpu {
                pin_thread(c)?;
            }
            floor::serve(l, t)
        });
        if let Err(e) = r {
            eprintln!("wsrelay-loadtest: {e}");
            return ExitCode::from(2);
        }
        return ExitCode::SUCCESS;
    }
    let placement = match cli.cpu {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    let mode = cli.mode;
    let result = LocalExecutorBuilder::new(placement)
        .name("loadtest")
        .io_memory(64 << 10)
        .spawn(move || async move {
            match mode {
                Mode::Latency { load, rate } => {
                    if !(rate > 0.0 && rate.is_finite()) {
                        return Err("--rate must be > 0".to_string());
                    }
                    let interval = Duration::from_secs_f64(load.connections as f64 / rate);
                    run_messages(
                        "latency",
                        load,
                        Pace::Rate { interval },
                        vec![("target_rate", rate.into())],
                    )
                    .await
                }
                Mode::Throughput { load, window } => {
                    if window == 0 {
                        return Err("--window must be at least 1".to_string());
                    }
                    run_messages(
                        "throughput",
                        load,
                        Pace::Window { window },
                        vec![("window", window.into())],
                    )
                    .await
                }
                Mode::Idle { load, hold, pid } => run_idle(load, hold, pid).await,
                Mode::Connect { load, echo } => run_connect(load, echo).await,
                Mode::Hold { load, every } => run_hold(load, every).await,
                Mode::Echo { listen } => echo::serve(run::listen_addr(&listen)?).await,
                Mode::Plot { .. } | Mode::Floor { .. } => unreachable!("handled above"),
            }
        })
        .map_err(|e| format!("cannot start the executor: {e}"))
        .and_then(|h| h.join().map_err(|e| format!("executor failed: {e}")))
        .and_then(|r| r);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsrelay-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}

/// Pins the calling thread to CPU `cpu`.
fn pin_thread(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds for
    // cpu < CPU_SETSIZE, checked first.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("--cpu {cpu}: out of range"));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("--cpu {cpu}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
