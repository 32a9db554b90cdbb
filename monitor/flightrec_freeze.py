"""Freeze at crash: copy what the server was doing into the crash record before the ring moves on.

The agent calls :func:`freeze_ops` with the crash rows it upserts; each
:class:`FreezeCrash` op copies, inside the same transaction, from the raw ring into
``crash_activity*``:

- the crashing spid's last statements (role ``crashing``) and, for a parallel worker
  (``family`` != 0), the last statements of its parent session (role ``session``): the
  worker's family id is the parent's spid, and the parent is who ran the procedure;
- SQL that was running and never finished (role ``running``): a batch text seen for
  those spids with no statement row (``monSysStatement`` writes a row only when a
  statement ends, so the statement that crashed has only its text);
- every other spid's statements in the ``window`` seconds before the crash (role
  ``activity``), at most ``max_rows`` (the newest; ``truncated`` says when cut);
- the procedure call stacks of the crashing spid and its session from the newest
  ``monProcessProcedures`` snapshot;
- the session's login, host and program.

Only rows of the incarnation that crashed are copied (by ``monState.StartDate``), so a
quick restart cannot mix the next incarnation's spids in. A server can still answer for
a few seconds after it writes the crash block (while it writes its dump), so a record
is frozen at once and completed once more :data:`FREEZE_SETTLE_S` after the crash (by
the next sample's op); after that it never changes. Re-freezing is idempotent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.config_mda import MdaConfig
from monitor.crashes import local_epoch
from monitor.store_types import CrashRow

FREEZE_SETTLE_S = 15.0
LAST_STATEMENTS = 50
RUNNING_TEXTS = 10
NO_INCARNATION_SLACK_S = 2.0

_COPY_COLUMNS = (
    "crash_key, role, spid, kpid, batch_id, context_id, statement_number, line, family, login, host, "
    "program, db, procedure, start_time, end_time, cpu_ms, logical_reads, error, sql"
)
_SELECT_STATEMENTS = """INSERT INTO crash_activity_statements (COLUMNS)
    SELECT ?, ?, s.spid, s.kpid, s.batch_id, s.context_id, s.statement_number, s.line, s.family,
        s.login, s.host, s.program, s.db, s.procedure, s.start_time, s.end_time, s.cpu_ms,
        s.logical_reads, s.error,
        (SELECT q.text FROM activity_sql q WHERE q.server = s.server AND q.spid = s.spid
            AND q.kpid = s.kpid AND q.batch_id = s.batch_id)
    FROM activity_statements s
    WHERE s.server = ? AND s.incarnation IS ? AND s.end_time BETWEEN ? AND ? {where}
    ORDER BY s.end_time DESC LIMIT ?""".replace("COLUMNS", _COPY_COLUMNS)  # {where}: one of ours
_SELECT_RUNNING = f"""INSERT INTO crash_activity_statements ({_COPY_COLUMNS})
    SELECT ?, 'running', q.spid, q.kpid, q.batch_id, NULL, NULL, NULL, p.family, p.login, p.host,
        p.program, p.db, NULL, q.seen_at, NULL, NULL, NULL, NULL, q.text
    FROM activity_sql q LEFT JOIN activity_sessions p
        ON p.server = q.server AND p.spid = q.spid AND p.kpid = q.kpid
    WHERE q.server = ? AND q.incarnation IS ? AND q.spid IN (?, ?) AND q.seen_at BETWEEN ? AND ?
        AND NOT EXISTS (SELECT 1 FROM activity_statements s WHERE s.server = q.server
            AND s.spid = q.spid AND s.kpid = q.kpid AND s.batch_id = q.batch_id)
    ORDER BY q.seen_at DESC LIMIT ?"""  # noqa: S608 - fixed columns


@dataclass(frozen=True, slots=True)
class FreezeCrash:
    """Freeze the activity before the crash ``crash_key`` of ``server`` (a store CustomOp).

    ``crash_time`` is POSIX seconds; ``spid``/``kpid``/``family`` as the crash block gives
    them (None for an unclean stop without a block). Raises sqlite3.Error on failure.
    """

    crash_key: str
    server: str
    crash_time: float
    spid: int | None
    kpid: int | None
    family: int | None
    window: float = 60.0
    max_rows: int = 20_000
    max_age: float = 1800.0

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        have = conn.execute(
            "SELECT spid, complete FROM crash_activity WHERE crash_key = ?", (self.crash_key,)
        ).fetchone()
        if have is not None and have[1] and (have[0] is not None or self.spid is None):
            return  # frozen for good; replaying the crash later must not overwrite it
        if have is None and now - self.crash_time > self.max_age:
            return  # older than the raw ring (an agent replaying old crashes): nothing left to copy
        if (
            have is None
            and conn.execute("SELECT 1 FROM mda_status WHERE server = ?", (self.server,)).fetchone() is None
        ):
            return  # this server was never sampled: nothing to freeze
        freeze(conn, self, now)


def freeze(conn: sqlite3.Connection, f: FreezeCrash, now: float) -> None:
    """(Re)write the frozen record of ``f`` from the raw ring (see module doc)."""
    for table in ("crash_activity_statements", "crash_activity_stack", "crash_activity"):
        conn.execute(f"DELETE FROM {table} WHERE crash_key = ?", (f.crash_key,))  # noqa: S608
    _Freezer(conn, f).run(now)


class _Freezer:
    """One freeze: the crashed incarnation and the time bounds, shared by the copy steps."""

    def __init__(self, conn: sqlite3.Connection, f: FreezeCrash) -> None:
        self.conn = conn
        self.f = f
        self.inc = _incarnation(conn, f.server, f.crash_time)
        self.lo = f.crash_time - f.window
        self.hi = f.crash_time + (FREEZE_SETTLE_S if self.inc is not None else NO_INCARNATION_SLACK_S)

    def run(self, now: float) -> None:
        f = self.f
        session = _session(self.conn, f, self.inc, self.hi)
        s_spid, s_kpid = session[0], session[1]
        same_spid = "AND s.spid = ? AND s.kpid = coalesce(?, s.kpid)"
        n = 0
        if f.spid is not None:
            n += self.copy("crashing", 0.0, same_spid, (f.spid, f.kpid), LAST_STATEMENTS)
        if s_spid is not None and s_spid != f.spid:
            n += self.copy("session", 0.0, same_spid, (s_spid, s_kpid), LAST_STATEMENTS)
        if f.spid is not None or s_spid is not None:
            params = (f.crash_key, f.server, self.inc, f.spid, s_spid, self.lo, self.hi, RUNNING_TEXTS)
            n += max(0, self.conn.execute(_SELECT_RUNNING, params).rowcount)
        others_where = "AND s.spid NOT IN (coalesce(?, -1), coalesce(?, -1))"
        others = self.copy("activity", self.lo, others_where, (f.spid, s_spid), f.max_rows + 1)
        truncated = others > f.max_rows
        if truncated:  # one more than allowed was copied, newest first, to learn that the window was cut
            self.conn.execute(
                "DELETE FROM crash_activity_statements WHERE id = (SELECT max(id) "
                "FROM crash_activity_statements WHERE crash_key = ? AND role = 'activity')",
                (f.crash_key,),
            )
        n += min(others, f.max_rows)
        for spid, kpid in {(f.spid, f.kpid), (s_spid, s_kpid)}:
            if spid is not None:
                self.copy_stack(spid, kpid)
        self.conn.execute(
            "INSERT INTO crash_activity (crash_key, server, crash_time, spid, kpid, family, session_spid, "
            "session_kpid, login, host, program, incarnation, window_s, frozen_at, complete, statements, "
            "truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.crash_key, f.server, f.crash_time, f.spid, f.kpid, f.family, *session, self.inc, f.window,
             now, int(now >= f.crash_time + FREEZE_SETTLE_S), n, int(truncated)),
        )  # fmt: skip

    def copy(self, role: str, lo: float, where: str, params: tuple[object, ...], limit: int) -> int:
        """Copy statements ending in [lo, hi] of the crashed incarnation matching ``where``."""
        sql = _SELECT_STATEMENTS.format(where=where)
        args = (self.f.crash_key, role, self.f.server, self.inc, lo, self.hi, *params, limit)
        return max(0, self.conn.execute(sql, args).rowcount)

    def copy_stack(self, spid: int, kpid: int | None) -> None:
        """Copy the newest call stack of (spid, kpid) sampled in the window."""
        f = self.f
        row = self.conn.execute(
            "SELECT max(sampled_at) FROM activity_stack WHERE server = ? AND spid = ? "
            "AND kpid = coalesce(?, kpid) AND incarnation IS ? AND sampled_at BETWEEN ? AND ?",
            (f.server, spid, kpid, self.inc, self.lo, self.hi),
        ).fetchone()
        if row is None or row[0] is None:
            return
        self.conn.execute(
            "INSERT INTO crash_activity_stack (crash_key, sampled_at, spid, kpid, level, db, owner, name, "
            "line, statement_number) SELECT ?, sampled_at, spid, kpid, level, db, owner, name, line, "
            "statement_number FROM activity_stack WHERE server = ? AND spid = ? AND kpid = coalesce(?, kpid) "
            "AND sampled_at = ? ORDER BY level",
            (f.crash_key, f.server, spid, kpid, row[0]),
        )


_INCARNATION_SQL = tuple(
    f"SELECT incarnation FROM {table} WHERE server = ? AND {first} <= ? "  # noqa: S608 - fixed names
    f"AND incarnation IS NOT NULL ORDER BY {last} DESC LIMIT 1"
    for table, first, last in (
        ("activity_sessions", "first_seen", "last_seen"),
        ("activity_statements", "end_time", "end_time"),
    )
)


def _incarnation(conn: sqlite3.Connection, server: str, t: float) -> float | None:
    """The server's StartDate (POSIX s) as last sampled before ``t``, or None if unknown."""
    for sql in _INCARNATION_SQL:
        row = conn.execute(sql, (server, t + 1.0)).fetchone()
        if row is not None:
            return float(row[0])
    return None


