-- Several nodes (issue 13, SPEC 7): what each node row reports.
ALTER TABLE node ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE node ADD COLUMN state TEXT NOT NULL DEFAULT 'up';
ALTER TABLE node ADD COLUMN sessions BIGINT NOT NULL DEFAULT 0;
CREATE INDEX node_state_heartbeat ON node (state, last_heartbeat);
