//! `POST /api/login`: throttled per client address and per account (counted
//! before hashing); the password check runs on the blocking pool behind the
//! hashing cap with a bounded queue, and an unknown account costs as much as a
//! wrong password.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{db, hashing, parse_json, ApiError, AppState, TOKEN_TTL_S};
use crate::admin::auth;
use crate::admin::control::{self, Action};
use crate::admin::json::LoginReply;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// A hash to verify against when the account does not exist (made once,
/// in a hashing permit's memory).
fn decoy_hash(mem: &mut [auth::Block]) -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| auth::hash_password(&auth::generate_password(), mem))
}

fn throttled(wait: std::time::Duration) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many failed logins; try again later",
    );
    e.retry_after = Some(wait.as_secs().max(1));
    e
}

/// `POST /api/login` `{email, password}` → `{token, user}`. The attempt is
/// counted against the address and the account before the password is
/// checked, and refunded if it was no failure (see `throttle`).
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Json<LoginReply>, ApiError> {
    let req: LoginRequest = parse_json(&body)?;
    let email = req.email.trim().to_lowercase();
    let ip = peer.ip();
    let attempt = st
        .throttle
        .lock()
        .expect("throttle")
        .reserve(ip, &email, Instant::now())
        .map_err(throttled)?;
    let refund = |attempt| st.throttle.lock().expect("throttle").refund(attempt);
    let lookup = email.clone();
    let user = match db(&st, move |s| s.user_by_email(&lookup)).await {
        Ok(u) => u,
        Err(e) => {
            refund(attempt);
            return Err(e);
        }
    };
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let password = req.password;
    let checked = hashing(&st, move |mem| match phc {
        Some(phc) => auth::verify_password(&password, &phc, mem),
        None => auth::verify_password(&password, decoy_hash(mem), mem),
    })
    .await;
    let ok = match checked {
        Ok(ok) => ok && user.is_some(),
        Err(e) => {
            refund(attempt); // not verified: not a failure
            return Err(e);
        }
    };
    match user.filter(|_| ok) {
        Some(u) => {
            refund(attempt);
            control::audit(
                &st,
                &u.email,
                Action::LoginSuccess,
                Some(&u.id),
                None,
                None,
                ip,
            )
            .await?;
            let token = auth::issue_token(&st.secret, &u, TOKEN_TTL_S);
            Ok(Json(LoginReply {
                token,
                user: crate::admin::json::user(&u),
            }))
        }
        None => {
            drop(attempt); // stays counted
            control::audit(&st, &email, Action::LoginFailure, None, None, None, ip).await?;
            Err(ApiError::unauthorized("wrong email or password"))
        }
    }
}
