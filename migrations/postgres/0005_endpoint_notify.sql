-- Several nodes (issue 13, SPEC 7): every change to `endpoint` bumps
-- `endpoints_version` and notifies the nodes sharing this schema, in the
-- changing transaction (delivered at commit, in commit order: the version
-- row serializes writers). A node applies a version only if it is newer
-- than the one it has, and reads the version again after a lost listening
-- connection.
INSERT INTO setting (key, value) VALUES ('endpoints_version', '0') ON CONFLICT (key) DO NOTHING;

CREATE FUNCTION wsrelay_endpoint_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v BIGINT;
BEGIN
    UPDATE setting SET value = (CAST(value AS BIGINT) + 1)::TEXT
        WHERE key = 'endpoints_version'
        RETURNING CAST(value AS BIGINT) INTO v;
    PERFORM pg_notify(left('wsrelay_endpoints_' || current_schema(), 63), v::TEXT);
    RETURN NULL;
END $$;

CREATE TRIGGER endpoint_changed AFTER INSERT OR UPDATE OR DELETE ON endpoint
    FOR EACH STATEMENT EXECUTE FUNCTION wsrelay_endpoint_changed();
