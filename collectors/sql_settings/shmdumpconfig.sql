-- The Configurable Shared Memory Dump conditions (display, the default action).
-- Reads: sp_shmdumpconfig (result columns Type, Value, Max Dumps, Dump Count, Dump Directory,
-- Dump File, Page Cache, Procedure Cache, Unused Space, Halt Engines, Cluster; a real server may
-- send more result sets before it: the one with a Type column is used). ASE 15.7 and 16.0.
sp_shmdumpconfig