def _session(
    conn: sqlite3.Connection, f: FreezeCrash, inc: float | None, hi: float
) -> tuple[int | None, int | None, str | None, str | None, str | None]:
    """(spid, kpid, login, host, program) of the session behind the crash: the parent of a
    parallel worker (its family id), else the crashing spid itself."""
    spid = f.family if f.family else f.spid
    if spid is None:
        return None, None, None, None, None
    kpid = None if f.family else f.kpid
    row = conn.execute(
        "SELECT kpid, login, host, program FROM activity_sessions WHERE server = ? AND spid = ? "
        "AND kpid = coalesce(?, kpid) AND incarnation IS ? AND first_seen <= ? "
        "ORDER BY last_seen DESC LIMIT 1",
        (f.server, spid, kpid, inc, hi),
    ).fetchone()
    if row is None:  # the session came and went between samples: its statements may still say
        row = conn.execute(
            "SELECT kpid, login, host, program FROM activity_statements WHERE server = ? AND spid = ? "
            "AND kpid = coalesce(?, kpid) AND incarnation IS ? AND end_time <= ? AND login IS NOT NULL "
            "ORDER BY end_time DESC LIMIT 1",
            (f.server, spid, kpid, inc, hi),
        ).fetchone()
    if row is None:
        return spid, kpid, None, None, None
    return spid, int(row[0]), row[1], row[2], row[3]


