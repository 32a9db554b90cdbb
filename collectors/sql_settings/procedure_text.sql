-- The source text of some procedures, in 255-character pieces. {db} is a validated identifier,
-- {ids} a list of integer object ids. The pieces are joined client-side in colid order.
-- Reads: <db>..syscomments (id, colid, text). ASE 15.7 and 16.0 (colid2, for texts of more than
-- 32767 pieces, is not read).
select id, colid, text from {db}..syscomments where id in ({ids})
