"""Which dump files belong to a crash, and keeping retention off them while they are packaged.

The dump records are owned by the dump work (issue 5, parts 1-3: ``monitor/dumps_read.py``
and the ``dumps`` table). This module is the one adapter to it, and degrades when it is
not there:

1. dumps passed in explicitly (``asewatch package --dump FILE``);
2. the dump records: the dumps attached to the crash, with their recorded SHA-256 and state
   (a dump retention already deleted is named in the notes, not packaged);
3. ``DumpSeen`` events in the store (the dump collector's facts) in the crash's window;
4. files in the server's configured ``dump_dirs`` in the crash's window.

Steps 3 and 4 run only when the records attach nothing to the crash (no records, or no
dump collector running); a file the records attach to another crash is never taken.

The window is from the crash until the next crash of the same server (a crashing server
writes its dump before it dies, so a later file belongs to a later crash), at most an
hour. The manifest says which way the dumps were found, and whether they were pinned.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import StoreError
from monitor.events_dumps import DumpSeen
from monitor.store import Store
from monitor.store_types import CrashRow

log = logging.getLogger(__name__)

WINDOW_S = 3600.0
EARLY_S = 5.0  # a dump file may be created a moment before the block's hundredth-second stamp
_SKIP_SUFFIXES = (".partial", ".tmp", ".part")
# Where the dump work's hold API may live: (module, hold function, release function).
_HOLD_APIS = (("monitor.dumps", "hold", "release"), ("monitor.dumps_holds", "hold", "release"))


@dataclass(frozen=True, slots=True)
class DumpRef:
    """A dump to package: ``state`` is complete, truncated, writing, unreadable or unknown;
    ``sha256`` is the one recorded when the dump was finished (None: not known);
    ``found_by``: argument, monitor.dumps, store events or dump_dirs."""

    path: Path
    state: str
    size: int | None
    sha256: str | None
    found_by: str
    dump_id: Any = None


def find_dumps(
    store: Store,
    crash: CrashRow,
    crash_epoch: float,
    dump_dirs: Sequence[Path],
    explicit: Sequence[Path | DumpRef] | None,
) -> tuple[list[DumpRef], list[str]]:
    """The dumps of ``crash`` and notes on how they were found (or why none were)."""
    notes: list[str] = []
    if explicit is not None:
        refs = [d if isinstance(d, DumpRef) else _stat_ref(Path(d), "argument") for d in explicit]
        return refs, ["dumps given explicitly"]
    taken: set[str] = set()
    try:
        refs, gone, taken = _from_records(store, crash)
    except _NoRecordsError as exc:
        notes.append(f"no dump records ({exc}): dumps matched by time instead")
    else:
        if refs or gone:
            return refs, ["dump records attached to the crash", *gone]
        notes.append("no dump record is attached to this crash: dumps matched by time instead")
    until = min(crash_epoch + WINDOW_S, _next_crash(store, crash, crash_epoch))
    refs = [r for r in _from_events(store, crash_epoch, until, dump_dirs) if str(r.path) not in taken]
    if refs:
        return refs, [*notes, "DumpSeen events in the crash's window"]
    refs = [r for r in _from_dirs(dump_dirs, crash_epoch, until) if str(r.path) not in taken]
    if refs:
        return refs, [*notes, "files in the configured dump_dirs in the crash's window"]
    where = ", ".join(map(str, dump_dirs)) or "no dump_dirs configured"
    return [], [*notes, f"no dump found for this crash ({where})"]


@contextmanager
def pinned(
    store: Store, dumps: Sequence[DumpRef], holder: str = "package"
) -> Iterator[tuple[list[DumpRef], list[str]]]:
    """Keep retention off ``dumps`` while the block runs. Yields the dumps that may be used and
    notes: a dump the dump records refuse to hold (evicted or removed meanwhile) is left out;
    dumps without a record cannot be held, and the notes say so.

    Uses the dump work's ``hold(store, dump_id, by) -> bool`` / ``release(store, dump_id, by)``
    (monitor/dumps.py) when it is there. Raises StoreError when a hold cannot be written.
    """
    api = _hold_api()
    unheld = [d for d in dumps if d.dump_id is None]
    notes = [f"{len(unheld)} dump(s) without a dump record: not held against retention"] if unheld else []
    if api is None:
        yield list(dumps), ["not held against retention: no dump hold API in this asewatch"] if dumps else []
        return
    hold, release = api
    held: list[Any] = []
    usable = list(unheld)
    try:
        for d in dumps:
            if d.dump_id is None:
                continue
            if hold(store, d.dump_id, holder) is False:
                notes.append(f"dump {d.path} is not packaged: it was evicted or removed meanwhile")
                continue
            held.append(d.dump_id)
            usable.append(d)
        if held:
            notes.append(f"{len(held)} dump(s) held against retention while packaged")
        yield usable, notes
    finally:
        for dump_id in held:
            try:
                release(store, dump_id, holder)
            except (StoreError, OSError):
                log.exception("releasing dump %s after packaging failed", dump_id)


class _NoRecordsError(Exception):
    """The store has no dump records to ask."""


def _from_records(store: Store, crash: CrashRow) -> tuple[list[DumpRef], list[str], set[str]]:
    """(dumps attached to ``crash`` on disk, notes on those gone, paths attached to other crashes)."""
    try:
        read = importlib.import_module("monitor.dumps_read")
    except ImportError:
        raise _NoRecordsError("monitor.dumps_read is not part of this asewatch") from None
    try:
        with store.reader() as r:
            rows = read.list_dumps(r, crash.server)
    except StoreError as exc:
        raise _NoRecordsError(str(exc)) from None
    refs: list[DumpRef] = []
    gone: list[str] = []
    others: set[str] = set()
    for row in rows:
        if row.crash_id is not None and row.crash_id != crash.id:
            others.add(str(row.path))
        elif row.crash_id is None or crash.id is None:
            continue
        elif not row.present:
            gone.append(
                f"dump {row.path} is not packaged: {row.retention} ({row.evict_reason or 'no reason'})"
            )
        else:
            refs.append(DumpRef(Path(row.path), str(row.state), row.size, row.sha256, "dump records", row.id))
    return refs, gone, others


def _hold_api() -> tuple[Any, Any] | None:
    for module, hold, release in _HOLD_APIS:
        try:
            m = importlib.import_module(module)
        except ImportError:
            continue
        h, r = getattr(m, hold, None), getattr(m, release, None)
        if callable(h) and callable(r):
            return h, r
    return None


def _next_crash(store: Store, crash: CrashRow, after: float) -> float:
    later = [
        c.exit_time if c.time is None else _epoch(c)
        for c in store.crashes(crash.server)
        if c.key != crash.key and (c.time is not None or c.exit_time is not None)
    ]
    return min((t for t in later if t is not None and t > after + 1.0), default=float("inf"))


def _epoch(c: CrashRow) -> float:
    from monitor.crashes import local_epoch  # noqa: PLC0415 - avoids a cycle via monitor.crashes

    assert c.time is not None
    return local_epoch(c.time)


def _inside(path: str, dirs: Sequence[Path]) -> bool:
    return not dirs or any(Path(path).resolve().is_relative_to(d.resolve()) for d in dirs)


def _from_events(store: Store, start: float, until: float, dirs: Sequence[Path]) -> list[DumpRef]:
    latest: dict[str, DumpSeen] = {}
    for se in store.events(kinds=[DumpSeen]):
        e = se.event
        if isinstance(e, DumpSeen) and start - EARLY_S <= e.mtime < until and _inside(e.path, dirs):
            latest[e.path] = e
    return [
        DumpRef(Path(e.path), e.state, e.size, e.sha256, "store events", None)
        for e in sorted(latest.values(), key=lambda e: e.mtime)
        if Path(e.path).is_file()
    ]


def _from_dirs(dirs: Sequence[Path], start: float, until: float) -> list[DumpRef]:
    found: list[tuple[float, Path]] = []
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith(_SKIP_SUFFIXES):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            if entry.is_file() and start - EARLY_S <= st.st_mtime < until:
                found.append((st.st_mtime, Path(entry.path)))
    return [_stat_ref(p, "dump_dirs") for _, p in sorted(found)]


def _stat_ref(path: Path, found_by: str) -> DumpRef:
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return DumpRef(path, "unknown", size, None, found_by)
