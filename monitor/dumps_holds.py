"""Holds and shipping marks on dumps: the API the packager and the shipper call.

- :func:`hold` (alias ``mark_busy``) before using a dump's file (packaging, shipping) and
  :func:`release` after: a held dump is never evicted. A hold names its process (pid and
  start time), so a packager killed without releasing leaves a stale hold that retention
  ignores (like libreport's PID lock).
- :func:`mark_shipped` / :func:`mark_shipped_sha256` once the vendor has the dump: from
  then on retention may evict its file.

Each call is one store transaction (``Store.append``), safe from any thread or process
next to the agent. All raise StoreError when the store cannot be written.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.dumps_read import process_start
from monitor.store import Batch, Store

__all__ = ["hold", "mark_busy", "mark_shipped", "mark_shipped_sha256", "release"]


@dataclass(frozen=True, slots=True)
class _Hold:
    dump_id: int
    holder: str
    pid: int
    pid_start: float

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        # Only a finished dump whose file is there (not evicting, evicted or removed) is held.
        conn.execute(
            "INSERT INTO dump_holds (dump_id, holder, pid, pid_start, since) "
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM dumps WHERE id = ? AND state <> 'writing' "
            "AND retention IN ('kept', 'suppressed')) ON CONFLICT (dump_id, holder) DO UPDATE SET "
            "pid = excluded.pid, pid_start = excluded.pid_start, since = excluded.since",
            (self.dump_id, self.holder, self.pid, self.pid_start, now, self.dump_id),
        )


@dataclass(frozen=True, slots=True)
class _Release:
    dump_id: int
    holder: str

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM dump_holds WHERE dump_id = ? AND holder = ?", (self.dump_id, self.holder))


@dataclass(frozen=True, slots=True)
class _Shipped:
    dump_ids: tuple[int, ...]
    sha256s: tuple[str, ...]
    at: float

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        sql = "UPDATE dumps SET shipped_at = coalesce(shipped_at, ?), updated_at = ? WHERE "
        for dump_id in self.dump_ids:
            conn.execute(sql + "id = ?", (self.at, now, dump_id))
        for sha in self.sha256s:
            conn.execute(sql + "sha256 = ?", (self.at, now, sha.lower()))


def hold(store: Store, dump_id: int, by: str) -> bool:
    """Hold dump ``dump_id`` for ``by`` (e.g. ``"package"``, ``"ship"``): retention never evicts
    it until :func:`release` (or until this process ends: a hold of a dead process is stale).

    Returns False when no such finished dump has its file (evicted, being evicted, removed,
    still being written, or unknown): do not use the file then. Idempotent.
    """
    me = os.getpid()
    store.append(Batch(ops=(_Hold(dump_id, by, me, process_start(me) or 0.0),)))
    with store.reader() as r:
        rows = r.query("SELECT 1 FROM dump_holds WHERE dump_id = ? AND holder = ?", (dump_id, by))
    return bool(rows)


mark_busy = hold


def release(store: Store, dump_id: int, by: str) -> None:
    """Drop ``by``'s hold on ``dump_id`` (idempotent)."""
    store.append(Batch(ops=(_Release(dump_id, by),)))


def mark_shipped(store: Store, dump_id: int, at: float | None = None) -> None:
    """Record that the vendor has dump ``dump_id`` (the first time counts; idempotent)."""
    store.append(Batch(ops=(_Shipped((dump_id,), (), time.time() if at is None else at),)))


def mark_shipped_sha256(store: Store, sha256s: Iterable[str], at: float | None = None) -> None:
    """Record that the vendor has every dump with one of these SHA-256s (hex), e.g. the
    ``dump_sha256s`` of a shipped package (idempotent: a repeated call changes nothing)."""
    shas = tuple(sha256s)
    if shas:
        store.append(Batch(ops=(_Shipped((), shas, time.time() if at is None else at),)))
