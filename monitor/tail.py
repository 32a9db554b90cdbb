"""Follow one file by bytes across appends, truncation, rotation, deletion and absence.

A :class:`FileTailer` returns every byte written to the file at a path exactly once, in
order, as :class:`Chunk` items; it parses nothing. Between files it returns a
:class:`Switched`: the caller flushes its parser, and the next chunks come from a new file
(or a new generation of a truncated one) from offset 0. Trouble (path or directory
missing, permission denied, a possible gap after a restart) is a :class:`Problem` item,
never an exception, so a collector counts it and keeps going. The file being read is held
open by fd, so bytes written to it after a rename or unlink are still read: the tailer
moves to the new file only after reading the old one to EOF *after* seeing the new one.

One thread uses a tailer (it is not thread-safe)::

    with FileTailer(path, saved) as tailer:
        while not stop.is_set():
            for item in tailer.read():  # never blocks; at most max_batch bytes
                ...  # feed Chunks, flush on Switched, count Problems;
                # at each record end: persist tailer.position_at(chunk.file_id, end)
            if not tailer.pending and clock() - tailer.last_data_monotonic > quiet:
                ...  # emit the held-back last record
            tailer.wait(1.0)

Build positions for a batch's records before the next ``read()``: a batch ends at a
:class:`Switched`, and the next read() forgets the old generation of a truncated file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from watchdog import events as wde
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from monitor.errors import SourceError

SwitchReason = Literal["rotated", "truncated", "replaced", "created", "deleted"]
ProblemKind = Literal["missing", "error", "gap"]

MAX_BATCH = 8 << 20  # bytes per read(): a 10 GB backlog still returns to the caller often
MISSING_GRACE_S = 5.0  # logrotate leaves the path empty for a moment: not worth a report
WATCH_RETRY_S = 30.0  # after the observer failed to start (inotify limits), retry this often
_KEEP_HEADS = 4  # finished files whose positions position_at can still build
_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_EVENTS = [wde.FileCreatedEvent, wde.FileModifiedEvent, wde.FileMovedEvent, wde.FileDeletedEvent,
           wde.FileClosedEvent, wde.DirDeletedEvent, wde.DirMovedEvent]  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileId:
    """A file's identity: (device, inode), stable across renames."""

    device: int
    inode: int


@dataclass(frozen=True, slots=True)
class TailPosition:
    """Everything before ``offset`` in file (device, inode) is done.

    ``path`` is the followed path (not a rotated name); ``head_hash`` is the sha256 hex of
    the file's first ``head_len`` bytes, so a reused inode is told from the same file.
    """

    path: str
    device: int
    inode: int
    offset: int
    head_hash: str
    head_len: int

    @property
    def file_id(self) -> FileId:
        return FileId(self.device, self.inode)

    def to_json(self) -> str:
        """One line of JSON, keys sorted."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TailPosition:
        """Parse :meth:`to_json` output. Raises SourceError if it is not a valid position."""
        try:
            raw = json.loads(text)
            ints = {k: raw[k] for k in ("device", "inode", "offset", "head_len")}
            strs = {k: raw[k] for k in ("path", "head_hash")}
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceError("tail", f"invalid saved position {text[:200]!r}: {exc}") from exc
        bad_int = any(type(v) is not int or v < 0 for v in ints.values())
        if bad_int or any(type(v) is not str for v in strs.values()) or set(raw) != {*ints, *strs}:
            raise SourceError("tail", f"invalid saved position {text[:200]!r}")
        return cls(**strs, **ints)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes ``data`` read from file ``file_id`` at byte offset ``start``."""

    file_id: FileId
    start: int
    data: bytes

    @property
    def end(self) -> int:
        return self.start + len(self.data)


@dataclass(frozen=True, slots=True)
class Switched:
    """File ``old`` (None if there was none) is finished; ``new`` is read from offset 0."""

    old: FileId | None
    new: FileId
    reason: SwitchReason


@dataclass(frozen=True, slots=True)
class Problem:
    """Reported once when it starts or changes. ``missing``: no file at the path (waiting,
    not an error); ``error``: permission, I/O, cannot watch; ``gap``: bytes may be missed."""

    kind: ProblemKind
    reason: str
    path: str

    def as_error(self, collector: str) -> SourceError:
        """The same problem in the project's error tree, for logging and counting."""
        return SourceError(collector, self.reason, path=self.path)


TailItem = Chunk | Switched | Problem


