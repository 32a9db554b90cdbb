"""Reading the flight recorder: recent activity, a crash's frozen activity, the sampler's status.

All functions take a :class:`~monitor.store_reader.StoreReader` (one snapshot) and return
frozen rows. SQL text is the redacted shape the sampler stored. Times are POSIX seconds.
Raises StoreError (from the reader) when SQLite fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.store_reader import StoreReader


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One statement (``role`` None in the live ring; in a frozen record: ``crashing``,
    ``session``, ``running`` — text seen with no finished statement — or ``activity``)."""

    server: str
    role: str | None
    spid: int
    kpid: int
    family: int | None
    login: str | None
    host: str | None
    program: str | None
    db: str | None
    procedure: str | None
    line: int | None
    statement_number: int | None
    batch_id: int
    start: float | None
    end: float | None
    cpu_ms: int | None
    logical_reads: int | None
    error: int | None
    sql: str | None


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One level (0 = outermost) of a spid's procedure call stack at ``sampled_at``."""

    spid: int
    kpid: int
    level: int
    db: str | None
    owner: str | None
    name: str | None
    line: int | None
    statement_number: int | None
    sampled_at: float


@dataclass(frozen=True, slots=True)
class FrozenActivity:
    """What a crash's record holds of the activity before it (see monitor/flightrec_freeze.py).

    ``login``/``host``/``program`` are of the session behind the crash (the parent session
    of a parallel worker: ``session_spid`` = ``family``). ``complete`` is False until the
    settle time after the crash has passed.
    """

    crash_key: str
    server: str
    crash_time: float
    spid: int | None
    kpid: int | None
    family: int | None
    session_spid: int | None
    session_kpid: int | None
    login: str | None
    host: str | None
    program: str | None
    window: float
    frozen_at: float
    complete: bool
    truncated: bool
    statements: tuple[ActivityRow, ...]
    stack: tuple[StackFrame, ...]

    def procedures(self) -> tuple[str, ...]:
        """Procedure names the crashing spid and its session were in: stack frames first,
        then their statements, then procedures named by their running SQL (``exec p``)."""
        names: list[str] = [f.name for f in self.stack if f.name]
        mine = [s for s in self.statements if s.role in ("crashing", "session", "running")]
        names += [s.procedure for s in mine if s.procedure]
        for s in mine:
            words = (s.sql or "").split()
            if len(words) >= 2 and words[0].lower() in ("exec", "execute"):
                names.append(words[1].split(".")[-1])
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class MdaStatus:
    """The sampler's newest state for a server (one row per server)."""

    server: str
    sampled_at: float
    up: bool
    duration: float | None
    error: str | None
    connections: int | None
    max_connections: int | None
    start_date: str | None
    last_success: float | None


@dataclass(frozen=True, slots=True)
class MdaCounter:
    """Rows read from one MDA table of a server, and reads that probably overflowed its pipe."""

    server: str
    table: str
    rows_total: int
    overflow_total: int


_LIVE = """SELECT s.server, NULL, s.spid, s.kpid, s.family, s.login, s.host, s.program, s.db, s.procedure,
        s.line, s.statement_number, s.batch_id, s.start_time, s.end_time, s.cpu_ms, s.logical_reads, s.error,
        q.text
    FROM activity_statements s LEFT JOIN activity_sql q ON q.server = s.server AND q.spid = s.spid
        AND q.kpid = s.kpid AND q.batch_id = s.batch_id
    WHERE (? IS NULL OR s.server = ?) AND (? IS NULL OR s.spid = ?) AND s.end_time >= ? AND s.end_time <= ?
    ORDER BY s.end_time DESC, s.id DESC LIMIT ?"""
_FROZEN_STATEMENTS = """SELECT ?, role, spid, kpid, family, login, host, program, db, procedure, line,
        statement_number, batch_id, start_time, end_time, cpu_ms, logical_reads, error, sql
    FROM crash_activity_statements WHERE crash_key = ? AND (? IS NULL OR spid = ?)
    ORDER BY coalesce(end_time, start_time), id"""
_HEADER = """SELECT crash_key, server, crash_time, spid, kpid, family, session_spid, session_kpid, login,
        host, program, window_s, frozen_at, complete, truncated FROM crash_activity WHERE crash_key = ?"""


def recent_activity(
    r: StoreReader,
    *,
    server: str | None = None,
    spid: int | None = None,
    since: float = 0.0,
    until: float = float("inf"),
    limit: int = 200,
) -> list[ActivityRow]:
    """The newest ``limit`` statements of the live ring (optionally of one server/spid, ending
    within [since, until]), oldest first, each with its SQL shape."""
    rows = r.query(_LIVE, (server, server, spid, spid, since, min(until, 1e18), limit))
    return [ActivityRow(*row) for row in reversed(rows)]


def frozen_activity(r: StoreReader, crash_key: str, *, spid: int | None = None) -> FrozenActivity | None:
    """The frozen activity of crash ``crash_key`` (optionally only the statements of ``spid``),
    or None when nothing was frozen for it (no MDA sampling of that server)."""
    head = r.query(_HEADER, (crash_key,))
    if not head:
        return None
    h = head[0]
    statements = tuple(
        ActivityRow(*row) for row in r.query(_FROZEN_STATEMENTS, (h[1], crash_key, spid, spid))
    )
    stack = tuple(
        StackFrame(*row)
        for row in r.query(
            "SELECT spid, kpid, level, db, owner, name, line, statement_number, sampled_at "
            "FROM crash_activity_stack WHERE crash_key = ? ORDER BY spid, level",
            (crash_key,),
        )
    )
    return FrozenActivity(
        crash_key=h[0], server=h[1], crash_time=h[2], spid=h[3], kpid=h[4], family=h[5], session_spid=h[6],
        session_kpid=h[7], login=h[8], host=h[9], program=h[10], window=h[11], frozen_at=h[12],
        complete=bool(h[13]), truncated=bool(h[14]), statements=statements, stack=stack,
    )  # fmt: skip


def mda_status(r: StoreReader) -> list[MdaStatus]:
    """The sampler's newest state of every sampled server."""
    rows = r.query(
        "SELECT server, sampled_at, up, duration, error, connections, max_connections, start_date, "
        "last_success FROM mda_status ORDER BY server"
    )
    return [MdaStatus(s, t, bool(up), d, e, c, m, sd, ls) for s, t, up, d, e, c, m, sd, ls in rows]


def mda_counters(r: StoreReader) -> list[MdaCounter]:
    """Cumulative rows read and probable overflows per server and MDA table."""
    rows = r.query(
        "SELECT server, table_name, rows_total, overflow_total FROM mda_counters ORDER BY server, table_name"
    )
    return [MdaCounter(*row) for row in rows]


def last_start_date(r: StoreReader, server: str) -> datetime | None:
    """The ``monState.StartDate`` (server local time) last sampled for ``server``, or None:
    hand it to the sampler so a restart during agent downtime is still reported."""
    rows = r.query("SELECT start_date FROM mda_status WHERE server = ?", (server,))
    return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None
