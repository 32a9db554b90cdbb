-- Reads: master..monTableColumns (which columns this server's MDA tables have; the
-- sampler asks only for columns that exist, so one query serves 15.x and 16.x).
select TableName, ColumnName from master..monTableColumns where TableName in ({tables})
