"""A faithful fake of pyodbc's connection/cursor API over a tiny in-memory ASE (unit tests only).

It accepts the SQL subset of helper-notes/sql-contract.md (``select @@x``, projections of
known tables with ``where col = lit [and ...]`` or ``where col in (...)``, ``object_name``)
and answers like pyodbc + FreeTDS do: rows as tuples, ``description``, errors as real
``pyodbc`` exception classes with FreeTDS' SQLSTATEs and messages. Pipe tables keep a read
position per connection and a ring that overwrites its oldest rows, as in ASE.

Failure injection: ``down`` (connects fail, 08S01), ``restart()`` (new StartDate, empty
pipes, every open connection broken), ``drop_next`` (the next statement fails like a
closed socket: plain pyodbc.Error 01000/20017, then 08S01), ``hang`` (every statement
times out: HYT00 after the connection's timeout, without really waiting).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyodbc

COLUMNS: dict[str, tuple[str, ...]] = {
    "monSysStatement": (
        "SPID", "InstanceID", "KPID", "DBID", "ProcedureID", "PlanID", "BatchID", "ContextID", "LineNumber",
        "CpuTime", "WaitTime", "MemUsageKB", "PhysicalReads", "LogicalReads", "PagesModified", "PacketsSent",
        "PacketsReceived", "NetworkPacketSize", "PlansAltered", "RowsAffected", "ErrorStatus", "HashKey",
        "SsqlId", "ProcNestLevel", "StatementNumber", "DBName", "StartTime", "EndTime",
    ),
    "monSysSQLText": ("SPID", "InstanceID", "KPID", "ServerUserID", "BatchID", "SequenceInBatch", "SQLText"),
    "monProcess": (
        "SPID", "KPID", "FamilyID", "NumChildren", "BatchID", "ContextID", "LineNumber", "SecondsConnected",
        "Command", "SecondsWaiting", "WaitEventID", "BlockingSPID", "Login", "DBName", "DBID", "Application",
        "HostName", "EngineNumber",
    ),
    "monProcessProcedures": (
        "SPID", "KPID", "DBName", "OwnerName", "ObjectName", "LineNumber", "StatementNumber", "ContextID",
        "ObjectType", "DBID", "ObjectID",
    ),
    "monProcessSQLText": ("SPID", "KPID", "BatchID", "LineNumber", "SequenceInLine", "SQLText"),
    "monState": ("LockWaitThreshold", "LockWaits", "DiagnosticDumps", "Connections", "StartDate", "DaysRunning"),
    "monTableColumns": ("TableName", "ColumnName", "TypeName", "Length"),
    "sysconfigures": ("config", "name", "parent", "value", "value2", "comment"),
    "syscurconfigs": ("config", "value", "value2", "defvalue"),
}  # fmt: skip
PIPES = ("monSysStatement", "monSysSQLText")

_SELECT = re.compile(
    r"select\s+(?P<cols>.+?)\s+from\s+(?P<db>\w+)\.\.(?P<table>\w+)(?:\s+where\s+(?P<where>.+))?$",
    re.I | re.S,
)
_AT = re.compile(r"select\s+@@(\w+)$", re.I)
_OBJ = re.compile(r"select\s+object_name\((-?\d+),\s*(-?\d+)\)$", re.I)
_LIT = re.compile(r"'((?:[^']|'')*)'|(-?\d+)")


def _lit(text: str) -> Any:
    m = _LIT.fullmatch(text.strip())
    if not m:
        raise ValueError(text)
    return m.group(1).replace("''", "'") if m.group(1) is not None else int(m.group(2))


def _syntax(near: str) -> pyodbc.ProgrammingError:
    return pyodbc.ProgrammingError(
        "42000", f"[42000] [FreeTDS][SQL Server]Incorrect syntax near '{near}'. (156) (SQLExecDirectW)"
    )


@dataclass
class FakeAse:
    """The server. Add rows with :meth:`statement`, :meth:`session`, etc.; connect with :meth:`connect`."""

    users: dict[str, str] = field(default_factory=lambda: {"asewatch": "sim-secret", "sa": "sim-secret"})
    pipe_size: int = 5000
    max_connections: int = 100
    start_date: datetime = field(default_factory=lambda: datetime(2024, 3, 14, 6, 0, 0))
    missing: dict[str, set[str]] = field(default_factory=dict)
    down: bool = False
    hang: bool = False
    drop_next: bool = False
    refuse: set[str] = field(default_factory=set)  # tables that answer with error 208
    names: dict[tuple[int, int], str] = field(default_factory=dict)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    process_text: list[dict[str, Any]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)  # every connection string seen (tests check for secrets)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.spids = itertools.count(30)
        self.generation = 0
        self.pipes: dict[str, deque[tuple[int, dict[str, Any]]]] = {
            t: deque(maxlen=self.pipe_size) for t in PIPES
        }

    # ------------------------------------------------------------------ content
    def statement(self, **row: Any) -> None:
        with self.lock:
            self.pipes["monSysStatement"].append((next(self.seq), row))

    def sql_text(self, **row: Any) -> None:
        with self.lock:
            self.pipes["monSysSQLText"].append((next(self.seq), row))

    def restart(self, after: timedelta = timedelta(minutes=1)) -> None:
        """The server went down and came back: new StartDate, empty pipes and snapshots."""
        with self.lock:
            self.start_date = self.start_date + after
            self.generation += 1
            for pipe in self.pipes.values():
                pipe.clear()
            self.sessions.clear()
            self.procedures.clear()
            self.process_text.clear()

    def config_rows(self) -> list[dict[str, Any]]:
        values = {
            "number of user connections": self.max_connections,
            "statement pipe max messages": self.pipe_size,
            "sql text pipe max messages": self.pipe_size,
            "statement pipe active": 1, "sql text pipe active": 1, "enable monitoring": 1,
        }  # fmt: skip
        return [{"config": 100 + i, "name": n, "parent": 19, "value": v, "value2": None, "comment": n, "defvalue": 0}
                for i, (n, v) in enumerate(values.items())]  # fmt: skip

    # ------------------------------------------------------------------ pyodbc API
    def connect(
        self, connection_string: str, *, autocommit: bool = False, timeout: int = 0
    ) -> FakeConnection:
        self.logins.append(connection_string)
        attrs = dict(
            part.split("=", 1)
            for part in re.findall(r"(\w+=\{(?:[^}]|\}\})*\}|\w+=[^;]*)", connection_string)
        )
        pwd = attrs.get("PWD", "")
        if pwd.startswith("{"):
            pwd = pwd[1:-1].replace("}}", "}")
        if self.down or self.hang:
            raise pyodbc.OperationalError(
                "08S01",
                "[08S01] [FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or does not exist (20009) (SQLDriverConnect)",
            )
        if self.users.get(attrs.get("UID", "")) != pwd:
            raise pyodbc.ProgrammingError(
                "42000", "[42000] [FreeTDS][SQL Server]Login failed. (4002) (SQLDriverConnect)"
            )
        assert autocommit, "the monitor must use autocommit"
        return FakeConnection(self, next(self.spids), login_timeout=timeout)

    def execute(self, conn: FakeConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.queries.append(sql)
        if conn.generation != self.generation or conn.broken:
            raise pyodbc.OperationalError(
                "08S01", "[08S01] [FreeTDS][SQL Server]Communication link failure (SQLExecDirectW)"
            )
        if self.drop_next:
            self.drop_next = False
            conn.broken = True
            raise pyodbc.Error(
                "01000",
                "[01000] [FreeTDS][SQL Server]Unexpected EOF from the server (20017) (SQLExecDirectW)",
            )
        if self.hang:
            conn.broken = True  # FreeTDS sends a cancel; a server that hangs never acknowledges it
            raise pyodbc.OperationalError(
                "HYT00", "[HYT00] [FreeTDS][SQL Server]Timeout expired (0) (SQLExecDirectW)"
            )
        text = " ".join(sql.split())
        if m := _AT.match(text):
            value = {"spid": conn.spid, "version": "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64",
                     "servername": "CLINIC1"}.get(m.group(1).lower())  # fmt: skip
            if value is None:
                raise _syntax(text[:20])
            return [""], [(value,)]
        if m := _OBJ.match(text):
            return [""], [(self.names.get((int(m.group(1)), int(m.group(2)))),)]
        m = _SELECT.match(text)
        if not m:
            raise _syntax(text[:20])
        table = m.group("table")
        if table not in COLUMNS or table in self.refuse:
            raise pyodbc.ProgrammingError(
                "42S02",
                f"[42S02] [FreeTDS][SQL Server]{table} not found. Specify owner.objectname or use sp_help to check whether the object exists (sp_help may produce lots of output). (208) (SQLExecDirectW)",
            )
        have = [c for c in COLUMNS[table] if c not in self.missing.get(table, set())]
        cols = have if m.group("cols").strip() == "*" else [c.strip() for c in m.group("cols").split(",")]
        for c in cols:
            if c not in have:
                raise pyodbc.ProgrammingError(
                    "42S22", f"[42S22] [FreeTDS][SQL Server]Invalid column name '{c}'. (207) (SQLExecDirectW)"
                )
        rows = self._rows(conn, table)
        if m.group("where"):
            rows = [r for r in rows if self._where(m.group("where"), r)]
        return cols, [tuple(r.get(c) for c in cols) for r in rows]

    def _rows(self, conn: FakeConnection, table: str) -> list[dict[str, Any]]:
        with self.lock:
            if table in PIPES:
                seen = conn.pipe_pos.get(table, 0)
                out = [(s, r) for s, r in self.pipes[table] if s > seen]
                if out:
                    conn.pipe_pos[table] = out[-1][0]
                return [r for _, r in out]
            if table == "monProcess":
                return [dict(r) for r in self.sessions] + [
                    {"SPID": conn.spid, "KPID": 1_000_000 + conn.spid, "FamilyID": 0, "Login": "asewatch",
                     "Application": "asewatch", "Command": "SELECT"}
                ]  # fmt: skip
            if table == "monProcessProcedures":
                return list(self.procedures)
            if table == "monProcessSQLText":
                return list(self.process_text)
            if table == "monState":
                return [{"Connections": len(self.sessions) + 1, "StartDate": self.start_date, "LockWaits": 0}]
            if table == "monTableColumns":
                return [{"TableName": t, "ColumnName": c, "TypeName": "int", "Length": 4}
                        for t, cs in COLUMNS.items() if t.startswith("mon") for c in cs
                        if c not in self.missing.get(t, set())]  # fmt: skip
            if table in ("sysconfigures", "syscurconfigs"):
                return self.config_rows()
        return []

    @staticmethod
    def _where(where: str, row: dict[str, Any]) -> bool:
        if m := re.fullmatch(r"(\w+)\s+in\s+\((.*)\)", where.strip(), re.I | re.S):
            values = [_lit(v) for v in re.findall(r"'(?:[^']|'')*'|-?\d+", m.group(2))]
            return row.get(m.group(1)) in values
        for cond in re.split(r"\s+and\s+", where.strip(), flags=re.I):
            col, _, lit = cond.partition("=")
            if row.get(col.strip()) != _lit(lit):
                return False
        return True


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.description: list[tuple[Any, ...]] | None = None
        self._rows: list[tuple[Any, ...]] = []
        self.cancelled = 0

    def execute(self, sql: str) -> FakeCursor:
        if self.conn.closed:
            raise pyodbc.ProgrammingError("Attempt to use a closed connection.")
        cols, self._rows = self.conn.server.execute(self.conn, sql)
        self.description = [(c, int, None, 4, 4, 0, True) for c in cols]
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def cancel(self) -> None:
        self.cancelled += 1

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, server: FakeAse, spid: int, login_timeout: int) -> None:
        self.server = server
        self.spid = spid
        self.login_timeout = login_timeout
        self.timeout = 0
        self.generation = server.generation
        self.broken = False
        self.closed = False
        self.pipe_pos: dict[str, int] = {}

    def cursor(self) -> FakeCursor:
        if self.closed:
            raise pyodbc.ProgrammingError("Attempt to use a closed connection.")
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True
