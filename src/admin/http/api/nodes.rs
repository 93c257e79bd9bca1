//! `GET /api/nodes`: the nodes sharing the store (SPEC 7).

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::{db, ApiError, AppState, Authed};
use crate::admin::json::List;

/// Every node's row, as [`crate::admin::nodes::directory::json`] shows it.
pub async fn list_json(st: &AppState) -> Result<Vec<Value>, ApiError> {
    let rows = db(st, |s| s.list_nodes()).await?;
    let now = crate::store::now_ms();
    Ok(rows
        .iter()
        .map(|n| crate::admin::nodes::directory::json(n, st.node_heartbeat, now))
        .collect())
}

/// `GET /api/nodes` → `{items, total}`.
pub async fn list(State(st): State<AppState>, _: Authed) -> Result<Json<List<Value>>, ApiError> {
    let items = list_json(&st).await?;
    Ok(Json(List::counted(items)))
}
