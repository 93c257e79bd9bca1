//! `/api/users` (admin only): list, create, delete.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::{db, hashing, parse_json, AdminOnly, ApiError, AppState};
use crate::admin::auth::{self, UserError};
use crate::admin::control::{self, Action};
use crate::admin::json::List;
use crate::store::Role;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

/// `GET /api/users`
pub async fn list(State(st): State<AppState>, _: AdminOnly) -> Result<Json<List<Value>>, ApiError> {
    let users = db(&st, |s| s.list_users()).await?;
    let items: Vec<Value> = users.iter().map(crate::admin::json::user).collect();
    Ok(Json(List::all(items)))
}

/// `POST /api/users` `{email, password, role?}` → 201 with the user.
pub async fn create(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: NewUser = parse_json(&body)?;
    let role = match req.role.as_deref() {
        None => Role::Viewer,
        Some(r) => {
            Role::parse(r).ok_or_else(|| ApiError::field("role", "must be admin or viewer"))?
        }
    };
    let store = st.store.clone();
    let added = hashing(&st, move |mem| {
        auth::add_user(&store, &req.email, &req.password, role, mem)
    })
    .await?;
    let user = match added {
        Ok(u) => u,
        Err(UserError::BadEmail(_)) => {
            return Err(ApiError::field("email", "must be an email address"))
        }
        Err(UserError::WeakPassword) => {
            return Err(ApiError::field(
                "password",
                "must be at least 12 characters",
            ))
        }
        Err(UserError::Store(e)) => return Err(e.into()),
    };
    let shown = crate::admin::json::user(&user);
    control::audit(
        &st,
        &actor.email,
        Action::UserCreate,
        Some(&user.id),
        None,
        Some(&shown),
        peer.ip(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `DELETE /api/users/:id` → 204; one cannot delete oneself (so at least
/// one admin remains able to log in).
pub async fn remove(
    State(st): State<AppState>,
    AdminOnly(actor): AdminOnly,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id == actor.sub {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot delete your own account",
        ));
    }
    let users = db(&st, |s| s.list_users()).await?;
    let Some(user) = users.into_iter().find(|u| u.id == id) else {
        return Err(ApiError::not_found(format!("no user {id:?}")));
    };
    let key = id.clone();
    if !db(&st, move |s| s.delete_user(&key)).await? {
        return Err(ApiError::not_found(format!("no user {id:?}")));
    }
    st.users.forget(&id); // its tokens stop working at once (its /ops within USER_RECHECK)
    let before = crate::admin::json::user(&user);
    control::audit(
        &st,
        &actor.email,
        Action::UserDelete,
        Some(&id),
        Some(&before),
        None,
        peer.ip(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
