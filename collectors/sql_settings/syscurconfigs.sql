-- Run values of every parameter.
-- Reads: master..syscurconfigs (config, value = the running integer, value2 = the running text
-- of a character parameter). ASE 15.7 and 16.0.
select config, value, value2 from master..syscurconfigs
