-- Reads: master..monProcessProcedures (the procedure call stack of each session now;
-- needs 'statement statistics active').
select {columns} from master..monProcessProcedures