@dataclass(slots=True)
class _Current:
    fd: int
    fid: FileId
    offset: int
    head: bytes  # the first bytes (<= head_len) as last verified


def _fid(st: os.stat_result) -> FileId:
    return FileId(st.st_dev, st.st_ino)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class _Wake(wde.FileSystemEventHandler):
    """Sets the flag for events on the followed name, its rotations, or the directory."""

    def __init__(self, name: str, directory: str, flag: threading.Event) -> None:
        self._name, self._dir, self._flag = name, directory, flag

    def on_any_event(self, event: wde.FileSystemEvent) -> None:
        for raw in (event.src_path, event.dest_path):
            p = os.fsdecode(raw)
            if p and (p == self._dir or os.path.basename(p).startswith(self._name)):
                self._flag.set()
                return


class FileTailer:
    """Follow ``path`` by bytes; see the module doc. read() and wait() never raise.

    ``position``: resume from a saved :class:`TailPosition` (None: from offset 0).
    ``chunk_size`` / ``max_batch``: bytes per Chunk / per read(). ``head_len``: bytes hashed
    into positions. ``poll_interval``: seconds wait() blocks at most. ``use_watchdog``: wake
    on inotify events in the directory (polls if it cannot watch). ``clock``: monotonic
    seconds. Opens the saved file at once. Raises ValueError on a non-positive size.
    """

    def __init__(
        self,
        path: Path,
        position: TailPosition | None = None,
        *,
        chunk_size: int = 1 << 20,
        head_len: int = 1024,
        poll_interval: float = 1.0,
        use_watchdog: bool = True,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(chunk_size, head_len, max_batch) <= 0 or poll_interval <= 0:
            raise ValueError("chunk_size, head_len, max_batch and poll_interval must be positive")
        self.path = Path(path)
        self._chunk, self._head_len, self._max_batch = chunk_size, head_len, max_batch
        self._poll, self._use_watchdog, self._clock = poll_interval, use_watchdog, clock
        self._cur: _Current | None = None
        self._prev: FileId | None = None  # Switched.old when the path is next opened
        self._open_reason: SwitchReason | None = None  # None: open silently (the first file)
        self._heads: dict[FileId, bytes] = {}  # heads of finished files, for position_at
        self._queued: list[TailItem] = []
        self._problem: Problem | None = None
        self._missing_since: float | None = None
        self._pending, self._closed, self._last_data = False, False, clock()
        self._changed = threading.Event()
        self._observer: BaseObserver | None = None
        self._watched: FileId | None = None  # the directory the observer watches
        self._watch_retry_at, self._watch_error = 0.0, ""
        if position is not None:
            try:
                self._resume(position)
            except OSError as exc:  # the first read() reports it and starts at the path
                self._report(self._queued, "error", f"cannot resume {self.path}: {_why(exc)}")
        self._ensure_watch()

    @property
    def last_data_monotonic(self) -> float:
        """clock() when read() last returned bytes (construction time before that)."""
        return self._last_data

    @property
    def pending(self) -> bool:
        """True if the last read() stopped early (byte budget or a Switched): read again now."""
        return self._pending

    @property
    def problem(self) -> Problem | None:
        """The problem reported last and not resolved since, if any."""
        return self._problem

    @property
    def watching(self) -> bool:
        """True while a watchdog observer watches the directory (else wait() only polls)."""
        return self._observer is not None

    def read(self) -> list[TailItem]:
        """What can be read now, without blocking: at most max_batch bytes, ending after a
        Switched. Reads files; never raises (OS errors become Problem items)."""
        if self._closed:
            return []
        items, self._queued, self._pending = self._queued, [], False
        if self._cur is not None:
            self._heads.pop(self._cur.fid, None)  # a truncated file's old generation is history
        try:
            self._fill(items)
        except OSError as exc:
            self._report(items, "error", f"cannot read {self.path}: {_why(exc)}")
        return items

    def wait(self, timeout: float) -> bool:
        """Block up to min(timeout, poll_interval) seconds for a change notification.

        True if notified or more is pending, False on timeout. (Re)starts the directory
        watch if the directory appeared or was replaced. Never raises.
        """
        if self._closed:
            return False
        if self._pending:
            return True
        self._ensure_watch()
        got = self._changed.wait(max(0.0, min(timeout, self._poll)))
        self._changed.clear()
        return got

    def position_at(self, file_id: FileId, offset: int) -> TailPosition:
        """The position "everything before ``offset`` in ``file_id`` is done".

        ``file_id``: the current file or one of the last few finished ones (build positions
        before the next read()). Reads at most head_len bytes. Raises ValueError otherwise.
        """
        head, cur = self._heads.get(file_id), self._cur
        if head is None and cur is not None and cur.fid == file_id:
            try:
                head = self._verified_head(cur)
            except OSError:
                head = None
            head = cur.head if head is None else head
        if head is None:
            raise ValueError(f"{file_id} is neither the current nor a recently finished file")
        return TailPosition(str(self.path), file_id.device, file_id.inode, offset, _sha(head), len(head))

    def close(self) -> None:
        """Stop and join the observer threads, close the fd. Idempotent."""
        self._closed = True
        self._unwatch()
        if self._cur is not None:
            os.close(self._cur.fd)
            self._cur = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _fill(self, items: list[TailItem]) -> None:
        budget, checked = self._max_batch, False
        while budget > 0:
            cur = self._cur
            if cur is None:
                if not self._open_path(items, None):
                    return
                continue
            size = os.fstat(cur.fd).st_size
            # A copytruncate regrown past our offset shows only in the head: check it
            # before reading anything new, and again at EOF.
            if not checked or size <= cur.offset:
                checked = True
                if size < cur.offset or self._verified_head(cur) is None:
                    self._remember(cur.fid, cur.head)  # the old generation, for position_at
                    items.append(Switched(cur.fid, cur.fid, "truncated"))
                    cur.offset, cur.head, self._pending = 0, b"", True
                    return
            if size > cur.offset:
                data = os.pread(cur.fd, min(self._chunk, size - cur.offset, budget), cur.offset)
                if not data:  # shrank meanwhile (or the size lies): look again next time
                    return
                items.append(Chunk(cur.fid, cur.offset, data))
                cur.offset += len(data)
                budget -= len(data)
                self._last_data = self._clock()
                if self._problem is not None and self._problem.kind == "error":
                    self._problem = None
                continue
            at_path = self._stat_path(items, holding=True)
            if at_path is None or at_path == cur.fid:
                return
            # Another file is at the path. Bytes may have reached the old one between our
            # EOF and the stat (written, then renamed): read them before switching.
            st = os.fstat(cur.fd)
            if st.st_size <= cur.offset:
                self._open_path(items, "deleted" if st.st_nlink == 0 else "rotated")
                return
        self._pending = True

    def _open_path(self, items: list[TailItem], reason: SwitchReason | None) -> bool:
        """Make the file at the path the current one. Returns True if it did."""
        try:
            fd = os.open(self.path, _FLAGS)
        except FileNotFoundError:
            self._stat_path(items, holding=self._cur is not None)
            return False
        except OSError as exc:
            self._report(items, "error", f"cannot open {self.path}: {_why(exc)}")
            return False
        st, old = os.fstat(fd), self._cur
        if not stat.S_ISREG(st.st_mode) or (old is not None and old.fid == _fid(st)):
            os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                self._report(items, "error", f"{self.path} is not a regular file")
            return False
        if old is not None:
            head = self._verified_head(old)
            self._remember(old.fid, old.head if head is None else head)
            os.close(old.fd)
            self._prev, self._open_reason = old.fid, reason
        self._cur = _Current(fd, _fid(st), 0, b"")
        if self._open_reason is not None:
            items.append(Switched(self._prev, self._cur.fid, self._open_reason))
            self._pending = True
        self._open_reason, self._prev, self._problem, self._missing_since = None, None, None, None
        return True

    def _stat_path(self, items: list[TailItem], *, holding: bool) -> FileId | None:
        """The file at the path, or None (missing: reported, after a grace if ``holding``)."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            now = self._clock()
            self._missing_since = now if self._missing_since is None else self._missing_since
            if self._cur is None and self._open_reason is None:
                self._open_reason = "created"
            if not holding or now - self._missing_since >= MISSING_GRACE_S:
                where = "waiting for it" if self.path.parent.is_dir() else "its directory does not exist"
                self._report(items, "missing", f"{self.path} does not exist ({where})")
            return None
        except OSError as exc:
            self._report(items, "error", f"cannot stat {self.path}: {_why(exc)}")
            return None
        self._missing_since = None
        if self._problem is not None and self._problem.kind == "missing":
            self._problem = None
        return _fid(st)

    def _verified_head(self, cur: _Current) -> bytes | None:
        """Re-read the head; None if the file no longer starts with the bytes seen before."""
        head = os.pread(cur.fd, self._head_len, 0)
        if head[: len(cur.head)] != cur.head:
            return None
        cur.head = head
        return head

    def _remember(self, fid: FileId, head: bytes) -> None:
        self._heads[fid] = head
        while len(self._heads) > _KEEP_HEADS:
            del self._heads[next(iter(self._heads))]

    def _report(self, items: list[TailItem], kind: ProblemKind, reason: str) -> None:
        problem = Problem(kind, reason, str(self.path))
        if problem != self._problem:
            items.append(problem)
        self._problem = problem

    # ------------------------------------------------------------------ resuming

    def _resume(self, pos: TailPosition) -> None:
        """Open the saved content at its offset, or say why not and where to start."""
        found = self._find(pos)
        if found is not None:
            fd, fid = found
            self._cur = _Current(fd, fid, pos.offset, os.pread(fd, self._head_len, 0))
            return
        saved = pos.file_id
        self._report(
            self._queued,
            "gap",
            f"the file last read ({saved.device}:{saved.inode}, offset {pos.offset}) is gone, "
            f"truncated or rewritten; bytes written to it after that offset may have been missed",
        )
        try:
            fd = os.open(self.path, _FLAGS)
        except OSError:
            self._prev, self._open_reason = saved, "deleted"
            return
        if _fid(os.fstat(fd)) != saved:
            os.close(fd)
            self._prev, self._open_reason = saved, "deleted"
            return
        same_head = _sha(os.pread(fd, pos.head_len, 0)) == pos.head_hash
        self._cur = _Current(fd, saved, 0, b"")
        self._queued.append(Switched(saved, saved, "truncated" if same_head else "replaced"))

    def _find(self, pos: TailPosition) -> tuple[int, FileId] | None:
        """An fd on a file holding the saved content (same head, at least ``offset`` bytes):
        the saved file at the path, renamed in its directory, or a logrotate copytruncate copy."""
        try:
            with os.scandir(self.path.parent) as it:
                others = [e for e in it if e.name != self.path.name and e.is_file(follow_symlinks=False)]
        except OSError:
            others = []  # no directory: only the path can hold it (and it cannot)
        renamed = [e.path for e in others if e.inode() == pos.inode]
        copies = [e.path for e in others if e.inode() != pos.inode]
        for name in [str(self.path), *renamed, *copies]:
            try:
                fd = os.open(name, _FLAGS)
            except OSError:
                continue
            try:
                st, head = os.fstat(fd), os.pread(fd, pos.head_len, 0)
                same = len(head) == pos.head_len and _sha(head) == pos.head_hash
                if same and st.st_size >= pos.offset and stat.S_ISREG(st.st_mode):
                    return fd, _fid(st)
            except OSError:
                pass
            os.close(fd)
        return None

    # ------------------------------------------------------------------ watching

    def _ensure_watch(self) -> None:
        """Watch the directory if we can; drop a watch whose directory went away."""
        if not self._use_watchdog or self._closed:
            return
        directory = str(self.path.parent)
        try:
            ident: FileId | None = _fid(os.stat(directory))
        except OSError:
            ident = None
        if self._observer is not None:
            emitters = list(self._observer.emitters)
            if ident == self._watched and emitters and all(e.is_alive() for e in emitters):
                return
            self._unwatch()
            self._changed.set()  # the directory changed under us: look now
        now = self._clock()
        if ident is None or now < self._watch_retry_at:
            return
        obs = Observer()
        obs.name = f"tail-watch:{self.path.name}"
        try:
            obs.schedule(_Wake(self.path.name, directory, self._changed), directory, event_filter=_EVENTS)
            for emitter in obs.emitters:
                emitter.name = f"tail-inotify:{self.path.name}"
            obs.start()
        except OSError as exc:  # inotify limits, or the directory vanished meanwhile
            self._watch_retry_at = now + WATCH_RETRY_S
            reason = f"cannot watch {directory}: {_why(exc)}; polling every {self._poll:g} s"
            if reason != self._watch_error:
                self._queued.append(Problem("error", reason, str(self.path)))
            self._watch_error = reason
            return
        self._observer, self._watched, self._watch_error = obs, ident, ""

    def _unwatch(self) -> None:
        obs, self._observer, self._watched = self._observer, None, None
        if obs is not None:
            obs.stop()
            if obs.is_alive():
                obs.join(timeout=5.0)
