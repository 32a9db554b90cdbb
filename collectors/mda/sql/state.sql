-- Reads: master..monState (StartDate: changes when the server restarts; Connections).
-- Readable even with 'enable monitoring' off.
select {columns} from master..monState
