//! The node directory (SPEC 6, 7): heartbeats, listing, the sweep of silent nodes.

use super::*;

impl Store {
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
}
