//! `wsrelay serve`: checks the host, binds, starts one shard per CPU, waits
//! for signals and drains. Every start-up failure is one line and exit code 2.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::admin::auth;
use crate::admin::start::runtime::{self, RuntimeSpec};
use crate::bridge::{EventSink, ShardCommand, EVENT_QUEUE};
use crate::config::{parse_cpu_list, Config, EndpointConfig};
use crate::registry::Registry;
use crate::shard::{self, ShardSpec, Shared};
use crate::store::Store;

/// Registered io_uring buffer memory per shard (glommio's `io_memory`).
/// wsrelay does no file I/O, so this is kept small.
pub const IO_MEMORY: usize = 64 * 1024;
/// io_uring submission queue depth per ring (glommio uses three rings).
pub const RING_DEPTH: usize = 256;
/// Locked memory one shard needs: registered buffers, three rings, a page
/// for membarrier.
pub const MEMLOCK_PER_SHARD: u64 =
    IO_MEMORY as u64 + 3 * (RING_DEPTH as u64 * (64 + 2 * 16 + 4)) + 4096;
/// glommio refuses to start below this limit, whatever the shard count.
pub const GLOMMIO_MIN_MEMLOCK: u64 = 512 * 1024;

pub use crate::admin::start::runtime::StartError;

/// Checks that `shards` fit the locked-memory limit `limit` (bytes, `None`
/// = unlimited), leaving room for a second process during a restart.
pub fn check_memlock(shards: usize, limit: Option<u64>) -> Result<Option<String>, StartError> {
    let Some(limit) = limit else { return Ok(None) };
    let need = (shards as u64 * MEMLOCK_PER_SHARD).max(GLOMMIO_MIN_MEMLOCK);
    let kib = |b: u64| b.div_ceil(1024);
    if limit < need {
        return Err(StartError(format!(
            "locked-memory limit (RLIMIT_MEMLOCK, ulimit -l) is {} KiB but {shards} shard(s) need {} KiB for io_uring; raise it (ulimit -l {}, or LimitMEMLOCK= in the systemd unit) or run fewer shards (server.shards / WSRELAY_SHARDS)",
            kib(limit),
            kib(need),
            kib(2 * need),
        )));
    }
    if limit < 2 * need {
        return Ok(Some(format!(
            "locked-memory limit {} KiB leaves no room for a second wsrelay during a restart ({} KiB each)",
            kib(limit),
            kib(need)
        )));
    }
    Ok(None)
}

/// Which CPUs the shards run on, one shard each (wrapping if more shards).
pub fn shard_cpus(cfg: &Config) -> Result<Vec<usize>, StartError> {
    let allowed = crate::sys::allowed_cpus();
    let cpus = if cfg.server.cpus.trim().is_empty() {
        allowed.clone()
    } else {
        let list = parse_cpu_list(&cfg.server.cpus)
            .map_err(|m| StartError(format!("config: server.cpus: {m}")))?;
        if let Some(c) = list.iter().find(|c| !allowed.contains(c)) {
            return Err(StartError(format!("config: server.cpus: CPU {c} is not available to this process (allowed: {allowed:?})")));
        }
        list
    };
    let n = if cfg.server.shards == 0 {
        cpus.len()
    } else {
        cfg.server.shards
    };
    Ok((0..n).map(|i| cpus[i % cpus.len()]).collect())
}

/// The example endpoint used when no configuration names any.
pub fn example_endpoint(admin: SocketAddr) -> EndpointConfig {
    EndpointConfig {
        id: "echo".into(),
        name: "Built-in echo".into(),
        target_url: format!("ws://{admin}/echo"),
        enabled: true,
        limits: Default::default(),
        sampling: Default::default(),
        auth: None,
        allowed_origins: Vec::new(),
    }
}

/// This node's id: `WSRELAY_NODE_ID`, else `<hostname>:<data port>` (stable
/// across restarts, so a node finds its own stale sessions).
pub fn node_id(data: SocketAddr) -> String {
    if let Ok(id) = std::env::var("WSRELAY_NODE_ID") {
        if !id.trim().is_empty() {
            return id.trim().to_string();
        }
    }
    format!("{}:{}", hostname(), data.port())
}

