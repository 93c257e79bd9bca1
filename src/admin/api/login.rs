//! `POST /api/login`: throttled per client address and per account; the
//! password check runs on the blocking pool behind the hashing cap, and an
//! unknown account costs as much as a wrong password.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit, db, hashing, parse_json, ApiError, AppState, TOKEN_TTL_S};
use crate::admin::auth;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// A hash to verify against when the account does not exist.
fn decoy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| auth::hash_password(&auth::generate_password()))
}

/// `POST /api/login` `{email, password}` → `{token, user}`.
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: LoginRequest = parse_json(&body)?;
    let email = req.email.trim().to_lowercase();
    let ip = peer.ip();
    let check = st
        .throttle
        .lock()
        .expect("throttle")
        .check(ip, &email, Instant::now());
    if let Err(wait) = check {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let lookup = email.clone();
    let user = db(&st, move |s| s.user_by_email(&lookup)).await?;
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let password = req.password;
    // The decoy is made (once) on the blocking pool too, never on a worker.
    let ok = hashing(&st, move || match phc {
        Some(phc) => auth::verify_password(&password, &phc),
        None => auth::verify_password(&password, decoy_hash()),
    })
    .await?
        && user.is_some();
    match user.filter(|_| ok) {
        Some(u) => {
            st.throttle.lock().expect("throttle").succeeded(&email);
            audit(
                &st,
                &u.email,
                "login.success",
                "user",
                Some(&u.id),
                None,
                None,
                ip,
            )
            .await?;
            let token = auth::issue_token(&st.secret, &u, TOKEN_TTL_S);
            Ok(Json(
                json!({"token": token, "user": crate::admin::json::user(&u)}),
            ))
        }
        None => {
            st.throttle
                .lock()
                .expect("throttle")
                .failed(ip, &email, Instant::now());
            audit(&st, &email, "login.failure", "user", None, None, None, ip).await?;
            Err(ApiError::unauthorized("wrong email or password"))
        }
    }
}
