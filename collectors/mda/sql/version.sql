-- Reads: @@version (the server's version string, for the log).
select @@version
