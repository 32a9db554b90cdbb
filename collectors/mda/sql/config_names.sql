-- Reads: master..sysconfigures (the configured values and ids of the parameters the sampler
-- needs: pipe sizes for overflow detection, pipe switches, the user connection limit).
select config, name, value from master..sysconfigures where name in ({names})
