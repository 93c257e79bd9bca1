//! `/api/sessions`: lists (from the store, so every node's sessions show)
//! and kills (sent to the shard that runs the session).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{audit, db, page, AdminOnly, ApiError, AppState, Authed};
use crate::admin::auth::Claims;
use crate::admin::json;
use crate::bridge::ShardCommand;
use crate::store::SessionFilter;

async fn list_with(
    st: &AppState,
    q: &HashMap<String, String>,
    endpoint: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let page = page(q)?;
    let state = match q.get("state").map(|s| s.to_ascii_uppercase()) {
        None => Some("ACTIVE".to_string()),
        Some(s) if s == "ACTIVE" || s == "CLOSED" => Some(s),
        Some(s) if s == "ALL" => None,
        Some(_) => return Err(ApiError::field("state", "must be ACTIVE, CLOSED or ALL")),
    };
    let filter = SessionFilter {
        endpoint_id: endpoint.or_else(|| q.get("endpointId").cloned()),
        state,
    };
    let (rows, total) = db(st, move |s| s.list_sessions(&filter, page)).await?;
    let items: Vec<Value> = rows.iter().map(json::session).collect();
    Ok(Json(json!({
        "items": items, "total": total, "page": page.page, "limit": page.limit
    })))
}

/// `GET /api/sessions?endpointId=&state=&page=&limit=` (default: active).
pub async fn list(
    State(st): State<AppState>,
    _: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_with(&st, &q, None).await
}

/// `GET /api/endpoints/:id/sessions`
pub async fn by_endpoint(
    State(st): State<AppState>,
    _: Authed,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let key = id.clone();
    if db(&st, move |s| s.get_endpoint(&key)).await?.is_none() {
        return Err(ApiError::not_found(format!("no endpoint {id:?}")));
    }
    list_with(&st, &q, Some(id)).await
}

/// How long a kill waits for its shard's answer (a shard answers between
/// two polls; this only bounds a wedged one).
pub const KILL_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Kills session `id` (1008 `terminated by operator`) wherever it runs and
/// audits it (here, once): on this node through its shard; on another node
/// sharing the PostgreSQL store through that node (SPEC 7), which answers
/// whether it still had it.
pub async fn kill(st: &AppState, actor: &Claims, id: &str, addr: IpAddr) -> Result<(), ApiError> {
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
                    if !crate::admin::notify::kill_remote(st, &r.node_id, uuid).await? {
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
        "session.kill",
        "session",
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

/// `DELETE /api/sessions/:id` → 204; the client gets 1008.
pub async fn kill_route(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    kill(&st, &actor, &id, peer.ip()).await?;
    Ok(StatusCode::NO_CONTENT)
}
