//! The control service: every change to the running system goes through
//! here, whoever asks for it — the REST API, `/ops`, SIGHUP, another node's
//! notification (`crate::admin::nodes::notify`). It publishes routing tables to the
//! shards, kills sessions (on this node through the shard, on another node
//! through that node) and appends typed audit records. HTTP handlers parse,
//! call it and answer.

#[allow(clippy::disallowed_methods)]
pub mod memory;

use std::net::IpAddr;

use axum::http::StatusCode;

use serde_json::Value;

use crate::admin::auth::Claims;
use crate::admin::json;
use crate::admin::state::{db, ApiError, AppState};
use crate::bridge::ShardCommand;
use crate::config::EndpointConfig;
use crate::store::AuditEntry;

/// What an audit record says was done; each names its entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An endpoint was added.
    EndpointCreate,
    /// An endpoint was changed.
    EndpointUpdate,
    /// An endpoint was removed.
    EndpointDelete,
    /// A session was killed by an operator.
    SessionKill,
    /// A user was added.
    UserCreate,
    /// A user was removed.
    UserDelete,
    /// Someone logged in.
    LoginSuccess,
    /// A login failed.
    LoginFailure,
}

impl Action {
    /// The `action` column (SPEC 5).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::EndpointCreate => "endpoint.create",
            Action::EndpointUpdate => "endpoint.update",
            Action::EndpointDelete => "endpoint.delete",
            Action::SessionKill => "session.kill",
            Action::UserCreate => "user.create",
            Action::UserDelete => "user.delete",
            Action::LoginSuccess => "login.success",
            Action::LoginFailure => "login.failure",
        }
    }

    /// The `entityType` column.
    pub fn entity_type(self) -> &'static str {
        match self {
            Action::EndpointCreate | Action::EndpointUpdate | Action::EndpointDelete => "endpoint",
            Action::SessionKill => "session",
            Action::UserCreate
            | Action::UserDelete
            | Action::LoginSuccess
            | Action::LoginFailure => "user",
        }
    }
}

/// Rebuilds the routing table from the store and sends it to every shard.
/// Serialized by the registry lock, each read is at least as new as the one
/// before, so a shard never gets an older table after a newer one; the
/// endpoints' version read first is what the node routes by afterwards.
pub async fn publish(st: &AppState) -> Result<(), ApiError> {
    let mut registry = st.registry.lock().await;
    let (version, records) = db(st, |s| Ok((s.endpoints_version()?, s.list_endpoints()?))).await?;
    let endpoints: Vec<EndpointConfig> = records.into_iter().map(|r| r.endpoint).collect();
    let snapshot = registry.snapshot(&endpoints).map_err(|m| {
        tracing::error!("stored endpoints do not compile: {m}");
        ApiError::internal()
    })?;
    for c in &st.commands {
        // A shard drains its command channel at once; a shard that has
        // exited (draining) simply does not get it.
        let _ = c.send(ShardCommand::Snapshot(snapshot.clone())).await;
    }
    st.endpoints_applied
        .fetch_max(version, std::sync::atomic::Ordering::AcqRel);
    Ok(())
}

/// How long a kill waits for its shard's answer (a shard answers between
/// two polls; this only bounds a wedged one).
pub const KILL_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Kills session `id` (1008 `terminated by operator`) wherever it runs and
/// audits it (here, once): on this node through its shard; on another node
/// sharing the PostgreSQL store through that node (SPEC 7), which answers
/// whether it still had it.
pub async fn kill_session(
    st: &AppState,
    actor: &Claims,
    id: &str,
    addr: IpAddr,
) -> Result<(), ApiError> {
    let gone = || ApiError::not_found(format!("no active session {id:?}"));
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| gone())?;
    let live = st
        .live
        .sessions
        .lock()
        .expect("sessions")
        .get(&uuid)
        .cloned();
    let before = match live {
        Some(live) => {
            if !kill_local(st, uuid, live.shard as usize).await? {
                return Err(gone());
            }
            json::session(&live.row(uuid, &st.node_id))
        }
        None => {
            let key = id.to_string();
            let row = db(st, move |s| s.get_session(&key)).await?;
            match row {
                Some(r) if r.state == "ACTIVE" && r.node_id != st.node_id => {
                    if st.store.backend() != crate::store::Backend::Postgres {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            "other_node",
                            format!("session {id} runs on node {}; kill it there (SQLite is single-node)", r.node_id),
                        ));
                    }
                    if !kill_remote(st, &r.node_id, uuid).await? {
                        return Err(gone());
                    }
                    json::session(&r)
                }
                _ => return Err(gone()),
            }
        }
    };
    audit(
        st,
        &actor.email,
        Action::SessionKill,
        Some(id),
        Some(&before),
        None,
        addr,
    )
    .await
}

/// Closes session `uuid` on this node's `shard` with 1008; whether the shard
/// still had it.
pub async fn kill_local(st: &AppState, uuid: uuid::Uuid, shard: usize) -> Result<bool, ApiError> {
    let cmd = st.commands.get(shard).ok_or_else(ApiError::internal)?;
    // Answered from the shard's reply: the session may have ended since the
    // live view last heard of it.
    let (reply, answer) = async_channel::bounded(1);
    if cmd.send(ShardCommand::Kill(uuid, reply)).await.is_err() {
        return Ok(false);
    }
    match tokio::time::timeout(KILL_REPLY_TIMEOUT, answer.recv()).await {
        Ok(Ok(killed)) => Ok(killed),
        Ok(Err(_)) => Ok(false),
        Err(_) => {
            tracing::warn!(session = %uuid, shard, "no reply from the shard to a kill");
            Err(ApiError::internal())
        }
    }
}

