-- Every server the event log knows.
-- Reads: events (index events_server).
SELECT DISTINCT server FROM events
