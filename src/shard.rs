//! Code that runs on a shard: one glommio `LocalExecutor` pinned to one CPU,
//! with its own SO_REUSEPORT listener, sessions, buffers and metrics. `!Send`;
//! no locks. The only ways in are [`ShardCommand`]s on an async channel; the
//! only shared state is in [`Shared`] (atomics touched at admission).

pub use wsrelay_proto::{frame, handshake};
pub mod close;
pub mod forwarded;
pub mod leg;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod relay;
pub mod session;
pub mod upstream;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::FutureExt;
use glommio::net::TcpListener;
use glommio::timer::Timer;
use rand::{Rng, SeedableRng};

use crate::bridge::{EndpointSnapshot, Event, EventSink, ShardCommand};
use crate::config::Config;
use crate::shard::metrics::ShardMetrics;
use crate::shard::pool::BufPool;
use crate::shard::session::SessionCtl;

/// State shared by all shards; touched only at connect time.
pub struct Shared {
    /// Sessions on all shards (for `limits.max_connections`).
    pub global_active: Arc<AtomicUsize>,
    /// Per-address connect rate.
    pub ip_buckets: limits::IpBuckets,
    /// TLS client configuration for `wss://` targets.
    pub tls: futures_rustls::TlsConnector,
    /// Shards that still have sessions while draining. Every shard keeps its
    /// listener (answering 503) until this reaches 0, so a drained shard does
    /// not reset connections still queued on its listener.
    pub draining_shards: AtomicUsize,
    /// This node's id (sessions handed over in a binary upgrade name it).
    pub node: String,
    /// Load shedding on resident memory.
    pub memory: Arc<limits::MemoryPressure>,
    /// The data port's TLS at start (`server.tls`; SIGHUP replaces it per
    /// shard with [`ShardCommand::Tls`]).
    pub server_tls: Option<Arc<futures_rustls::rustls::ServerConfig>>,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// What a command asked of the loop that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Carried out; go on.
    Done,
    /// Every session was told to close.
    ClosedAll,
    /// Start draining.
    Drain,
    /// Stop accepting (a successor has the listeners), move sessions to
    /// it, and drain.
    HandedOver,
}

/// Everything one shard owns.
pub struct ShardCtx {
    /// Shard index.
    pub id: usize,
    /// The configuration.
    pub cfg: Arc<Config>,
    /// Cross-shard state.
    pub shared: Arc<Shared>,
    /// The current routing table.
    pub snapshot: RefCell<Arc<EndpointSnapshot>>,
    /// Relay buffers.
    pub pool: Rc<BufPool>,
    /// Metrics.
    pub metrics: Rc<ShardMetrics>,
    /// Running sessions.
    pub sessions: RefCell<HashMap<u64, Rc<SessionCtl>>>,
    /// TLS for new client connections (`None`: plain).
    pub tls: RefCell<Option<futures_rustls::TlsAcceptor>>,
    /// Log lines for refused upgrades left this second.
    pub refusal_log: limits::LogBudget,
    /// Set by SIGTERM (new upgrades get 503). Not set after a handover: the
    /// connections this shard accepted before it are served as usual.
    pub draining: Cell<bool>,
    /// Accepted connections still in their handshake (not yet in
    /// `sessions`); a draining shard waits for them too, so none is cut off
    /// mid-handshake when the shard ends.
    pub handshakes: Cell<usize>,
    /// Events for the admin runtime (never blocks).
    pub events: EventSink,
    /// Budget of sample and metadata events.
    pub tap_budget: relay::TapBudget,
    /// Endpoints whose per-message metadata `/ops` readers want.
    pub meta_endpoints: RefCell<std::collections::HashSet<String>>,
    /// Binary upgrade: where sessions at rest go (to the control thread),
    /// while this shard hands them over.
    pub handover: RefCell<Option<async_channel::Sender<crate::bridge::Parcel>>>,
    next_key: Cell<u64>,
    rng: RefCell<rand::rngs::StdRng>,
}

impl ShardCtx {
    /// A key for the session table.
    pub fn next_key(&self) -> u64 {
        let k = self.next_key.get();
        self.next_key.set(k + 1);
        k
    }

