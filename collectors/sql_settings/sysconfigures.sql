-- Configured values of every parameter, and the section rows they belong to.
-- Reads: master..sysconfigures (config, name, parent -> the section's config, value = the
-- configured integer, value2 = the configured text of a character parameter). ASE 15.7 and 16.0.
-- No join with syscurconfigs here: the rows are joined on `config` client-side (one plain
-- projection per table is all the simulated dataserver needs to serve, and all ASE needs to plan).
select config, name, parent, value, value2 from master..sysconfigures
