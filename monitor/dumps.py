"""Dumps in the monitor: the ``dumps`` table kept from events, crashes they belong to, holds,
shipping marks and retention. The API other modules use.

- The agent: :class:`DumpKeeper` (resume state for the watcher, events -> table, periodic
  attach + flood control + retention) and :func:`watched_folders` (the config's folders).
- The packager and shipper (:mod:`monitor.dumps_holds`): :func:`hold` (``mark_busy``) /
  :func:`release` around any use of a dump's file (a held dump is never evicted),
  :func:`mark_shipped` / :func:`mark_shipped_sha256` once the vendor has it; and
  :func:`has_room` / :func:`make_room` before writing a package.
- ``asewatch show`` and the packager: :func:`dumps_of_crash`, :func:`get_dump`, :func:`list_dumps`.

Attachment: a finished dump written from ``attach_before`` s before a crash of its server to
``attach_after`` s after it belongs to that crash (``dumps.crash_id``); a dump with no crash
in its window (``dbcc memdump``) is kept on its own and is never flood-suppressed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from collectors.dumps import WatchedFolder
from monitor.config_dumps import DumpsConfig
from monitor.dumps_apply import DUMP_KINDS, WATERMARK, ApplyDumpEvents, Reconcile
from monitor.dumps_holds import hold, mark_busy, mark_shipped, mark_shipped_sha256, release
from monitor.dumps_read import (
    DumpResume,
    DumpRow,
    dumps_of_crash,
    get_dump,
    list_dumps,
    resume_state,
    suppressed_counts,
)
from monitor.dumps_retention import RetentionReport, enforce, free_bytes, has_room, plan_retention
from monitor.store import Batch, Store, StoredEvent

__all__ = [
    "DUMP_KINDS",
    "DumpKeeper",
    "DumpResume",
    "DumpRow",
    "RetentionReport",
    "dumps_of_crash",
    "enforce",
    "free_bytes",
    "get_dump",
    "has_room",
    "hold",
    "list_dumps",
    "make_room",
    "mark_busy",
    "mark_shipped",
    "mark_shipped_sha256",
    "plan_retention",
    "release",
    "resume_state",
    "suppressed_counts",
    "watched_folders",
]

log = logging.getLogger("asewatch.dumps")
CRASH_KINDS = ("CrashBlock", "ProcessExited", "ProcessStarted")  # facts that may add or move a crash


def watched_folders(
    servers: Sequence[tuple[str, Sequence[Path]]], config: DumpsConfig
) -> list[WatchedFolder]:
    """The folders to watch: each server's ``dump_dirs`` (``(name, dump_dirs)`` pairs, with the
    ``[dumps]`` patterns and the server's expected size) and every ``[[dumps.folder]]``.
    A folder listed twice is watched once (the first listing wins)."""
    out: dict[Path, WatchedFolder] = {}
    for name, dirs in servers:
        for d in dirs:
            expected = config.expected(name)
            out.setdefault(Path(d), WatchedFolder(Path(d), name, config.patterns, config.exclude, expected))
    for f in config.folders:
        expected = f.expected_bytes or config.expected(f.server)
        out.setdefault(f.path, WatchedFolder(f.path, f.server, f.patterns, f.exclude, expected))
    return list(out.values())


class DumpKeeper:
    """The agent's side of dumps. Thread-safe as the store is; call :meth:`on_committed` from the
    writer's callback and :meth:`tick` from one periodic thread."""

    def __init__(self, store: Store, config: DumpsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._next_retention = 0.0

    def resume(self) -> DumpResume:
        """The watcher's resume state (known dumps, unfinished paths, the hashing position)."""
        with self._store.reader() as r:
            return resume_state(r)

    def catch_up(self) -> None:
        """Apply dump events committed after the watermark (a ``kill -9`` between a commit and
        its table update), then attach and classify. Call once at start, before the writer."""
        with self._store.reader() as r:
            since = int(r.get_state(WATERMARK) or 0)
        events = tuple(self._store.events(kinds=DUMP_KINDS, since_seq=since))
        self._store.append(Batch(ops=(ApplyDumpEvents(events), self._reconcile())))

    def on_committed(self, new: Sequence[StoredEvent]) -> None:
        """After a commit: apply its dump events; re-attach when dumps or crash facts arrived."""
        dumps = tuple(se for se in new if se.kind in DUMP_KINDS)
        if dumps or any(se.kind in CRASH_KINDS for se in new):
            self._store.append(Batch(ops=(ApplyDumpEvents(dumps), self._reconcile())))

    def reconcile(self) -> None:
        """Attach dumps to crash records that arrived since, and re-apply flood control (cheap:
        one transaction over the dumps and crashes tables). Raises StoreError."""
        self._store.append(Batch(ops=(self._reconcile(),)))

    def tick(self) -> RetentionReport | None:
        """:meth:`reconcile`, then a retention pass when ``retention_interval`` has passed since
        the last one (returns its report then, else None). Deletes files; raises StoreError."""
        self.reconcile()
        now = self._clock()
        if now < self._next_retention:
            return None
        self._next_retention = now + self._config.retention_interval
        report = enforce(self._store, self._config, now=now)
        for e in report.evicted:
            log.info("dump %s evicted (%s): %s", e.dump.id, e.rule, e.dump.path)
        for e, why in report.failed:
            log.warning("dump %s could not be evicted: %s", e.dump.id, why)
        return report

    def _reconcile(self) -> Reconcile:
        c = self._config
        return Reconcile(c.attach_before, c.attach_after, c.keep_first, c.keep_last)


def make_room(store: Store, config: DumpsConfig, folder: Path, nbytes: int, *, by: str = "packager") -> bool:
    """Evict what retention allows on ``folder``'s file system until ``nbytes`` fit above the
    ``min_free_bytes`` floor; True when they fit now. Deletes files; raises StoreError."""
    if has_room(folder, nbytes, reserve=config.min_free_bytes):
        return True
    enforce(store, config, by=by, need={folder: nbytes})
    return has_room(folder, nbytes, reserve=config.min_free_bytes)