    /// A random (v4) session id.
    pub fn new_session_id(&self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.rng.borrow_mut().gen()).into_uuid()
    }

    /// Seeds for a session's two masking-key generators.
    pub fn mask_seeds(&self) -> (u64, u64) {
        let mut r = self.rng.borrow_mut();
        (r.gen(), r.gen())
    }

    /// Installs a new routing table. Sessions of endpoints that are gone are
    /// closed with 1001; every other session is untouched (it holds its own
    /// `Arc<Endpoint>` and never looks at the table).
    pub fn apply_snapshot(&self, s: Arc<EndpointSnapshot>) {
        let gone: Vec<_> = self
            .sessions
            .borrow()
            .values()
            .filter(|c| !s.endpoints.contains_key(c.endpoint()))
            .cloned()
            .collect();
        tracing::info!(
            shard = self.id,
            version = s.version,
            endpoints = s.endpoints.len(),
            closing = gone.len(),
            "routing table updated"
        );
        *self.snapshot.borrow_mut() = s;
        for c in gone {
            c.request_close(1001, "endpoint removed");
        }
    }

    /// Carries out one command from the admin side (the run loop and the
    /// drain loop both dispatch here).
    pub fn handle(self: &Rc<Self>, cmd: ShardCommand) -> Handled {
        match cmd {
            ShardCommand::Snapshot(s) => self.apply_snapshot(s),
            ShardCommand::CloseAll(code, reason) => {
                self.close_all(code, reason);
                return Handled::ClosedAll;
            }
            ShardCommand::Kill(id, reply) => {
                // The admin side answers the operator from this reply.
                let _ = reply.try_send(self.kill(id));
            }
            ShardCommand::MessageMeta { endpoint, on } => self.set_meta(&endpoint, on),
            ShardCommand::Tls(cfg) => {
                // New connections only: a session keeps the TLS it has.
                *self.tls.borrow_mut() = Some(futures_rustls::TlsAcceptor::from(cfg));
            }
            ShardCommand::Drain => return Handled::Drain,
            ShardCommand::HandedOver(to) => {
                self.start_handover(to);
                return Handled::HandedOver;
            }
            ShardCommand::Adopt(a) => {
                let crate::bridge::Adoption {
                    record,
                    fds,
                    deadline,
                    reply,
                } = *a;
                let outcome = if std::time::Instant::now() > deadline {
                    Err("the successor's shard answered too late".into())
                } else {
                    session::adopt(self, record, fds)
                };
                let _ = reply.try_send(outcome);
            }
        }
        Handled::Done
    }

    /// Binary upgrade: every session is asked to come to rest and move
    /// (sessions established from now on are asked as they start).
    fn start_handover(&self, to: async_channel::Sender<crate::bridge::Parcel>) {
        if self.handover.borrow().is_some() {
            return;
        }
        *self.handover.borrow_mut() = Some(to);
        for c in self.sessions.borrow().values() {
            c.request_park();
        }
    }

    /// Whether sessions (or handshakes that become sessions) may still move
    /// to the successor.
    fn handing_over(&self) -> bool {
        self.handshakes.get() > 0 || self.sessions.borrow().values().any(|c| c.parking())
    }

    /// Closes the session `id` with 1008 if it runs on this shard; whether
    /// it did.
    pub fn kill(&self, id: uuid::Uuid) -> bool {
        let found = self
            .sessions
            .borrow()
            .values()
            .find(|c| c.id() == id)
            .cloned();
        match found {
            Some(c) => {
                c.request_close(1008, "terminated by operator");
                true
            }
            None => false,
        }
    }

    /// Reports sessions whose counters changed since the last report.
    pub fn report_updates(&self) {
        let now = crate::store::now_ms();
        for c in self.sessions.borrow().values() {
            if let Some(counts) = c.take_update() {
                self.events.send(Event::Updated {
                    id: c.id(),
                    counts,
                    at_ms: now,
                });
            }
        }
    }

    /// Turns per-message metadata for `endpoint`'s sessions on or off.
    pub fn set_meta(&self, endpoint: &str, on: bool) {
        if on {
            self.meta_endpoints
                .borrow_mut()
                .insert(endpoint.to_string());
        } else {
            self.meta_endpoints.borrow_mut().remove(endpoint);
        }
        for c in self.sessions.borrow().values() {
            if c.endpoint() == endpoint {
                c.meta.set(on);
            }
        }
    }

    /// Asks every session to close.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let all: Vec<_> = self.sessions.borrow().values().cloned().collect();
        for s in all {
            s.request_close(code, reason);
        }
    }
}