/// This machine's host name (`localhost` if unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// Connects and migrates the store, seeds endpoints and the first admin,
/// closes this node's stale sessions. Returns the store, the endpoints to
/// route and the JWT secret.
fn open_store(
    cfg: &Config,
    admin_addr: SocketAddr,
    node: &str,
    takeover: bool,
) -> Result<Opened, StartError> {
    let url = &cfg.server.database;
    let shown = crate::store::redact_url(url);
    let fail = |e: crate::store::StoreError| StartError(format!("server.database ({shown}): {e}"));
    let store = Store::connect(url).map_err(fail)?;
    store.migrate().map_err(fail)?;
    let mut seed = cfg.endpoints.clone();
    if seed.is_empty() && store.list_endpoints().map_err(fail)?.is_empty() {
        seed.push(example_endpoint(admin_addr));
    }
    let added = store.seed_endpoints(&seed).map_err(fail)?;
    if !added.is_empty() {
        tracing::info!(endpoints = ?added, "seeded endpoints from the configuration");
    }
    let endpoints_version = store.endpoints_version().map_err(fail)?;
    let endpoints: Vec<EndpointConfig> = store
        .list_endpoints()
        .map_err(fail)?
        .into_iter()
        .map(|r| r.endpoint)
        .collect();
    for c in &cfg.endpoints {
        if endpoints.iter().any(|e| e.id == c.id && e != c) {
            tracing::warn!(
                endpoint = %c.id,
                "the stored endpoint differs from the config file and is the one used; change it through the API, or send SIGHUP to write the file's version to the store"
            );
        }
    }
    let seeded = auth::seed_admin(
        &store,
        env_nonempty("WSRELAY_ADMIN_EMAIL").as_deref(),
        env_nonempty("WSRELAY_ADMIN_PASSWORD").as_deref(),
    )
    .map_err(|e| StartError(format!("admin user: {e}")))?;
    match seeded {
        auth::Seeded::Existing => {}
        auth::Seeded::FromEnvironment(email) => {
            tracing::info!(%email, "created the first admin from WSRELAY_ADMIN_EMAIL/WSRELAY_ADMIN_PASSWORD")
        }
        auth::Seeded::Generated { email, password } => {
            // Printed once, to the terminal only (never to the log).
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "wsrelay: created admin {email} with password {password} (shown once; set WSRELAY_ADMIN_PASSWORD on first start to choose it)"
            );
            let _ = out.flush();
        }
    }
    let secret =
        auth::jwt_secret(&store, env_nonempty("WSRELAY_JWT_SECRET").as_deref()).map_err(fail)?;
    // On a takeover this node's sessions are the predecessor's, still live.
    let stale = if takeover {
        0
    } else {
        store.close_stale_sessions(node).map_err(fail)?
    };
    if stale > 0 {
        tracing::info!(
            sessions = stale,
            node,
            "closed stale sessions of a previous run (node restarted)"
        );
    }
    store
        .register_node(node, &hostname(), env!("CARGO_PKG_VERSION"))
        .map_err(fail)?;
    if store.backend() == crate::store::Backend::Sqlite {
        warn_if_shared(&store, node, cfg.server.node_heartbeat_ms);
    }
    Ok(Opened {
        store,
        endpoints,
        endpoints_version,
        secret,
    })
}

/// The store, opened and migrated, and what the start reads from it.
struct Opened {
    store: Store,
    /// Read after `endpoints_version`.
    endpoints: Vec<EndpointConfig>,
    endpoints_version: i64,
    secret: Vec<u8>,
}

