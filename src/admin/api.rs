//! The admin HTTP API (SPEC 5) on axum: shared state, the error shape,
//! authentication and roles, security headers and the router. Handlers live
//! in the submodules, one per resource.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::admin::auth::Claims;
use crate::admin::events::Live;
use crate::admin::ops::OpsFeed;
use crate::admin::throttle::LoginThrottle;
use crate::bridge::ShardCommand;
use crate::registry::Registry;
use crate::store::{Role, Store, StoreError};

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
/// Password hashes computed at once (each takes 19 MiB and tens of ms).
pub const CONCURRENT_HASHES: usize = 2;
/// Requests that may wait for a hashing permit; more are refused at once
/// (503 with `Retry-After`), without hashing.
pub const WAITING_HASHES: usize = 32;
/// How long a token's user (existence and role) is trusted without asking
/// the store again.
pub const USER_RECHECK: Duration = Duration::from_secs(1);

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.fields {
            body["fields"] = Value::Object(f);
        }
        let mut r = (self.status, Json(json!({ "error": body }))).into_response();
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
    permits: Arc<tokio::sync::Semaphore>,
    admitted: AtomicUsize,
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
    fn take_memory(&self) -> Vec<crate::admin::auth::Block> {
        self.memory
            .lock()
            .expect("hash memory")
            .pop()
            .unwrap_or_else(crate::admin::auth::hash_memory)
    }

    fn give_memory(&self, m: Vec<crate::admin::auth::Block>) {
        self.memory.lock().expect("hash memory").push(m);
    }
}

/// Counts a request admitted to the hashing queue while it lives.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

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

    fn get(&self, id: &str) -> Option<(Instant, Option<CurrentUser>)> {
        self.entries.lock().expect("users").get(id).cloned()
    }

    fn put(&self, id: &str, now: Instant, u: Option<CurrentUser>) {
        let mut m = self.entries.lock().expect("users");
        if m.len() >= 10_000 {
            m.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(60));
        }
        m.insert(id.to_string(), (now, u));
    }
}

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

/// The message for text holding a NUL character.
const NUL_MESSAGE: &str = "must not contain a NUL character";

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

/// A caller with a valid token (any role).
pub struct Authed(pub Claims);

/// A caller with a valid token and the `admin` role.
pub struct AdminOnly(pub Claims);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
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

/// Security headers on every response; `no-store` so that no token-bearing
/// answer is cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The body limit answers in plain text; keep the API's error shape.
        r = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {} KiB", BODY_LIMIT / 1024),
        )
        .into_response();
    }
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

/// 400 naming the path parameter or query parameter that holds a NUL
/// character (percent-encoded as `%00`), before any handler or store sees it.
async fn refuse_nul(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    if let Some(field) = nul_field(req.uri(), matched.as_ref().map(MatchedPath::as_str)) {
        return ApiError::field(&field, NUL_MESSAGE).into_response();
    }
    next.run(req).await
}

/// The name of the path or query parameter of `uri` that holds a NUL.
fn nul_field(uri: &axum::http::Uri, pattern: Option<&str>) -> Option<String> {
    let decoded = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let segments = uri.path().split('/');
    let names = pattern
        .unwrap_or_default()
        .split('/')
        .map(Some)
        .chain(std::iter::repeat(None));
    for (seg, name) in segments.zip(names) {
        if decoded(seg).contains(&0) {
            let name = name
                .and_then(|n| n.strip_prefix('{'))
                .and_then(|n| n.strip_suffix('}'))
                .unwrap_or("path");
            return Some(name.to_string());
        }
    }
    let query = uri.query()?;
    use crate::admin::json::nul_in;
    url::form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| {
        if nul_in(&k) {
            Some("query".to_string())
        } else {
            nul_in(&v).then(|| k.into_owned())
        }
    })
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The admin router.
pub fn router(st: AppState, cors_origins: &[String]) -> Router {
    let mut r = Router::new()
        .route("/api/login", post(login::login))
        .route(
            "/api/endpoints",
            get(endpoints::list).post(endpoints::create),
        )
        .route(
            "/api/endpoints/{id}",
            get(endpoints::get_one)
                .patch(endpoints::update)
                .delete(endpoints::remove),
        )
        .route("/api/endpoints/{id}/stats", get(endpoints::stats))
        .route("/api/endpoints/{id}/samples", get(endpoints::samples))
        .route("/api/endpoints/{id}/sessions", get(sessions::by_endpoint))
        .route("/api/nodes", get(nodes::list))
        .route("/api/sessions", get(sessions::list))
        .route("/api/sessions/{id}", delete(sessions::kill_route))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/export", get(audit::export))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{id}", delete(users::remove))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(crate::admin::metrics::render))
        .route("/ops", get(crate::admin::ops::handler))
        .route("/echo", get(crate::admin::echo::handler))
        .route("/", get(crate::admin::ui::index))
        .route("/ui/app.js", get(crate::admin::ui::app))
        .route("/ui/style.css", get(crate::admin::ui::style))
        .route_layer(middleware::from_fn(refuse_nul))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Refuses a declared Content-Length over the limit before reading it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers));
    if !cors_origins.is_empty() {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let origins: Vec<HeaderValue> = cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        r = r.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    axum::http::Method::GET,
                    axum::http::Method::POST,
                    axum::http::Method::PATCH,
                    axum::http::Method::DELETE,
                ])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    r.with_state(st)
}
