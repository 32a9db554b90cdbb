"""The simulated dataserver's TDS 5.0 listener, so the real pyodbc + unixODBC + FreeTDS path runs.

Written from the token sequences in ``research/odbc-testing.md``; it speaks just enough of
TDS 5.0 for FreeTDS's ODBC driver (``TDS_Version=5.0``): login, language requests, result
sets, stored-procedure shaped results, errors, cancel and logout. The SQL it accepts is
the subset in ``helper-notes/sql-contract.md``; everything else gets a clear error.

- ``wire``: packets, tokens, column types and row encoding, the login record.
- ``server``: the listener thread, one thread per connection, cancel, test hooks.
- ``sql`` (tokens, statements) and ``parser``: the accepted SQL subset.
- ``dispatch``: runs a parsed statement against the live :class:`~monitor.sim.state.SimState`.
- ``tables`` (MDA tables), ``systables`` (system tables, flags), ``catalog`` (procedure
  texts), ``procs`` (``sp_configure``, ``sp_shmdumpconfig``, ``sp_datatype_info``).
- ``host``: what the server needs from the dataserver (config changes, errorlog lines).
- ``hooks``: one-shot test hooks (hang the next query, drop the connection mid-query).
"""