/// What a shard needs to start.
pub struct ShardSpec {
    /// Index.
    pub id: usize,
    /// Its listeners on the data port (bound and listening, `SO_REUSEPORT`;
    /// one, or more when a predecessor handed over more than there are
    /// shards).
    pub listeners: Vec<socket2::Socket>,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The first routing table.
    pub snapshot: Arc<EndpointSnapshot>,
    /// Commands from the control side.
    pub commands: async_channel::Receiver<ShardCommand>,
    /// Events for the admin runtime.
    pub events: EventSink,
    /// Told once the shard accepts.
    pub ready: std::sync::mpsc::Sender<Result<usize, String>>,
}

/// Relay buffers a shard keeps for reuse when no session needs them
/// (64 × 32 KiB = 2 MiB by default); beyond that they are freed.
pub const POOL_IDLE_BUFFERS: usize = 64;

/// Listen backlog per shard listener.
pub const BACKLOG: i32 = 4096;

/// A data-port listener: `SO_REUSEPORT` (every shard has its own, and a
/// successor's join them during a binary upgrade), listening.
pub fn bind(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s)
}

/// Runs one shard until it has drained.
pub async fn run(spec: ShardSpec) {
    let cfg = spec.cfg;
    let tls = spec
        .shared
        .server_tls
        .clone()
        .map(futures_rustls::TlsAcceptor::from);
    let ctx = Rc::new(ShardCtx {
        id: spec.id,
        pool: BufPool::new(cfg.limits.relay_buffer_bytes, POOL_IDLE_BUFFERS),
        cfg,
        shared: spec.shared,
        snapshot: RefCell::new(spec.snapshot),
        metrics: ShardMetrics::new(),
        sessions: RefCell::new(HashMap::new()),
        tls: RefCell::new(tls),
        refusal_log: Default::default(),
        draining: Cell::new(false),
        handshakes: Cell::new(0),
        events: spec.events,
        tap_budget: Default::default(),
        meta_endpoints: Default::default(),
        handover: Default::default(),
        next_key: Cell::new(0),
        rng: RefCell::new(rand::rngs::StdRng::from_entropy()),
    });
    let mut accept: Vec<_> = spec
        .listeners
        .into_iter()
        .map(|s| {
            glommio::spawn_local(accept_loop(
                crate::sys::listener_from_socket(s),
                ctx.clone(),
            ))
        })
        .collect();
    let _ = spec.ready.send(Ok(spec.id));
    let summary = glommio::spawn_local(summary_loop(ctx.clone()));

    // Control loop: snapshots and commands until told to drain.
    let mut handed_over = false;
    while let Ok(cmd) = spec.commands.recv().await {
        match ctx.handle(cmd) {
            Handled::Drain => break,
            Handled::HandedOver => {
                handed_over = true;
                break;
            }
            Handled::Done | Handled::ClosedAll => {}
        }
    }
    drain(&ctx, &spec.commands, &mut accept, handed_over).await;
    drop(accept);
    drop(summary);
    tracing::info!(shard = ctx.id, "shard drained");
}

/// The longest a shard hands sessions over before it tells the control
/// thread it is done (each session gives up on its own after
/// [`session::PARK_TIMEOUT`] plus the successor's answer; this bounds a bug).
pub const HANDOVER_LIMIT: Duration = Duration::from_secs(60);

