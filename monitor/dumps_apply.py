"""Store ops that keep the ``dumps`` table: dump events in, attachment to crashes, flood control.

Both are :class:`~monitor.store_types.CustomOp`: they run on the writer's connection inside
the batch's transaction and raise ``sqlite3.Error`` (the batch rolls back) on failure.

Idempotency: each row remembers the newest event applied to it (``last_seq``); an event whose
seq is not newer than every row of its path is a replay and changes nothing, so applying the
log again after a ``kill -9`` (from the ``dumps:applied_seq`` watermark) is safe.
"""

from __future__ import annotations

import bisect
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.crashes import local_epoch
from monitor.events_dumps import DumpEvicted, DumpRemoved, DumpSeen
from monitor.store_types import StoredEvent

WATERMARK = "dumps:applied_seq"
DUMP_KINDS = ("DumpSeen", "DumpRefused", "DumpRemoved", "DumpEvicted")

_INSERT = """INSERT INTO dumps (server, path, sha256, size, mtime, state, reason, expected_size, writer_pid,
    first_seen, finished_at, last_seq, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (path, sha256) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at"""
_FINISH = """UPDATE dumps SET server = ?, sha256 = ?, size = ?, mtime = ?, state = ?, reason = ?,
    expected_size = ?, writer_pid = coalesce(?, writer_pid), finished_at = ?, last_seq = ?, updated_at = ?
    WHERE id = ?"""


@dataclass(frozen=True, slots=True)
class ApplyDumpEvents:
    """Apply committed dump events (in seq order) to the ``dumps`` table and advance the watermark."""

    events: tuple[StoredEvent, ...]

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        top = 0
        for se in self.events:
            top = max(top, se.seq)
            e = se.event
            if not isinstance(e, DumpSeen | DumpRemoved | DumpEvicted):
                continue
            newest = conn.execute("SELECT max(last_seq) FROM dumps WHERE path = ?", (e.path,)).fetchone()[0]
            if newest is not None and newest >= se.seq:
                continue  # a replay
            if isinstance(e, DumpSeen):
                _seen(conn, se.seq, e, now)
            else:
                _gone(conn, se.seq, e, now)
        if top:
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                "value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (WATERMARK, str(top)),
            )


def _seen(conn: sqlite3.Connection, seq: int, e: DumpSeen, now: float) -> None:
    row = conn.execute(
        "SELECT id, state, mtime FROM dumps WHERE path = ? ORDER BY id DESC LIMIT 1", (e.path,)
    ).fetchone()
    unfinished = row is not None and row[1] == "writing"
    if e.state == "writing":
        if unfinished:
            conn.execute(
                "UPDATE dumps SET size = ?, mtime = ?, writer_pid = coalesce(?, writer_pid), last_seq = ?, "
                "updated_at = ? WHERE id = ?",
                (e.size, e.mtime, e.writer_pid, seq, now, row[0]),
            )
            return
        _insert(conn, seq, e, now, finished=False)
        return
    if e.sha256 is not None:
        same = conn.execute(
            "SELECT id FROM dumps WHERE path = ? AND sha256 = ?", (e.path, e.sha256)
        ).fetchone()
        if same is not None:
            # The same dump again (its file came back): present, newest fact recorded.
            conn.execute(
                "UPDATE dumps SET retention = CASE retention WHEN 'removed' THEN "
                "CASE suppressed WHEN 1 THEN 'suppressed' ELSE 'kept' END ELSE retention END, "
                "last_seq = ?, updated_at = ? WHERE id = ?",
                (seq, now, same[0]),
            )
            if unfinished:
                conn.execute("DELETE FROM dumps WHERE id = ?", (row[0],))
            return
    if unfinished:
        conn.execute(
            _FINISH,
            (e.server, e.sha256, e.size, e.mtime, e.state, e.reason, e.expected_size, e.writer_pid, e.time,
             seq, now, row[0]),
        )  # fmt: skip
        return
    _insert(conn, seq, e, now, finished=True)


def _insert(conn: sqlite3.Connection, seq: int, e: DumpSeen, now: float, *, finished: bool) -> None:
    conn.execute(
        _INSERT,
        (e.server, e.path, e.sha256, e.size, e.mtime, e.state, e.reason, e.expected_size, e.writer_pid,
         e.time, e.time if finished else None, seq, now),
    )  # fmt: skip


