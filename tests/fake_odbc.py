"""A fake of pyodbc's connection/cursor API over a tiny ASE, for unit tests of the change collectors.

Faithful where the collectors depend on it: ``execute`` returns the cursor, ``description``
is None for a statement without rows, ``nextset`` walks a procedure's several result sets,
errors are pyodbc's own exception classes with pyodbc's ``(sqlstate, message)`` args, and a
server that is down fails the connect with ``OperationalError 08S01`` and a dead connection
fails the next call. The SQL accepted is the contract's subset (helper-notes/sql-contract.md):
``select <cols>|* from <db>..<Table> [where <col> = <lit> [and ...] | where <col> in (...)]``
and stored procedures by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyodbc

Rows = list[tuple[Any, ...]]
_SELECT = re.compile(
    r"select\s+(?P<cols>.+?)\s+from\s+(?P<table>\w+\.\.\w+)(?:\s+where\s+(?P<where>.+))?$", re.I | re.S
)
_LITERAL = r"(?:'(?:[^']|'')*'|-?\d+)"


def _literal(text: str) -> object:
    text = text.strip()
    return text[1:-1].replace("''", "'") if text.startswith("'") else int(text)


@dataclass
class Table:
    columns: tuple[str, ...]
    rows: Rows = field(default_factory=list)


@dataclass
class FakeAse:
    """The server: tables by ``db..Name``, procedures by name (a list of result sets each)."""

    tables: dict[str, Table] = field(default_factory=dict)
    procedures: dict[str, list[tuple[tuple[str, ...], Rows]]] = field(default_factory=dict)
    up: bool = True
    statements: list[str] = field(default_factory=list)
    connects: int = 0
    generation: int = 0  # bumped by restart(): connections from before are dead

    def connect(self) -> FakeConnection:
        """What ``pyodbc.connect(cs, autocommit=True, timeout=…)`` does."""
        if not self.up:
            raise pyodbc.OperationalError(
                "08S01",
                "[FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or does not exist",
            )
        self.connects += 1
        return FakeConnection(self, self.generation)

    def restart(self) -> None:
        self.generation += 1

    def run(self, sql: str) -> list[tuple[tuple[str, ...], Rows]]:
        self.statements.append(sql)
        text = " ".join(sql.split())
        if text.split()[0] in self.procedures:
            return self.procedures[text.split()[0]]
        m = _SELECT.match(text)
        if m is None:
            raise pyodbc.ProgrammingError(
                "42000", f"[FreeTDS][SQL Server]Incorrect syntax near '{text[:30]}'. (156)"
            )
        table = self.tables.get(m["table"])
        if table is None:
            raise pyodbc.ProgrammingError("42S02", f"[FreeTDS][SQL Server]{m['table']} not found. (208)")
        names = [c.strip() for c in m["cols"].split(",")]
        cols = list(table.columns) if names == ["*"] else names
        for c in cols:
            if c not in table.columns:
                raise pyodbc.ProgrammingError(
                    "42S22", f"[FreeTDS][SQL Server]Invalid column name '{c}'. (207)"
                )
        rows = [r for r in table.rows if self._where(table, r, m["where"])]
        idx = [table.columns.index(c) for c in cols]
        return [(tuple(cols), [tuple(r[i] for i in idx) for r in rows])]

    def _where(self, table: Table, row: tuple[Any, ...], where: str | None) -> bool:
        if where is None:
            return True
        m = re.fullmatch(rf"(\w+)\s+in\s+\(\s*({_LITERAL}(?:\s*,\s*{_LITERAL})*)\s*\)", where, re.I)
        if m:
            values = {_literal(v) for v in re.findall(_LITERAL, m[2])}
            return row[table.columns.index(m[1])] in values
        for part in re.split(r"\s+and\s+", where, flags=re.I):
            m = re.fullmatch(rf"(\w+)\s*=\s*({_LITERAL})", part.strip())
            if m is None:
                raise pyodbc.ProgrammingError(
                    "42000", f"[FreeTDS][SQL Server]Incorrect syntax near '{part}'. (156)"
                )
            if row[table.columns.index(m[1])] != _literal(m[2]):
                return False
        return True


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self._conn = conn
        self._sets: list[tuple[tuple[str, ...], Rows]] = []
        self._closed = False

    @property
    def description(self) -> tuple[tuple[Any, ...], ...] | None:
        if not self._sets:
            return None
        return tuple((c, str, None, 255, 255, 0, True) for c in self._sets[0][0])

    def execute(self, sql: str) -> FakeCursor:
        self._conn.check()
        self._sets = list(self._conn.server.run(sql))
        return self

    def fetchall(self) -> Rows:
        if not self._sets:
            raise pyodbc.ProgrammingError("No results.  Previous SQL was not a query.")
        return list(self._sets[0][1])

    def nextset(self) -> bool:
        if self._sets:
            self._sets.pop(0)
        return bool(self._sets)

    def close(self) -> None:
        self._closed = True


class FakeConnection:
    def __init__(self, server: FakeAse, generation: int) -> None:
        self.server = server
        self.generation = generation
        self.closed = False

    def check(self) -> None:
        if self.closed:
            raise pyodbc.ProgrammingError("Attempt to use a closed connection.")
        if not self.server.up or self.server.generation != self.generation:
            raise pyodbc.OperationalError("08S01", "[FreeTDS][SQL Server]Communication link failure")

    def cursor(self) -> FakeCursor:
        self.check()
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True
