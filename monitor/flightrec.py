"""The flight recorder in the store: MDA samples in, a bounded raw ring and per-minute aggregates.

The sampler (:mod:`collectors.mda.sampler`) hands over frozen rows; :func:`ops_for` turns
one sample into a :class:`RecordSample` store op, which the one writer applies inside the
batch's transaction (with the sample's events, all or nothing). It writes:

- the raw ring (``activity_statements``, ``activity_sql``, ``activity_sessions``,
  ``activity_stack``): the last ``raw_minutes`` of statements, SQL shapes, sessions and
  call stacks, each table also capped at ``max_raw_rows`` rows;
- per-minute aggregates per procedure (``activity_minute``): executions, statements,
  CPU, logical reads, errors, elapsed time and distinct logins, kept ``aggregate_days``
  and capped at ``max_aggregate_rows``; frozen crash activity is kept as long;
- the sampler's status and counters (``mda_status``, ``mda_counters``) for metrics.

Dedupe: after a reconnect the pipe tables return their whole ring again. A statement is
identified by (server, spid, kpid, batch, context, statement, line, start time) and stored
once; a re-read row older than the raw ring (already pruned) is recognised by the
server's watermark (the newest end time ever recorded) and not counted twice.

Crash freezing lives in :mod:`monitor.flightrec_freeze`; a sample also completes the
frozen records whose settle time has passed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from collectors.mda.rows import MdaSample, StatementRow
from monitor.config_mda import MdaConfig
from monitor.flightrec_freeze import FreezeCrash, complete_due, freeze_ops

__all__ = ["FreezeCrash", "RecordSample", "freeze_ops", "ops_for"]

LOGIN_MEMORY_S = 3600  # distinct logins per minute are counted over statements arriving within this
RAW_TABLES = (
    ("activity_statements", "end_time"),
    ("activity_sql", "seen_at"),
    ("activity_sessions", "last_seen"),
    ("activity_stack", "sampled_at"),
)

_STATEMENT_COLUMNS = (
    "server, incarnation, spid, kpid, batch_id, context_id, statement_number, line, proc_nest, family, "
    "login, host, program, dbid, db, procedure_id, procedure, start_time, end_time, cpu_ms, wait_ms, "
    "logical_reads, physical_reads, rows_affected, error"
)
_INSERT_STATEMENT = (
    f"INSERT OR IGNORE INTO activity_statements ({_STATEMENT_COLUMNS}) "  # noqa: S608 - fixed columns
    f"VALUES ({', '.join('?' * 25)})"
)
_CONTEXT_SEEN = (
    "SELECT 1 FROM activity_statements WHERE server = ? AND spid = ? AND kpid = ? AND batch_id = ? "
    "AND context_id = ? LIMIT 1"
)
_UPSERT_SQL = """INSERT INTO activity_sql
    (server, incarnation, spid, kpid, batch_id, seen_at, source, text)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (server, spid, kpid, batch_id) DO UPDATE SET
        source = excluded.source, text = excluded.text
    WHERE (excluded.source = 'pipe' AND activity_sql.source <> 'pipe')
       OR (excluded.source = activity_sql.source AND length(excluded.text) > length(activity_sql.text))"""
_UPSERT_SESSION = """INSERT INTO activity_sessions
    (server, incarnation, spid, kpid, family, login, host, program, db, first_seen, last_seen)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (server, spid, kpid) DO UPDATE SET
        last_seen = excluded.last_seen, family = excluded.family, login = excluded.login,
        host = excluded.host, program = excluded.program, db = excluded.db"""
_INSERT_STACK = """INSERT INTO activity_stack
    (server, incarnation, sampled_at, spid, kpid, level, context_id, db, owner, name, object_type, line,
     statement_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_UPSERT_MINUTE = """INSERT INTO activity_minute
    (server, minute, db, procedure, executions, statements, cpu_ms, logical_reads, errors, elapsed_ms, logins)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
    ON CONFLICT (server, minute, db, procedure) DO UPDATE SET
        executions = executions + excluded.executions, statements = statements + excluded.statements,
        cpu_ms = cpu_ms + excluded.cpu_ms, logical_reads = logical_reads + excluded.logical_reads,
        errors = errors + excluded.errors, elapsed_ms = elapsed_ms + excluded.elapsed_ms"""
_COUNT_LOGINS = """UPDATE activity_minute SET logins = (
        SELECT count(*) FROM activity_minute_logins l WHERE l.server = ? AND l.minute = ? AND l.db = ?
        AND l.procedure = ?)
    WHERE server = ? AND minute = ? AND db = ? AND procedure = ?"""
_UPSERT_STATUS = """INSERT INTO mda_status
    (server, sampled_at, up, duration, error, connections, max_connections, start_date, incarnation,
     own_spid, last_success, watermark) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (server) DO UPDATE SET
        sampled_at = excluded.sampled_at, up = excluded.up, duration = excluded.duration,
        error = excluded.error, connections = excluded.connections,
        max_connections = coalesce(excluded.max_connections, max_connections),
        start_date = coalesce(excluded.start_date, start_date),
        incarnation = coalesce(excluded.incarnation, incarnation),
        own_spid = excluded.own_spid, last_success = coalesce(excluded.last_success, last_success),
        watermark = max(coalesce(watermark, 0), coalesce(excluded.watermark, 0))"""
_ADD_COUNTERS = """INSERT INTO mda_counters (server, table_name, rows_total, overflow_total)
    VALUES (?, ?, ?, ?) ON CONFLICT (server, table_name) DO UPDATE SET
        rows_total = rows_total + excluded.rows_total,
        overflow_total = overflow_total + excluded.overflow_total"""


@dataclass(frozen=True, slots=True)
class RecordSample:
    """Store one MDA sample of ``server`` and prune (a store CustomOp; see module doc).

    Retention: ``raw_seconds`` and ``max_raw_rows`` for the raw ring, ``aggregate_seconds``
    and ``max_aggregate_rows`` for the aggregates. Raises sqlite3.Error (the writer rolls
    the whole batch back) on a database failure.
    """

    server: str
    sample: MdaSample
    raw_seconds: float = 1800.0
    max_raw_rows: int = 500_000
    aggregate_seconds: float = 35 * 86400.0
    max_aggregate_rows: int = 5_000_000

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        s = self.sample
        inc = s.start_date.timestamp() if s.start_date is not None else None
        row = conn.execute("SELECT watermark FROM mda_status WHERE server = ?", (self.server,)).fetchone()
        watermark = float(row[0]) if row and row[0] is not None else 0.0
        newest = watermark
        if s.up:
            for r in s.reads:
                conn.execute(_ADD_COUNTERS, (self.server, r.table, r.rows, int(r.overflow)))
            self._sessions(conn, inc)
            newest = max(watermark, self._statements(conn, inc, now, watermark))
            self._texts(conn, inc)
            self._stack(conn, inc)
        conn.execute(
            _UPSERT_STATUS,
            (
                self.server, s.time, int(s.up), s.duration, s.error, s.connections, s.max_connections,
                s.start_date.isoformat() if s.start_date else None, inc, s.own_spid,
                s.time if s.up else None, newest,
            ),
        )  # fmt: skip
        self._prune(conn, now)
        complete_due(conn, self.server, now)

    # ------------------------------------------------------------------ raw ring

    def _sessions(self, conn: sqlite3.Connection, inc: float | None) -> None:
        t = self.sample.time
        conn.executemany(
            _UPSERT_SESSION,
            [
                (self.server, inc, x.spid, x.kpid, x.family, x.login, x.host, x.program, x.db, t, t)
                for x in self.sample.sessions
            ],
        )

    def _texts(self, conn: sqlite3.Connection, inc: float | None) -> None:
        conn.executemany(
            _UPSERT_SQL,
            [
                (self.server, inc, x.spid, x.kpid, x.batch_id, x.seen_at, x.source, x.text)
                for x in self.sample.texts
            ],
        )

    def _stack(self, conn: sqlite3.Connection, inc: float | None) -> None:
        t = self.sample.time
        conn.executemany(
            _INSERT_STACK,
            [
                (self.server, inc, t, f.spid, f.kpid, f.level, f.context_id, f.db, f.owner, f.name,
                 f.object_type, f.line, f.statement_number)
                for f in self.sample.stack
            ],
        )  # fmt: skip

    def _statements(self, conn: sqlite3.Connection, inc: float | None, now: float, watermark: float) -> float:
        """Insert the new statements and fold them into the aggregates; return the newest end time."""
        horizon = now - self.raw_seconds
        agg = _Aggregates()
        contexts: set[tuple[int, int, int, int]] = set()
        newest = 0.0
        for st in self.sample.statements:
            end = st.end if st.end is not None else st.start
            newest = max(newest, end)
            ctx = (st.spid, st.kpid, st.batch_id, st.context_id)
            first_of_context = ctx not in contexts
            contexts.add(ctx)
            if end < horizon:
                # Older than the ring: counted only if it is newer than anything recorded
                # (rows of an outage), never when it is a re-read of the ring.
                if end > watermark:
                    agg.add(st, end, execution=first_of_context or not st.procedure_id)
                continue
            if st.procedure_id and first_of_context:
                first_of_context = (
                    conn.execute(_CONTEXT_SEEN, (self.server, *ctx)).fetchone() is None
                )  # an execution whose earlier statements came in an earlier sample
            cur = conn.execute(_INSERT_STATEMENT, _statement_params(self.server, inc, st, end))
            if cur.rowcount == 1:
                agg.add(st, end, execution=first_of_context or not st.procedure_id)
        agg.write(conn, self.server)
        return newest

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        horizon = now - self.raw_seconds
        for table, column in RAW_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE server = ? AND {column} < ?", (self.server, horizon))  # noqa: S608
            _cap(conn, table, self.max_raw_rows)
        conn.execute("DELETE FROM activity_minute WHERE minute < ?", (now - self.aggregate_seconds,))
        _cap(conn, "activity_minute", self.max_aggregate_rows)
        conn.execute("DELETE FROM activity_minute_logins WHERE minute < ?", (now - LOGIN_MEMORY_S,))
        # Frozen crash activity is kept as long as the aggregates it is compared with.
        old = "(SELECT crash_key FROM crash_activity WHERE crash_time < ?)"
        for table in ("crash_activity_statements", "crash_activity_stack"):
            conn.execute(f"DELETE FROM {table} WHERE crash_key IN {old}", (now - self.aggregate_seconds,))  # noqa: S608
        conn.execute("DELETE FROM crash_activity WHERE crash_time < ?", (now - self.aggregate_seconds,))


def _cap(conn: sqlite3.Connection, table: str, limit: int) -> None:
    """Keep at most ``limit`` rows: ids only grow, so the newest ``limit`` ids stay."""
    conn.execute(f"DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - ?", (limit,))  # noqa: S608


def _statement_params(server: str, inc: float | None, st: StatementRow, end: float) -> tuple[object, ...]:
    return (
        server, inc, st.spid, st.kpid, st.batch_id, st.context_id, st.statement_number, st.line,
        st.proc_nest, st.family, st.login, st.host, st.program, st.dbid, st.db, st.procedure_id,
        st.procedure, st.start, end, st.cpu_ms, st.wait_ms, st.logical_reads, st.physical_reads,
        st.rows_affected, st.error,
    )  # fmt: skip


class _Aggregates:
    """Per (minute, db, procedure) sums of one sample's new statements, written in one go."""

    def __init__(self) -> None:
        self.sums: dict[tuple[int, str, str], list[int]] = {}
        self.logins: set[tuple[int, str, str, str]] = set()

    def add(self, st: StatementRow, end: float, *, execution: bool) -> None:
        minute = int(end // 60 * 60)
        key = (minute, st.db or "", st.procedure or "")
        v = self.sums.setdefault(key, [0, 0, 0, 0, 0, 0])
        v[0] += int(execution)
        v[1] += 1
        v[2] += st.cpu_ms or 0
        v[3] += st.logical_reads or 0
        v[4] += 1 if st.error else 0
        v[5] += max(0, round((end - st.start) * 1000))
        if st.login:
            self.logins.add((*key, st.login))

    def write(self, conn: sqlite3.Connection, server: str) -> None:
        conn.executemany(_UPSERT_MINUTE, [(server, *k, *v) for k, v in self.sums.items()])
        conn.executemany(
            "INSERT OR IGNORE INTO activity_minute_logins (server, minute, db, procedure, login) "
            "VALUES (?, ?, ?, ?, ?)",
            [(server, *k) for k in self.logins],
        )
        conn.executemany(_COUNT_LOGINS, [(server, *k, server, *k) for k in self.sums])


def ops_for(server: str, sample: MdaSample, mda: MdaConfig) -> list[RecordSample]:
    """The store ops for one sample of ``server`` (retention from ``mda``)."""
    return [
        RecordSample(
            server,
            sample,
            raw_seconds=mda.raw_minutes * 60.0,
            max_raw_rows=mda.max_raw_rows,
            aggregate_seconds=mda.aggregate_days * 86400.0,
            max_aggregate_rows=mda.max_aggregate_rows,
        )
    ]
