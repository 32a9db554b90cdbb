"""The shipping state machine in the store: ops that advance it, and the reads over it.

One row per (package, file, target) in ``shipments``::

    queued ──claim──▶ uploading ──verified──▶ verified   (final; a trigger keeps it so)
                          │    ▲
                          ▼    │ claim (at next_attempt_at, or at once with --now)
                        failed ┘

A row left ``uploading`` by a killed shipper is claimed again on restart: the target
code then looks at what the target holds (the final name, the temporary name and its
size) and goes on from there. Each op is a :class:`~monitor.store_types.CustomOp`,
committed in the batch's transaction; the transitions are guarded in SQL (``WHERE
state = …``), so an op applied twice, or late, changes nothing it should not.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from monitor.ship_package import Package
from monitor.store_reader import StoreReader

__all__ = [
    "CONTRACT_STATE_KEY",
    "Claim",
    "EnqueuePackage",
    "Job",
    "MarkDone",
    "MarkFailed",
    "MarkVerified",
    "Release",
    "Requeue",
    "Row",
    "TargetSeen",
    "due_jobs",
    "next_due",
    "package_exists",
    "packages_due_for_release",
    "packages_shipped",
    "rows",
    "unshipped_packages",
]

State = Literal["queued", "uploading", "verified", "failed"]
#: The ``state`` key holding the vendor contract's end (POSIX seconds), for the metrics.
CONTRACT_STATE_KEY = "ship.vendor_contract_end"
_JOB_COLUMNS = "s.package_id, s.file, s.target, s.kind, s.size, s.sha256, s.state, s.attempts, p.path"


@dataclass(frozen=True, slots=True)
class Job:
    """One file to put on one target. ``path`` is the package folder; ``attempts`` counts
    the claims so far (this one not included)."""

    package_id: str
    file: str
    target: str
    kind: Literal["metadata", "dump"]
    size: int
    sha256: str
    state: State
    attempts: int
    path: str


@dataclass(frozen=True, slots=True)
class Row:
    """A ``shipments`` row as ``asewatch ship`` shows it (times POSIX seconds)."""

    package_id: str
    file: str
    target: str
    kind: str
    size: int
    state: State
    held: bool
    attempts: int
    last_error: str | None
    queued_at: float
    started_at: float | None
    verified_at: float | None
    next_attempt_at: float | None


# --------------------------------------------------------------------------- ops


@dataclass(frozen=True, slots=True)
class EnqueuePackage:
    """Record ``package`` and queue each of its files for each of ``targets``. Dumps are
    ``held`` (metadata-first) until released; ``release_at`` (POSIX s, or None) releases
    them by itself. Idempotent: known packages and rows are left as they are, so a new
    target gets rows for the packages already known."""

    package: Package
    targets: tuple[str, ...]
    hold_dumps: bool
    release_at: float | None

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        p = self.package
        conn.execute(
            "INSERT OR IGNORE INTO ship_packages (package_id, path, found_at, release_at, released_at,"
            " released_by) VALUES (?, ?, ?, ?, ?, ?)",
            (p.package_id, str(p.path), now, self.release_at, None if self.hold_dumps else now,
             None if self.hold_dumps else "not held"),
        )  # fmt: skip
        released = conn.execute(
            "SELECT released_at IS NOT NULL FROM ship_packages WHERE package_id = ?", (p.package_id,)
        ).fetchone()[0]
        conn.executemany(
            "INSERT OR IGNORE INTO shipments (package_id, file, target, kind, size, sha256, state, held,"
            " queued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            [
                (p.package_id, f.name, t, f.kind, f.size, f.sha256,
                 int(f.kind == "dump" and not released), now, now)
                for t in self.targets
                for f in p.files
            ],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claim:
    """Start an attempt: ``queued``/``failed``/``uploading`` (a killed run's) -> ``uploading``."""

    package_id: str
    file: str
    target: str

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "UPDATE shipments SET state = 'uploading', attempts = attempts + 1, started_at = ?,"
            " updated_at = ?, next_attempt_at = NULL WHERE package_id = ? AND file = ? AND target = ?"
            " AND state <> 'verified'",
            (now, now, self.package_id, self.file, self.target),
        )


