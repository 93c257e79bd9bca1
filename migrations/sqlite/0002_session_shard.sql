-- SPEC 4.4: a session names its shard and when it was last seen active.
ALTER TABLE live_session ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE live_session ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
