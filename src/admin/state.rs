//! What the admin side shares: the state every handler, the control
//! service and the background threads get ([`AppState`]), the API's error
//! shape, and the blocking-store helper. Imported by the HTTP API and the
//! control service alike, so neither imports the other for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use crate::admin::auth::throttle::LoginThrottle;
use crate::admin::auth::Claims;
use crate::admin::pipeline::feed::OpsFeed;
use crate::admin::pipeline::Live;
use crate::bridge::ShardCommand;
use crate::registry::Registry;
use crate::store::{Role, Store, StoreError};

/// Password hashes computed at once (each takes 19 MiB and tens of ms).
pub const CONCURRENT_HASHES: usize = 2;
/// Everything the handlers share.
pub struct AdminState {
    /// The store (blocking; used through [`db`]).
    pub store: Store,
    /// The JWT secret.
    pub secret: Vec<u8>,
    /// This process's node id.
    pub node_id: String,
    /// Process start.
    pub started: Instant,
    /// Builds snapshots; held while one is built and sent, so versions
    /// reach the shards in order.
    pub registry: tokio::sync::Mutex<Registry>,
    /// One per shard.
    pub commands: Vec<async_channel::Sender<ShardCommand>>,
    /// Failed-login bookkeeping.
    pub throttle: Mutex<LoginThrottle>,
    /// Caps concurrent password hashing and holds its memory.
    pub hashing: HashSlots,
    /// Token users as last read from the store.
    pub users: UserCache,
    /// Sessions and metrics as reported by the shards.
    pub live: Arc<Live>,
    /// The `/ops` feed.
    pub ops: OpsFeed,
    /// Connections on the built-in echo target.
    pub echo_active: AtomicUsize,
    /// `/ops` readers that want per-message metadata, by endpoint.
    pub meta_subs: Mutex<std::collections::HashMap<String, usize>>,
    /// Resident memory against `limits.max_memory_bytes`.
    pub memory: Arc<crate::shard::limits::MemoryPressure>,
    /// Set when this node starts draining (its node row says so).
    pub draining: std::sync::atomic::AtomicBool,
    /// `server.node_heartbeat_ms`.
    pub node_heartbeat: std::time::Duration,
    /// The endpoints' version the shards route by (SPEC 7).
    pub endpoints_applied: std::sync::atomic::AtomicI64,
    /// Set once a successor took this process's place (binary upgrade): it
    /// answers no kill for the node any more (the successor does).
    pub handed_over: std::sync::atomic::AtomicBool,
    /// Nodes this node marked down (its sweep claimed them).
    pub nodes_marked_down: std::sync::atomic::AtomicU64,
    /// Kills sent to other nodes, waiting for their answer, by request.
    pub remote_kills: Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<bool>>>,
}

/// Shared state as handlers get it.
pub type AppState = Arc<AdminState>;

/// An API error: `{"error": {"code", "message", "fields"?}}` with a status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Per-field messages (validation).
    pub fields: Option<Map<String, Value>>,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
        }
    }

    /// 400 with per-field messages.
    pub fn validation(fields: Map<String, Value>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "some fields are invalid",
        );
        e.fields = Some(fields);
        e
    }

    /// 400 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let mut m = Map::new();
        m.insert(field.to_string(), Value::String(message.into()));
        ApiError::validation(m)
    }

    /// 400 without a field.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 (details go to the log, not to the client).
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!("database unavailable: {m}");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; relaying goes on, changes are refused until it is back",
                );
                e.retry_after = Some(5);
                e
            }
            StoreError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            e => {
                tracing::error!("store error: {e}");
                ApiError::internal()
            }
        }
    }
}

/// `{"error": {"code", "message", "fields"?}}`.
#[derive(serde::Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize)]
struct ErrorDetail {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Map<String, Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                fields: self.fields,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// Runs a store call on the blocking pool.
pub async fn db<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Store) -> crate::store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let s = st.store.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(ApiError::from)
}