/// SQLite is single-node: another live node on the same file gets none of
/// this one's endpoint changes or kills. Said once, at start.
fn warn_if_shared(store: &Store, me: &str, heartbeat_ms: u64) {
    let alive_since = crate::store::now_ms()
        - crate::admin::nodes::directory::lost_after_ms(Duration::from_millis(heartbeat_ms));
    let others: Vec<String> = store
        .list_nodes()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.id != me && n.state != "down" && n.last_heartbeat >= alive_since)
        .map(|n| n.id)
        .collect();
    if !others.is_empty() {
        tracing::warn!(
            nodes = ?others,
            "another wsrelay uses this SQLite file: SQLite is single-node (endpoint changes and session kills do not reach the other process); share a PostgreSQL database instead"
        );
    }
}

/// The control socket's path (`None`: upgrades off).
fn control_path(cfg: &Config) -> Option<std::path::PathBuf> {
    let p = cfg.server.control_socket.trim();
    (!p.is_empty()).then(|| std::path::PathBuf::from(p))
}

/// The address a data listener is bound to.
fn bound_addr(s: &socket2::Socket) -> Result<SocketAddr, StartError> {
    s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| StartError("server.listen: cannot read the bound address".into()))
}

/// The data listeners of a fresh start: one per shard on `addr` (port 0
/// resolved by the first).
fn bind_data(addr: SocketAddr, n: usize) -> Result<Vec<socket2::Socket>, StartError> {
    let err = |a: SocketAddr, e: std::io::Error| {
        StartError(format!("server.listen: cannot listen on {a}: {e}"))
    };
    let first = shard::bind(addr).map_err(|e| err(addr, e))?;
    let addr = bound_addr(&first)?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(shard::bind(addr).map_err(|e| err(addr, e))?);
    }
    Ok(all)
}

/// Shares `listeners` out over `n` shards: one each, the extra ones round
/// the shards; a shard left without one (a successor with more shards than
/// its predecessor had listeners) accepts from a copy of another's — a
/// shared listener is safe because accepting waits on readiness and takes a
/// connection only with `accept4`. No listener is bound anew, so a successor
/// that fails before it is ready leaves no socket with connections queued.
fn share_listeners(
    listeners: Vec<socket2::Socket>,
    n: usize,
) -> Result<Vec<Vec<socket2::Socket>>, StartError> {
    let count = listeners.len();
    let mut per: Vec<Vec<socket2::Socket>> = (0..n).map(|_| Vec::new()).collect();
    for (i, l) in listeners.into_iter().enumerate() {
        per[i % n].push(l);
    }
    for i in count..n {
        let copy = per[i % count][0]
            .try_clone()
            .map_err(|e| StartError(format!("server.listen: cannot share a listener: {e}")))?;
        per[i].push(copy);
    }
    Ok(per)
}

