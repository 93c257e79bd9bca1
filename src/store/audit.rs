//! The audit log (SPEC 5): append-only, filtered, paged, exported in chunks.

use super::*;

impl Store {
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
}
