//! `/api/sessions`: lists (from the store, so every node's sessions show)
//! and kills (sent to the shard that runs the session).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::{db, page, AdminOnly, ApiError, AppState, Authed};
use crate::admin::control;
use crate::admin::json::{self, List};
use crate::store::SessionFilter;

async fn list_with(
    st: &AppState,
    q: &HashMap<String, String>,
    endpoint: Option<String>,
) -> Result<Json<List<Value>>, ApiError> {
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
    Ok(Json(List::page(items, total, page)))
}

/// `GET /api/sessions?endpointId=&state=&page=&limit=` (default: active).
pub async fn list(
    State(st): State<AppState>,
    _: Authed,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<List<Value>>, ApiError> {
    list_with(&st, &q, None).await
}

/// `GET /api/endpoints/:id/sessions`
pub async fn by_endpoint(
    State(st): State<AppState>,
    _: Authed,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<List<Value>>, ApiError> {
    let key = id.clone();
    if db(&st, move |s| s.get_endpoint(&key)).await?.is_none() {
        return Err(ApiError::not_found(format!("no endpoint {id:?}")));
    }
    list_with(&st, &q, Some(id)).await
}

/// `DELETE /api/sessions/:id` → 204; the client gets 1008.
pub async fn kill_route(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    control::kill_session(&st, &actor, &id, peer.ip()).await?;
    Ok(StatusCode::NO_CONTENT)
}
