//! The store: configuration, users, sessions, samples and the audit log.
//!
//! One [`Store`] with two backends behind the small [`sql::Db`] seam: SQLite
//! (rusqlite, bundled, pooled with r2d2) as the embedded default and
//! PostgreSQL (postgres + r2d2_postgres). Every query is written once, in
//! [`Store`]; a backend only runs SQL and converts values. Calls block: the
//! admin runtime runs them on its blocking pool, never on a shard.
//!
//! Times are Unix milliseconds. Migrations live in `migrations/<backend>/`
//! and are applied in order at start and by `wsrelay migrate`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::EndpointConfig;

mod audit;
mod endpoints;
mod nodes;
pub mod postgres;
mod sessions;
pub mod sql;
pub mod sqlite;
mod users;

use sql::{Db, Value};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row with this key exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// The URL is not `sqlite://…` or `postgres://…`.
    #[error("bad database URL {0:?}: expected sqlite://FILE or postgres://USER:PASS@HOST/DB")]
    BadUrl(String),
    /// A query failed.
    #[error("database error: {0}")]
    Query(String),
    /// A stored value did not decode.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Result of store calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A stored endpoint: its configuration and when it was created and changed.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRecord {
    /// The endpoint as configured.
    pub endpoint: EndpointConfig,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// Admin roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes.
    Admin,
    /// Reads only.
    Viewer,
}

impl Role {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// An admin user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Login name.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// Unix ms.
    pub created_at: i64,
}

/// One audit record to append.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditEntry {
    /// Unix ms.
    pub at: i64,
    /// Who: a user's email, or `system`.
    pub actor: String,
    /// e.g. `endpoint.create`, `session.kill`, `login.failure`.
    pub action: String,
    /// e.g. `endpoint`, `session`, `user`.
    pub entity_type: String,
    /// The entity's id, when there is one.
    pub entity_id: Option<String>,
    /// JSON before the change.
    pub before: Option<String>,
    /// JSON after the change.
    pub after: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Increasing id.
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

/// Filters for listing the audit log; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<String>,
    /// Exact entity type.
    pub entity_type: Option<String>,
    /// At or after (Unix ms).
    pub since: Option<i64>,
    /// Before (Unix ms).
    pub until: Option<i64>,
}

/// One `node` row (SPEC 6, 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Node id (`WSRELAY_NODE_ID`, or host:data port).
    pub id: String,
    /// Host name.
    pub host: String,
    /// wsrelay version it runs.
    pub version: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub last_heartbeat: i64,
    /// `up`, `draining` or `down`, as stored (a silent node may not be
    /// marked down yet).
    pub state: String,
    /// Sessions at its last heartbeat.
    pub sessions: i64,
}

/// One `live_session` row (SPEC 4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// UUID.
    pub id: String,
    /// The node (process) relaying it.
    pub node_id: String,
    /// Endpoint id.
    pub endpoint_id: String,
    /// Shard index on that node.
    pub shard: i64,
    /// `ACTIVE` or `CLOSED`.
    pub state: String,
    /// Client address.
    pub client_addr: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms of the last traffic seen.
    pub last_seen: i64,
    /// Unix ms, once closed.
    pub ended_at: Option<i64>,
    /// Close code sent to the client, once closed.
    pub close_code: Option<i64>,
    /// Close reason, once closed.
    pub close_reason: Option<String>,
    /// Who ended it (`client`, `target` or `wsrelay`), once closed.
    pub closed_by: Option<String>,
    /// Messages client → target.
    pub msgs_in: i64,
    /// Messages target → client.
    pub msgs_out: i64,
    /// Bytes client → target.
    pub bytes_in: i64,
    /// Bytes target → client.
    pub bytes_out: i64,
}

impl SessionRow {
    /// A session that has just started: `ACTIVE`, nothing relayed yet.
    pub fn started(
        id: String,
        node_id: &str,
        endpoint_id: &str,
        shard: i64,
        client_addr: String,
        at_ms: i64,
    ) -> SessionRow {
        SessionRow {
            id,
            node_id: node_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
            shard,
            state: "ACTIVE".into(),
            client_addr,
            started_at: at_ms,
            last_seen: at_ms,
            ended_at: None,
            close_code: None,
            close_reason: None,
            closed_by: None,
            msgs_in: 0,
            msgs_out: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }
}

/// One `traffic_sample` row (SPEC 4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    /// Session id.
    pub session_id: String,
    /// Endpoint id.
    pub endpoint_id: String,
    /// Which way it went (stored as `client_to_target` / `target_to_client`).
    pub direction: crate::bridge::Direction,
    /// WebSocket opcode (1 text, 2 binary).
    pub opcode: i64,
    /// The whole message's size in bytes.
    pub size: i64,
    /// The payload, at most 4 KiB of it.
    pub payload: Vec<u8>,
    /// Unix ms.
    pub captured_at: i64,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only this endpoint.
    pub endpoint_id: Option<String>,
    /// Only this state (`ACTIVE` | `CLOSED`).
    pub state: Option<String>,
}

