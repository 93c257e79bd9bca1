-- wsrelay schema, SQLite. Times are Unix milliseconds (INTEGER).
CREATE TABLE app_user (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at INTEGER NOT NULL
);

CREATE TABLE endpoint (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    spec TEXT NOT NULL,            -- the whole endpoint as JSON
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE node (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL
);

CREATE TABLE live_session (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'CLOSED')),
    client_addr TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    close_code INTEGER,
    close_reason TEXT,
    msgs_in INTEGER NOT NULL DEFAULT 0,
    msgs_out INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE INDEX live_session_endpoint_state ON live_session (endpoint_id, state, started_at);
CREATE INDEX live_session_state_started ON live_session (state, started_at);
CREATE INDEX live_session_node_state ON live_session (node_id, state);

CREATE TABLE traffic_sample (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('client_to_target', 'target_to_client')),
    opcode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL,
    captured_at INTEGER NOT NULL
);
CREATE INDEX traffic_sample_endpoint_time ON traffic_sample (endpoint_id, captured_at);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT,
    before_json TEXT,
    after_json TEXT,
    client_addr TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action_at ON audit_log (action, at);
CREATE INDEX audit_log_entity_at ON audit_log (entity_type, at);
-- Append-only: no route updates or deletes it, and the database refuses too.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE setting (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
