//! The seam between [`super::Store`] and a database: run SQL, convert values.
//! SQL uses `$1, $2, …` placeholders, numbered in order of first use (SQLite
//! binds them by position too).

use super::{Backend, Result};

/// A value going into or coming out of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any integer column.
    I64(i64),
    /// Boolean (SQLite stores 0/1).
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// Text from a borrowed string.
    pub fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    /// Text, or NULL.
    pub fn opt_text(s: Option<&str>) -> Value {
        s.map_or(Value::Null, Value::text)
    }

    /// As an integer (booleans count as 0/1).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::I64(v) => Some(*v),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// As a boolean (integers: non-zero).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::I64(v) => Some(*v != 0),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn into_text(self) -> Option<String> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// One result row.
pub type Row = Vec<Value>;

/// A database the store can run SQL on. Implementations pool connections and
/// are shared between threads.
pub trait Db: Send + Sync {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Runs a statement; rows affected.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query; all rows.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs `statements` (SQL, parameters) in one transaction: all or none.
    fn transaction(&self, statements: &[(String, Vec<Value>)]) -> Result<()>;
    /// Runs several statements separated by `;`, without parameters.
    fn batch(&self, sql: &str) -> Result<()>;
    /// In one transaction: runs `script` (several statements), then `record`
    /// with `params` (the migration's bookkeeping row).
    fn migrate(&self, script: &str, record: &str, params: &[Value]) -> Result<()>;
    /// Held while migrations run: other processes migrating the same
    /// database wait for it (PostgreSQL: an advisory lock; SQLite's file
    /// lock already serializes writers).
    fn lock_migrations(&self) -> Result<Box<dyn std::any::Any>> {
        Ok(Box::new(()))
    }
}
