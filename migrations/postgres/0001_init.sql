-- wsrelay schema, PostgreSQL. Times are Unix milliseconds (BIGINT), as in the
-- SQLite schema, so both backends share one row mapping.
CREATE TABLE app_user (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoint (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    spec TEXT NOT NULL,            -- the whole endpoint as JSON
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE node (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL
);

CREATE TABLE live_session (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'CLOSED')),
    client_addr TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    close_code INTEGER,
    close_reason TEXT,
    msgs_in BIGINT NOT NULL DEFAULT 0,
    msgs_out BIGINT NOT NULL DEFAULT 0,
    bytes_in BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX live_session_endpoint_state ON live_session (endpoint_id, state, started_at);
CREATE INDEX live_session_state_started ON live_session (state, started_at);
CREATE INDEX live_session_node_state ON live_session (node_id, state);

CREATE TABLE traffic_sample (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('client_to_target', 'target_to_client')),
    opcode SMALLINT NOT NULL,
    size INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    captured_at BIGINT NOT NULL
);
CREATE INDEX traffic_sample_endpoint_time ON traffic_sample (endpoint_id, captured_at);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
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
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE setting (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