/// Runs the relay until SIGTERM/SIGINT and the drain finish. With
/// `takeover`, takes the listeners of the wsrelay serving on
/// `server.control_socket` (SPEC 4.6, `crate::handover`).
pub fn run(
    cfg: Config,
    path: Option<std::path::PathBuf>,
    takeover: bool,
) -> Result<(), StartError> {
    // The binary's path as started: a successor started by SIGUSR2 runs
    // what is installed there now (the new binary), not this process's
    // image.
    let exe = std::env::current_exe().ok();
    let checked = crate::admin::start::preflight::check(&cfg)?;
    let cpus = checked.cpus.clone();
    let nofile = crate::sys::raise_nofile();
    if nofile < 2 * cfg.limits.max_connections as u64 + 64 {
        tracing::warn!(
            nofile,
            max_connections = cfg.limits.max_connections,
            "open-files limit is below 2 per session (ulimit -n / LimitNOFILE)"
        );
    }
    if let Some(warning) = check_memlock(cpus.len(), crate::sys::memlock_limit().ok().flatten())? {
        tracing::warn!("{warning}");
    }
    let control = control_path(&cfg);
    let (inherited, data, admin, control_listener) = if takeover {
        let p = control.as_ref().ok_or_else(|| {
            StartError(
                "--takeover: server.control_socket is empty (binary upgrades are off)".into(),
            )
        })?;
        let mut got = crate::handover::take_over(p).map_err(StartError)?;
        let data = std::mem::take(&mut got.data);
        let admin = got
            .admin
            .try_clone()
            .map_err(|e| StartError(format!("--takeover: the admin listener: {e}")))?;
        (Some(got), data, admin, None)
    } else {
        // A live control socket means another wsrelay serves here: refused
        // before anything is bound.
        let control_listener = match &control {
            Some(p) => Some(crate::handover::bind_control(p).map_err(StartError)?),
            None => None,
        };
        let data = bind_data(cfg.listen_addr(), cpus.len())?;
        let admin_addr: SocketAddr = cfg.server.admin_listen.parse().expect("validated");
        let admin = std::net::TcpListener::bind(admin_addr).map_err(|e| {
            StartError(format!(
                "server.admin_listen: cannot listen on {admin_addr}: {e}"
            ))
        })?;
        (None, data, admin, control_listener)
    };
    let data_addr = bound_addr(data.first().ok_or_else(|| {
        StartError("--takeover: the predecessor handed over no data listener".into())
    })?)?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| StartError(format!("server.admin_listen: {e}")))?;
    // This process's own copies, for its successor.
    let dup = |l: &dyn std::os::fd::AsFd| {
        l.as_fd()
            .try_clone_to_owned()
            .map_err(|e| StartError(format!("cannot keep a listener: {e}")))
    };
    let handover_fds = crate::handover::Listeners {
        data: data.iter().map(|s| dup(s)).collect::<Result<_, _>>()?,
        admin: dup(&admin)?,
    };
    let per_shard = share_listeners(data, cpus.len())?;
    let node = node_id(data_addr);
    let Opened {
        store,
        endpoints,
        endpoints_version,
        secret,
    } = open_store(&cfg, admin_addr, &node, takeover)?;

    let tls = checked.upstream_tls;
    let memory = Arc::new(shard::limits::MemoryPressure::new(
        cfg.limits.max_memory_bytes,
    ));
    let mut registry = Registry::default();
    let snapshot = registry
        .snapshot(&endpoints)
        .map_err(|m| StartError(format!("stored endpoints: {m}")))?;
    let tls_on = checked.server_tls.is_some();
    let shared = Arc::new(Shared {
        global_active: Arc::new(AtomicUsize::new(0)),
        ip_buckets: shard::limits::IpBuckets::new(cfg.limits.connects_per_ip_per_second),
        tls,
        draining_shards: AtomicUsize::new(cpus.len()),
        node: node.clone(),
        memory: memory.clone(),
        server_tls: checked.server_tls.clone(),
        trusted_proxies: cfg
            .server
            .trusted_proxies
            .iter()
            .filter_map(|p| crate::config::parse_cidr(p).ok())
            .collect(),
    });
    let cors = cfg.server.admin_cors_origins.clone();
    let cfg = Arc::new(cfg);
    crate::admin::control::memory::watch(&memory)
        .map_err(|e| StartError(format!("cannot start the memory thread: {e}")))?;

    // Handlers are installed before the ready line, so a signal sent as soon
    // as wsrelay reports ready is never lost or fatal.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR2,
    ])
    .map_err(|e| StartError(format!("cannot install signal handlers: {e}")))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut commands = Vec::new();
    let mut queues = Vec::new();
    let mut handles = Vec::new();
    for ((id, &cpu), listeners) in cpus.iter().enumerate().zip(per_shard) {
        let (tx, rx) = async_channel::bounded(64);
        commands.push(tx);
        let (sink, events, dropped) = EventSink::bounded(EVENT_QUEUE);
        queues.push((events, dropped));
        let spec = ShardSpec {
            id,
            listeners,
            cfg: cfg.clone(),
            shared: shared.clone(),
            snapshot: snapshot.clone(),
            commands: rx,
            events: sink,
            ready: ready_tx.clone(),
        };
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(IO_MEMORY)
            .ring_depth(RING_DEPTH)
            .spin_before_park(Duration::from_micros(cfg.server.spin_before_park_us))
            .spawn(move || shard::run(spec))
            .map_err(|e| StartError(format!("shard {id} on CPU {cpu} failed to start: {e}")))?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..cpus.len() {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(_)) => {}
            Ok(Err(m)) => return Err(StartError(format!("server.listen: {m}"))),
            Err(_) => return Err(StartError("a shard did not start within 10 s".into())),
        }
    }
    let admin_rt = runtime::start(RuntimeSpec {
        store,
        secret,
        node_id: node.clone(),
        registry,
        commands: commands.clone(),
        events: queues,
        listener: admin,
        cors_origins: cors,
        memory,
        node_heartbeat: Duration::from_millis(cfg.server.node_heartbeat_ms),
        endpoints_version,
        watchdog: watchdog_interval(takeover),
    })?;
    if admin_rt.state.store.backend() == crate::store::Backend::Postgres {
        let listening = crate::admin::nodes::notify::spawn(
            cfg.server.database.clone(),
            admin_rt.state.clone(),
            admin_rt.handle.clone(),
        )
        .map_err(|e| StartError(format!("cannot start the notify thread: {e}")))?;
        if listening.recv_timeout(Duration::from_secs(5)).is_err() {
            tracing::warn!("not listening for other nodes' changes yet (retrying); ready anyway");
        }
    }
    tracing::info!(data = %data_addr, admin = %admin_addr, shards = cpus.len(), cpus = ?cpus, node = %node, "wsrelay ready");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "wsrelay ready data={data_addr} admin={admin_addr} shards={}",
            cpus.len()
        );
        let _ = out.flush();
    }

    let control_listener = match (inherited, &control) {
        (Some(mut got), Some(p)) => {
            // The predecessor stops accepting, removes its control socket
            // and hands its live sessions over; then this process binds the
            // socket for the next upgrade.
            match got.confirm_ready() {
                Ok(()) => {
                    // systemd (Type=notify, NotifyAccess=all): this process
                    // is the service's main process from now on.
                    notify_systemd(&[
                        sd_notify::NotifyState::MainPid(std::process::id()),
                        sd_notify::NotifyState::Ready,
                    ]);
                    let mut next = 0;
                    match got.adopt_sessions(|record, fds| {
                        next += 1;
                        adopt_on_shard(&commands[next % commands.len()], record, fds)
                    }) {
                        Ok(n) => tracing::info!(
                            adopted = n.adopted,
                            refused = n.refused,
                            "live sessions taken over from the predecessor"
                        ),
                        Err((n, e)) => tracing::error!(
                            adopted = n.adopted,
                            refused = n.refused,
                            "the session handover broke off ({e}); the predecessor closes the rest with 1012"
                        ),
                    }
                    match crate::handover::bind_control(p) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            tracing::error!("{e}; the next upgrade needs a restart");
                            None
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "the predecessor did not confirm the handover ({e}); serving beside it"
                    );
                    None
                }
            }
        }
        _ => {
            notify_systemd(&[sd_notify::NotifyState::Ready]);
            control_listener
        }
    };
    // Cleared once a successor has taken over: this process is no longer
    // the service's main process (no STOPPING=1, no second successor).
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let control_file = match (control_listener, control) {
        (Some(l), Some(p)) => {
            let file = Arc::new(crate::handover::ControlFile::new(p));
            let cmds = commands.clone();
            let stop_admin = admin_rt.stop_accepting.clone();
            let serving = serving.clone();
            let st = admin_rt.state.clone();
            crate::handover::serve_control(l, file.clone(), handover_fds, move || {
                serving.store(false, std::sync::atomic::Ordering::Release);
                st.handed_over
                    .store(true, std::sync::atomic::Ordering::Release);
                stop_admin.notify_one();
                let (tx, parcels) = async_channel::bounded(256);
                let shards = cmds
                    .iter()
                    .filter(|c| {
                        c.send_blocking(ShardCommand::HandedOver(tx.clone()))
                            .is_ok()
                    })
                    .count();
                crate::handover::SessionSource { parcels, shards }
            })
            .map_err(|e| StartError(format!("cannot start the control thread: {e}")))?;
            Some(file)
        }
        _ => None,
    };

    let live = admin_rt.state.live.clone();
    let still_serving = serving.clone();
    let final_store = admin_rt.state.store.clone();
    let upgrade = Upgrade {
        exe,
        config: path.clone(),
        offered: control_file.is_some(),
        serving,
    };
    spawn_signal_thread(
        signals,
        commands,
        path,
        admin_rt,
        control_file.clone(),
        upgrade,
        tls_on,
    )?;
    for h in handles {
        if h.join().is_err() {
            tracing::error!("a shard thread ended abnormally");
        }
    }
    // The shards are gone; store what they reported last (their sessions'
    // ends), for at most FINAL_FLUSH.
    if !live.wait_idle(FINAL_FLUSH) {
        tracing::warn!(
            rows = live.backlog_len(),
            "exiting with session rows not stored (database unavailable?)"
        );
    }
    if let Some(f) = control_file {
        f.release();
    }
    if still_serving.load(std::sync::atomic::Ordering::Acquire) {
        // Other nodes see it gone at once (a successor of a binary upgrade
        // has the same node id and row: then the row stays up).
        if let Err(e) = final_store.node_down(&node) {
            tracing::warn!("could not mark this node down: {e}");
        }
    }
    tracing::info!("drained; exiting");
    Ok(())
}