/// Rows per multi-row statement in [`Store::write_batch`] on PostgreSQL
/// (15 parameters a session row: well under its parameter limit), where a
/// statement is a round trip.
pub const ROWS_PER_STATEMENT: usize = 500;

/// Rows per statement on SQLite, where a statement is a call within the
/// process: a 500-row upsert's prepared program is ~0.5 MB, and the ten sizes
/// kept prepared held ~4 MB of the writer's memory (0.8 KB per session in the
/// idle-memory measurement with 5,000 sessions); 16-row statements hold
/// ~40 KB and write a batch as fast.
pub const SQLITE_ROWS_PER_STATEMENT: usize = 16;

/// Splits `rows` into statements of `max` rows, then of the largest power of
/// two that fits (`max` a power of two or not): a batch of any size is
/// written with statements of a few sizes per table (ten for 500), whose
/// texts the database's prepared-statement cache keeps. With plain `chunks`
/// the last statement had a new size in nearly every batch, and SQLite spent
/// a quarter of wsrelay's CPU at 5,000 sessions a second parsing it again.
pub fn statement_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    let max = max.max(1);
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Page `page` (from 1) of `limit` rows.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// From 1.
    pub page: u32,
    /// Rows per page, 1–1000.
    pub limit: u32,
}

impl Page {
    fn offset(self) -> i64 {
        i64::from(self.page.max(1) - 1) * i64::from(self.limit)
    }
}

/// The store. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Db>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.db.backend())
            .finish()
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_session_shard.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_session_closed_by.sql"),
    ),
    (4, include_str!("../migrations/sqlite/0004_node_state.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_endpoint_notify.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_session_shard.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_session_closed_by.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_node_state.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_endpoint_notify.sql"),
    ),
];

impl Store {
    /// Connects to `url` (`sqlite://FILE`, `sqlite::memory:` or
    /// `postgres://…`). Does not migrate.
    pub fn connect(url: &str) -> Result<Store> {
        let db: Arc<dyn Db> = if let Some(path) = url.strip_prefix("sqlite://") {
            Arc::new(sqlite::SqliteDb::open(path)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(postgres::PostgresDb::open(url)?)
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        Ok(Store { db })
    }

    /// A store over an already-open database.
    pub fn from_db(db: Arc<dyn Db>) -> Store {
        Store { db }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Applies the migrations not applied yet; returns how many ran.
    pub fn migrate(&self) -> Result<usize> {
        let migrations = match self.backend() {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        // Nodes that start at the same moment on an empty database: one
        // migrates, the others wait and then find everything applied.
        let _lock = self.db.lock_migrations()?;
        self.db.batch(
            "CREATE TABLE IF NOT EXISTS schema_migration (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )?;
        let mut applied = 0;
        for &(version, script) in migrations {
            let done = self.db.query(
                "SELECT version FROM schema_migration WHERE version = $1",
                &[Value::I64(version)],
            )?;
            if !done.is_empty() {
                continue;
            }
            self.db.migrate(
                script,
                "INSERT INTO schema_migration (version, applied_at) VALUES ($1, $2)",
                &[Value::I64(version), Value::I64(now_ms())],
            )?;
            applied += 1;
        }
        Ok(applied)
    }

    /// One page of `columns` from `table` matching `c`, in `order`; and how
    /// many rows match in all.
    fn page_of(
        &self,
        table: &str,
        columns: &str,
        c: Conditions,
        order: &str,
        page: Page,
    ) -> Result<(Vec<sql::Row>, i64)> {
        let filter = if c.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", c.clauses.join(" AND "))
        };
        let mut params = c.params;
        let total = self
            .scalar(&format!("SELECT COUNT(*) FROM {table}{filter}"), &params)?
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let n = params.len();
        params.push(Value::I64(i64::from(page.limit)));
        params.push(Value::I64(page.offset()));
        let rows = self.db.query(
            &format!(
                "SELECT {columns} FROM {table}{filter} ORDER BY {order} LIMIT ${} OFFSET ${}",
                n + 1,
                n + 2
            ),
            &params,
        )?;
        Ok((rows, total))
    }

    /// The first column of the first row of a query, if any.
    fn scalar(&self, sql: &str, params: &[Value]) -> Result<Option<Value>> {
        Ok(self
            .db
            .query(sql, params)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next()))
    }

    /// One round trip to the database; how long it took.
    pub fn ping(&self) -> Result<Duration> {
        let t = Instant::now();
        self.db.query("SELECT 1", &[])?;
        Ok(t.elapsed())
    }

    // ---- settings ----

    /// A setting's value.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .scalar(
                "SELECT value FROM setting WHERE key = $1",
                &[Value::text(key)],
            )?
            .and_then(Value::into_text))
    }

    /// Stores `value` unless the key is set already; returns the value that
    /// holds afterwards (so concurrent nodes agree on one).
    pub fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        self.db.execute(
            "INSERT INTO setting (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[Value::text(key), Value::text(value)],
        )?;
        self.setting(key)?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {key:?} vanished")))
    }
}

