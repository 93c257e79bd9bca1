//! Sessions and samples (SPEC 4.4, 4.3): rows written in batches by the event pipeline, read by the API.

use super::*;

impl Store {
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
}
