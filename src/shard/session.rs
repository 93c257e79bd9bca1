//! One client connection, from the first byte to the last: the steps of
//! `LIFECYCLE.md` (Handshake → Connecting upstream → Relaying → Closing →
//! Closed). Each failed step answers with its status and leaves nothing
//! behind: the admission slot and the metrics gauge are released by `Drop`.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use std::os::fd::AsRawFd;

use crate::bridge::{Counts, Direction, Endpoint, Event, Parcel, SessionEnd, SessionStart, Side};
use crate::handover::wire::{SessionFds, SessionRecord};
use crate::shard::close::CloseReason;
use crate::shard::frame::ControlFrame;
use crate::shard::handshake::{self, ClientRequest, Refusal, Route};
use crate::shard::leg::{ClientStream, Leg};
use crate::shard::limits::{self, Full};
use crate::shard::metrics::{EndpointMetrics, Reject};
use crate::shard::relay::{Env, Pump, Sink, Source, Tap};
use crate::shard::upstream::{self, UpStream, UpstreamRequest};
use crate::shard::ShardCtx;

/// How long both close handshakes may take once closing starts.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shard's handle on a running session: how the shard asks it to close.
pub struct SessionCtl {
    id: uuid::Uuid,
    endpoint: String,
    /// The client's address (after PROXY header and trusted proxies).
    client: SocketAddr,
    close_req: Cell<Option<(u16, &'static str)>>,
    waker: Cell<Option<Waker>>,
    /// Counters as of the session's last poll.
    counts: Cell<Counts>,
    /// Counters as last reported to the admin runtime.
    reported: Cell<Counts>,
    /// Whether `/ops` readers want this session's per-message metadata.
    pub meta: Cell<bool>,
    /// Unix ms of the session's start.
    started_at_ms: Cell<i64>,
    /// Binary upgrade: asked to come to rest and move (read by the relay).
    park_req: Cell<bool>,
    /// Asked to move and not yet moved, kept or found unable to move.
    parking: Cell<bool>,
}

impl SessionCtl {
    /// A handle for session `id` of `endpoint`, from `client`.
    pub fn new(id: uuid::Uuid, endpoint: &str, client: SocketAddr) -> SessionCtl {
        SessionCtl {
            id,
            endpoint: endpoint.to_string(),
            client,
            close_req: Cell::new(None),
            waker: Cell::new(None),
            counts: Cell::new(Counts::default()),
            reported: Cell::new(Counts::default()),
            meta: Cell::new(false),
            started_at_ms: Cell::new(crate::store::now_ms()),
            park_req: Cell::new(false),
            parking: Cell::new(false),
        }
    }

