-- Reads: @@spid (the monitoring connection's own spid, left out of every sample).
select @@spid
