"""MDA sampling over ODBC: the flight recorder's source (statements, SQL text, sessions, stacks)."""
