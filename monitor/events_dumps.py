"""Events about dump files (issue 5): seen and finished, refused, removed, evicted.

Every class here must be in ``DumpEvent``. Times are POSIX seconds observed by the agent;
``mtime`` is the file's modification time (POSIX seconds, ``st_mtime_ns / 1e9``).
``server`` is the ASE server the dump belongs to, ``""`` when it could not be told.

A dump's identity is its SHA-256 once it is finished. While it is ``writing`` it has none,
and the path plus the size and mtime first seen identify the observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitor.eventkey import digest

DumpState = Literal["writing", "complete", "truncated", "unreadable"]
RefusalKind = Literal["symlink", "fifo", "device", "socket", "hardlink", "outside", "other"]


@dataclass(frozen=True, slots=True)
class DumpSeen:
    """A dump or core file in a configured folder, in ``state``.

    ``writing``: still growing, or held open for writing by a process (``writer_pid``).
    ``complete``: stopped growing for the settle time, nobody writes it, and it is as big as
    expected (when that is known). ``truncated``: smaller than ``expected_size``, or its
    writer died while the file was growing; ``reason`` says which. ``unreadable``: it could
    not be read (permission, I/O error) or vanished before it was finished. ``sha256`` is
    the hex digest of the whole file, None while writing and when unreadable.
    """

    time: float
    server: str
    path: str
    size: int
    mtime: float
    state: DumpState
    sha256: str | None
    expected_size: int | None
    writer_pid: int | None
    reason: str | None

    @property
    def key(self) -> str:
        return "dump:" + digest(self.path, self.state, self.sha256 or f"{self.size}:{self.mtime:.6f}")


@dataclass(frozen=True, slots=True)
class DumpRefused:
    """A name in a dump folder that matched the patterns but was not read: a symbolic link, a
    FIFO, a device, a socket, a hard link to a file elsewhere, or a path outside the folder.
    ``mtime`` is the link's or special file's own (lstat), so a re-planted one is reported again."""

    time: float
    server: str
    path: str
    kind: RefusalKind
    reason: str
    mtime: float

    @property
    def key(self) -> str:
        return "dumpref:" + digest(self.path, self.kind, f"{self.mtime:.6f}")


@dataclass(frozen=True, slots=True)
class DumpRemoved:
    """A finished dump's file is no longer in its folder (deleted or moved by someone)."""

    time: float
    server: str
    path: str
    sha256: str | None
    size: int

    @property
    def key(self) -> str:
        return "dumprm:" + digest(self.path, self.sha256, f"{self.time:.6f}")


@dataclass(frozen=True, slots=True)
class DumpEvicted:
    """asewatch deleted a dump's file to keep its retention rules; the record stays.

    ``reason``: ``flood`` (not among the first/last K of its signature that day), ``age``,
    ``count``, ``bytes`` or ``free`` (the folder's free-space floor). ``forced``: the
    operator allowed evicting dumps not yet shipped. ``by``: ``agent`` or ``cli``.
    """

    time: float
    server: str
    path: str
    sha256: str | None
    size: int
    reason: str
    forced: bool
    by: str

    @property
    def key(self) -> str:
        return "dumpev:" + digest(self.path, self.sha256, self.size)


DumpEvent = DumpSeen | DumpRefused | DumpRemoved | DumpEvicted