def _gone(conn: sqlite3.Connection, seq: int, e: DumpRemoved | DumpEvicted, now: float) -> None:
    if e.sha256 is not None:
        row = conn.execute(
            "SELECT id, retention FROM dumps WHERE path = ? AND sha256 = ?", (e.path, e.sha256)
        )
    else:
        row = conn.execute(
            "SELECT id, retention FROM dumps WHERE path = ? AND sha256 IS NULL ORDER BY id DESC LIMIT 1",
            (e.path,),
        )
    found = row.fetchone()
    if found is None:
        return
    dump_id, retention = found
    if isinstance(e, DumpEvicted):
        conn.execute(
            "UPDATE dumps SET retention = 'evicted', evict_reason = ?, evicted_at = ?, forced = ?, "
            "last_seq = ?, updated_at = ? WHERE id = ?",
            (e.reason, e.time, int(e.forced), seq, now, dump_id),
        )
        return
    # Deleted while asewatch was evicting it is an eviction; otherwise someone else removed it.
    if retention in ("kept", "suppressed", "evicting"):
        new = "evicted" if retention == "evicting" else "removed"
        conn.execute(
            "UPDATE dumps SET retention = ?, evicted_at = coalesce(evicted_at, ?), last_seq = ?, "
            "updated_at = ? WHERE id = ?",
            (new, e.time, seq, now, dump_id),
        )


# --------------------------------------------------------------------------- attach + flood


@dataclass(frozen=True, slots=True)
class _Crash:
    id: int
    server: str
    time: float


def _crash_epoch(text: str | None, exit_time: float | None) -> float | None:
    if text:
        try:
            return local_epoch(datetime.fromisoformat(text))
        except ValueError:
            pass
    return exit_time


def best_crash(
    crashes: Sequence[_Crash], server: str, t: float, before: float, after: float
) -> _Crash | None:
    """The crash a dump written at ``t`` (POSIX s) belongs to, or None. ``crashes`` are sorted
    by time.

    Candidates are the crashes of its server (of any server when the dump's is unknown) with
    ``crash - before <= t <= crash + after``. A dump is written after its crash, so the newest
    candidate at or before ``t`` wins (in a crash loop each dump goes to its own crash), else
    the earliest one after ``t``.
    """
    lo = bisect.bisect_left(crashes, t - after, key=lambda c: c.time)
    hi = bisect.bisect_right(crashes, t + before, key=lambda c: c.time)
    fits = [c for c in crashes[lo:hi] if not server or c.server == server]
    earlier = [c for c in fits if c.time <= t]
    if earlier:
        return max(earlier, key=lambda c: (c.time, c.id))
    return min(fits, key=lambda c: (c.time, c.id)) if fits else None


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Attach finished dumps to crashes (the window) and apply flood control (first/last K per
    server, signature and local day). Suppression is sticky: a suppressed dump stays suppressed."""

    attach_before: float = 60.0
    attach_after: float = 600.0
    keep_first: int = 3
    keep_last: int = 3

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        crashes: list[_Crash] = []
        signature: dict[int, str] = {}
        for i, s, text, ex, sig, kind in conn.execute(
            "SELECT id, server, time, exit_time, signature, kind FROM crashes"
        ):
            t = _crash_epoch(text, ex)
            if t is not None:
                crashes.append(_Crash(int(i), str(s), t))
                signature[int(i)] = str(sig or kind or "unknown")
        crashes.sort(key=lambda c: (c.time, c.id))
        # Attached dumps older than the window (and a day of slack) are settled; dumps without
        # a crash are few (dbcc memdump) and a late crash record may still claim them.
        settled = now - self.attach_before - self.attach_after - 86400
        rows = conn.execute(
            "SELECT id, server, min(first_seen, mtime), crash_id, flood_key FROM dumps "
            "WHERE state <> 'writing' AND (crash_id IS NULL OR min(first_seen, mtime) >= ?)",
            (settled,),
        ).fetchall()
        for dump_id, server, t, crash_id, flood_key in rows:
            c = best_crash(crashes, server, t, self.attach_before, self.attach_after)
            new_id = c.id if c else None
            key = signature.get(new_id) if new_id is not None else None
            if (new_id, key) != (crash_id, flood_key):
                day = time.strftime("%Y-%m-%d", time.localtime(t))
                conn.execute(
                    "UPDATE dumps SET crash_id = ?, flood_key = ?, flood_day = ?, updated_at = ? "
                    "WHERE id = ?",
                    (new_id, key, day, now, dump_id),
                )
        self._flood(conn, now)

    def _flood(self, conn: sqlite3.Connection, now: float) -> None:
        if self.keep_first == 0 and self.keep_last == 0:
            return  # flood control off: every dump keeps its file
        groups: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
        for dump_id, server, key, day, suppressed in conn.execute(
            "SELECT id, server, flood_key, flood_day, suppressed FROM dumps "
            "WHERE crash_id IS NOT NULL AND state <> 'writing' ORDER BY min(first_seen, mtime), id"
        ):
            groups.setdefault((server, key, day), []).append((int(dump_id), int(suppressed)))
        for members in groups.values():
            n = len(members)
            for i, (dump_id, suppressed) in enumerate(members):
                keep = i < self.keep_first or i >= n - self.keep_last
                if not keep and not suppressed:
                    conn.execute(
                        "UPDATE dumps SET suppressed = 1, retention = CASE retention WHEN 'kept' "
                        "THEN 'suppressed' ELSE retention END, updated_at = ? WHERE id = ?",
                        (now, dump_id),
                    )
