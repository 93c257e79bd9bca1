//! `/ops`: the live telemetry WebSocket (SPEC 5). Events are published once
//! into a bounded broadcast ring; each reader follows it at its own pace and
//! a reader that falls a whole ring behind (or cannot take a message within
//! [`SEND_TIMEOUT`]) is closed with 1008 — never buffered without bound.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::admin::api::{ApiError, AppState};
use crate::admin::auth::Claims;
use crate::store::{Role, SessionRow};

/// Events kept for readers that are behind; a reader further behind is dropped.
pub const RING: usize = 4096;
/// How long one message may take to be written to a reader.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of message an event is (for subscription filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// sessionStarted / sessionUpdated / sessionEnded.
    Session,
    /// Per-endpoint stats.
    Stats,
    /// A sampled payload.
    Sample,
    /// Per-message metadata (only to readers that asked).
    Meta,
}

/// One message for `/ops` readers, serialized once.
#[derive(Debug)]
pub struct OpsEvent {
    /// The endpoint it concerns.
    pub endpoint: String,
    /// Its kind.
    pub kind: Kind,
    /// The JSON text sent.
    pub text: String,
}

impl OpsEvent {
    /// A session message of `kind` (`sessionStarted`, …).
    pub fn session(kind: &'static str, row: &SessionRow) -> OpsEvent {
        #[derive(serde::Serialize)]
        struct Message<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            session: crate::admin::json::SessionBody<'a>,
        }
        OpsEvent {
            endpoint: row.endpoint_id.clone(),
            kind: Kind::Session,
            text: message(&Message {
                kind,
                session: row.into(),
            }),
        }
    }

    /// A `sampledPayload` message.
    pub fn sample(row: &crate::store::SampleRow) -> OpsEvent {
        OpsEvent {
            endpoint: row.endpoint_id.clone(),
            kind: Kind::Sample,
            text: message(&Typed {
                kind: "sampledPayload",
                body: crate::admin::json::SampleBody::from(row),
            }),
        }
    }

    /// A `messageMeta` message.
    pub fn meta(m: &crate::bridge::MessageMeta) -> OpsEvent {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            session_id: String,
            endpoint_id: &'a str,
            direction: &'static str,
            opcode: u8,
            size: u64,
            at: String,
        }
        OpsEvent {
            endpoint: m.endpoint.clone(),
            kind: Kind::Meta,
            text: message(&Meta {
                kind: "messageMeta",
                session_id: m.session.hyphenated().to_string(),
                endpoint_id: &m.endpoint,
                direction: m.dir.stored(),
                opcode: m.opcode,
                size: m.size,
                at: crate::admin::json::time(m.at_ms),
            }),
        }
    }

    /// A `stats` message.
    pub fn stats(endpoint: &str, stats: crate::admin::json::StatsBody) -> OpsEvent {
        OpsEvent {
            endpoint: endpoint.to_string(),
            kind: Kind::Stats,
            text: message(&Typed {
                kind: "stats",
                body: stats,
            }),
        }
    }
}

/// A body with its `/ops` message `type` beside its fields.
#[derive(serde::Serialize)]
struct Typed<B> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: B,
}

/// A message's JSON text.
fn message(m: &impl serde::Serialize) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// The publishing end; cheap to clone.
#[derive(Clone)]
pub struct OpsFeed(broadcast::Sender<Arc<OpsEvent>>);

impl Default for OpsFeed {
    fn default() -> Self {
        OpsFeed(broadcast::channel(RING).0)
    }
}

impl OpsFeed {
    /// Publishes to every reader (nothing is kept when there is none).
    pub fn publish(&self, e: OpsEvent) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(Arc::new(e));
        }
    }

    /// Whether anybody listens (to skip building messages).
    pub fn has_readers(&self) -> bool {
        self.0.receiver_count() > 0
    }

    /// Connected `/ops` readers.
    pub fn readers(&self) -> usize {
        self.0.receiver_count()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<OpsEvent>> {
        self.0.subscribe()
    }
}

/// `?token=`
#[derive(Deserialize)]
pub struct OpsQuery {
    token: Option<String>,
}

/// `GET /ops?token=<JWT>`: checks the token, then upgrades.
pub async fn handler(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(q): Query<OpsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| ApiError::unauthorized("a valid token is required (?token=)"))?;
    let claims = crate::admin::api::authenticate(&st, token).await?;
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| run(st, socket, claims, peer)))
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ClientMsg {
    #[serde(rename = "subscribe")]
    Subscribe {
        #[serde(rename = "endpointId")]
        endpoint_id: Option<String>,
        #[serde(rename = "messageMeta", default)]
        message_meta: bool,
    },
    #[serde(rename = "session.kill")]
    Kill {
        #[serde(rename = "sessionId")]
        session_id: String,
    },
}

