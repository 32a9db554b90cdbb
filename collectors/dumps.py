"""Notice finished dump and core files in the configured folders, and say what state each is in.

A file matching a folder's patterns is ``writing`` while it grows or a process holds it
open for writing; once it has been unchanged for ``settle_seconds`` with no writer it is
hashed (SHA-256, streamed) and reported ``complete``, ``truncated`` (shorter than expected
— the size an ELF core's headers declare, or a configured size — or its writer died while
it was growing) or ``unreadable``. Symbolic links, FIFOs, devices, sockets, multiply linked
files and paths outside the folder are refused (an event) and never opened; see
:mod:`collectors.dumps_files` for the rules.

Resume: the watcher is given the dumps the store already has (``known``: not hashed again,
and reported removed when their file is gone), the paths it reported ``writing`` without a
final state (``resume``), and the file it was hashing when it stopped (the
``dumps:hashing`` position it emits before hashing and clears after). A file found at start
that has not changed for the settle time is finished at once: it was written while the
agent was down.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from collectors.dumps_files import (
    FileStat,
    HashCancelledError,
    Refusal,
    declared_size,
    judge,
    open_dump,
    open_folder,
    outside,
    sha256_of,
)
from collectors.dumps_model import KnownDump, Track, WatchedFolder, completeness, hashing_path
from collectors.dumps_proc import ProcReader, Writer
from collectors.dumps_watch import FolderWatch
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_dumps import DumpRefused, DumpRemoved, DumpSeen, DumpState

__all__ = ["HASHING_SOURCE", "DumpWatch", "KnownDump", "WatchedFolder"]

log = logging.getLogger("asewatch.dumps")
Emit = Callable[[Sequence[Event], Mapping[str, str]], None]
HASHING_SOURCE = "dumps:hashing"
SUCCESS_EVERY_S = 5.0


class DumpWatch:
    """The dump collector: ``run(emit, stop)`` until ``stop`` is set, or :meth:`poll` once (tests)."""

    source = "dumps"

    def __init__(
        self,
        folders: Sequence[WatchedFolder],
        *,
        servers: Sequence[str] = (),
        settle_seconds: float = 5.0,
        poll_interval: float = 1.0,
        use_watchdog: bool = True,
        expected_bytes: Mapping[str, int] | None = None,
        writer_exit_truncates: bool = True,
        known: Iterable[KnownDump] = (),
        resume: Iterable[str] = (),
        hashing: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        proc_root: Path = Path("/proc"),
    ) -> None:
        self._folders = tuple(folders)
        self._servers = tuple(servers)
        self._settle = settle_seconds
        self._poll = poll_interval
        self._expected = dict(expected_bytes or {})
        self._exit_truncates = writer_exit_truncates
        self._clock, self._mono = clock, monotonic
        self._proc = ProcReader(proc_root)
        self._wake = threading.Event()
        self._watch = FolderWatch([f.path for f in self._folders], self._wake, enabled=use_watchdog)
        self._tracks: dict[Path, Track] = {}
        # Finished dumps whose file is present: path -> (server, size, mtime, sha256). The mtime
        # is compared as the float the events carry (ns do not survive a float round trip).
        self._done: dict[Path, tuple[str, int, float, str | None]] = {
            Path(k.path): (k.server, k.size, k.mtime, k.sha256) for k in known
        }
        self._resume = [p for p in (hashing_path(hashing or ""), *resume) if p]
        self._refused: dict[Path, tuple[str, float]] = {}
        self._problem: str | None = None
        self._last_ok = 0.0
        self._denied_logged = False

    # ------------------------------------------------------------------ loop

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Watch until ``stop`` is set. Never raises for a source failure (CollectorFailed events)."""
        try:
            while not stop.is_set():
                self._watch.ensure()
                self.poll(emit, stop)
                self._wake.wait(self._next_wait())
                self._wake.clear()
        finally:
            self._watch.close()

    def poll(self, emit: Emit, stop: threading.Event | None = None) -> None:
        """One pass: read every folder, find writers, finish what settled, emit what changed."""
        events: list[Event] = []
        problems: list[str] = []
        if self._resume:
            self._resume_pass(emit)
        for folder in self._folders:
            self._scan(folder, events, problems)
        self._find_writers(events)
        if events:
            emit(events, {})
        for track in [t for t in self._tracks.values() if self._settled(t)]:
            if stop is not None and stop.is_set():
                return
            self._finish(track, emit, stop)
        self._health(emit, problems)

    def _next_wait(self) -> float:
        now = self._mono()
        due = [t.changed_at + self._settle - now for t in self._tracks.values()]
        return max(0.05, min([self._poll, 0.5, *due]))

    # ------------------------------------------------------------------ folders

    def _scan(self, folder: WatchedFolder, events: list[Event], problems: list[str]) -> None:
        try:
            dir_fd = open_folder(folder.path)
        except OSError as exc:
            problems.append(f"cannot read dump folder {folder.path}: {exc.strerror or exc}")
            return
        present: set[Path] = set()
        try:
            with os.scandir(dir_fd) as entries:
                for entry in entries:
                    if not folder.matches(entry.name):
                        continue
                    try:
                        judged = judge(entry.stat(follow_symlinks=False), entry.name)
                    except OSError:
                        continue  # gone between the listing and the lstat
                    path = folder.path / entry.name
                    if isinstance(judged, Refusal):
                        self._refuse(folder, path, judged, events)
                    elif judged is not None:
                        present.add(path)
                        self._observe(folder, path, judged, events)
        except OSError as exc:
            problems.append(f"cannot list dump folder {folder.path}: {exc.strerror or exc}")
            return
        finally:
            os.close(dir_fd)
        now = self._clock()
        for path in [p for p in self._done if p.parent == folder.path and p not in present]:
            server, size, _, sha = self._done.pop(path)
            events.append(DumpRemoved(now, server, str(path), sha, size))
        for path in [p for p, t in self._tracks.items() if t.folder is folder and p not in present]:
            t = self._tracks.pop(path)
            if t.announced:
                events.append(self._seen(t, "unreadable", reason="vanished before it was finished"))

    def _observe(self, folder: WatchedFolder, path: Path, st: FileStat, events: list[Event]) -> None:
        done = self._done.get(path)
        if done is not None:
            if (done[1], done[2]) == (st.size, st.mtime):
                return
            # Same name, other content: the dump was overwritten (a fixed dump_file name).
            del self._done[path]
            events.append(DumpRemoved(self._clock(), done[0], str(path), done[3], done[1]))
        track = self._tracks.get(path)
        now = self._mono()
        if track is None or (track.st.device, track.st.inode) != (st.device, st.inode):
            # Unchanged for the settle time already (written while the agent was down): due now.
            age = max(0.0, self._clock() - st.mtime)
            recent = age < self._settle
            changed = now if recent else now - self._settle
            self._tracks[path] = Track(
                folder, path.name, st, changed, recent, self._server(folder, path), recent
            )
            return
        grew = (st.size, st.mtime_ns) != (track.st.size, track.st.mtime_ns)
        if grew:
            track.changed_at = now
        track.growing, track.st = grew, st

    def _find_writers(self, events: list[Event]) -> None:
        if not self._tracks:
            return
        idents = {(t.st.device, t.st.inode) for t in self._tracks.values()}
        sweep = self._proc.sweep(idents, {t.name for t in self._tracks.values()})
        if sweep.denied and not self._denied_logged:
            self._denied_logged = True
            log.warning(
                "cannot see the open files of %d processes (run the agent as root or as the "
                "dataserver's user): dumps they write are judged by the settle time alone",
                sweep.denied,
            )
        for track in self._tracks.values():
            holders = sweep.writers.get((track.st.device, track.st.inode), set())
            for gone in track.holders - holders:
                # A writer that vanished (not one that closed the file) while the file grew.
                if (track.growing or track.growing_before) and not self._proc.alive(gone):
                    track.died = gone
            track.growing_before = track.growing
            track.holders = holders
            # The writer's -sNAME beats a guess from the file name; a configured server beats both.
            by_writer = next((w.server for w in holders if w.server), None)
            if by_writer and not track.folder.server:
                track.server = by_writer
            if not track.announced and (holders or not self._settled(track)):
                track.announced = True
                writer = min(holders, key=lambda w: w.pid) if holders else None
                events.append(self._seen(track, "writing", writer=writer))

    # ------------------------------------------------------------------ finishing

    def _settled(self, track: Track) -> bool:
        return not track.holders and self._mono() - track.changed_at >= self._settle

    def _finish(self, track: Track, emit: Emit, stop: threading.Event | None) -> None:
        path = track.folder.path / track.name
        emit([], {HASHING_SOURCE: json.dumps({"path": str(path), "size": track.st.size})})
        try:
            dir_fd = open_folder(track.folder.path)
            try:
                fd = open_dump(dir_fd, track.name, track.st)
            finally:
                os.close(dir_fd)
            try:
                sha, n = sha256_of(fd, stop)
                declared = declared_size(fd)
                after = os.fstat(fd)
            finally:
                os.close(fd)
        except HashCancelledError:
            return  # stopping: the position says what to resume
        except FileNotFoundError:
            self._tracks.pop(path, None)
            events: list[Event] = []
            if track.announced:
                events.append(self._seen(track, "unreadable", reason="vanished before it was finished"))
            emit(events, {HASHING_SOURCE: ""})
            return
        except OSError as exc:
            self._tracks.pop(path, None)
            # Not retried until the file changes: a permission problem must not log every pass.
            self._done[path] = (track.server, track.st.size, track.st.mtime, None)
            why = f"cannot read: {exc.strerror or exc}"
            log.warning("dump %s: %s", path, why)
            emit([self._seen(track, "unreadable", reason=why)], {HASHING_SOURCE: ""})
            return
        if (after.st_size, after.st_mtime_ns) != (track.st.size, track.st.mtime_ns) or n != after.st_size:
            track.changed_at = self._mono()  # written to while being hashed: not finished yet
            emit([], {HASHING_SOURCE: ""})
            return
        expected = declared or track.folder.expected_bytes or self._expected.get(track.server)
        state, reason = completeness(n, expected, track.died if self._exit_truncates else None)
        self._tracks.pop(path, None)
        self._done[path] = (track.server, n, track.st.mtime, sha)
        emit([self._seen(track, state, sha, expected, reason)], {HASHING_SOURCE: ""})

    def _seen(
        self,
        track: Track,
        state: DumpState,
        sha: str | None = None,
        expected: int | None = None,
        reason: str | None = None,
        *,
        writer: Writer | None = None,
    ) -> DumpSeen:
        pid = writer.pid if writer else (track.died.pid if track.died else None)
        path = str(track.folder.path / track.name)
        return DumpSeen(
            self._clock(),
            track.server,
            path,
            track.st.size,
            track.st.mtime,
            state,
            sha,
            expected,
            pid,
            reason,
        )

    # ------------------------------------------------------------------ helpers

    def _server(self, folder: WatchedFolder, path: Path) -> str:
        """The folder's server, else a configured server the name starts with, else the only one."""
        if folder.server:
            return folder.server
        for s in sorted(self._servers, key=len, reverse=True):
            if path.name.startswith((f"{s}_", f"{s}.")):
                return s
        return self._servers[0] if len(self._servers) == 1 else ""

    def _refuse(self, folder: WatchedFolder, path: Path, why: Refusal, events: list[Event]) -> None:
        if self._refused.get(path) == (why.kind, why.mtime):
            return
        self._refused[path] = (why.kind, why.mtime)
        log.warning("dump folder %s: refused %s: %s", folder.path, path.name, why.reason)
        events.append(
            DumpRefused(self._clock(), folder.server or "", str(path), why.kind, why.reason, why.mtime)
        )

    def _resume_pass(self, emit: Emit) -> None:
        """Check the paths left unfinished by the last run; the folder scan does the rest."""
        events: list[Event] = []
        paths, self._resume = self._resume, []
        by_path = {f.path: f for f in self._folders}
        for text in dict.fromkeys(paths):
            path = Path(text)
            folder = by_path.get(path.parent)
            why = outside(folder.path if folder else path.parent, path)
            if folder is None or why is not None:
                why = why or f"{path} is in no watched dump folder"
                log.warning("not resuming %s: %s", path, why)
                events.append(DumpRefused(self._clock(), "", str(path), "outside", why, 0.0))
                continue
            try:
                os.lstat(path)
            except FileNotFoundError:
                server = self._server(folder, path)
                st = FileStat(0, 0, 0, 0)
                gone = Track(folder, path.name, st, 0.0, False, server)
                events.append(self._seen(gone, "unreadable", reason="vanished while the agent was down"))
            except OSError:
                continue
            else:
                log.info("resuming dump %s (unfinished when the agent stopped)", path)
        if events:
            emit(events, {HASHING_SOURCE: ""})

    def _health(self, emit: Emit, problems: list[str]) -> None:
        now = self._clock()
        if self._watch.error:
            problems.append(self._watch.error)
        if problems:
            # Reported when it starts or changes (the health fold keeps it down until a success).
            if problems[0] != self._problem:
                log.warning("%s", problems[0])
                emit([CollectorFailed(self.source, problems[0], now)], {})
            self._problem = problems[0]
        elif now - self._last_ok >= SUCCESS_EVERY_S or self._problem is not None:
            self._problem, self._last_ok = None, now
            emit([CollectorSucceeded(self.source, now)], {})
