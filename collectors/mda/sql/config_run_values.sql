-- Reads: master..syscurconfigs (the run values of the parameters found in sysconfigures).
select config, value from master..syscurconfigs where config in ({ids})