/// SIGTERM: answer 503, let sessions run until `drain_timeout_ms` (or a
/// `CloseAll`), close the rest with 1001, return when none is left. After a
/// handover (now or while draining) the shard stops accepting — the
/// successor accepts from then on, and a dropped accept only waited for
/// readiness, so it takes no queued connection with it — and what is left at
/// the deadline is closed with 1012 `service restart`.
async fn drain<T>(
    ctx: &Rc<ShardCtx>,
    commands: &async_channel::Receiver<ShardCommand>,
    accept: &mut Vec<T>,
    mut handed_over: bool,
) {
    let stop_accepting = |accept: &mut Vec<T>| {
        accept.clear();
        tracing::info!(shard = ctx.id, "stopped accepting: the successor serves");
    };
    if handed_over {
        stop_accepting(accept);
    } else {
        ctx.draining.set(true);
    }
    let n = ctx.sessions.borrow().len();
    tracing::info!(shard = ctx.id, sessions = n, "draining");
    let deadline =
        std::time::Instant::now() + Duration::from_millis(ctx.cfg.server.drain_timeout_ms);
    let mut closed_at = None;
    let mut counted_out = false;
    let mut handover_since = handed_over.then(std::time::Instant::now);
    loop {
        let now = std::time::Instant::now();
        if let Some(since) = handover_since {
            // Every session that can move has moved (or stays), and no
            // handshake can add one: the control thread hears it.
            if !ctx.handing_over() || now >= since + HANDOVER_LIMIT {
                handover_since = None;
                let to = ctx.handover.borrow_mut().take();
                if let Some(to) = to {
                    let _ = to.send(crate::bridge::Parcel::ShardDone).await;
                }
                let left = ctx.sessions.borrow().len();
                tracing::info!(
                    shard = ctx.id,
                    staying = left,
                    "sessions handed over; those staying close at the drain deadline"
                );
            }
        }
        let gave_up =
            closed_at.is_some_and(|t| now >= t + session::CLOSE_TIMEOUT + Duration::from_secs(1));
        if gave_up {
            tracing::warn!(
                shard = ctx.id,
                left = ctx.sessions.borrow().len(),
                "sessions did not close in time"
            );
        }
        let idle = ctx.sessions.borrow().is_empty() && ctx.handshakes.get() == 0;
        if !counted_out && (gave_up || idle) {
            counted_out = true;
            ctx.shared.draining_shards.fetch_sub(1, Ordering::AcqRel);
        }
        if counted_out && ctx.shared.draining_shards.load(Ordering::Acquire) == 0 {
            return;
        }
        if closed_at.is_none() && now >= deadline {
            if handed_over {
                ctx.close_all(1012, "service restart");
            } else {
                ctx.close_all(1001, "going away");
            }
            closed_at = Some(now);
        }
        // Wake on a command (a second signal closes at once) or every 50 ms
        // to look at the session table; this runs only while draining.
        let cmd = async { commands.recv().await.ok() }
            .or(async {
                Timer::new(Duration::from_millis(50)).await;
                None
            })
            .await;
        // The same dispatch as the run loop: a snapshot sent while draining
        // (an endpoint deleted, say) is applied, not dropped.
        if let Some(cmd) = cmd {
            match ctx.handle(cmd) {
                Handled::ClosedAll => {
                    closed_at.get_or_insert(std::time::Instant::now());
                }
                Handled::HandedOver if !handed_over => {
                    handed_over = true;
                    handover_since = Some(std::time::Instant::now());
                    stop_accepting(accept);
                }
                _ => {}
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, ctx: Rc<ShardCtx>) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = ctx.id, error = %e, "accept failed");
                Timer::new(Duration::from_millis(20)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let c = ctx.clone();
        let metrics = ctx.metrics.clone();
        glommio::spawn_local(guarded(
            metrics,
            ctx.id,
            peer,
            session::serve(c, stream, peer),
        ))
        .detach();
    }
}

/// Runs a session task so that a panic in it ends only that session: its
/// sockets, admission slot and gauge are released while unwinding, the panic
/// is counted and logged, and the shard goes on.
pub async fn guarded(
    metrics: Rc<ShardMetrics>,
    shard: usize,
    peer: SocketAddr,
    fut: impl std::future::Future<Output = ()>,
) {
    if std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .is_err()
    {
        metrics.panics.set(metrics.panics.get() + 1);
        tracing::error!(shard, client = %peer, "session task panicked; the shard goes on");
    }
}

/// Once a second: session updates and a metrics copy to the admin runtime;
/// every `summary_interval_s` a summary line in the log.
async fn summary_loop(ctx: Rc<ShardCtx>) {
    let every = ctx.cfg.server.summary_interval_s;
    let mut tick = 0u64;
    loop {
        Timer::new(Duration::from_secs(1)).await;
        tick += 1;
        ctx.report_updates();
        if every > 0 && tick % every == 0 {
            tracing::info!("{}", ctx.metrics.snapshot(ctx.id).summary_line());
        }
        // Only endpoints that moved: an idle endpoint costs no histogram copy.
        ctx.events
            .send(Event::Stats(Box::new(ctx.metrics.changes(ctx.id))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard context with the default configuration and no sessions.
    fn test_ctx() -> Rc<ShardCtx> {
        Rc::new(ShardCtx {
            id: 0,
            pool: BufPool::new(4096, 1),
            cfg: Arc::new(crate::config::Config::default()),
            shared: Arc::new(Shared {
                global_active: Default::default(),
                ip_buckets: limits::IpBuckets::new(0),
                tls: upstream::tls_connector(None).unwrap(),
                draining_shards: Default::default(),
                node: "test:0".into(),
                memory: Default::default(),
                server_tls: None,
                trusted_proxies: Vec::new(),
            }),
            snapshot: Default::default(),
            metrics: ShardMetrics::new(),
            sessions: Default::default(),
            tls: Default::default(),
            refusal_log: Default::default(),
            draining: Default::default(),
            handshakes: Default::default(),
            events: crate::bridge::EventSink::bounded(1).0,
            tap_budget: Default::default(),
            meta_endpoints: Default::default(),
            handover: Default::default(),
            next_key: Default::default(),
            rng: RefCell::new(rand::SeedableRng::from_entropy()),
        })
    }

    #[test]
    fn a_kill_is_answered_with_whether_the_session_was_here() {
        let ex = executor();
        let answers = ex.run(async {
            let ctx = test_ctx();
            let (reply, answer) = async_channel::bounded(1);
            let handled = ctx.handle(ShardCommand::Kill(uuid::Uuid::new_v4(), reply));
            (handled, answer.recv().await)
        });
        assert_eq!(answers, (Handled::Done, Ok(false)));
    }

    #[test]
    fn every_command_has_one_dispatch_for_both_loops() {
        let ex = executor();
        let (snapshot, close_all, drain) = ex.run(async {
            let ctx = test_ctx();
            let mut reg = crate::registry::Registry::default();
            let snap = reg.snapshot(&[]).unwrap();
            let version = snap.version;
            ctx.handle(ShardCommand::Snapshot(snap));
            let applied = ctx.snapshot.borrow().version == version;
            (
                applied,
                ctx.handle(ShardCommand::CloseAll(1001, "x")),
                ctx.handle(ShardCommand::Drain),
            )
        });
        assert!(snapshot, "a snapshot is applied");
        assert_eq!((close_all, drain), (Handled::ClosedAll, Handled::Drain));
    }

    fn executor() -> glommio::LocalExecutor {
        glommio::LocalExecutorBuilder::default()
            .io_memory(crate::admin::start::serve::IO_MEMORY)
            .ring_depth(crate::admin::start::serve::RING_DEPTH)
            .make()
            .expect("executor")
    }

    #[test]
    fn a_panicking_session_does_not_take_the_shard_down() {
        let ex = executor();
        let panics = ex.run(async {
            let m = ShardMetrics::new();
            let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
            let bad = glommio::spawn_local(guarded(m.clone(), 0, peer, async {
                let v: Vec<u8> = Vec::new();
                let _ = v[1]; // index out of bounds: a bug in a session
            }));
            bad.await;
            // The executor still runs other sessions afterwards.
            let ok = glommio::spawn_local(guarded(m.clone(), 0, peer, async {})).await;
            let _: () = ok;
            m.panics.get()
        });
        assert_eq!(panics, 1);
    }

    /// What an idle session costs is mostly its task: the handshake's and the
    /// connect's futures are boxed and freed once the relay starts, so the
    /// task that lives on is the small `serve` shell plus the relay state.
    #[test]
    fn the_long_lived_session_state_stays_small() {
        let ex = executor();
        let serve_size = ex.run(async {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            let c = glommio::net::TcpStream::connect(a).await.unwrap();
            let ctx = test_ctx();
            std::mem::size_of_val(&super::session::serve(ctx, c, a))
        });
        assert!(serve_size <= 256, "serve future is {serve_size} bytes");
        let relay = std::mem::size_of::<super::session::Relay>();
        assert!(relay <= 900, "Relay is {relay} bytes");
        // The vendored glommio makes a stream's read and write timeouts only
        // when one is set (WSRELAY-PATCH.md): 120 bytes before.
        let stream = std::mem::size_of::<glommio::net::TcpStream>();
        assert!(stream <= 64, "a glommio TcpStream is {stream} bytes");
        let ctrl = std::mem::size_of::<super::frame::ControlFrame>();
        assert!(ctrl <= 48, "ControlFrame is {ctrl} bytes");
    }

    /// The vendored glommio's multishot read readiness (WSRELAY-PATCH.md):
    /// a socket read 200 times, each time after the peer sent more, is armed
    /// once (unpatched glommio submitted a `POLL_ADD` before every read), and
    /// a dropped socket still reaches its peer as EOF (the multishot poll,
    /// which holds the file open, is cancelled).
    #[test]
    fn a_socket_is_armed_for_reading_once_for_its_life() {
        use std::io::{Read, Write};
        let ex = executor();
        let (arms, client) = ex.run(async {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            let client = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut echoed = 0;
                for i in 0u64..200 {
                    s.write_all(&i.to_be_bytes()).unwrap();
                    let mut b = [0u8; 8];
                    s.read_exact(&mut b).unwrap();
                    echoed += u64::from(u64::from_be_bytes(b) == i);
                }
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                let eof = matches!(s.read_to_end(&mut rest), Ok(0));
                // Lets the shard stop waiting (and its executor end).
                let _ = std::net::TcpStream::connect(addr);
                (echoed, eof)
            });
            let before = glommio::net::read_arms();
            let mut s = l.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            loop {
                let n = futures_lite::AsyncReadExt::read(&mut s, &mut buf)
                    .await
                    .expect("read");
                if n == 0 {
                    break;
                }
                futures_lite::AsyncWriteExt::write_all(&mut s, &buf[..n])
                    .await
                    .expect("write");
            }
            let arms = glommio::net::read_arms() - before;
            drop(s);
            let _ = l.accept().await; // the client saw EOF (or gave up)
            (arms, client)
        });
        let (echoed, eof) = client.join().expect("client");
        assert_eq!(echoed, 200, "every message echoed");
        assert!(arms <= 2, "{arms} read arms for 200 reads");
        assert!(eof, "the dropped socket's peer saw EOF");
    }

    /// The vendored glommio keeps its latency ring's timers armed across
    /// sleeps (WSRELAY-PATCH.md): 200 round trips, each of which puts the
    /// executor to sleep until the peer's next message, with a user timer
    /// pending all along, arm a handful of timers. Upstream cancelled and
    /// armed two per wake-up (400 or more here).
    #[test]
    fn sleeping_and_waking_does_not_rearm_the_latency_timers() {
        use std::io::{Read, Write};
        let ex = executor();
        let arms = ex.run(async {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            // A user timer pending through every sleep.
            let pending = glommio::spawn_local(Timer::new(Duration::from_secs(30)));
            let client = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                for i in 0u64..200 {
                    s.write_all(&i.to_be_bytes()).unwrap();
                    let mut b = [0u8; 8];
                    s.read_exact(&mut b).unwrap();
                    assert_eq!(u64::from_be_bytes(b), i);
                }
            });
            let mut s = l.accept().await.expect("accept");
            let before = glommio::timer::latency_ring_arms();
            let mut buf = [0u8; 8];
            for _ in 0..200 {
                futures_lite::AsyncReadExt::read_exact(&mut s, &mut buf)
                    .await
                    .expect("read");
                futures_lite::AsyncWriteExt::write_all(&mut s, &buf)
                    .await
                    .expect("write");
            }
            let arms = glommio::timer::latency_ring_arms() - before;
            client.join().expect("client");
            drop(pending);
            arms
        });
        // One preempt timer per 100 ms of the run, and the user timer once.
        assert!(
            arms <= 20,
            "{arms} latency-ring timers armed for 200 round trips"
        );
    }

    /// The vendored glommio makes a stream's timeouts on first use
    /// (WSRELAY-PATCH.md); a read timeout set on a stream still ends a read
    /// that gets nothing, and reads as set.
    #[test]
    fn a_read_timeout_set_on_a_stream_still_fires() {
        let ex = executor();
        let (kind, got) = ex.run(async {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            let _silent = std::net::TcpStream::connect(addr).expect("connect");
            let mut s = l.accept().await.expect("accept");
            assert_eq!(s.read_timeout(), None, "no timeout until one is set");
            s.set_read_timeout(Some(Duration::from_millis(30)))
                .expect("set");
            let got = s.read_timeout();
            let mut buf = [0u8; 16];
            let read = async {
                futures_lite::AsyncReadExt::read(&mut s, &mut buf)
                    .await
                    .map_err(|e| e.kind())
            };
            // Without the timeout the read would wait for ever: fail instead.
            let r = futures_lite::future::or(read, async {
                Timer::new(Duration::from_secs(10)).await;
                Err(std::io::ErrorKind::Other)
            })
            .await;
            (r, got)
        });
        assert_eq!(got, Some(Duration::from_millis(30)));
        assert_eq!(kind, Err(std::io::ErrorKind::TimedOut));
    }

    /// An accept that is dropped while a connection arrives must leave the
    /// connection queued for the next accept (a process that hands its
    /// listeners over stops accepting this way). Upstream glommio accepted
    /// with an in-kernel `IORING_OP_ACCEPT`, which took the connection and
    /// lost it with the dropped request; the vendored copy waits for the
    /// listener's readiness and accepts with `accept4` (WSRELAY-PATCH.md).
    #[test]
    fn a_dropped_accept_leaves_the_connection_queued() {
        let ex = executor();
        let (accepted, _client) = ex.run(async {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            let client = {
                let mut accept = Box::pin(l.accept());
                assert!(futures_lite::future::poll_once(accept.as_mut())
                    .await
                    .is_none());
                // One turn of the executor, so the wait reaches the kernel.
                Timer::new(Duration::from_millis(1)).await;
                let client = std::net::TcpStream::connect(addr).expect("connect");
                drop(accept);
                client
            };
            let next = async { l.accept().await.is_ok() };
            let timeout = async {
                Timer::new(Duration::from_secs(5)).await;
                false
            };
            (futures_lite::future::or(next, timeout).await, client)
        });
        assert!(accepted, "the connection was lost with the dropped accept");
    }

    /// Bytes and the peer's FIN that arrive together are seen as one
    /// readiness event: the short read of the bytes must not be taken for a
    /// drained socket, or the end is never read (found by
    /// `relay::target_dying_without_close_gives_1014` failing intermittently
    /// with the multishot patch).
    #[test]
    fn bytes_and_the_peers_fin_together_are_both_read() {
        use std::io::Write;
        let ex = executor();
        let reads = ex.run(async {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            let (go_tx, go) = std::sync::mpsc::channel::<()>();
            let (sent_tx, sent) = std::sync::mpsc::channel();
            let client = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                go.recv().expect("go");
                s.write_all(b"last words").unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                sent_tx.send(()).unwrap();
                s
            });
            let mut s = l.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let mut reads = Vec::new();
            let mut first = Box::pin(futures_lite::AsyncReadExt::read(&mut s, &mut buf));
            // The first read finds nothing (and the shard has not yet handed
            // its read arm to the kernel); the bytes and the FIN are then
            // queued together before it does, so one completion reports both.
            assert!(futures_lite::future::poll_once(first.as_mut())
                .await
                .is_none());
            go_tx.send(()).unwrap();
            sent.recv().expect("client");
            let n = first.await.expect("read");
            reads.push(n);
            let ends = async {
                loop {
                    let n = futures_lite::AsyncReadExt::read(&mut s, &mut buf)
                        .await
                        .expect("read");
                    reads.push(n);
                    if n == 0 {
                        return true;
                    }
                }
            };
            let timeout = async {
                glommio::timer::Timer::new(Duration::from_secs(10)).await;
                false
            };
            let ended = futures_lite::future::or(ends, timeout).await;
            drop(client.join());
            assert!(ended, "the end was read (reads: {reads:?})");
            reads
        });
        assert_eq!(reads, vec![10, 0]);
    }
}