/// How long a shard of the successor has to take a session in; later, it
/// refuses it (the session stays with the old process).
pub const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Has shard `to` adopt a session handed over by the predecessor; returns
/// the wait for its answer.
fn adopt_on_shard(
    to: &async_channel::Sender<ShardCommand>,
    record: Box<crate::handover::wire::SessionRecord>,
    fds: crate::handover::wire::SessionFds,
) -> crate::handover::Adopting {
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let adoption = crate::bridge::Adoption {
        record,
        fds,
        deadline: std::time::Instant::now() + ADOPT_TIMEOUT,
        reply,
    };
    if to
        .send_blocking(ShardCommand::Adopt(Box::new(adoption)))
        .is_err()
    {
        return Box::new(|| Err("the shard is gone".to_string()));
    }
    // Past the deadline the shard refuses, so an answer this side gave up
    // on cannot turn into an adoption.
    Box::new(move || {
        answer
            .recv_timeout(2 * ADOPT_TIMEOUT)
            .unwrap_or_else(|_| Err("the shard did not answer".into()))
    })
}

/// How long a drained process waits for the store writer before exiting.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Tells systemd (when started by it with `Type=notify`) how things stand;
/// nothing without `NOTIFY_SOCKET`.
fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// systemd's watchdog interval (`WATCHDOG_USEC`) when this process should
/// ping: it is the one systemd started (`WATCHDOG_PID`), or a successor
/// taking its place (started by it, so the variable names the old process).
fn watchdog_interval(takeover: bool) -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    let ours = match std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        None => true,
        Some(pid) => pid == std::process::id() || takeover,
    };
    (ours && usec > 0).then(|| Duration::from_micros(usec))
}

