"""Reading the ``dumps`` table: rows for ``asewatch dumps``/``show``, the packager and metrics.

Every function takes a :class:`~monitor.store_reader.StoreReader` (one snapshot) and raises
StoreError when the store cannot be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil

from collectors.dumps_model import KnownDump
from monitor.store_reader import StoreReader

_COLUMNS = (
    "id, server, path, sha256, size, mtime, state, reason, expected_size, writer_pid, first_seen, "
    "finished_at, crash_id, flood_key, flood_day, suppressed, retention, evict_reason, evicted_at, "
    "forced, shipped_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM dumps"  # noqa: S608 - fixed column names
#: Retention values whose file is (still) on disk.
PRESENT = ("kept", "suppressed", "evicting")


@dataclass(frozen=True, slots=True)
class DumpRow:
    """One dump file as the store knows it.

    ``state``: writing | complete | truncated | unreadable (``reason`` says why for the last
    two). ``crash_id``: the crash it belongs to, None for a dump without a crash (``dbcc
    memdump``). ``suppressed``: flood control did not keep it among the first/last K of its
    signature that day. ``retention``: kept | suppressed (file still there, to be deleted) |
    evicting | evicted (asewatch deleted the file) | removed (someone else did).
    ``holders``: who uses it now (packaging, shipping); such a dump is never evicted.
    Times are POSIX seconds; ``flood_day`` is a local date.
    """

    id: int
    server: str
    path: str
    sha256: str | None
    size: int
    mtime: float
    state: str
    reason: str | None
    expected_size: int | None
    writer_pid: int | None
    first_seen: float
    finished_at: float | None
    crash_id: int | None
    flood_key: str | None
    flood_day: str | None
    suppressed: bool
    retention: str
    evict_reason: str | None
    evicted_at: float | None
    forced: bool
    shipped_at: float | None
    holders: tuple[str, ...] = ()

    @property
    def present(self) -> bool:
        """Whether the file is (believed) on disk."""
        return self.retention in PRESENT

    @property
    def time(self) -> float:
        """When the dump was written, as well as the agent knows: the earlier of first sight and mtime."""
        return min(self.first_seen, self.mtime)


def _row(values: tuple[Any, ...], holders: dict[int, list[str]]) -> DumpRow:
    v = list(values)
    v[15], v[19] = bool(v[15]), bool(v[19])
    v.append(tuple(holders.get(int(v[0]), ())))
    return DumpRow(*v)


def process_start(pid: int) -> float | None:
    """The create time of process ``pid`` (POSIX seconds), None when it is gone or a zombie."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(p.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def hold_is_live(pid: int, pid_start: float) -> bool:
    """Whether the process that took a hold still runs (same pid and start time)."""
    if pid == os.getpid():
        return True
    start = process_start(pid)
    return start is not None and abs(start - pid_start) < 0.05


def live_holds(reader: StoreReader) -> dict[int, list[str]]:
    """Holders by dump id, stale holds (their process gone) left out."""
    out: dict[int, list[str]] = {}
    for dump_id, holder, pid, start in reader.query("SELECT dump_id, holder, pid, pid_start FROM dump_holds"):
        if hold_is_live(int(pid), float(start)):
            out.setdefault(int(dump_id), []).append(str(holder))
    return out


def list_dumps(reader: StoreReader, server: str | None = None) -> list[DumpRow]:
    """Every dump (of ``server`` when given), oldest first."""
    holders = live_holds(reader)
    if server is None:
        rows = reader.query(_SELECT + " ORDER BY id")
    else:
        rows = reader.query(_SELECT + " WHERE server = ? ORDER BY id", (server,))
    return [_row(r, holders) for r in rows]


def dumps_of_crash(reader: StoreReader, crash_id: int) -> list[DumpRow]:
    """The dumps attached to crash ``crash_id`` (for ``asewatch show`` and the packager), oldest first."""
    holders = live_holds(reader)
    rows = reader.query(_SELECT + " WHERE crash_id = ? ORDER BY id", (crash_id,))
    return [_row(r, holders) for r in rows]


def get_dump(reader: StoreReader, id_or_sha: int | str) -> DumpRow | None:
    """The dump with this id, or the newest one with this SHA-256 (hex), or None."""
    holders = live_holds(reader)
    if isinstance(id_or_sha, int):
        rows = reader.query(_SELECT + " WHERE id = ?", (id_or_sha,))
    else:
        rows = reader.query(_SELECT + " WHERE sha256 = ? ORDER BY id DESC LIMIT 1", (id_or_sha.lower(),))
    return _row(rows[0], holders) if rows else None


@dataclass(frozen=True, slots=True)
class SuppressedCount:
    """How many dumps of ``server`` and ``signature`` flood control suppressed, ever."""

    server: str
    signature: str
    count: int


def suppressed_counts(reader: StoreReader) -> list[SuppressedCount]:
    """Suppressed dumps per server and signature (flood key)."""
    rows = reader.query(
        "SELECT server, flood_key, count(*) FROM dumps WHERE suppressed = 1 "
        "GROUP BY server, flood_key ORDER BY server, flood_key"
    )
    return [SuppressedCount(str(s), str(k or ""), int(n)) for s, k, n in rows]


@dataclass(frozen=True, slots=True)
class DumpResume:
    """What the dump watcher needs at start: finished dumps with files (``known``), paths it left
    ``writing`` (``writing``), and its ``dumps:hashing`` position."""

    known: tuple[KnownDump, ...]
    writing: tuple[str, ...]
    hashing: str | None


def resume_state(reader: StoreReader) -> DumpResume:
    """The watcher's resume state from one snapshot (see :class:`DumpResume`)."""
    present = ", ".join(f"'{p}'" for p in PRESENT)
    known = reader.query(
        "SELECT path, server, size, mtime, sha256 FROM dumps "  # noqa: S608 - constants only
        f"WHERE state <> 'writing' AND retention IN ({present}) ORDER BY id"
    )
    writing = reader.query(
        "SELECT d.path FROM dumps d WHERE d.state = 'writing' AND d.id = "
        "(SELECT max(id) FROM dumps e WHERE e.path = d.path) ORDER BY d.id"
    )
    return DumpResume(
        known=tuple(KnownDump(str(p), str(s), int(z), float(m), h) for p, s, z, m, h in known),
        writing=tuple(str(p) for (p,) in writing),
        hashing=reader.position("dumps:hashing") or None,
    )