async fn send(socket: &mut WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

/// One reader's interest in an endpoint's per-message metadata; shards tap
/// an endpoint while at least one reader holds such an interest.
struct MetaInterest {
    st: AppState,
    endpoint: String,
}

impl MetaInterest {
    fn new(st: &AppState, endpoint: &str) -> MetaInterest {
        let first = {
            let mut subs = st.meta_subs.lock().expect("meta_subs");
            let n = subs.entry(endpoint.to_string()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            tell_shards(st, endpoint, true);
        }
        MetaInterest {
            st: st.clone(),
            endpoint: endpoint.to_string(),
        }
    }
}

impl Drop for MetaInterest {
    fn drop(&mut self) {
        let last = {
            let mut subs = self.st.meta_subs.lock().expect("meta_subs");
            let n = subs.entry(self.endpoint.clone()).or_default();
            *n = n.saturating_sub(1);
            if *n == 0 {
                subs.remove(&self.endpoint);
                true
            } else {
                false
            }
        };
        if last {
            tell_shards(&self.st, &self.endpoint, false);
        }
    }
}

fn tell_shards(st: &AppState, endpoint: &str, on: bool) {
    let commands = st.commands.clone();
    let endpoint = endpoint.to_string();
    tokio::spawn(async move {
        for c in commands {
            let _ = c
                .send(crate::bridge::ShardCommand::MessageMeta {
                    endpoint: endpoint.clone(),
                    on,
                })
                .await;
        }
    });
}

async fn close(socket: &mut WebSocket, reason: &'static str) {
    let _ = tokio::time::timeout(
        SEND_TIMEOUT,
        socket.send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: reason.into(),
        }))),
    )
    .await;
}

async fn run(st: AppState, mut socket: WebSocket, mut claims: Claims, peer: std::net::SocketAddr) {
    let mut rx = st.ops.subscribe();
    // The reader's user is checked again as the API does: deleted → closed,
    // demoted → no more kills.
    let mut recheck = tokio::time::interval(crate::admin::api::USER_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut filter: Option<String> = None;
    let mut meta: Option<MetaInterest> = None;
    let hello =
        json!({"type": "hello", "user": {"email": claims.email, "role": claims.role.as_str()}});
    if !send(&mut socket, hello.to_string()).await {
        return;
    }
    loop {
        tokio::select! {
            _ = recheck.tick() => match crate::admin::api::current_user(&st, &claims.sub).await {
                Ok(Some(u)) => claims.role = u.role,
                Ok(None) => {
                    tracing::info!(client = %peer, user = %claims.email, "closing /ops: its user was deleted");
                    close(&mut socket, "user deleted").await;
                    return;
                }
                Err(_) => {} // the store is down: the last answer stands
            },
            ev = rx.recv() => match ev {
                Ok(e) => {
                    if filter.as_ref().is_some_and(|f| *f != e.endpoint) {
                        continue;
                    }
                    if e.kind == Kind::Meta && meta.is_none() {
                        continue;
                    }
                    if !send(&mut socket, e.text.clone()).await {
                        return; // too slow or gone
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(client = %peer, behind = n, "dropping a slow /ops reader");
                    close(&mut socket, "reader too slow").await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = match serde_json::from_str::<ClientMsg>(&text) {
                    Ok(ClientMsg::Subscribe { endpoint_id, message_meta }) => {
                        filter = endpoint_id.filter(|e| !e.is_empty());
                        meta = None; // the old interest ends
                        match (&filter, message_meta) {
                            (Some(e), true) => {
                                meta = Some(MetaInterest::new(&st, e));
                                json!({"type": "subscribed", "endpointId": filter, "messageMeta": true})
                            }
                            (None, true) => json!({"type": "error", "code": "bad_request",
                                "message": "messageMeta needs an endpointId (per-message data of every endpoint is not offered)"}),
                            (_, false) => json!({"type": "subscribed", "endpointId": filter, "messageMeta": false}),
                        }
                    }
                    Ok(ClientMsg::Kill { session_id }) => {
                        if claims.role != Role::Admin {
                            json!({"type": "error", "code": "forbidden", "message": "viewers may not kill sessions"})
                        } else {
                            match crate::admin::control::kill_session(&st, &claims, &session_id, peer.ip()).await {
                                Ok(()) => json!({"type": "killed", "sessionId": session_id}),
                                Err(e) => json!({"type": "error", "code": e.code, "message": e.message}),
                            }
                        }
                    }
                    Err(e) => json!({"type": "error", "code": "bad_request", "message": e.to_string()}),
                };
                if !send(&mut socket, reply.to_string()).await {
                    return;
                }
            }
        }
    }
}