/// How SIGUSR2 starts a successor.
struct Upgrade {
    exe: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
    /// Whether this process serves a control socket.
    offered: bool,
    /// Not yet taken over by a successor.
    serving: Arc<std::sync::atomic::AtomicBool>,
}

impl Upgrade {
    fn serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts `<exe> serve --takeover [--config FILE]` as a child (in the
    /// same cgroup, so systemd's `NotifyAccess=all` hears its `MAINPID=`),
    /// and reaps it if it fails before it took over.
    fn start(&self) {
        if !self.serving() {
            tracing::warn!("SIGUSR2: a successor has taken over already");
            return;
        }
        let Some(exe) = self.exe.as_ref().filter(|_| self.offered) else {
            tracing::error!("SIGUSR2: no binary upgrade without server.control_socket");
            return;
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["serve", "--takeover"]);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.stdin(std::process::Stdio::null());
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(pid, exe = %exe.display(), "SIGUSR2: started a successor");
                let _ = std::thread::Builder::new()
                    .name("successor".into())
                    .spawn(move || {
                        if let Ok(status) = child.wait() {
                            tracing::warn!(pid, %status, "the successor exited");
                        }
                    });
            }
            Err(e) => {
                tracing::error!(exe = %exe.display(), "SIGUSR2: cannot start a successor: {e}")
            }
        }
    }
}

