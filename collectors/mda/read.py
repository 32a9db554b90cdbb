"""One sample over an open monitoring connection: run the queries, turn rows into frozen rows.

A :class:`SampleReader` belongs to one connection (the pipe tables' read position is per
connection). :meth:`SampleReader.prepare` runs once after login: the connection's own
spid, the columns this server has, the pipe sizes. :meth:`SampleReader.read` then reads
the pipe tables whole first (the ring keeps moving), then the snapshots, then converts:
statements get their session (login, host, program, family) and procedure name, SQL text
is joined from its pieces and redacted, stacks are ordered.

Every call goes through the connection's query timeout. A lost connection raises
:class:`~collectors.mda.connect.OdbcError` (``lost``); a table that fails on a live
connection is left out of the sample and named in ``problems``.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from collectors.mda import queries
from collectors.mda.connect import Connection, Cursor, OdbcError, translate
from collectors.mda.rows import MdaSample, SessionRow, StatementRow, TableRead
from collectors.mda.texts import Row, TextJoiner, as_int, as_str, picker, stack

OVERFLOW_FRACTION = 0.95  # a read this full probably lost rows (DbxTune warns the same way)
CONFIG_REFRESH_S = 60.0
SESSION_CACHE = 20_000  # (spid, kpid) -> session, so late statements still find their login
NAME_CACHE = 20_000  # (ProcedureID, DBID) -> object_name

_UNKNOWN = object()  # not in the name cache yet
_STATEMENT_COLUMNS = (
    "SPID", "KPID", "BatchID", "ContextID", "StatementNumber", "LineNumber", "ProcNestLevel", "DBID",
    "DBName", "ProcedureID", "StartTime", "EndTime", "CpuTime", "WaitTime", "LogicalReads", "PhysicalReads",
    "RowsAffected", "ErrorStatus",
)  # fmt: skip


class Lru(OrderedDict[Any, Any]):
    """A dict that forgets its least recently put keys beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: object, item: object) -> None:
        self[key] = item
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class SampleReader:
    """Reads samples over ``conn`` for collector ``collector`` (see module doc)."""

    def __init__(
        self,
        conn: Connection,
        collector: str,
        *,
        clock: Callable[[], float] = time.time,
        statement_pipe_size: int | None = None,
        sql_text_pipe_size: int | None = None,
        sessions: Lru | None = None,
        names: Lru | None = None,
    ) -> None:
        self._conn = conn
        self._collector = collector
        self._clock = clock
        self._cursor: Cursor | None = None
        self._override = {"monSysStatement": statement_pipe_size, "monSysSQLText": sql_text_pipe_size}
        self.own_spid: int | None = None
        self.version: str | None = None
        self.queries: dict[str, queries.TableQuery] = {}
        self.skipped: list[str] = []
        self.config: dict[str, int] = {}
        self._config_at = float("-inf")
        # Shared across reconnects by the sampler: a (spid, kpid) and an object id keep their
        # meaning while the server runs, and the ring re-read after a reconnect needs them.
        self._sessions: Lru = Lru(SESSION_CACHE) if sessions is None else sessions
        self._names: Lru = Lru(NAME_CACHE) if names is None else names
        self._texts = TextJoiner()

    # ------------------------------------------------------------------ plumbing

    def _fetch(self, sql: str, what: str) -> list[Row]:
        if self._cursor is None:
            try:
                self._cursor = self._conn.cursor()
            except Exception as exc:  # noqa: BLE001 - translated once, here
                raise translate(exc, self._collector, "opening a cursor") from None
        try:
            self._cursor.execute(sql)
            return list(self._cursor.fetchall())
        except Exception as exc:  # noqa: BLE001 - as above
            raise translate(exc, self._collector, what) from None

    def cancel(self) -> None:
        """Cancel the statement running now (from another thread, e.g. at agent stop)."""
        cursor = self._cursor
        cancel = getattr(cursor, "cancel", None)
        if cancel is not None:
            # Best effort: the query timeout bounds the call anyway.
            with contextlib.suppress(Exception):
                cancel()

    def pipe_size(self, table: str) -> int | None:
        """The configured ring size of a pipe table (override, else the run value), or None."""
        names = {
            "monSysStatement": "statement pipe max messages",
            "monSysSQLText": "sql text pipe max messages",
        }
        if table not in names:
            return None
        return self._override.get(table) or self.config.get(names[table]) or None

    # ------------------------------------------------------------------ per connection

    def prepare(self) -> None:
        """Learn the own spid, the version, the columns and the configuration.

        Raises OdbcError when the connection is lost; a server without
        ``monTableColumns`` access falls back to asking for every wanted column.
        """
        rows = self._fetch(queries.sql("own_spid"), "select @@spid")
        self.own_spid = as_int(rows[0][0]) if rows else None
        try:
            rows = self._fetch(queries.sql("version"), "select @@version")
            self.version = as_str(rows[0][0]) if rows else None
        except OdbcError as exc:
            if exc.lost:
                raise
        available: dict[str, set[str]] | None = {}
        try:
            for table, column in self._fetch(queries.table_columns_sql(), "reading monTableColumns"):
                available.setdefault(str(table).strip(), set()).add(str(column).strip())  # type: ignore[union-attr]
        except OdbcError as exc:
            if exc.lost:
                raise
            available = None
        self.queries, self.skipped = queries.plan(available or None)
        self._read_config(force=True)

    def _read_config(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._config_at < CONFIG_REFRESH_S:
            return
        self._config_at = now
        try:
            rows = self._fetch(queries.config_names_sql(), "reading sysconfigures")
        except OdbcError as exc:
            if exc.lost:
                raise
            return
        ids = {int(r[0]): str(r[1]).strip() for r in rows if as_int(r[0]) is not None}
        values = {ids[int(r[0])]: as_int(r[2]) for r in rows if int(r[0]) in ids}
        if ids:
            try:
                for config, run in self._fetch(queries.config_run_values_sql(ids), "reading syscurconfigs"):
                    if as_int(config) in ids and as_int(run) is not None:
                        values[ids[int(config)]] = as_int(run)
            except OdbcError as exc:
                if exc.lost:
                    raise
        self.config = {k: v for k, v in values.items() if v is not None}

    # ------------------------------------------------------------------ one sample

    def read(self, *, first: bool) -> MdaSample:
        """One sample. ``first``: the first read on this connection, which returns the
        whole ring by design and so is not counted as an overflow. Raises OdbcError
        (``lost``) when the connection is gone."""
        started, t0 = self._clock(), time.perf_counter()
        problems: list[str] = []
        raw: dict[str, list[Row]] = {}
        # Pipes first: the ring keeps moving; the snapshots can wait a few milliseconds.
        for table in ("monSysStatement", "monSysSQLText", "monState", "monProcess",
                      "monProcessProcedures", "monProcessSQLText"):  # fmt: skip
            q = self.queries.get(table)
            if q is None:
                continue
            try:
                raw[table] = self._fetch(q.text, f"reading {table}")
            except OdbcError as exc:
                if exc.lost:
                    raise
                problems.append(exc.reason)
        self._read_config()
        sessions = self._sessions_of(raw.get("monProcess", []))
        start_date, connections = self._state(raw.get("monState", []))
        if connections is None and "monProcess" in raw:
            connections = len(sessions)
        statements = self._statements(raw.get("monSysStatement", []))
        texts = self._texts.pipe(
            raw.get("monSysSQLText", []), self._pos("monSysSQLText"), self.own_spid, started
        )
        texts += self._texts.process(
            raw.get("monProcessSQLText", []), self._pos("monProcessSQLText"), self.own_spid, started
        )
        reads = tuple(
            TableRead(t, len(rows), self._overflowed(t, len(rows), first)) for t, rows in raw.items()
        )
        return MdaSample(
            time=started,
            duration=time.perf_counter() - t0,
            up=True,
            own_spid=self.own_spid,
            start_date=start_date,
            connections=connections,
            max_connections=self.config.get("number of user connections"),
            statements=tuple(statements),
            texts=tuple(texts),
            sessions=tuple(sessions),
            stack=tuple(
                stack(raw.get("monProcessProcedures", []), self._pos("monProcessProcedures"), self.own_spid)
            ),
            reads=reads,
            problems=tuple(problems),
        )

    def _overflowed(self, table: str, rows: int, first: bool) -> bool:
        if first or table not in ("monSysStatement", "monSysSQLText"):
            return False
        size = self.pipe_size(table)
        return size is not None and rows >= OVERFLOW_FRACTION * size

    def _pos(self, table: str) -> Mapping[str, int]:
        q = self.queries.get(table)
        return q.pos if q is not None else {}

    def _mine(self, spid: object) -> bool:
        return spid is None or spid == self.own_spid

    def _state(self, rows: list[Row]) -> tuple[datetime | None, int | None]:
        if not rows:
            return None, None
        pos = self.queries["monState"].pos
        start = queries.value(rows[0], pos, "StartDate")
        return (start if isinstance(start, datetime) else None), as_int(
            queries.value(rows[0], pos, "Connections")
        )

    def _sessions_of(self, rows: list[Row]) -> list[SessionRow]:
        if not rows:
            return []
        p = self.queries["monProcess"].pos
        out = []
        for r in rows:
            spid = as_int(r[p["SPID"]])
            kpid = as_int(r[p["KPID"]])
            if self._mine(spid) or spid is None or kpid is None:
                continue
            v = queries.value
            s = SessionRow(
                spid=spid,
                kpid=kpid,
                family=as_int(v(r, p, "FamilyID")) or 0,
                login=as_str(v(r, p, "Login")),
                host=as_str(v(r, p, "HostName")),
                program=as_str(v(r, p, "Application")),
                db=as_str(v(r, p, "DBName")),
                command=as_str(v(r, p, "Command")),
                batch_id=as_int(v(r, p, "BatchID")),
                line=as_int(v(r, p, "LineNumber")),
            )
            self._sessions.put((spid, kpid), s)
            out.append(s)
        return out

    def _procedure(self, proc_id: int | None, dbid: int | None) -> str | None:
        if not proc_id or dbid is None:
            return None
        key = (proc_id, dbid)
        if key in self._names:
            return self._names[key]  # type: ignore[no-any-return]
        try:
            rows = self._fetch(queries.object_name_sql(proc_id, dbid), "object_name")
            name = as_str(rows[0][0]) if rows else None
        except OdbcError as exc:
            if exc.lost:
                raise
            name = None
        self._names.put(key, name)
        return name

    def _statements(self, rows: list[Row]) -> list[StatementRow]:
        """Statement rows with their session and procedure name. The hot loop of a busy
        server (thousands of rows a sample): values are taken as the driver gives them
        (ints, datetimes) and rows are built positionally."""
        if not rows:
            return []
        pick = picker(self.queries["monSysStatement"].pos, _STATEMENT_COLUMNS)
        sessions, names, own = self._sessions, self._names, self.own_spid
        out: list[StatementRow] = []
        append = out.append
        for (spid, kpid, batch, ctx, stmt, line, nest, dbid, db, proc_id, start, end,
             cpu, wait, lreads, preads, nrows, err) in map(pick, rows):  # fmt: skip
            if spid == own or spid is None or kpid is None or batch is None or start is None:
                continue
            s = sessions.get((spid, kpid))
            name = names.get((proc_id, dbid), _UNKNOWN) if proc_id else None
            if name is _UNKNOWN:
                name = self._procedure(proc_id, dbid)
            start_s = start.timestamp()  # naive server-local time; the agent runs on the server's host
            append(
                StatementRow(
                    spid, kpid, batch, ctx or 0, stmt or 0, line or 0, nest,
                    s.family if s else None, s.login if s else None, s.host if s else None,
                    s.program if s else None, dbid, db.strip() or None if db else None, proc_id, name,
                    start_s, end.timestamp() if end is not None else None,
                    cpu, wait, lreads, preads, nrows, err,
                )
            )  # fmt: skip
        return out
