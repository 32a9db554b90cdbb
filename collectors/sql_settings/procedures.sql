-- Every stored procedure of one database. {db} is a validated identifier.
-- Reads: <db>..sysobjects (id, name, type; a procedure's type is 'P ', padded to 2 chars).
-- ASE 15.7 and 16.0.
select id, name from {db}..sysobjects where type = 'P '