/// SIGHUP with `server.tls`: the certificate and key named in the config
/// file are read again and every shard uses them for new connections
/// (sessions keep theirs). A bad file is logged and changes nothing.
fn reload_tls(loaded: Result<&Config, &str>, commands: &[async_channel::Sender<ShardCommand>]) {
    let loaded = loaded.map_err(str::to_string).and_then(|cfg| {
        if !cfg.server.tls.enabled() {
            return Err("server.tls is no longer set (TLS stays on until a restart)".into());
        }
        crate::tls::server_config(&cfg.server.tls).map_err(|e| format!("config: {e}"))
    });
    match loaded {
        Ok(tls) => {
            for c in commands {
                let _ = c.send_blocking(ShardCommand::Tls(tls.clone()));
            }
            tracing::info!("TLS certificate reloaded");
        }
        Err(e) => tracing::error!("TLS reload failed, keeping the current certificate: {e}"),
    }
}

/// First SIGTERM/SIGINT: drain. Second: close every session now. SIGHUP:
/// write the config file's endpoints to the store and reload the shards.
/// SIGUSR2: binary upgrade — start `wsrelay serve --takeover` (the binary
/// now installed at this process's path).
fn spawn_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    commands: Vec<async_channel::Sender<ShardCommand>>,
    path: Option<std::path::PathBuf>,
    admin: runtime::Running,
    control: Option<Arc<crate::handover::ControlFile>>,
    upgrade: Upgrade,
    tls_on: bool,
) -> Result<(), StartError> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGUSR2 {
                    upgrade.start();
                    continue;
                }
                if sig == signal_hook::consts::SIGHUP {
                    // The file is read once for the endpoints and the certificate.
                    let loaded = match &path {
                        None => {
                            Err("no config file to reload (started without --config)".to_string())
                        }
                        Some(p) => Config::load(Some(p)).map_err(|e| e.to_string()),
                    };
                    let done = match &loaded {
                        Ok(cfg) => admin.handle.block_on(crate::admin::control::reload(
                            &admin.state,
                            cfg.endpoints.clone(),
                        )),
                        Err(e) => Err(e.clone()),
                    };
                    match done {
                        Ok(n) => tracing::info!(changed = n, "endpoints reloaded"),
                        Err(e) => tracing::error!("reload failed, endpoints unchanged: {e}"),
                    }
                    if tls_on && path.is_some() {
                        reload_tls(loaded.as_ref().map_err(String::as_str), &commands);
                    }
                    continue;
                }
                seen += 1;
                tracing::info!(signal = sig, "signal received");
                if seen == 1 && upgrade.serving() {
                    notify_systemd(&[sd_notify::NotifyState::Stopping]);
                    admin
                        .state
                        .draining
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                // A draining process offers no takeover.
                if let Some(c) = &control {
                    c.release();
                }
                for c in &commands {
                    let cmd = if seen == 1 {
                        ShardCommand::Drain
                    } else {
                        ShardCommand::CloseAll(1001, "going away")
                    };
                    let _ = c.send_blocking(cmd);
                }
            }
        })
        .map_err(|e| StartError(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shards_and_a_restart_fit_in_8_mib() {
        let eight = 8 << 20;
        assert_eq!(
            check_memlock(2, Some(eight)).unwrap(),
            None,
            "no warning at 8 MiB with 2 shards"
        );
        assert!(4 * MEMLOCK_PER_SHARD <= eight);
    }

    #[test]
    fn a_low_limit_is_one_line_naming_limit_and_fix() {
        let e = check_memlock(2, Some(64 * 1024)).unwrap_err().0;
        assert!(
            e.contains("ulimit -l") && e.contains("64 KiB") && e.contains("LimitMEMLOCK"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(
            check_memlock(64, Some(8 << 20)).is_err(),
            "64 shards do not fit"
        );
        assert!(check_memlock(2, None).unwrap().is_none(), "unlimited");
    }
}
