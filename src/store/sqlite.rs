//! SQLite backend: rusqlite (bundled library) pooled with r2d2.

use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::ToSql;

use super::sql::{Db, Row, Value};
use super::{Backend, Result, StoreError};

/// A pooled SQLite database file (or `:memory:`, one connection).
pub struct SqliteDb {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

impl SqliteDb {
    /// Opens (creating) the file at `path`; `:memory:` for a private
    /// in-memory database.
    pub fn open(path: &str) -> Result<SqliteDb> {
        let memory = path == ":memory:" || path.is_empty();
        if !memory {
            // Open once directly so a bad path fails at once with its cause.
            rusqlite::Connection::open(path)
                .map_err(|e| StoreError::Unavailable(format!("sqlite {path}: {e}")))?;
        }
        let manager = if memory {
            SqliteConnectionManager::memory()
        } else {
            SqliteConnectionManager::file(path)
        }
        .with_init(|c| {
            // WAL: readers do not wait for the writer; busy_timeout: writers
            // from several pool connections queue instead of failing.
            c.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )?;
            // Room for every statement `write_batch` makes (ten sizes per
            // table) beside the API's queries.
            c.set_prepared_statement_cache_capacity(64);
            c.busy_timeout(Duration::from_secs(5))
        });
        let pool = r2d2::Pool::builder()
            // An in-memory database lives in one connection.
            .max_size(if memory { 1 } else { 4 })
            .connection_timeout(Duration::from_secs(5))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("sqlite {path}: {e}")))?;
        Ok(SqliteDb { pool })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::I64(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn params(values: &[Value]) -> Vec<Param<'_>> {
    values.iter().map(Param).collect()
}

fn query_error(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::CannotOpen
                || f.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            StoreError::Unavailable(e.to_string())
        }
        e => StoreError::Query(e.to_string()),
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::I64(i),
        ValueRef::Real(f) => Value::I64(f as i64),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

impl Db for SqliteDb {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute(&self, sql: &str, values: &[Value]) -> Result<u64> {
        let c = self.conn()?;
        let p = params(values);
        let n = c
            .execute(sql, rusqlite::params_from_iter(p.iter()))
            .map_err(query_error)?;
        Ok(n as u64)
    }

    fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        let c = self.conn()?;
        let mut stmt = c.prepare_cached(sql).map_err(query_error)?;
        let width = stmt.column_count();
        let p = params(values);
        let mut rows = stmt
            .query(rusqlite::params_from_iter(p.iter()))
            .map_err(query_error)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(query_error)? {
            out.push(
                (0..width)
                    .map(|i| r.get_ref(i).map(value))
                    .collect::<rusqlite::Result<Row>>()
                    .map_err(query_error)?,
            );
        }
        Ok(out)
    }

    fn transaction(&self, statements: &[(String, Vec<Value>)]) -> Result<()> {
        let mut c = self.conn()?;
        let tx = c.transaction().map_err(query_error)?;
        for (sql, values) in statements {
            let p = params(values);
            // Cached: a batch's full-size statements share their text.
            tx.prepare_cached(sql)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(p.iter())))
                .map_err(query_error)?;
        }
        tx.commit().map_err(query_error)
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.conn()?.execute_batch(sql).map_err(query_error)
    }

    fn migrate(&self, script: &str, record: &str, values: &[Value]) -> Result<()> {
        let mut c = self.conn()?;
        let tx = c.transaction().map_err(query_error)?;
        tx.execute_batch(script).map_err(query_error)?;
        let p = params(values);
        tx.execute(record, rusqlite::params_from_iter(p.iter()))
            .map_err(query_error)?;
        tx.commit().map_err(query_error)
    }
}
