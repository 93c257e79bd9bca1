//! PostgreSQL backend: the postgres crate pooled with r2d2_postgres.

use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use super::sql::{Db, Row, Value};
use super::{Backend, Result, StoreError};

/// A pooled PostgreSQL database.
pub struct PostgresDb {
    pool: r2d2::Pool<PostgresConnectionManager<NoTls>>,
}

/// The advisory lock key migrations hold ("wsrelay" in ASCII).
const MIGRATION_LOCK: i64 = 0x0077_7372_656c_6179;

/// Holds the advisory lock on its own connection; unlocks when dropped (the
/// connection goes back to the pool, so the lock must not stay with it).
struct MigrationLock(r2d2::PooledConnection<PostgresConnectionManager<NoTls>>);

impl Drop for MigrationLock {
    fn drop(&mut self) {
        let _ = self
            .0
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    }
}

impl PostgresDb {
    /// Connects to `url` (`postgres://user:pass@host:port/db`); fails at once
    /// if the server cannot be reached.
    pub fn open(url: &str) -> Result<PostgresDb> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::BadUrl(format!("{}: {e}", super::redact_url(url))))?;
        Self::with_config(config)
    }

    /// Connects with a prepared configuration (tests use it to set a schema).
    pub fn with_config(mut config: postgres::Config) -> Result<PostgresDb> {
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("wsrelay");
        // One direct connection first: an unreachable server is reported at
        // once with its cause, not as a pool timeout after retries.
        config
            .connect(NoTls)
            .map_err(|e| StoreError::Unavailable(format!("postgres: {}", cause(&e))))?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(5))
            // Failures surface as errors of the calls that needed a
            // connection; the pool does not log each retry.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("postgres: {e}")))?;
        Ok(PostgresDb { pool })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

/// The innermost cause of a connection error ("Connection refused", "password
/// authentication failed …").
fn cause(e: &postgres::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

fn query_error(e: postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(e.to_string())
    } else {
        let db = e.as_db_error().map(|d| d.message().to_string());
        StoreError::Query(db.unwrap_or_else(|| e.to_string()))
    }
}

/// SQL NULL for a parameter of any type (`Option<String>::None` would only
/// be accepted where PostgreSQL infers text).
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// Owned parameters in the types PostgreSQL expects.
fn params(values: &[Value]) -> Vec<Box<dyn ToSql + Sync>> {
    values
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                Value::Null => Box::new(Null),
                Value::I64(i) => Box::new(*i),
                Value::Bool(b) => Box::new(*b),
                Value::Text(s) => Box::new(s.clone()),
                Value::Bytes(b) => Box::new(b.clone()),
            }
        })
        .collect()
}

fn refs(p: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|b| b.as_ref()).collect()
}

fn row(r: &postgres::Row) -> Result<Row> {
    (0..r.len())
        .map(|i| {
            let t = r.columns()[i].type_();
            let v = if *t == Type::INT8 {
                r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::I64))
            } else if *t == Type::INT4 {
                r.try_get::<_, Option<i32>>(i)
                    .map(|v| v.map(|v| Value::I64(v.into())))
            } else if *t == Type::INT2 {
                r.try_get::<_, Option<i16>>(i)
                    .map(|v| v.map(|v| Value::I64(v.into())))
            } else if *t == Type::BOOL {
                r.try_get::<_, Option<bool>>(i).map(|v| v.map(Value::Bool))
            } else if *t == Type::BYTEA {
                r.try_get::<_, Option<Vec<u8>>>(i)
                    .map(|v| v.map(Value::Bytes))
            } else {
                r.try_get::<_, Option<String>>(i)
                    .map(|v| v.map(Value::Text))
            };
            v.map(|v| v.unwrap_or(Value::Null))
                .map_err(|e| StoreError::Corrupt(format!("column {}: {e}", r.columns()[i].name())))
        })
        .collect()
}

/// Integers are sent as INT8, so an integer column bound to a parameter must
/// be BIGINT or the SQL must cast (`$1::int`).
impl Db for PostgresDb {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&self, sql: &str, values: &[Value]) -> Result<u64> {
        let p = params(values);
        self.conn()?.execute(sql, &refs(&p)).map_err(query_error)
    }

    fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        let p = params(values);
        let rows = self.conn()?.query(sql, &refs(&p)).map_err(query_error)?;
        rows.iter().map(row).collect()
    }

    fn transaction(&self, statements: &[(String, Vec<Value>)]) -> Result<()> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(query_error)?;
        for (sql, values) in statements {
            let p = params(values);
            tx.execute(sql.as_str(), &refs(&p)).map_err(query_error)?;
        }
        tx.commit().map_err(query_error)
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.conn()?.batch_execute(sql).map_err(query_error)
    }

    fn lock_migrations(&self) -> Result<Box<dyn std::any::Any>> {
        let mut c = self.conn()?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(query_error)?;
        Ok(Box::new(MigrationLock(c)))
    }

    fn migrate(&self, script: &str, record: &str, values: &[Value]) -> Result<()> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(query_error)?;
        tx.batch_execute(script).map_err(query_error)?;
        let p = params(values);
        tx.execute(record, &refs(&p)).map_err(query_error)?;
        tx.commit().map_err(query_error)
    }
}