@dataclass(frozen=True, slots=True)
class MarkVerified:
    """The target holds the file with the right size and checksum: ``uploading`` -> ``verified``."""

    package_id: str
    file: str
    target: str

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        cur = conn.execute(
            "UPDATE shipments SET state = 'verified', verified_at = ?, updated_at = ?, last_error = NULL"
            " WHERE package_id = ? AND file = ? AND target = ? AND state = 'uploading'",
            (now, now, self.package_id, self.file, self.target),
        )
        if cur.rowcount:
            _count(conn, self.target, "verified")


@dataclass(frozen=True, slots=True)
class MarkFailed:
    """An attempt failed: ``uploading`` -> ``failed``, retried at ``next_attempt_at`` (POSIX s;
    None: given up until someone runs ``asewatch ship --now``)."""

    package_id: str
    file: str
    target: str
    error: str
    next_attempt_at: float | None

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        cur = conn.execute(
            "UPDATE shipments SET state = 'failed', last_error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE package_id = ? AND file = ? AND target = ? AND state = 'uploading'",
            (self.error[:1000], self.next_attempt_at, now, self.package_id, self.file, self.target),
        )
        if cur.rowcount:
            _count(conn, self.target, "failed")


@dataclass(frozen=True, slots=True)
class Requeue:
    """A stop in the middle of an upload (not a failure): ``uploading`` -> ``queued``."""

    package_id: str
    file: str
    target: str

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "UPDATE shipments SET state = 'queued', updated_at = ? WHERE package_id = ? AND file = ?"
            " AND target = ? AND state = 'uploading'",
            (now, self.package_id, self.file, self.target),
        )


@dataclass(frozen=True, slots=True)
class Release:
    """Let the held dumps of ``package_id`` go (``by``: who or what released them)."""

    package_id: str
    by: str

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "UPDATE ship_packages SET released_at = ?, released_by = ? WHERE package_id = ?"
            " AND released_at IS NULL",
            (now, self.by, self.package_id),
        )
        conn.execute(
            "UPDATE shipments SET held = 0, updated_at = ? WHERE package_id = ? AND held = 1",
            (now, self.package_id),
        )


@dataclass(frozen=True, slots=True)
class MarkDone:
    """Every file of ``package_id`` is verified on every target and the owners were told."""

    package_id: str

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "UPDATE ship_packages SET done_at = ? WHERE package_id = ? AND done_at IS NULL",
            (now, self.package_id),
        )


@dataclass(frozen=True, slots=True)
class TargetSeen:
    """The last word from ``target``: reachable (``up``) or not, and why not."""

    target: str
    up: bool
    error: str | None = None

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "INSERT INTO ship_targets (target, up, checked_at, last_ok, last_error) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (target) DO UPDATE SET up = excluded.up, checked_at = excluded.checked_at,"
            " last_ok = COALESCE(excluded.last_ok, ship_targets.last_ok), last_error = excluded.last_error",
            (self.target, int(self.up), now, now if self.up else None, (self.error or "")[:1000] or None),
        )


def _count(conn: sqlite3.Connection, target: str, result: str) -> None:
    conn.execute(
        "INSERT INTO ship_counters (target, result, n) VALUES (?, ?, 1)"
        " ON CONFLICT (target, result) DO UPDATE SET n = n + 1",
        (target, result),
    )


# --------------------------------------------------------------------------- reads