/// SIGHUP: the re-read config file's `[[endpoints]]` are written to the store (added
/// when absent, replaced when different; endpoints managed through the API
/// are left alone) and every shard gets the new table. Returns how many
/// endpoints changed.
pub async fn reload(st: &AppState, endpoints: Vec<EndpointConfig>) -> Result<usize, String> {
    let mut changed = 0;
    for e in endpoints {
        let id = e.id.clone();
        let store = st.store.clone();
        let (before, wrote) = tokio::task::spawn_blocking(move || -> crate::store::Result<_> {
            let old = store.get_endpoint(&id)?;
            Ok(match old {
                None => (None, Some(store.insert_endpoint(&e)?)),
                Some(o) if o.endpoint != e => (Some(o.endpoint), store.update_endpoint(&e)?),
                Some(_) => (None, None),
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if let Some(rec) = wrote {
            changed += 1;
            let action = if before.is_some() {
                Action::EndpointUpdate
            } else {
                Action::EndpointCreate
            };
            let b = before.as_ref().map(crate::admin::json::endpoint_config);
            let a = crate::admin::json::endpoint_config(&rec.endpoint);
            let local = std::net::IpAddr::from([127, 0, 0, 1]);
            audit(
                st,
                "config-reload",
                action,
                Some(&rec.endpoint.id),
                b.as_ref(),
                Some(&a),
                local,
            )
            .await
            .map_err(|e| e.message)?;
        }
    }
    publish(st).await.map_err(|e| e.message)?;
    Ok(changed)
}

/// Appends to the audit log.
#[allow(clippy::too_many_arguments)]
pub async fn audit(
    st: &AppState,
    actor: &str,
    action: Action,
    entity_id: Option<&str>,
    before: Option<&Value>,
    after: Option<&Value>,
    addr: IpAddr,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        at: crate::store::now_ms(),
        actor: actor.to_string(),
        action: action.as_str().to_string(),
        entity_type: action.entity_type().to_string(),
        entity_id: entity_id.map(str::to_string),
        before: before.map(Value::to_string),
        after: after.map(Value::to_string),
        client_addr: Some(addr.to_string()),
    };
    db(st, move |s| s.append_audit(&entry)).await.map(|_| ())
}

/// How long a kill sent to another node waits before it is sent again.
const KILL_RESEND: std::time::Duration = std::time::Duration::from_secs(1);

/// Prefix of the channel (+ schema) of kills between nodes.
pub const KILL_PREFIX: &str = "wsrelay_kill_";

/// A kill request or answer from another node.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum KillNote {
    Request {
        kill: uuid::Uuid,
        node: String,
        from: String,
        request: u64,
    },
    Reply {
        reply: u64,
        to: String,
        killed: bool,
    },
}

/// A note heard on the kill channel: a request for this node is carried
/// out and answered; an answer for this node wakes the waiting kill.
pub fn on_kill_note(st: &AppState, rt: &tokio::runtime::Handle, payload: &str) {
    tracing::debug!(payload, "kill note");
    match serde_json::from_str::<KillNote>(payload) {
        Ok(KillNote::Request {
            kill,
            node,
            from,
            request,
        }) if node == st.node_id && !st.handed_over.load(std::sync::atomic::Ordering::Acquire) => {
            let st = st.clone();
            rt.spawn(async move {
                let shard = st
                    .live
                    .sessions
                    .lock()
                    .expect("sessions")
                    .get(&kill)
                    .map(|l| l.shard as usize);
                let killed = match shard {
                    Some(s) => kill_local(&st, kill, s).await.unwrap_or(false),
                    None => false,
                };
                tracing::info!(session = %kill, from = %from, killed, "kill from another node");
                let reply = KillNote::Reply {
                    reply: request,
                    to: from,
                    killed,
                };
                let text = serde_json::to_string(&reply).unwrap_or_default();
                let store = st.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.notify(KILL_PREFIX, &text)).await;
            });
        }
        Ok(KillNote::Reply { reply, to, killed }) if to == st.node_id => {
            if let Some(w) = st.remote_kills.lock().expect("kills").remove(&reply) {
                let _ = w.send(killed);
            }
        }
        Ok(_) => {} // for another node
        Err(e) => tracing::warn!(error = %e, "a kill note that is not one"),
    }
}

/// Asks node `node` to kill session `id`; whether it did. No answer within
/// [`KILL_REPLY_TIMEOUT`] is 504.
pub async fn kill_remote(st: &AppState, node: &str, id: uuid::Uuid) -> Result<bool, ApiError> {
    let request: u64 = rand::random();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    st.remote_kills.lock().expect("kills").insert(request, tx);
    let note = KillNote::Request {
        kill: id,
        node: node.to_string(),
        from: st.node_id.clone(),
        request,
    };
    let text = serde_json::to_string(&note).map_err(|_| ApiError::internal())?;
    let until = tokio::time::Instant::now() + KILL_REPLY_TIMEOUT;
    let answer = loop {
        // Sent again each second until answered: a node whose listening
        // connection was being made again missed it (a kill is idempotent).
        let text = text.clone();
        if let Err(e) = db(st, move |s| s.notify(KILL_PREFIX, &text)).await {
            st.remote_kills.lock().expect("kills").remove(&request);
            return Err(e);
        }
        let wait = (until - tokio::time::Instant::now()).min(KILL_RESEND);
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(r) => break r.ok(),
            Err(_) if tokio::time::Instant::now() >= until => break None,
            Err(_) => {}
        }
    };
    st.remote_kills.lock().expect("kills").remove(&request);
    match answer {
        Some(killed) => Ok(killed),
        None => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "node_timeout",
            format!("node {node} did not answer the kill; it may be down (its sessions are closed when it is marked down)"),
        )),
    }
}
