//! Endpoints (SPEC 3): the stored truth every node's routing table is read from.

use super::*;

impl Store {
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
}
