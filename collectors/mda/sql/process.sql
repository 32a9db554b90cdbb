-- Reads: master..monProcess (a snapshot of every session: login, host, program, FamilyID
-- of parallel workers, what it runs now).
select {columns} from master..monProcess
