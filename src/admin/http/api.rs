//! The admin HTTP API (SPEC 5) on axum: authentication and roles, request
//! parsing and paging, password-hashing capacity. Handlers live in the
//! submodules, one per resource; they parse, call the control service
//! (`crate::admin::control`) for every change, and answer. The shared state
//! and the error shape are in `crate::admin::state`, the routes in
//! `crate::admin::http::router`.

use std::sync::atomic::Ordering;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::Value;

use crate::admin::auth::Claims;
use crate::store::Role;

use crate::admin::state::Admitted;
pub use crate::admin::state::{
    authenticate, current_user, db, AdminState, ApiError, AppState, CurrentUser, HashSlots,
    UserCache, CONCURRENT_HASHES, USER_RECHECK,
};

pub mod audit;
pub mod endpoints;
pub mod health;
pub mod login;
pub mod nodes;
pub mod sessions;
pub mod users;

/// Largest request body accepted (larger: 413).
pub const BODY_LIMIT: usize = 256 * 1024;
/// Admin tokens are valid this long.
pub const TOKEN_TTL_S: u64 = 12 * 3600;
/// Requests that may wait for a hashing permit; more are refused at once
/// (503 with `Retry-After`), without hashing.
pub const WAITING_HASHES: usize = 32;

/// 503 for a full hashing queue.
pub fn hashing_busy() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "too many password checks in progress; try again shortly",
    );
    e.retry_after = Some(1);
    e
}

/// Runs password hashing work on the blocking pool, at most
/// [`CONCURRENT_HASHES`] at once, in the permit's reused memory. At most
/// [`WAITING_HASHES`] requests wait; beyond that it is [`hashing_busy`] at
/// once. The permit and the memory travel with the blocking work, so a
/// caller that goes away frees neither before the hash is done.
pub async fn hashing<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&mut [crate::admin::auth::Block]) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let slots = &st.hashing;
    let admitted = Admitted(&slots.admitted);
    if slots.admitted.fetch_add(1, Ordering::AcqRel) >= CONCURRENT_HASHES + WAITING_HASHES {
        return Err(hashing_busy());
    }
    let permit = slots
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal())?;
    let st = st.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut mem = st.hashing.take_memory();
        let r = f(&mut mem);
        st.hashing.give_memory(mem);
        drop(permit);
        r
    })
    .await
    .map_err(|_| ApiError::internal());
    drop(admitted);
    r
}

/// The message for text holding a NUL character.
pub const NUL_MESSAGE: &str = "must not contain a NUL character";

/// Parses a JSON body, naming the field that does not fit (or that holds a
/// NUL character, which no store keeps).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // A raw NUL is a JSON syntax error; an escaped one is text the stores refuse.
    if body.windows(6).any(|w| w == b"\\u0000") {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            if let Some(path) = crate::admin::json::nul_path(&v) {
                return Err(ApiError::field(&path, NUL_MESSAGE));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            ApiError::bad_request(format!("body is not valid JSON for this route: {inner}"))
        } else {
            ApiError::field(&crate::config::camel_case_path(&path), inner.to_string())
        }
    })
}

/// The token of an `Authorization: Bearer <token>` header, if any (the
/// scheme's case as clients send it).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
}

/// A caller with a valid token (any role).
pub struct Authed(pub Claims);

/// A caller with a valid token and the `admin` role.
pub struct AdminOnly(pub Claims);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("Authorization: Bearer <token> is required"))?;
        authenticate(st, token).await.map(Authed)
    }
}

impl FromRequestParts<AppState> for AdminOnly {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let Authed(c) = Authed::from_request_parts(parts, st).await?;
        if c.role == Role::Admin {
            Ok(AdminOnly(c))
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }
}

/// `?page=&limit=` with bounds; 400 names the bad parameter.
pub fn page(q: &std::collections::HashMap<String, String>) -> Result<crate::store::Page, ApiError> {
    let num = |k: &str, default: u32, max: u32| -> Result<u32, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(
                    k,
                    format!("must be a whole number 1-{max}"),
                )),
            },
        }
    };
    Ok(crate::store::Page {
        page: num("page", 1, 1_000_000)?,
        limit: num("limit", 50, 1000)?,
    })
}
