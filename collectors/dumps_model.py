"""The dump watcher's data: watched folders, known dumps, a file being followed, and the verdict.

Only :mod:`collectors.dumps` imports this module.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

from collectors.dumps_files import FileStat
from collectors.dumps_proc import Writer
from monitor.events_dumps import DumpState


@dataclass(frozen=True, slots=True)
class WatchedFolder:
    """One folder: its ``server`` (None: told from the writer or the file name), file-name
    globs, and the size of a complete dump there when known (bytes)."""

    path: Path
    server: str | None
    patterns: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    expected_bytes: int | None = None

    def matches(self, name: str) -> bool:
        """Whether ``name`` is a dump name here (names starting with ``.`` never are)."""
        if name.startswith("."):
            return False
        if any(fnmatch.fnmatchcase(name, p) for p in self.exclude):
            return False
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class KnownDump:
    """A finished dump the store has, with its file present: not hashed again while unchanged."""

    path: str
    server: str
    size: int
    mtime: float
    sha256: str | None


@dataclass(slots=True)
class Track:
    """A file being followed until it is finished (mutable; the watcher's thread only)."""

    folder: WatchedFolder
    name: str
    st: FileStat
    changed_at: float  # monotonic
    growing: bool  # the size or mtime changed at the latest pass
    server: str
    growing_before: bool = False  # ... at the pass before it
    holders: set[Writer] = field(default_factory=set)
    died: Writer | None = None
    announced: bool = False


def completeness(size: int, expected: int | None, died: Writer | None) -> tuple[DumpState, str | None]:
    """The state of a finished file of ``size`` bytes, and why when it is not ``complete``.

    ``expected``: the size a complete dump has (declared by the file or configured), which
    decides when known; otherwise ``died`` (a writer that vanished while the file grew)
    makes it truncated. An empty file is always truncated.

    >>> completeness(10, 20, None)
    ('truncated', '10 bytes of the 20 expected')
    >>> completeness(20, 20, Writer(1, 1, "dataserver", "S"))
    ('complete', None)
    """
    if size == 0:
        return "truncated", "the file is empty"
    if expected is not None:
        if size < expected:
            return "truncated", f"{size} bytes of the {expected} expected"
        return "complete", None
    if died is not None:
        return "truncated", f"its writer {died.name} (pid {died.pid}) exited while the file was still growing"
    return "complete", None


def hashing_path(position: str) -> str:
    """The path in a ``dumps:hashing`` position ("" when there is none or it is unreadable).

    >>> hashing_path('{"path": "/d/x.dmp", "size": 3}'), hashing_path("")
    ('/d/x.dmp', '')
    """
    if not position:
        return ""
    try:
        doc = json.loads(position)
        return str(doc["path"]) if isinstance(doc, dict) else ""
    except (ValueError, KeyError):
        return ""
