-- Errorlog errors per server and severity.
-- Reads: events (index events_kind_server), kind ErrorlogError.
SELECT server, json_extract(payload, '$.severity'), COUNT(*)
FROM events WHERE kind = 'ErrorlogError' GROUP BY server, json_extract(payload, '$.severity')
