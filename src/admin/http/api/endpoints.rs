//! `/api/endpoints`: CRUD with validation; every change is stored, then sent
//! to every shard as a new snapshot, then audited.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{Map, Value};

use super::{db, AdminOnly, ApiError, AppState, Authed};
use crate::admin::bodies::EndpointBody;
use crate::admin::control::{self, Action};
use crate::admin::json::{self, List, REDACTED};
use crate::config::{camel_case_path, EndpointConfig};

fn generated_id() -> String {
    format!("ep-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Body (camelCase JSON) → a validated endpoint, or 400 with every field;
/// `new_id` is the id of a body without one.
fn endpoint_from(v: Value, new_id: Option<String>) -> Result<EndpointConfig, ApiError> {
    if !v.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let mut body: EndpointBody = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        if path == "." {
            ApiError::bad_request(msg)
        } else {
            ApiError::field(&path, msg)
        }
    })?;
    if body.id.is_none() {
        body.id = new_id;
    }
    let cfg = EndpointConfig::from(body);
    let errors = cfg.field_errors();
    if errors.is_empty() {
        Ok(cfg)
    } else {
        let mut fields = Map::new();
        for (f, m) in errors {
            fields.insert(camel_case_path(f), Value::String(m));
        }
        Err(ApiError::validation(fields))
    }
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    super::parse_json(body)
}

async fn find(st: &AppState, id: &str) -> Result<crate::store::EndpointRecord, ApiError> {
    let key = id.to_string();
    db(st, move |s| s.get_endpoint(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no endpoint {id:?}")))
}

/// `GET /api/endpoints`
pub async fn list(State(st): State<AppState>, _: Authed) -> Result<Json<List<Value>>, ApiError> {
    let records = db(&st, |s| s.list_endpoints()).await?;
    let items: Vec<Value> = records.iter().map(json::endpoint).collect();
    Ok(Json(List::all(items)))
}

/// `GET /api/endpoints/:id`
pub async fn get_one(
    State(st): State<AppState>,
    _: Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json::endpoint(&find(&st, &id).await?)))
}

/// `POST /api/endpoints` → 201 (409 if the id exists).
pub async fn create(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut cfg = endpoint_from(body_json(&body)?, Some(generated_id()))?;
    if cfg.name.is_empty() {
        cfg.name = cfg.id.clone();
    }
    let c = cfg.clone();
    let rec = db(&st, move |s| s.insert_endpoint(&c)).await?;
    control::publish(&st).await?;
    let after = json::endpoint_config(&cfg);
    control::audit(
        &st,
        &actor.email,
        Action::EndpointCreate,
        Some(&cfg.id),
        None,
        Some(&after),
        peer.ip(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json::endpoint(&rec))))
}

/// RFC 7396 JSON merge patch: objects merge, `null` removes, the rest replaces.
pub fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge_patch(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        p => *target = p,
    }
}

/// `PATCH /api/endpoints/:id` (JSON merge patch; the id cannot change).
pub async fn update(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut patch = body_json(&body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if patch
        .get("id")
        .is_some_and(|v| v.as_str() != Some(id.as_str()))
    {
        return Err(ApiError::field("id", "cannot be changed"));
    }
    let old = find(&st, &id).await?;
    // A redacted secret sent back unchanged keeps the stored one.
    let keep_secret = patch
        .pointer("/auth/jwtSecret")
        .is_some_and(|s| s.as_str() == Some(REDACTED));
    if keep_secret {
        if let Some(Value::Object(a)) = patch.get_mut("auth") {
            a.remove("jwtSecret");
        }
    }
    let mut doc = serde_json::to_value(EndpointBody::with_secret(&old.endpoint))
        .map_err(|_| ApiError::internal())?;
    merge_patch(&mut doc, patch);
    let cfg = endpoint_from(doc, None)?;
    let c = cfg.clone();
    let rec = db(&st, move |s| s.update_endpoint(&c))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no endpoint {id:?}")))?;
    control::publish(&st).await?;
    let before = json::endpoint_config(&old.endpoint);
    let after = json::endpoint_config(&cfg);
    control::audit(
        &st,
        &actor.email,
        Action::EndpointUpdate,
        Some(&id),
        Some(&before),
        Some(&after),
        peer.ip(),
    )
    .await?;
    Ok(Json(json::endpoint(&rec)))
}

/// `DELETE /api/endpoints/:id` → 204; its sessions close with 1001.
pub async fn remove(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let old = find(&st, &id).await?;
    let key = id.clone();
    if !db(&st, move |s| s.delete_endpoint(&key)).await? {
        return Err(ApiError::not_found(format!("no endpoint {id:?}")));
    }
    control::publish(&st).await?;
    let before = json::endpoint_config(&old.endpoint);
    control::audit(
        &st,
        &actor.email,
        Action::EndpointDelete,
        Some(&id),
        Some(&before),
        None,
        peer.ip(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/endpoints/:id/stats`: merged from every shard's latest report
/// (at most a second old).
pub async fn stats(
    State(st): State<AppState>,
    _: Authed,
    Path(id): Path<String>,
) -> Result<Json<json::StatsBody>, ApiError> {
    find(&st, &id).await?;
    let merged = crate::admin::pipeline::stats::merge(&st.live.stats.lock().expect("stats"));
    Ok(Json(json::stats(&id, merged.get(&id))))
}

/// `GET /api/endpoints/:id/samples?limit=`: newest first.
pub async fn samples(
    State(st): State<AppState>,
    _: Authed,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<List<Value>>, ApiError> {
    find(&st, &id).await?;
    let page = super::page(&q)?;
    let rows = db(&st, move |s| s.list_samples(&id, page.limit)).await?;
    let items: Vec<Value> = rows.iter().map(json::sample).collect();
    Ok(Json(List::all(items)))
}
