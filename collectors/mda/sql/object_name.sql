-- Reads: object_name(id, dbid) (a procedure's name from monSysStatement's ProcedureID/DBID).
select object_name({id}, {dbid})
