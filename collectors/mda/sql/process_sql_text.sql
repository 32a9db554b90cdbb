-- Reads: master..monProcessSQLText (the batch each session runs now; needs
-- 'SQL batch capture' and 'max SQL text monitored').
select {columns} from master..monProcessSQLText
