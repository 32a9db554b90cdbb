-- The newest events of one kind for one server (engine-0 start, last exit, last sample).
-- Reads: events (index events_kind_server).
SELECT seq, payload FROM events WHERE kind = ? AND server = ? ORDER BY seq DESC LIMIT ?
