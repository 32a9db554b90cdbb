"""Wake the dump watcher on file events in its folders (watchdog/inotify); polling stays the floor.

Only :mod:`collectors.dumps` imports this module.

Events only shorten the wait: the watcher re-reads its folders at every wake and at every
poll interval anyway, so a lost or overflowed inotify queue, a folder that appears later,
or inotify limits cost latency, never a dump. Writes to a growing dump (modify events) are
not subscribed: a multi-GB dump would wake the watcher thousands of times a second; growth
is seen by polling, while creation, renames, deletion and a writer closing the file wake it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from watchdog import events as wde
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

WATCH_RETRY_S = 30.0  # after the observer failed to start (inotify limits), retry this often
_EVENTS = [wde.FileCreatedEvent, wde.FileMovedEvent, wde.FileDeletedEvent, wde.FileClosedEvent,
           wde.DirDeletedEvent, wde.DirMovedEvent, wde.DirCreatedEvent]  # fmt: skip


class _Wake(wde.FileSystemEventHandler):
    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag

    def on_any_event(self, event: wde.FileSystemEvent) -> None:
        self._flag.set()


class FolderWatch:
    """An observer over the folders that exist now; :meth:`ensure` restarts it when the set
    of existing folders changes or an emitter died. Threads: ``dumps-watch``, ``dumps-inotify``."""

    def __init__(self, folders: Sequence[Path], wake: threading.Event, *, enabled: bool = True) -> None:
        self._folders = tuple(folders)
        self._wake = wake
        self._enabled = enabled
        self._observer: BaseObserver | None = None
        self._watched: tuple[tuple[int, int], ...] = ()
        self._retry_at = 0.0
        self.error: str | None = None

    @property
    def watching(self) -> bool:
        """Whether an observer runs (else the watcher only polls)."""
        return self._observer is not None

    def ensure(self) -> None:
        """(Re)start the observer if needed. Never raises: a failure is kept in ``error``."""
        if not self._enabled:
            return
        existing: list[tuple[Path, tuple[int, int]]] = []
        for folder in self._folders:
            try:
                st = os.stat(folder)
            except OSError:
                continue
            existing.append((folder, (st.st_dev, st.st_ino)))
        idents = tuple(i for _, i in existing)
        if self._observer is not None:
            emitters = list(self._observer.emitters)
            if idents == self._watched and all(e.is_alive() for e in emitters):
                return
            self.close()
            self._wake.set()  # a folder appeared or changed: look now
        if not existing or time.monotonic() < self._retry_at:
            return
        obs = Observer()
        obs.name = "dumps-watch"
        try:
            handler = _Wake(self._wake)
            for folder, _ in existing:
                obs.schedule(handler, str(folder), event_filter=_EVENTS)
            for emitter in obs.emitters:
                emitter.name = "dumps-inotify"
            obs.start()
        except OSError as exc:  # inotify limits, or a folder vanished meanwhile
            obs.stop()  # emitters started before the failure must not be left running
            if obs.is_alive():
                obs.join(timeout=5.0)
            self._retry_at = time.monotonic() + WATCH_RETRY_S
            self.error = f"cannot watch the dump folders: {exc.strerror or exc}; polling"
            return
        self._observer, self._watched, self.error = obs, idents, None

    def close(self) -> None:
        """Stop and join the observer threads (idempotent)."""
        obs, self._observer, self._watched = self._observer, None, ()
        if obs is not None:
            obs.stop()
            if obs.is_alive():
                obs.join(timeout=5.0)