def due_jobs(
    r: StoreReader,
    target: str,
    now: float,
    *,
    dumps: bool,
    metadata: bool = True,
    force: bool = False,
    limit: int = 50,
) -> list[Job]:
    """Jobs ``target`` should do now, metadata first, oldest first: queued rows, rows a killed
    run left ``uploading``, and failed rows whose retry time has come (with ``force``:
    every failed row). Held rows never; dumps only with ``dumps``, metadata only with
    ``metadata``."""
    kinds = [k for k, on in (("metadata", metadata), ("dump", dumps)) if on]
    if not kinds:
        return []
    failed = "s.state = 'failed'" if force else "(s.state = 'failed' AND s.next_attempt_at <= ?)"
    sql = (
        f"SELECT {_JOB_COLUMNS} FROM shipments s JOIN ship_packages p USING (package_id)"  # noqa: S608 - fixed text
        f" WHERE s.target = ? AND s.held = 0 AND s.kind IN ({', '.join('?' * len(kinds))})"
        f" AND (s.state IN ('queued', 'uploading') OR {failed})"
        " ORDER BY s.kind = 'dump', s.queued_at, s.package_id, s.size, s.file LIMIT ?"
    )
    params: list[object] = [target, *kinds, *([] if force else [now]), limit]
    return [Job(*row) for row in r.query(sql, params)]


def next_due(r: StoreReader, target: str) -> float | None:
    """When the earliest failed, unheld row of ``target`` is retried (POSIX s), or None."""
    rows_ = r.query(
        "SELECT MIN(next_attempt_at) FROM shipments WHERE target = ? AND state = 'failed' AND held = 0",
        (target,),
    )
    return None if not rows_ or rows_[0][0] is None else float(rows_[0][0])


def packages_due_for_release(r: StoreReader, now: float) -> list[str]:
    """Packages whose release delay has passed but whose dumps are still held."""
    return [
        str(row[0])
        for row in r.query(
            "SELECT package_id FROM ship_packages WHERE released_at IS NULL AND release_at IS NOT NULL"
            " AND release_at <= ? ORDER BY package_id",
            (now,),
        )
    ]


def packages_shipped(r: StoreReader) -> list[tuple[str, str]]:
    """``(package_id, path)`` of packages whose every file is verified on every target but
    that are not marked done yet (the shipper tells the dumps' owners, then marks them)."""
    return [
        (str(a), str(b))
        for a, b in r.query(
            "SELECT p.package_id, p.path FROM ship_packages p WHERE p.done_at IS NULL"
            " AND EXISTS (SELECT 1 FROM shipments s WHERE s.package_id = p.package_id)"
            " AND NOT EXISTS (SELECT 1 FROM shipments s WHERE s.package_id = p.package_id"
            " AND s.state <> 'verified') ORDER BY p.package_id"
        )
    ]


def unshipped_packages(r: StoreReader) -> list[str]:
    """Packages with a file not yet verified on some target: the spool must keep them."""
    return [
        str(row[0])
        for row in r.query("SELECT DISTINCT package_id FROM shipments WHERE state <> 'verified' ORDER BY 1")
    ]


def package_exists(r: StoreReader, package_id: str) -> bool:
    """Whether the store knows ``package_id``."""
    return bool(r.query("SELECT 1 FROM ship_packages WHERE package_id = ?", (package_id,)))


def rows(r: StoreReader, *, package_id: str | None = None, target: str | None = None) -> list[Row]:
    """Every shipments row (of one package / target when given), by package, target, file."""
    sql = (
        "SELECT package_id, file, target, kind, size, state, held, attempts, last_error, queued_at,"
        " started_at, verified_at, next_attempt_at FROM shipments WHERE 1 = 1"
    )
    params: list[object] = []
    if package_id is not None:
        sql += " AND package_id = ?"
        params.append(package_id)
    if target is not None:
        sql += " AND target = ?"
        params.append(target)
    out = []
    for row in r.query(sql + " ORDER BY package_id, target, kind = 'dump', file", params):
        values = list(row)
        values[6] = bool(values[6])
        out.append(Row(*values))
    return out