def complete_due(conn: sqlite3.Connection, server: str, now: float) -> None:
    """Re-freeze, one last time, the records of ``server`` whose settle time has passed."""
    due = conn.execute(
        "SELECT crash_key, crash_time, spid, kpid, family, window_s FROM crash_activity "
        "WHERE server = ? AND complete = 0 AND crash_time <= ?",
        (server, now - FREEZE_SETTLE_S),
    ).fetchall()
    for key, t, spid, kpid, family, window in due:
        freeze(conn, FreezeCrash(key, server, t, spid, kpid, family, window), now)


def freeze_ops(rows: Iterable[CrashRow], mda: MdaConfig | None = None) -> list[FreezeCrash]:
    """The freeze ops for crash rows being upserted (apply them after the upserts, same batch).

    ``mda`` gives the window (``freeze_window`` seconds of every spid's activity) and the
    raw ring's age (older crashes are not frozen: their rows are gone). A row without a
    time is skipped.
    """
    mda = mda or MdaConfig()
    out = []
    for r in rows:
        t = local_epoch(r.time) if r.time is not None else r.exit_time
        if t is None:
            continue
        out.append(
            FreezeCrash(r.key, r.server, t, r.spid, r.kpid, r.family, mda.freeze_window,
                        max_age=mda.raw_minutes * 60.0)
        )  # fmt: skip
    return out
