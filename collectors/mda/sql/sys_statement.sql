-- Reads: master..monSysStatement, a PIPE table (ring of 'statement pipe max messages' rows;
-- each connection reads only rows it has not seen, and reading consumes them).
-- Never add a where clause or a join: it would consume the whole ring anyway.
-- A row appears when a statement ends.
select {columns} from master..monSysStatement
