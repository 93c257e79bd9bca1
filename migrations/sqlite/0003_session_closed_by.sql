-- Which side ended a session: client, target or wsrelay (issue 10).
ALTER TABLE live_session ADD COLUMN closed_by TEXT;