/// `WHERE` conditions and their parameters, numbered `$1, $2, …` in order.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Conditions {
    /// Adds `clause`, whose `?` stands for `v`.
    fn add(&mut self, clause: &str, v: Value) {
        self.params.push(v);
        self.clauses
            .push(clause.replace('?', &format!("${}", self.params.len())));
    }
}

/// The columns [`endpoint_from_row`] reads, in its order.
const ENDPOINT_COLUMNS: &str = "spec, created_at, updated_at";
/// The columns [`session_from_row`] reads, in its order.
const SESSION_COLUMNS: &str = "id, node_id, endpoint_id, shard, state, client_addr, started_at, last_seen, ended_at, close_code, close_reason, closed_by, msgs_in, msgs_out, bytes_in, bytes_out";
/// The columns [`audit_from_row`] reads, in its order.
const AUDIT_COLUMNS: &str =
    "id, at, actor, action, entity_type, entity_id, before_json, after_json, client_addr";
/// The columns [`user_from_row`] reads, in its order.
const USER_COLUMNS: &str = "id, email, password_hash, role, created_at";

/// `url` with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.split('@').next_back().unwrap_or(url).to_string(),
    }
}

fn spec_json(e: &EndpointConfig) -> Result<String> {
    serde_json::to_string(e).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn endpoint_from_row(r: Vec<Value>) -> Result<EndpointRecord> {
    let mut it = r.into_iter();
    let spec = it.next().and_then(Value::into_text).unwrap_or_default();
    let endpoint: EndpointConfig =
        serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(format!("endpoint: {e}")))?;
    let created_at = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
    let updated_at = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
    Ok(EndpointRecord {
        endpoint,
        created_at,
        updated_at,
    })
}

fn session_from_row(r: Vec<Value>) -> SessionRow {
    let mut it = r.into_iter();
    let mut next = || it.next().unwrap_or(Value::Null);
    let text = |v: Value| v.into_text().unwrap_or_default();
    let int = |v: Value| v.as_i64().unwrap_or(0);
    SessionRow {
        id: text(next()),
        node_id: text(next()),
        endpoint_id: text(next()),
        shard: int(next()),
        state: text(next()),
        client_addr: text(next()),
        started_at: int(next()),
        last_seen: int(next()),
        ended_at: next().as_i64(),
        close_code: next().as_i64(),
        close_reason: next().into_text(),
        closed_by: next().into_text(),
        msgs_in: int(next()),
        msgs_out: int(next()),
        bytes_in: int(next()),
        bytes_out: int(next()),
    }
}

fn user_from_row(r: Vec<Value>) -> Result<User> {
    let mut it = r.into_iter();
    let mut text = || it.next().and_then(Value::into_text).unwrap_or_default();
    let (id, email, password_hash, role) = (text(), text(), text(), text());
    let role =
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("user role {role:?}")))?;
    let created_at = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
    Ok(User {
        id,
        email,
        password_hash,
        role,
        created_at,
    })
}

fn audit_from_row(r: Vec<Value>) -> Result<AuditRecord> {
    let mut it = r.into_iter();
    let id = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
    let at = it.next().and_then(|v| v.as_i64()).unwrap_or(0);
    let mut text = || it.next().and_then(Value::into_text);
    Ok(AuditRecord {
        id,
        entry: AuditEntry {
            at,
            actor: text().unwrap_or_default(),
            action: text().unwrap_or_default(),
            entity_type: text().unwrap_or_default(),
            entity_id: text(),
            before: text(),
            after: text(),
            client_addr: text(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_any_size_use_few_statement_sizes() {
        let rows: Vec<u32> = (0..1300).collect();
        let mut sizes = std::collections::BTreeSet::new();
        for n in 0..=rows.len() {
            let chunks: Vec<&[u32]> = statement_chunks(&rows[..n], ROWS_PER_STATEMENT).collect();
            let flat: Vec<u32> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(flat, rows[..n], "every row once, in order");
            assert!(
                chunks.len() <= n / ROWS_PER_STATEMENT + 9,
                "{n}: {} statements",
                chunks.len()
            );
            sizes.extend(chunks.iter().map(|c| c.len()));
        }
        assert_eq!(
            sizes.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, ROWS_PER_STATEMENT],
            "ten statement texts per table, whatever the batch sizes"
        );
        let mut sizes = std::collections::BTreeSet::new();
        for n in 0..=100 {
            let chunks: Vec<&[u32]> =
                statement_chunks(&rows[..n], SQLITE_ROWS_PER_STATEMENT).collect();
            let flat: Vec<u32> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(flat, rows[..n], "every row once, in order");
            sizes.extend(chunks.iter().map(|c| c.len()));
        }
        assert_eq!(
            sizes.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 4, 8, SQLITE_ROWS_PER_STATEMENT],
            "five statement texts per table on SQLite"
        );
    }
}
