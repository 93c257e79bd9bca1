//! `GET /ops`: one reader's WebSocket — its token, its subscription, its
//! kills, and its place in the feed.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::meta::MetaInterest;
use crate::admin::auth::Claims;
use crate::admin::pipeline::feed::{message, Kind};
use crate::admin::state::{ApiError, AppState};
use crate::store::Role;

/// How long one message may take to be written to a reader.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server answers a reader (besides the feed's events).
#[derive(Serialize)]
#[serde(tag = "type")]
enum Reply<'a> {
    #[serde(rename = "hello")]
    Hello { user: HelloUser<'a> },
    #[serde(rename = "subscribed", rename_all = "camelCase")]
    Subscribed {
        endpoint_id: Option<&'a str>,
        message_meta: bool,
    },
    #[serde(rename = "killed", rename_all = "camelCase")]
    Killed { session_id: String },
    #[serde(rename = "error")]
    Error {
        code: &'a str,
        message: Cow<'a, str>,
    },
}

#[derive(Serialize)]
struct HelloUser<'a> {
    email: &'a str,
    role: &'a str,
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
    let claims = crate::admin::state::authenticate(&st, token).await?;
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
    let mut recheck = tokio::time::interval(crate::admin::state::USER_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut filter: Option<String> = None;
    let mut meta: Option<MetaInterest> = None;
    let hello = Reply::Hello {
        user: HelloUser {
            email: &claims.email,
            role: claims.role.as_str(),
        },
    };
    if !send(&mut socket, message(&hello)).await {
        return;
    }
    loop {
        tokio::select! {
            _ = recheck.tick() => match crate::admin::state::current_user(&st, &claims.sub).await {
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
                                Reply::Subscribed { endpoint_id: filter.as_deref(), message_meta: true }
                            }
                            (None, true) => Reply::Error {
                                code: "bad_request",
                                message: "messageMeta needs an endpointId (per-message data of every endpoint is not offered)".into(),
                            },
                            (_, false) => Reply::Subscribed { endpoint_id: filter.as_deref(), message_meta: false },
                        }
                    }
                    Ok(ClientMsg::Kill { session_id }) => {
                        if claims.role != Role::Admin {
                            Reply::Error { code: "forbidden", message: "viewers may not kill sessions".into() }
                        } else {
                            match crate::admin::control::kill_session(&st, &claims, &session_id, peer.ip()).await {
                                Ok(()) => Reply::Killed { session_id },
                                Err(e) => Reply::Error { code: e.code, message: e.message.into() },
                            }
                        }
                    }
                    Err(e) => Reply::Error { code: "bad_request", message: e.to_string().into() },
                };
                if !send(&mut socket, message(&reply)).await {
                    return;
                }
            }
        }
    }
}
