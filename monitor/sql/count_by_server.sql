-- How many events of one kind each server has (configuration changes, boots, ...).
-- Reads: events (index events_kind_server).
SELECT server, COUNT(*) FROM events WHERE kind = ? GROUP BY server