    /// Binary upgrade: asks the session to come to rest at a frame boundary
    /// on both legs and move to the successor. Asked once per session.
    pub fn request_park(&self) {
        if self.parking.get() || self.park_req.get() {
            return;
        }
        self.park_req.set(true);
        self.parking.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether the session is still on its way to the successor (asked to
    /// move, and not yet moved, kept, or found unable to move).
    pub fn parking(&self) -> bool {
        self.parking.get()
    }

    /// The session id.
    pub fn id(&self) -> uuid::Uuid {
        self.id
    }

    /// The session's endpoint id.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The counters, if they changed since the last call.
    pub fn take_update(&self) -> Option<Counts> {
        let now = self.counts.get();
        (now != self.reported.get()).then(|| {
            self.reported.set(now);
            now
        })
    }

    /// Asks the session to close both legs with `code`.
    pub fn request_close(&self, code: u16, reason: &'static str) {
        self.close_req.set(Some((code, reason)));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Removes the session from the shard's table and the gauge, both or neither.
struct Registered {
    ctx: Rc<ShardCtx>,
    key: u64,
    metrics: Rc<EndpointMetrics>,
}

impl Registered {
    /// Puts the session in the shard's table and the gauge.
    fn new(ctx: &Rc<ShardCtx>, ctl: &Rc<SessionCtl>, metrics: &Rc<EndpointMetrics>) -> Registered {
        ctl.meta
            .set(ctx.meta_endpoints.borrow().contains(ctl.endpoint()));
        let key = ctx.next_key();
        ctx.sessions.borrow_mut().insert(key, ctl.clone());
        metrics
            .sessions_active
            .set(metrics.sessions_active.get() + 1);
        Registered {
            ctx: ctx.clone(),
            key,
            metrics: metrics.clone(),
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.ctx.sessions.borrow_mut().remove(&self.key);
        self.metrics
            .sessions_active
            .set(self.metrics.sessions_active.get() - 1);
    }
}

/// Answers with a complete HTTP response and ends the connection (`None`:
/// no session follows).
async fn respond<T>(stream: &mut ClientStream, bytes: &[u8]) -> Option<T> {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    // Plain: a FIN after the answer; TLS: close_notify, then the FIN.
    let _ = stream.close().await;
    None
}

async fn refuse<T>(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    r: Refusal,
    retry_after: Option<u64>,
    client: SocketAddr,
) -> Option<T> {
    refuse_for(ctx, stream, r, retry_after, None, client, None).await
}

/// [`refuse`] an upgrade that asked for endpoint `id`: counted under that
/// endpoint if it exists (an unknown id is counted without one, so a client
/// cannot invent metric series).
async fn refuse_for<T>(
    ctx: &ShardCtx,
    stream: &mut ClientStream,
    r: Refusal,
    retry_after: Option<u64>,
    id: Option<&str>,
    client: SocketAddr,
    error: Option<&str>,
) -> Option<T> {
    let known = id.filter(|id| ctx.snapshot.borrow().endpoints.contains_key(*id));
    match known {
        Some(id) => ctx.metrics.endpoint(id).reject(r.reason),
        None => ctx.metrics.reject(r.reason),
    }
    log_refusal(ctx, r.status, r.reason, client, known, error);
    let body = handshake::reason_phrase(r.status);
    respond(
        stream,
        &handshake::simple_response(r.status, body, retry_after),
    )
    .await
}

enum Read {
    Request(Box<ClientRequest>, Vec<u8>),
    Refused(Refusal),
    Closed,
}

/// The log line of a refused upgrade (status 0: closed without an HTTP
/// answer — a bad PROXY header or TLS handshake), at most
/// [`crate::shard::limits::REFUSAL_LINES_PER_SECOND`] a second per shard so
/// a flood cannot flood the log; the next line written says how many were
/// left out. `endpoint`: only a known one (a client cannot write ids into
/// the log).
fn log_refusal(
    ctx: &ShardCtx,
    status: u16,
    reason: Reject,
    client: SocketAddr,
    endpoint: Option<&str>,
    error: Option<&str>,
) {
    if let Some(suppressed) = ctx.refusal_log.take(Instant::now()) {
        tracing::info!(
            status,
            reason = reason.label(),
            client = %client,
            endpoint = endpoint.unwrap_or(""),
            error = error.unwrap_or(""),
            suppressed,
            "upgrade refused"
        );
    }
}

/// `fut`, unless `deadline` passes first (`None`).
async fn by<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        Timer::new(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await
}

/// A PROXY protocol header refused: the reason counted and why, for the log.
struct ProxyRefused(Reject, String);

/// Reads the PROXY protocol header (`server.proxy_protocol`) before
/// anything else, by `deadline`: peeked until whole (never reading past it),
/// then consumed. `Some(addr)`: the original client; `None`: the header
/// names none (a balancer's health check), the TCP peer stands.
async fn read_proxy_header(
    tcp: &mut TcpStream,
    deadline: Instant,
) -> Result<Option<SocketAddr>, ProxyRefused> {
    use wsrelay_proto::proxy::{self, Parsed};
    let work = async {
        let mut buf = [0u8; proxy::MAX];
        loop {
            let n = match tcp.peek(&mut buf).await {
                Ok(0) => {
                    return Err(ProxyRefused(
                        Reject::ProxyHeader,
                        "closed before a PROXY header".into(),
                    ))
                }
                Ok(n) => n,
                Err(e) => return Err(ProxyRefused(Reject::ProxyHeader, e.to_string())),
            };
            match proxy::parse(&buf[..n]) {
                Parsed::Header { len, client } => {
                    return match tcp.read_exact(&mut buf[..len]).await {
                        Ok(()) => Ok(client),
                        Err(e) => Err(ProxyRefused(Reject::ProxyHeader, e.to_string())),
                    };
                }
                Parsed::Invalid(why) => return Err(ProxyRefused(Reject::ProxyHeader, why)),
                // The rest of a header split across segments: look again
                // shortly (a peek returns at once while bytes wait).
                Parsed::Incomplete => {
                    Timer::new(Duration::from_millis(2)).await;
                }
            }
        }
    };
    by(deadline, work).await.unwrap_or_else(|| {
        Err(ProxyRefused(
            Reject::HandshakeTimeout,
            "no complete PROXY header in time".into(),
        ))
    })
}

/// Reads the upgrade request by `deadline` (`handshake_timeout_ms` after
/// the accept, PROXY header and TLS handshake included).
async fn read_request(ctx: &ShardCtx, stream: &mut ClientStream, deadline: Instant) -> Read {
    let max = ctx.cfg.limits.max_header_bytes;
    let work = async {
        let mut buf = vec![0u8; max.min(1024)];
        let mut filled = 0;
        for _ in 0..handshake::MAX_HANDSHAKE_READS {
            if filled == buf.len() {
                buf.resize((buf.len() * 2).min(max), 0);
            }
            let n = match stream.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(n) => n,
            };
            let new_from = filled;
            filled += n;
            if filled < max && !handshake::may_be_complete(&buf[..filled], new_from) {
                continue; // no end of headers yet: nothing to parse
            }
            match handshake::parse_request(&buf[..filled], max) {
                Ok(Some(req)) => {
                    let rest = buf[req.consumed..filled].to_vec();
                    return Read::Request(Box::new(req), rest);
                }
                Ok(None) => {}
                Err(r) => return Read::Refused(r),
            }
        }
        Read::Refused(Refusal {
            status: 400,
            reason: Reject::Fragmented,
        })
    };
    by(deadline, work).await.unwrap_or(Read::Refused(Refusal {
        status: 408,
        reason: Reject::HandshakeTimeout,
    }))
}

/// Serves one accepted connection to its end.
pub fn serve(
    ctx: Rc<ShardCtx>,
    client: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    // Boxed: the handshake's futures and buffers are freed once it is done, so
    // they do not size the session task for its whole life. Made here, not in
    // the async block, so the task does not keep room for `client` too.
    // Counted from the accept on (not from the task's first poll), until the
    // handshake future ends or is dropped.
    let counted = Handshaking::new(&ctx);
    let handshake = Box::pin(establish(ctx.clone(), client, peer, counted));
    async move {
        let Some(est) = handshake.await else {
            return;
        };
        // What lives on is the relay state, boxed: exactly a `Session`, with
        // no async frame around it holding the handshake's values (an async
        // fn kept its `Established` argument beside the `Relay` built from
        // it, ~0.5 KB a session).
        let client = est.client_addr;
        let session = Box::new(Session::start(ctx, est, client));
        session.run().await;
    }
}

/// Binary upgrade, successor side: takes a session the old process handed
/// over into this shard. It keeps its id, start and counters (the admin side
/// hears `Adopted`, not a start) and relays on from its record; a refusal
/// leaves the connections to the old process.
pub fn adopt(ctx: &Rc<ShardCtx>, rec: Box<SessionRecord>, fds: SessionFds) -> Result<(), String> {
    if rec.node != ctx.shared.node {
        return Err(format!(
            "a session of node {} (this is node {})",
            rec.node, ctx.shared.node
        ));
    }
    if ctx.draining.get() {
        return Err("this process is draining".into());
    }
    let endpoint = ctx.snapshot.borrow().endpoints.get(&rec.endpoint).cloned();
    let Some(endpoint) = endpoint.filter(|e| e.cfg.enabled) else {
        return Err(format!("endpoint {} is gone or disabled", rec.endpoint));
    };
    let slot = limits::admit(
        &ctx.shared.global_active,
        ctx.cfg.limits.max_connections,
        &endpoint.active,
        endpoint.cfg.limits.max_connections,
    )
    .map_err(|f| match f {
        Full::Global => "limits.max_connections reached".to_string(),
        Full::Endpoint => "the endpoint's maxConnections reached".to_string(),
    })?;
    let client = Leg::Plain(crate::sys::stream_from_fd(fds.client));
    let upstream = UpStream::Plain(crate::sys::stream_from_fd(fds.target));
    let metrics = ctx.metrics.endpoint(&endpoint.cfg.id);
    let ctl = Rc::new(SessionCtl::new(rec.id, &endpoint.cfg.id, rec.client));
    ctl.started_at_ms.set(rec.started_at_ms);
    let registered = Registered::new(ctx, &ctl, &metrics);
    let relay = Relay::new(ctx, endpoint, metrics, client, upstream, ctl.clone()).resume(&rec);
    let counts = relay.counts();
    ctl.counts.set(counts);
    ctl.reported.set(counts);
    ctx.events.send(Event::Adopted(
        Box::new(SessionStart {
            id: rec.id,
            endpoint: rec.endpoint.clone(),
            shard: ctx.id,
            client: rec.client,
            at_ms: rec.started_at_ms,
        }),
        counts,
    ));
    tracing::debug!(endpoint = %rec.endpoint, session = %rec.id, "session adopted from the predecessor");
    let session = Box::new(Session {
        relay,
        slot,
        _registered: registered,
    });
    glommio::spawn_local(crate::shard::guarded(
        ctx.metrics.clone(),
        ctx.id,
        rec.client,
        session.run(),
    ))
    .detach();
    Ok(())
}

/// Counts a connection in `ShardCtx::handshakes` until dropped (the
/// handshake ended, or the task was).
struct Handshaking(Rc<ShardCtx>);

impl Handshaking {
    fn new(ctx: &Rc<ShardCtx>) -> Handshaking {
        ctx.handshakes.set(ctx.handshakes.get() + 1);
        Handshaking(ctx.clone())
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.handshakes.set(self.0.handshakes.get() - 1);
    }
}

/// What a successful handshake hands to the relay phase.
struct Established {
    client: ClientStream,
    /// The client's address: the TCP peer, the PROXY header's source, or
    /// from a trusted proxy's `X-Forwarded-For` (port 0).
    client_addr: SocketAddr,
    upstream: UpStream,
    endpoint: std::sync::Arc<Endpoint>,
    metrics: Rc<EndpointMetrics>,
    slot: limits::Slot,
    session_id: uuid::Uuid,
    /// Bytes the client sent after its request.
    early: Vec<u8>,
    /// Bytes the target sent after its 101.
    leftover: Vec<u8>,
}

/// Handshake → Admitted → Connecting upstream; `None` once answered with an error.
async fn establish(
    ctx: Rc<ShardCtx>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    _counted: Handshaking,
) -> Option<Established> {
    let deadline = Instant::now() + Duration::from_millis(ctx.cfg.limits.handshake_timeout_ms);
    let mut peer = peer;
    if ctx.cfg.server.proxy_protocol {
        match read_proxy_header(&mut tcp, deadline).await {
            Ok(Some(source)) => peer = source,
            Ok(None) => {}
            Err(ProxyRefused(reason, why)) => {
                ctx.metrics.reject(reason);
                log_refusal(&ctx, 0, reason, peer, None, Some(&why));
                return None; // dropping the stream closes it
            }
        }
    }
    let acceptor = ctx.tls.borrow().clone();
    let mut client: ClientStream = match acceptor {
        None => Leg::Plain(tcp),
        Some(acceptor) => match by(deadline, acceptor.accept(tcp)).await {
            Some(Ok(s)) => Leg::Tls(Box::new(s)),
            Some(Err(e)) => {
                ctx.metrics.reject(Reject::TlsHandshake);
                log_refusal(
                    &ctx,
                    0,
                    Reject::TlsHandshake,
                    peer,
                    None,
                    Some(&e.to_string()),
                );
                return None;
            }
            None => {
                ctx.metrics.reject(Reject::HandshakeTimeout);
                log_refusal(&ctx, 0, Reject::HandshakeTimeout, peer, None, None);
                return None;
            }
        },
    };
    let (req, early) = match read_request(&ctx, &mut client, deadline).await {
        Read::Request(r, rest) => (r, rest),
        Read::Refused(r) => return refuse(&ctx, &mut client, r, None, peer).await,
        Read::Closed => return None,
    };
    let id = match &req.route {
        Route::Healthz => {
            let (status, body) = if ctx.draining.get() {
                (503, "draining")
            } else if ctx.shared.memory.shedding() {
                (503, "degraded")
            } else {
                (200, "ok")
            };
            return respond(&mut client, &handshake::simple_response(status, body, None)).await;
        }
        Route::Endpoint(id) => id.clone(),
    };
    let fwd = crate::shard::forwarded::resolve(
        peer.ip(),
        req.forwarded_for.as_deref(),
        req.forwarded_proto.as_deref(),
        !client.is_plain(),
        &ctx.shared.trusted_proxies,
    );
    let client_addr = if fwd.from_header {
        SocketAddr::new(fwd.client, 0)
    } else {
        peer
    };
    let refusal = |status, reason| Refusal { status, reason };
    if ctx.draining.get() {
        return refuse_for(
            &ctx,
            &mut client,
            refusal(503, Reject::Draining),
            Some(1),
            Some(&id),
            client_addr,
            None,
        )
        .await;
    }
    if ctx.shared.memory.shedding() {
        return refuse_for(
            &ctx,
            &mut client,
            refusal(503, Reject::Memory),
            Some(1),
            Some(&id),
            client_addr,
            None,
        )
        .await;
    }
    if let Err(wait) = ctx.shared.ip_buckets.check(client_addr.ip()) {
        return refuse_for(
            &ctx,
            &mut client,
            refusal(429, Reject::RateLimited),
            Some(wait),
            Some(&id),
            client_addr,
            None,
        )
        .await;
    }
    let endpoint = ctx.snapshot.borrow().endpoints.get(&id).cloned();
    let Some(endpoint) = endpoint else {
        return refuse_for(
            &ctx,
            &mut client,
            refusal(404, Reject::NotFound),
            None,
            Some(&id),
            client_addr,
            None,
        )
        .await;
    };
    if !endpoint.cfg.enabled {
        return refuse_for(
            &ctx,
            &mut client,
            refusal(403, Reject::Disabled),
            None,
            Some(&id),
            client_addr,
            None,
        )
        .await;
    }
    if !req.origin_allowed(&endpoint.cfg.allowed_origins) {
        return refuse_for(
            &ctx,
            &mut client,
            refusal(403, Reject::OriginNotAllowed),
            None,
            Some(&id),
            client_addr,
            None,
        )
        .await;
    }
    if let Some(auth) = &endpoint.auth {
        let ok = req.token().is_some_and(|t| {
            jsonwebtoken::decode::<serde::de::IgnoredAny>(t, &auth.key, &auth.validation).is_ok()
        });
        if !ok {
            return refuse_for(
                &ctx,
                &mut client,
                refusal(401, Reject::Unauthorized),
                None,
                Some(&id),
                client_addr,
                None,
            )
            .await;
        }
    }
    let slot = match limits::admit(
        &ctx.shared.global_active,
        ctx.cfg.limits.max_connections,
        &endpoint.active,
        endpoint.cfg.limits.max_connections,
    ) {
        Ok(s) => s,
        Err(Full::Global) => {
            return refuse_for(
                &ctx,
                &mut client,
                refusal(503, Reject::GlobalFull),
                Some(1),
                Some(&id),
                client_addr,
                None,
            )
            .await
        }
        Err(Full::Endpoint) => {
            return refuse_for(
                &ctx,
                &mut client,
                refusal(503, Reject::EndpointFull),
                Some(1),
                Some(&id),
                client_addr,
                None,
            )
            .await
        }
    };
    let metrics = ctx.metrics.endpoint(&endpoint.cfg.id);
    let session_id = ctx.new_session_id();
    let session_id_text = session_id.hyphenated().to_string();

    // Connecting upstream.
    let query = req.query_without_token();
    let mut headers: Vec<(&str, &[u8])> = req
        .passthrough
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    if let Some(o) = &req.origin {
        headers.push(("Origin", o.as_bytes()));
    }
    if endpoint.auth.is_none() {
        if let Some(a) = &req.authorization {
            headers.push(("Authorization", a.as_bytes()));
        }
    }
    let up_req = UpstreamRequest {
        client_query: query.as_deref(),
        protocols: req.protocols.as_deref(),
        forwarded_for: &fwd.for_header,
        forwarded_proto: &fwd.proto,
        request_id: &session_id_text,
        headers,
    };
    let t0 = Instant::now();
    let timeout = Duration::from_millis(ctx.cfg.limits.upstream_connect_timeout_ms);
    let up = match upstream::open(&endpoint.target, &up_req, timeout, &ctx.shared.tls).await {
        Ok(u) => u,
        Err(e) => {
            let status = e.status();
            let reason = if status == 504 {
                Reject::UpstreamTimeout
            } else {
                Reject::UpstreamFailed
            };
            let error = e.to_string();
            return refuse_for(
                &ctx,
                &mut client,
                refusal(status, reason),
                None,
                Some(&id),
                client_addr,
                Some(&error),
            )
            .await;
        }
    };
    let _ = metrics
        .connect_us
        .borrow_mut()
        .record(t0.elapsed().as_micros().max(1) as u64);
    let upstream::Upgraded {
        stream: up_stream,
        protocol,
        leftover,
    } = up;
    let reply = handshake::switching_protocols(&req.key, protocol.as_deref());
    drop(protocol);
    if client.write_all(&reply).await.is_err() || client.flush().await.is_err() {
        return None; // the client left; dropping the upstream closes it
    }
    let _ = client.tcp().set_nodelay(true);
    let (send, recv) = (
        ctx.cfg.limits.socket_send_buffer_bytes,
        ctx.cfg.limits.socket_recv_buffer_bytes,
    );
    crate::sys::set_socket_buffers(&client, send, recv);
    crate::sys::set_socket_buffers(&up_stream, send, recv);

    Some(Established {
        client,
        client_addr,
        upstream: up_stream,
        endpoint,
        metrics,
        slot,
        session_id,
        early,
        leftover,
    })
}

/// An established session: its relay and its place in the shard.
struct Session {
    relay: Relay,
    slot: limits::Slot,
    /// Last: removes the session from the shard's table when dropped.
    _registered: Registered,
}

impl Session {
    /// Relaying begins: the session is registered, counted and announced.
    fn start(ctx: Rc<ShardCtx>, est: Established, peer: SocketAddr) -> Session {
        let Established {
            client,
            client_addr: _,
            upstream,
            endpoint,
            metrics,
            slot,
            session_id,
            early,
            leftover,
        } = est;
        let ctl = Rc::new(SessionCtl::new(session_id, &endpoint.cfg.id, peer));
        metrics.sessions_total.set(metrics.sessions_total.get() + 1);
        let registered = Registered::new(&ctx, &ctl, &metrics);
        tracing::debug!(endpoint = %endpoint.cfg.id, session = %session_id, client = %peer, "session started");
        ctx.events.send(Event::Started(Box::new(SessionStart {
            id: session_id,
            endpoint: endpoint.cfg.id.clone(),
            shard: ctx.id,
            client: peer,
            at_ms: crate::store::now_ms(),
        })));
        let mut relay = Relay::new(&ctx, endpoint, metrics, client, upstream, ctl.clone());
        relay.c2u.preload(&ctx.pool, &early);
        relay.u2c.preload(&ctx.pool, &leftover);
        if ctx.handover.borrow().is_some() {
            // Established during a binary upgrade: it moves too.
            ctl.request_park();
        }
        Session {
            relay,
            slot,
            _registered: registered,
        }
    }

    /// Relays until the session ends or moves to a successor.
    async fn run(mut self: Box<Self>) {
        loop {
            match (&mut self.relay).await {
                Outcome::Ended(end, abnormal) => return self.finish(end, abnormal),
                Outcome::Parked => {
                    // Boxed: the hand-off's state does not size every
                    // session's task.
                    match Box::pin(self.relay.hand_off()).await {
                        Ok(()) => return self.moved(),
                        Err(why) => {
                            tracing::info!(session = %self.relay.ctl.id, reason = %why, "session stays in this process (closed at the drain deadline)");
                            self.relay.stop_parking();
                        }
                    }
                }
            }
        }
    }

    /// The session's parts, its buffers back in the pool; dropped by the
    /// caller in this order (the registration last).
    fn take_apart(self) -> (Relay, limits::Slot, Registered) {
        let Session {
            mut relay,
            slot,
            _registered,
        } = self;
        let pool = relay.ctx.pool.clone();
        relay.c2u.finish(&pool);
        relay.u2c.finish(&pool);
        (relay, slot, _registered)
    }

    /// Moved to the successor: this process lets go of it without a close
    /// (dropping the streams closes only this process's descriptors; the
    /// connections live on in the successor) and without an end event.
    fn moved(self) {
        let (relay, slot, _registered) = self.take_apart();
        let ctx = relay.ctx.clone();
        tracing::debug!(endpoint = %relay.endpoint.cfg.id, session = %relay.ctl.id, "session moved to the successor");
        ctx.events.send(Event::Moved { id: relay.ctl.id });
        drop(relay);
        drop(slot);
    }

    /// Closed: buffers back to the pool, the close counted, logged and
    /// reported; then the admission slot and the registration are released.
    fn finish(self, end: SessionEnd, abnormal: bool) {
        let (relay, slot, _registered) = self.take_apart();
        let ctx = relay.ctx.clone();
        relay.metrics.record_close(end.code, end.by);
        let counts = relay.counts();
        let [msgs_in, msgs_out] = counts.msgs;
        let [bytes_in, bytes_out] = counts.bytes;
        let session_id = relay.ctl.id;
        let endpoint = &relay.endpoint.cfg.id;
        let now_ms = crate::store::now_ms();
        let duration_ms = (now_ms - relay.ctl.started_at_ms.get()).max(0);
        // The access-log line: one per session, at info (in: client → target).
        tracing::info!(
            session = %session_id,
            endpoint = %endpoint,
            client = %relay.ctl.client,
            duration_ms,
            msgs_in,
            msgs_out,
            bytes_in,
            bytes_out,
            code = end.code,
            reason = %end.reason,
            closed_by = end.by.as_str(),
            abnormal,
            "session ended"
        );
        ctx.events.send(Event::Ended {
            id: session_id,
            counts,
            end,
            at_ms: now_ms,
        });
        drop(relay);
        drop(slot);
    }
}

/// The two phases of an established session.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Both legs relay.
    Relaying,
    /// The first close happened and decided how the session ends; both
    /// legs' close handshakes finish within `CLOSE_TIMEOUT` of `since`.
    Closing { since: Instant, why: CloseReason },
}

impl Phase {
    fn is_relaying(&self) -> bool {
        matches!(self, Phase::Relaying)
    }

    fn closing_since(&self) -> Option<Instant> {
        match self {
            Phase::Relaying => None,
            Phase::Closing { since, .. } => Some(*since),
        }
    }
}

/// The Relaying and Closing steps of a session, as one future.
pub struct Relay {
    ctx: Rc<ShardCtx>,
    endpoint: std::sync::Arc<Endpoint>,
    metrics: Rc<EndpointMetrics>,
    client: ClientStream,
    upstream: UpStream,
    /// Client → target.
    pub c2u: Pump,
    /// Target → client.
    pub u2c: Pump,
    ctl: Rc<SessionCtl>,
    timer: Timer,
    timer_at: Instant,
    phase: Phase,
    ping_sent: Option<Instant>,
    missed_pongs: u32,
    ping_seq: u64,
    /// Binary upgrade: since when the session is coming to rest.
    park_since: Option<Instant>,
}

/// How long a session may take to come to rest at a frame boundary on both
/// legs before it stays in the old process (and is closed with 1012 at the
/// drain deadline).
pub const PARK_TIMEOUT: Duration = Duration::from_secs(2);

/// How a session's relay future ends.
pub enum Outcome {
    /// Both legs closed (or were given up on): how, and whether abnormally.
    Ended(SessionEnd, bool),
    /// At rest at a frame boundary on both legs, for the successor.
    Parked,
}

impl Relay {
    fn new(
        ctx: &Rc<ShardCtx>,
        endpoint: std::sync::Arc<Endpoint>,
        metrics: Rc<EndpointMetrics>,
        client: ClientStream,
        upstream: UpStream,
        ctl: Rc<SessionCtl>,
    ) -> Relay {
        let now = Instant::now();
        let (s1, s2) = ctx.mask_seeds();
        Relay {
            ctx: ctx.clone(),
            endpoint,
            metrics,
            client,
            upstream,
            c2u: Pump::new(Direction::In, now, s1),
            u2c: Pump::new(Direction::Out, now, s2),
            ctl,
            // `timer_at` in the past: the first poll computes the deadlines
            // and registers the timer.
            timer: Timer::new(Duration::from_secs(3600)),
            timer_at: now,
            phase: Phase::Relaying,
            ping_sent: None,
            missed_pongs: 0,
            ping_seq: s1 ^ s2,
            park_since: None,
        }
    }

    /// This new relay resumes a session handed over by the predecessor,
    /// from its record.
    fn resume(mut self, rec: &SessionRecord) -> Relay {
        let now = Instant::now();
        let pool = self.ctx.pool.clone();
        self.c2u.resume(now, &rec.c2u, &pool);
        self.u2c.resume(now, &rec.u2c, &pool);
        self.ping_sent = rec.ping_ago_ms.map(|ms| crate::shard::relay::ago(now, ms));
        self.missed_pongs = rec.missed_pongs;
        self.ping_seq = rec.ping_seq;
        self
    }

    /// Starts coming to rest for the successor, if the session can move:
    /// both legs plain TCP and no close under way.
    fn begin_park(&mut self, now: Instant) {
        let plain = self.upstream.is_plain() && self.client.is_plain();
        if plain && self.phase.is_relaying() {
            self.c2u.park();
            self.u2c.park();
            self.park_since = Some(now);
        } else {
            let why = if plain { "closing" } else { "TLS on a leg" };
            tracing::info!(session = %self.ctl.id, reason = why, "session cannot move to the successor; it stays in this process (1012 at the drain deadline)");
            self.ctl.parking.set(false);
        }
    }

    /// Relays as usual again: the session stays in this process.
    fn stop_parking(&mut self) {
        self.c2u.unpark();
        self.u2c.unpark();
        self.park_since = None;
        self.ctl.parking.set(false);
    }

    /// The session's state for the successor (at rest).
    fn record(&self) -> SessionRecord {
        let now = Instant::now();
        SessionRecord {
            id: self.ctl.id,
            node: self.ctx.shared.node.clone(),
            endpoint: self.endpoint.cfg.id.clone(),
            client: self.ctl.client,
            started_at_ms: self.ctl.started_at_ms.get(),
            c2u: self.c2u.export(now),
            u2c: self.u2c.export(now),
            ping_ago_ms: self
                .ping_sent
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            missed_pongs: self.missed_pongs,
            ping_seq: self.ping_seq,
        }
    }

    /// Sends the session at rest to the successor (through the shard's
    /// handover channel and the control thread) and waits for its answer.
    async fn hand_off(&self) -> Result<(), String> {
        let Some(tx) = self.ctx.handover.borrow().clone() else {
            return Err("the handover is over".into());
        };
        let fds = SessionFds {
            client: crate::sys::dup_fd(self.client.as_raw_fd())
                .map_err(|e| format!("client descriptor: {e}"))?,
            target: crate::sys::dup_fd(self.upstream.as_raw_fd())
                .map_err(|e| format!("target descriptor: {e}"))?,
        };
        let (reply, answer) = async_channel::bounded(1);
        let parcel = Parcel::Session {
            record: Box::new(self.record()),
            fds,
            reply,
        };
        tx.send(parcel)
            .await
            .map_err(|_| "the control thread is gone".to_string())?;
        answer
            .recv()
            .await
            .unwrap_or_else(|_| Err("no answer from the control thread".into()))
    }

    /// Messages and bytes relayed so far.
    pub fn counts(&self) -> Counts {
        Counts {
            msgs: [self.c2u.messages(), self.u2c.messages()],
            bytes: [self.c2u.bytes(), self.u2c.bytes()],
        }
    }

    /// Sends wsrelay's own close on both legs (where none is queued or
    /// written yet) and drops further data frames. The first close decides
    /// how the session ended.
    fn begin_close(&mut self, why: CloseReason, now: Instant) {
        if self.phase.is_relaying() {
            self.phase = Phase::Closing { since: now, why };
        }
        let (code, reason) = (why.code(), why.reason());
        if self.u2c.may_close() {
            self.u2c
                .queue_control(ControlFrame::close(code, reason, None));
            self.u2c.drain();
        }
        if self.c2u.may_close() {
            let mask = self.c2u.next_mask();
            self.c2u
                .queue_control(ControlFrame::close(code, reason, Some(mask)));
            self.c2u.drain();
        }
    }

    /// Reacts to what the pumps found; true if a pump has new work.
    fn react(&mut self, now: Instant) -> bool {
        let mut again = false;
        // A peer that broke the protocol (or a limit) is failed (RFC 6455
        // 7.1.7): it gets wsrelay's close and nothing more is read from it, so
        // its leg ends as soon as that close is written.
        if let Some(f) = self.c2u.take_fault() {
            self.begin_close(CloseReason::Fault(f), now);
            self.c2u.stop_reading();
            again = true;
        }
        if let Some(f) = self.u2c.take_fault() {
            self.begin_close(CloseReason::Fault(f), now);
            self.u2c.stop_reading();
            again = true;
        }
        // A leg that ended without a close frame.
        let client_gone = self.c2u.source() == Source::Gone || self.u2c.sink() == Sink::Gone;
        let target_gone = self.u2c.source() == Source::Gone || self.c2u.sink() == Sink::Gone;
        if client_gone && self.u2c.sink() != Sink::Gone {
            self.u2c.abandon_sink();
            again = true;
        }
        if target_gone && self.c2u.sink() != Sink::Gone {
            self.c2u.abandon_sink();
            again = true;
        }
        if client_gone && self.phase.is_relaying() {
            self.begin_close(CloseReason::ClientGone, now);
            again = true;
        }
        if target_gone && self.phase.is_relaying() {
            self.begin_close(CloseReason::TargetGone, now);
            again = true;
        }
        if self.phase.is_relaying() {
            // A peer started the close handshake; the other side answers it.
            // It ended the session with its own code and reason.
            let by = if self.c2u.source() == Source::Closed {
                Some((Side::Client, self.c2u.peer_close_code()))
            } else if self.u2c.source() == Source::Closed {
                Some((Side::Target, self.u2c.peer_close_code()))
            } else {
                None
            };
            if let Some((by, code)) = by {
                let code = code.unwrap_or(1005);
                self.phase = Phase::Closing {
                    since: now,
                    why: CloseReason::PeerClose { by, code },
                };
            }
        }
        if self.c2u.take_pong() {
            self.ping_sent = None;
            self.missed_pongs = 0;
        }
        if let Some((code, reason)) = self.ctl.close_req.take() {
            self.begin_close(CloseReason::Requested { code, reason }, now);
            again = true;
        }
        if self.ctl.park_req.take() {
            self.begin_park(now);
        }
        again
    }

    fn ended(&mut self) -> Outcome {
        let (end, abnormal) = self.take_end();
        Outcome::Ended(end, abnormal)
    }

    /// How the session ended (set by the first close; a session cannot be
    /// done without one), and whether it is abnormal.
    fn take_end(&mut self) -> (SessionEnd, bool) {
        let why = match self.phase {
            Phase::Closing { why, .. } => why,
            Phase::Relaying => CloseReason::Requested {
                code: 1006,
                reason: "",
            },
        };
        let peer = match why {
            CloseReason::PeerClose {
                by: Side::Client, ..
            } => self.c2u.take_peer_close(),
            CloseReason::PeerClose {
                by: Side::Target, ..
            } => self.u2c.take_peer_close(),
            _ => None,
        };
        // A peer's close frame: its own reason; a peer that vanished (no
        // frame) or wsrelay: wsrelay's words.
        let reason = match peer {
            Some((_, text)) => std::borrow::Cow::Owned(text),
            None => std::borrow::Cow::Borrowed(why.reason()),
        };
        let end = SessionEnd {
            code: why.code(),
            reason,
            by: why.side(),
        };
        (end, why.abnormal())
    }

    fn done(&mut self) -> bool {
        let client_leg = self.u2c.sink() == Sink::Gone
            || (self.u2c.sink() == Sink::Closed && self.c2u.finished_reading());
        let target_leg = self.c2u.sink() == Sink::Gone
            || (self.c2u.sink() == Sink::Closed && self.u2c.finished_reading());
        if client_leg && self.u2c.sink() != Sink::Gone {
            // The client's close handshake is complete: as the server, wsrelay
            // closes the TCP connection first (RFC 6455 7.1.1), without waiting
            // for the target's leg.
            crate::sys::shutdown_now(&self.client);
            self.u2c.abandon_sink();
        }
        client_leg && target_leg
    }

    /// Since when the older of the two stalled writes has made no progress.
    fn oldest_stall(&self) -> Option<Instant> {
        self.c2u
            .stalled_since()
            .into_iter()
            .chain(self.u2c.stalled_since())
            .min()
    }

    /// When the oldest write that makes no progress runs out of
    /// `send_timeout_ms`.
    fn stall_deadline(&self) -> Option<Instant> {
        let t = Duration::from_millis(self.ctx.cfg.limits.send_timeout_ms);
        self.oldest_stall().map(|s| s + t)
    }

    /// Timers: idle timeout, heartbeat, send timeout, close deadline.
    /// Returns the next deadline.
    fn on_time(&mut self, now: Instant) -> Instant {
        if let Some(since) = self.phase.closing_since() {
            return since + CLOSE_TIMEOUT;
        }
        if self.stall_deadline().is_some_and(|d| now >= d) {
            // A peer that takes nothing for `send_timeout_ms` is dropped; the
            // other side gets 1008.
            if self.u2c.stalled_since() == self.oldest_stall() {
                self.u2c.abandon_sink(); // the client
            } else {
                self.c2u.abandon_sink(); // the target
            }
            self.begin_close(CloseReason::SendTimeout, now);
            return now + CLOSE_TIMEOUT;
        }
        let hb = &self.ctx.cfg.heartbeat;
        let idle_limit = Duration::from_millis(self.endpoint.cfg.limits.timeout_ms);
        let last_msg = self.c2u.last_msg().max(self.u2c.last_msg());
        if now >= last_msg + idle_limit {
            self.begin_close(CloseReason::IdleTimeout, now);
            return now + CLOSE_TIMEOUT;
        }
        let mut next = last_msg + idle_limit;
        if let Some(d) = self.stall_deadline() {
            next = next.min(d);
        }
        if let Some(sent) = self.ping_sent {
            if self.c2u.last_rx() > sent {
                // Any bytes from the client prove it is alive.
                self.ping_sent = None;
                self.missed_pongs = 0;
                self.c2u.expect_pong(None);
            } else if now >= sent + Duration::from_millis(hb.pong_timeout_ms) {
                self.missed_pongs += 1;
                self.ping_sent = None;
                self.c2u.expect_pong(None);
                if self.missed_pongs >= hb.max_missed_pongs {
                    // The client is unreachable: tell the target, drop the client.
                    self.u2c.abandon_sink();
                    self.begin_close(CloseReason::ClientGone, now);
                    return now + CLOSE_TIMEOUT;
                }
            }
        }
        match self.ping_sent {
            Some(sent) => next = next.min(sent + Duration::from_millis(hb.pong_timeout_ms)),
            None => {
                let due = if self.missed_pongs > 0 {
                    now
                } else {
                    self.c2u.last_rx() + Duration::from_millis(hb.ping_interval_ms)
                };
                if now >= due
                    && self.u2c.source() == Source::Relaying
                    && !self.u2c.control_pending()
                {
                    self.ping_seq = self.ping_seq.wrapping_add(1);
                    let token = self.ping_seq.to_be_bytes();
                    if self.u2c.queue_control(ControlFrame::ping(&token, None)) {
                        self.c2u.expect_pong(Some(token));
                        self.ping_sent = Some(now);
                        next = next.min(now + Duration::from_millis(hb.pong_timeout_ms));
                    }
                } else {
                    next = next.min(due.max(now + Duration::from_millis(1)));
                }
            }
        }
        next
    }
}

impl Future for &mut Relay {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut **self.get_mut();
        // Keep the task's waker for close requests (moved, not cloned, when present).
        let w = this.ctl.waker.take().unwrap_or_else(|| cx.waker().clone());
        this.ctl.waker.set(Some(w));
        loop {
            let sampling = &this.endpoint.cfg.sampling;
            let sample_percent = if sampling.enabled && sampling.max_samples > 0 {
                sampling.percentage
            } else {
                0
            };
            let tap_on = sample_percent > 0 || this.ctl.meta.get();
            let tap = tap_on.then(|| Tap {
                sink: &this.ctx.events,
                budget: &this.ctx.tap_budget,
                session: this.ctl.id(),
                endpoint: &this.endpoint.cfg.id,
                sample_percent,
                keep: sampling.max_samples,
                meta: this.ctl.meta.get(),
            });
            let env = Env {
                pool: &this.ctx.pool,
                metrics: &this.metrics,
                max_message_size: this.endpoint.cfg.limits.max_message_size,
                max_messages_per_second: this.endpoint.cfg.limits.max_messages_per_second,
                max_control_per_second: this.ctx.cfg.limits.control_frames_per_second,
                tap: tap.as_ref(),
            };
            let read_before = this.c2u.last_rx().max(this.u2c.last_rx());
            let _ = this.c2u.poll(
                cx,
                Pin::new(&mut this.client),
                Pin::new(&mut this.upstream),
                &env,
            );
            let _ = this.u2c.poll(
                cx,
                Pin::new(&mut this.upstream),
                Pin::new(&mut this.client),
                &env,
            );
            // A pump that read has just read the clock; a few microseconds
            // of relaying since are below every timer's resolution.
            let read_at = this.c2u.last_rx().max(this.u2c.last_rx());
            let now = if read_at > read_before {
                read_at
            } else {
                Instant::now()
            };
            let mut again = this.react(now);
            if this.done() {
                return Poll::Ready(this.ended());
            }
            let close_deadline = this.phase.closing_since().map(|s| s + CLOSE_TIMEOUT);
            if close_deadline.is_some_and(|d| now >= d) {
                return Poll::Ready(this.ended());
            }
            if let Some(since) = this.park_since {
                if !this.phase.is_relaying() {
                    this.stop_parking(); // a close came first: it finishes here
                    again = true;
                } else if this.c2u.at_rest() && this.u2c.at_rest() {
                    return Poll::Ready(Outcome::Parked);
                } else if now >= since + PARK_TIMEOUT {
                    tracing::info!(session = %this.ctl.id, "session not at a frame boundary in time; it stays in this process");
                    this.stop_parking();
                    again = true;
                }
            }
            let mut rearm = None;
            if now >= this.timer_at {
                let pending = this.u2c.control_pending() || this.c2u.control_pending();
                rearm = Some(this.on_time(now));
                again |= !pending && (this.u2c.control_pending() || this.c2u.control_pending());
                again |= this.phase.closing_since().is_some() && close_deadline.is_none();
            } else {
                // A close under way, or a write that stopped making progress,
                // may need the timer sooner than it is set.
                let soonest = close_deadline
                    .into_iter()
                    .chain(this.stall_deadline())
                    .min();
                if let Some(d) = soonest.filter(|d| *d < this.timer_at) {
                    rearm = Some(d);
                }
            }
            if let Some(d) = this.park_since.map(|s| s + PARK_TIMEOUT) {
                if d < rearm.unwrap_or(this.timer_at) {
                    rearm = Some(d);
                }
            }
            if let Some(next) = rearm {
                // The timer is polled only when re-armed: polling registers it with
                // the reactor, which is not free. Later polls compare `timer_at`.
                this.timer_at = next;
                this.timer.reset(next.saturating_duration_since(now));
                if Pin::new(&mut this.timer).poll(cx).is_ready() {
                    again = true;
                }
            }
            if !again {
                // For the shard's once-a-second report; plain stores.
                this.ctl.counts.set(this.counts());
                return Poll::Pending;
            }
        }
    }
}
