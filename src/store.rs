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

pub mod postgres;
pub mod sql;
pub mod sqlite;

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

    // ---- endpoints ----

    /// All endpoints, by id.
    pub fn list_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        let rows = self.db.query(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM endpoint ORDER BY id"),
            &[],
        )?;
        rows.into_iter().map(endpoint_from_row).collect()
    }

    /// One endpoint.
    pub fn get_endpoint(&self, id: &str) -> Result<Option<EndpointRecord>> {
        let rows = self.db.query(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE id = $1"),
            &[Value::text(id)],
        )?;
        rows.into_iter().next().map(endpoint_from_row).transpose()
    }

    /// `NOTIFY`s this schema's channel `prefix` + schema (PostgreSQL).
    pub fn notify(&self, prefix: &str, payload: &str) -> Result<()> {
        self.db.execute(
            "SELECT 1 FROM (SELECT pg_notify(left($1 || current_schema(), 63), $2)) AS sent",
            &[Value::text(prefix), Value::text(payload)],
        )?;
        Ok(())
    }

    /// The endpoints' version: raised by every change to them (a trigger
    /// in the changing transaction), 0 before the first.
    pub fn endpoints_version(&self) -> Result<i64> {
        Ok(self
            .setting("endpoints_version")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Inserts a new endpoint; [`StoreError::Conflict`] if the id exists.
    pub fn insert_endpoint(&self, e: &EndpointConfig) -> Result<EndpointRecord> {
        let now = now_ms();
        let n = self.db.execute(
            "INSERT INTO endpoint (id, name, enabled, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            &[
                Value::text(&e.id),
                Value::text(&e.name),
                Value::Bool(e.enabled),
                Value::Text(spec_json(e)?),
                Value::I64(now),
                Value::I64(now),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("endpoint {:?}", e.id)));
        }
        Ok(EndpointRecord {
            endpoint: e.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    /// Replaces an endpoint; `None` if there is none with this id.
    pub fn update_endpoint(&self, e: &EndpointConfig) -> Result<Option<EndpointRecord>> {
        let now = now_ms();
        let rows = self.db.query(
            "UPDATE endpoint SET name = $1, enabled = $2, spec = $3, updated_at = $4 WHERE id = $5 RETURNING created_at",
            &[
                Value::text(&e.name),
                Value::Bool(e.enabled),
                Value::Text(spec_json(e)?),
                Value::I64(now),
                Value::text(&e.id),
            ],
        )?;
        Ok(rows.into_iter().next().map(|r| EndpointRecord {
            endpoint: e.clone(),
            created_at: r.first().and_then(Value::as_i64).unwrap_or(now),
            updated_at: now,
        }))
    }

    /// Deletes an endpoint; whether it existed.
    pub fn delete_endpoint(&self, id: &str) -> Result<bool> {
        Ok(self
            .db
            .execute("DELETE FROM endpoint WHERE id = $1", &[Value::text(id)])?
            > 0)
    }

    /// Inserts each endpoint whose id is absent (config-file seeding);
    /// returns the ids inserted.
    pub fn seed_endpoints(&self, endpoints: &[EndpointConfig]) -> Result<Vec<String>> {
        let mut inserted = Vec::new();
        for e in endpoints {
            match self.insert_endpoint(e) {
                Ok(_) => inserted.push(e.id.clone()),
                Err(StoreError::Conflict(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(inserted)
    }

    // ---- users ----

    /// How many users exist.
    pub fn count_users(&self) -> Result<i64> {
        Ok(self
            .scalar("SELECT COUNT(*) FROM app_user", &[])?
            .and_then(|v| v.as_i64())
            .unwrap_or(0))
    }

    /// Adds a user; [`StoreError::Conflict`] if the email is taken.
    pub fn insert_user(&self, u: &User) -> Result<()> {
        let n = self.db.execute(
            "INSERT INTO app_user (id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                Value::text(&u.id),
                Value::text(&u.email),
                Value::text(&u.password_hash),
                Value::text(u.role.as_str()),
                Value::I64(u.created_at),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("user {:?}", u.email)));
        }
        Ok(())
    }

    /// A user by email.
    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.user_where("email", email)
    }

    /// A user by id.
    pub fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.user_where("id", id)
    }

    /// The user whose `column` (a fixed column name) is `value`.
    fn user_where(&self, column: &'static str, value: &str) -> Result<Option<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM app_user WHERE {column} = $1"),
            &[Value::text(value)],
        )?;
        rows.into_iter().next().map(user_from_row).transpose()
    }

    /// Changes a user's role; whether the user exists.
    pub fn set_user_role(&self, id: &str, role: Role) -> Result<bool> {
        Ok(self.db.execute(
            "UPDATE app_user SET role = $1 WHERE id = $2",
            &[Value::text(role.as_str()), Value::text(id)],
        )? > 0)
    }

    /// All users, oldest first.
    pub fn list_users(&self) -> Result<Vec<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM app_user ORDER BY created_at, email"),
            &[],
        )?;
        rows.into_iter().map(user_from_row).collect()
    }

    /// Deletes a user; whether it existed.
    pub fn delete_user(&self, id: &str) -> Result<bool> {
        Ok(self
            .db
            .execute("DELETE FROM app_user WHERE id = $1", &[Value::text(id)])?
            > 0)
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

    // ---- nodes and sessions ----

    /// Registers (or re-registers) this process as a node: `up`, running
    /// `version`, started now.
    pub fn register_node(&self, id: &str, host: &str, version: &str) -> Result<()> {
        let now = now_ms();
        self.db.execute(
            "INSERT INTO node (id, host, started_at, last_heartbeat, version, state, sessions) VALUES ($1, $2, $3, $4, $5, 'up', 0) ON CONFLICT (id) DO UPDATE SET host = excluded.host, started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat, version = excluded.version, state = 'up', sessions = 0",
            &[
                Value::text(id),
                Value::text(host),
                Value::I64(now),
                Value::I64(now),
                Value::text(version),
            ],
        )?;
        Ok(())
    }

    /// Refreshes the node's `last_heartbeat`, state (`up` or `draining`) and
    /// session count.
    pub fn heartbeat_node(&self, id: &str, state: &str, sessions: u64) -> Result<()> {
        self.db.execute(
            "UPDATE node SET last_heartbeat = $1, state = $2, sessions = $3 WHERE id = $4",
            &[
                Value::I64(now_ms()),
                Value::text(state),
                Value::I64(sessions as i64),
                Value::text(id),
            ],
        )?;
        Ok(())
    }

    /// Marks the node `down` (it exits with no session left).
    pub fn node_down(&self, id: &str) -> Result<()> {
        self.db.execute(
            "UPDATE node SET state = 'down', sessions = 0, last_heartbeat = $1 WHERE id = $2",
            &[Value::I64(now_ms()), Value::text(id)],
        )?;
        Ok(())
    }

    /// Every node, by id.
    pub fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        let rows = self.db.query(
            "SELECT id, host, version, started_at, last_heartbeat, state, sessions FROM node ORDER BY id",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let text = |i: usize| {
                    r.get(i)
                        .cloned()
                        .and_then(Value::into_text)
                        .unwrap_or_default()
                };
                let int = |i: usize| r.get(i).and_then(Value::as_i64).unwrap_or(0);
                NodeRow {
                    id: text(0),
                    host: text(1),
                    version: text(2),
                    started_at: int(3),
                    last_heartbeat: int(4),
                    state: text(5),
                    sessions: int(6),
                }
            })
            .collect())
    }

    /// Ghosts (SPEC 7): nodes other than `me` silent since before `cutoff`
    /// (Unix ms) are marked `down`, and every `ACTIVE` session of a `down`
    /// node is closed with reason `node lost`. Claiming a node is one
    /// conditional update, so of several live nodes only one marks it, and
    /// closing only touches `ACTIVE` rows, so nothing is done twice.
    /// Returns (the nodes marked down, the sessions closed).
    pub fn sweep_lost_nodes(&self, me: &str, cutoff: i64) -> Result<(Vec<String>, u64)> {
        let lost: Vec<String> = self
            .db
            .query(
                "UPDATE node SET state = 'down' WHERE state <> 'down' AND last_heartbeat < $1 AND id <> $2 RETURNING id",
                &[Value::I64(cutoff), Value::text(me)],
            )?
            .into_iter()
            .filter_map(|r| r.into_iter().next().and_then(Value::into_text))
            .collect();
        let now = now_ms();
        let closed = self.db.execute(
            "UPDATE live_session SET state = 'CLOSED', ended_at = $1, close_reason = 'node lost', closed_by = 'wsrelay', updated_at = $2 WHERE state = 'ACTIVE' AND node_id IN (SELECT id FROM node WHERE state = 'down')",
            &[Value::I64(now), Value::I64(now)],
        )?;
        Ok((lost, closed))
    }

    /// Records a session that started (state `ACTIVE`).
    pub fn insert_session(
        &self,
        id: &str,
        node_id: &str,
        endpoint_id: &str,
        client_addr: &str,
        started_at: i64,
    ) -> Result<()> {
        self.db.execute(
            "INSERT INTO live_session (id, node_id, endpoint_id, state, client_addr, started_at, updated_at) VALUES ($1, $2, $3, 'ACTIVE', $4, $5, $6)",
            &[
                Value::text(id),
                Value::text(node_id),
                Value::text(endpoint_id),
                Value::text(client_addr),
                Value::I64(started_at),
                Value::I64(started_at),
            ],
        )?;
        Ok(())
    }

    /// Session ids of a node in a state (`ACTIVE` or `CLOSED`), oldest first.
    pub fn session_ids(&self, node_id: &str, state: &str) -> Result<Vec<String>> {
        let rows = self.db.query(
            "SELECT id FROM live_session WHERE node_id = $1 AND state = $2 ORDER BY started_at, id",
            &[Value::text(node_id), Value::text(state)],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().and_then(Value::into_text))
            .collect())
    }

    /// Marks the node's `ACTIVE` sessions from a previous run `CLOSED` with
    /// reason `node restarted`; returns how many.
    pub fn close_stale_sessions(&self, node_id: &str) -> Result<u64> {
        let now = now_ms();
        self.db.execute(
            "UPDATE live_session SET state = 'CLOSED', ended_at = $1, close_reason = 'node restarted', closed_by = 'wsrelay', updated_at = $2 WHERE node_id = $3 AND state = 'ACTIVE'",
            &[Value::I64(now), Value::I64(now), Value::text(node_id)],
        )
    }

    /// Writes session rows (insert, or update by id: writing a row twice
    /// leaves one row) and samples in one transaction, many rows per
    /// statement. All or nothing, so a retry after a failure duplicates
    /// nothing.
    /// After the samples, each endpoint in `keep` keeps only its newest
    /// `maxSamples` samples.
    pub fn write_batch(
        &self,
        sessions: &[SessionRow],
        samples: &[SampleRow],
        keep: &[(String, u32)],
    ) -> Result<()> {
        let mut statements = Vec::new();
        let now = now_ms();
        let max = match self.db.backend() {
            Backend::Sqlite => SQLITE_ROWS_PER_STATEMENT,
            Backend::Postgres => ROWS_PER_STATEMENT,
        };
        for chunk in statement_chunks(sessions, max) {
            let mut params = Vec::with_capacity(chunk.len() * 17);
            let mut tuples = Vec::with_capacity(chunk.len());
            for r in chunk {
                let b = params.len();
                tuples.push(format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, CAST(CAST(${} AS BIGINT) AS INTEGER), ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10,
                    b + 11, b + 12, b + 13, b + 14, b + 15, b + 16, b + 17
                ));
                params.extend([
                    Value::text(&r.id),
                    Value::text(&r.node_id),
                    Value::text(&r.endpoint_id),
                    Value::I64(r.shard),
                    Value::text(&r.state),
                    Value::text(&r.client_addr),
                    Value::I64(r.started_at),
                    Value::I64(r.last_seen),
                    r.ended_at.map_or(Value::Null, Value::I64),
                    r.close_code.map_or(Value::Null, Value::I64),
                    Value::opt_text(r.close_reason.as_deref()),
                    Value::opt_text(r.closed_by.as_deref()),
                    Value::I64(r.msgs_in),
                    Value::I64(r.msgs_out),
                    Value::I64(r.bytes_in),
                    Value::I64(r.bytes_out),
                    Value::I64(now),
                ]);
            }
            statements.push((
                format!(
                    "INSERT INTO live_session ({SESSION_COLUMNS}, updated_at) VALUES {} ON CONFLICT (id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen, ended_at = excluded.ended_at, close_code = excluded.close_code, close_reason = excluded.close_reason, closed_by = excluded.closed_by, msgs_in = excluded.msgs_in, msgs_out = excluded.msgs_out, bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, updated_at = excluded.updated_at, shard = excluded.shard WHERE live_session.state <> 'CLOSED'",
                    tuples.join(", ")
                ),
                params,
            ));
        }
        for chunk in statement_chunks(samples, max) {
            let mut params = Vec::with_capacity(chunk.len() * 7);
            let mut tuples = Vec::with_capacity(chunk.len());
            for r in chunk {
                let b = params.len();
                tuples.push(format!(
                    "(${}, ${}, ${}, CAST(CAST(${} AS BIGINT) AS SMALLINT), CAST(CAST(${} AS BIGINT) AS INTEGER), ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                ));
                params.extend([
                    Value::text(&r.session_id),
                    Value::text(&r.endpoint_id),
                    Value::text(r.direction.stored()),
                    Value::I64(r.opcode),
                    Value::I64(r.size),
                    Value::Bytes(r.payload.clone()),
                    Value::I64(r.captured_at),
                ]);
            }
            statements.push((
                format!(
                    "INSERT INTO traffic_sample (session_id, endpoint_id, direction, opcode, size, payload, captured_at) VALUES {}",
                    tuples.join(", ")
                ),
                params,
            ));
        }
        for (endpoint, n) in keep {
            statements.push((
                "DELETE FROM traffic_sample WHERE endpoint_id = $1 AND id <= (SELECT id FROM traffic_sample WHERE endpoint_id = $2 ORDER BY id DESC LIMIT 1 OFFSET $3)".into(),
                vec![Value::text(endpoint), Value::text(endpoint), Value::I64(i64::from(*n))],
            ));
        }
        if statements.is_empty() {
            return Ok(());
        }
        self.db.transaction(&statements)
    }

    /// Sessions matching `f`, newest first, one page; and the total.
    pub fn list_sessions(&self, f: &SessionFilter, page: Page) -> Result<(Vec<SessionRow>, i64)> {
        let mut c = Conditions::default();
        if let Some(e) = &f.endpoint_id {
            c.add("endpoint_id = ?", Value::text(e));
        }
        if let Some(s) = &f.state {
            c.add("state = ?", Value::text(s));
        }
        let (rows, total) = self.page_of(
            "live_session",
            SESSION_COLUMNS,
            c,
            "started_at DESC, id DESC",
            page,
        )?;
        Ok((rows.into_iter().map(session_from_row).collect(), total))
    }

    /// One session.
    pub fn get_session(&self, id: &str) -> Result<Option<SessionRow>> {
        let rows = self.db.query(
            &format!("SELECT {SESSION_COLUMNS} FROM live_session WHERE id = $1"),
            &[Value::text(id)],
        )?;
        Ok(rows.into_iter().next().map(session_from_row))
    }

    /// Samples of an endpoint, newest first, at most `limit`.
    pub fn list_samples(&self, endpoint_id: &str, limit: u32) -> Result<Vec<SampleRow>> {
        let rows = self.db.query(
            "SELECT session_id, endpoint_id, direction, opcode, size, payload, captured_at FROM traffic_sample WHERE endpoint_id = $1 ORDER BY captured_at DESC, id DESC LIMIT $2",
            &[Value::text(endpoint_id), Value::I64(i64::from(limit))],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                let mut text = || it.next().and_then(Value::into_text).unwrap_or_default();
                let (session_id, endpoint_id, direction) = (text(), text(), text());
                let mut int = || it.next().and_then(|v| v.as_i64()).unwrap_or(0);
                let (opcode, size) = (int(), int());
                let payload = match it.next() {
                    Some(Value::Bytes(b)) => b,
                    _ => Vec::new(),
                };
                SampleRow {
                    session_id,
                    endpoint_id,
                    direction: crate::bridge::Direction::from_stored(&direction)
                        .unwrap_or(crate::bridge::Direction::Out),
                    opcode,
                    size,
                    payload,
                    captured_at: it.next().and_then(|v| v.as_i64()).unwrap_or(0),
                }
            })
            .collect())
    }

    // ---- audit ----

    /// Audit records with `since <= at < until` and `id > after_id`, oldest
    /// first, at most `limit`: one chunk of an export.
    pub fn audit_chunk(
        &self,
        since: i64,
        until: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let rows = self.db.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE at >= $1 AND at < $2 AND id > $3 ORDER BY id LIMIT $4"),
            &[
                Value::I64(since),
                Value::I64(until),
                Value::I64(after_id),
                Value::I64(i64::from(limit)),
            ],
        )?;
        rows.into_iter().map(audit_from_row).collect()
    }

    /// Appends one audit record; returns its id.
    pub fn append_audit(&self, a: &AuditEntry) -> Result<i64> {
        self.scalar(
            "INSERT INTO audit_log (at, actor, action, entity_type, entity_id, before_json, after_json, client_addr) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                Value::I64(a.at),
                Value::text(&a.actor),
                Value::text(&a.action),
                Value::text(&a.entity_type),
                Value::opt_text(a.entity_id.as_deref()),
                Value::opt_text(a.before.as_deref()),
                Value::opt_text(a.after.as_deref()),
                Value::opt_text(a.client_addr.as_deref()),
            ],
        )?
        .and_then(|v| v.as_i64())
        .ok_or_else(|| StoreError::Corrupt("audit insert returned no id".into()))
    }

    /// Audit records matching `f`, newest first, one page; and the total.
    pub fn list_audit(&self, f: &AuditFilter, page: Page) -> Result<(Vec<AuditRecord>, i64)> {
        let mut c = Conditions::default();
        if let Some(a) = &f.action {
            c.add("action = ?", Value::text(a));
        }
        if let Some(t) = &f.entity_type {
            c.add("entity_type = ?", Value::text(t));
        }
        if let Some(s) = f.since {
            c.add("at >= ?", Value::I64(s));
        }
        if let Some(u) = f.until {
            c.add("at < ?", Value::I64(u));
        }
        let (rows, total) =
            self.page_of("audit_log", AUDIT_COLUMNS, c, "at DESC, id DESC", page)?;
        let records = rows
            .into_iter()
            .map(audit_from_row)
            .collect::<Result<_>>()?;
        Ok((records, total))
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
