-- Reads: master..monSysSQLText, a PIPE table (ring of 'sql text pipe max messages' rows,
-- consumed per connection; no where clause). A batch's text appears when it starts,
-- split into 255-character rows ordered by SequenceInBatch.
select {columns} from master..monSysSQLText