/// Password hashing capacity: [`CONCURRENT_HASHES`] permits, each with its
/// 19 MiB of argon2 memory allocated once and reused, and a bounded queue.
pub struct HashSlots {
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    pub(crate) admitted: AtomicUsize,
    memory: Mutex<Vec<Vec<crate::admin::auth::Block>>>,
}

impl Default for HashSlots {
    fn default() -> Self {
        HashSlots {
            permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HASHES)),
            admitted: AtomicUsize::new(0),
            memory: Mutex::new(Vec::new()),
        }
    }
}

impl HashSlots {
    /// Hashing memory for a permit holder: a kept one, or (at most once per
    /// permit) a new one.
    pub(crate) fn take_memory(&self) -> Vec<crate::admin::auth::Block> {
        self.memory
            .lock()
            .expect("hash memory")
            .pop()
            .unwrap_or_else(crate::admin::auth::hash_memory)
    }

    pub(crate) fn give_memory(&self, m: Vec<crate::admin::auth::Block>) {
        self.memory.lock().expect("hash memory").push(m);
    }
}

/// Counts a request admitted to the hashing queue while it lives.
pub(crate) struct Admitted<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token's user as the store has it.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// Email.
    pub email: String,
    /// Role now (not the one in the token).
    pub role: Role,
}

/// Users of tokens, each re-read from the store at most [`USER_RECHECK`]
/// apart (bounded: entries older than a minute are dropped when it grows).
#[derive(Default)]
pub struct UserCache {
    entries: Mutex<HashMap<String, (Instant, Option<CurrentUser>)>>,
}

impl UserCache {
    /// Forgets `id` (deleted through this node: effective at once).
    pub fn forget(&self, id: &str) {
        self.entries.lock().expect("users").remove(id);
    }

    pub(crate) fn get(&self, id: &str) -> Option<(Instant, Option<CurrentUser>)> {
        self.entries.lock().expect("users").get(id).cloned()
    }

    pub(crate) fn put(&self, id: &str, now: Instant, u: Option<CurrentUser>) {
        let mut m = self.entries.lock().expect("users");
        if m.len() >= 10_000 {
            m.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(60));
        }
        m.insert(id.to_string(), (now, u));
    }
}

/// How long a token's user (existence and role) is trusted without asking
/// the store again.
pub const USER_RECHECK: Duration = Duration::from_secs(1);

/// The user `id` as the store has it now (within [`USER_RECHECK`]); `None`
/// if it does not exist. While the database is unavailable the last known
/// answer stands; with none, 503.
pub async fn current_user(st: &AppState, id: &str) -> Result<Option<CurrentUser>, ApiError> {
    let now = Instant::now();
    let known = st.users.get(id);
    if let Some((at, u)) = &known {
        if now.duration_since(*at) < USER_RECHECK {
            return Ok(u.clone());
        }
    }
    let key = id.to_string();
    match db(st, move |s| s.user_by_id(&key)).await {
        Ok(u) => {
            let u = u.map(|u| CurrentUser {
                email: u.email,
                role: u.role,
            });
            st.users.put(id, now, u.clone());
            Ok(u)
        }
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => match known {
            Some((_, u)) => Ok(u),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Checks a token against the secret and then against the store: its user
/// must still exist, and the role is the store's. `None`: 401.
pub async fn authenticate(st: &AppState, token: &str) -> Result<Claims, ApiError> {
    let mut c = crate::admin::auth::verify_token(&st.secret, token.trim())
        .ok_or_else(|| ApiError::unauthorized("the token is invalid or expired"))?;
    if crate::admin::json::nul_in(&c.sub) {
        return Err(ApiError::unauthorized("the token is invalid or expired"));
    }
    let u = current_user(st, &c.sub)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
    c.email = u.email;
    c.role = u.role;
    Ok(c)
}
