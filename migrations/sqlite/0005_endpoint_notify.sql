-- The endpoints' version, as on PostgreSQL (SQLite is single-node: nothing
-- listens, but the version is kept the same way).
INSERT INTO setting (key, value) VALUES ('endpoints_version', '0') ON CONFLICT (key) DO NOTHING;
CREATE TRIGGER endpoint_inserted AFTER INSERT ON endpoint BEGIN
    UPDATE setting SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'endpoints_version';
END;
CREATE TRIGGER endpoint_updated AFTER UPDATE ON endpoint BEGIN
    UPDATE setting SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'endpoints_version';
END;
CREATE TRIGGER endpoint_deleted AFTER DELETE ON endpoint BEGIN
    UPDATE setting SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'endpoints_version';
END;
