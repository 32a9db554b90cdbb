"""Writes the ASE errorlog in the real 15.7/16 threaded-mode format.

Each line is ``00:TTTT:FFFFF:SSSSS:YYYY/MM/DD HH:MM:SS.hh server|kernel  message``:
instance, thread id (4 digits), family id (the parent spid of a parallel worker, else 0),
spid, wall-clock local time with hundredths, the component, two spaces, the message.
A message that contains newlines (multi-line SQL) continues on lines with no prefix,
as ASE does.

The file is opened ``O_APPEND`` and every call is a single ``os.write`` of whole lines,
so a tailer never sees half a line from us and concurrent writers never interleave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

Component = Literal["server", "kernel"]


@dataclass(frozen=True, slots=True)
class Prefix:
    """Who writes a line: OS thread (or engine in process mode), family id, spid."""

    thread: int
    family: int = 0
    spid: int = 0
    instance: int = 0


SYSTEM = Prefix(thread=0)


def stamp(when: datetime) -> str:
    """The errorlog time stamp with hundredths.

    >>> stamp(datetime(2018, 5, 4, 19, 37, 1, 489999))
    '2018/05/04 19:37:01.48'
    """
    return f"{when:%Y/%m/%d %H:%M:%S}.{when.microsecond // 10000:02d}"


def format_line(prefix: Prefix, component: Component, message: str, when: datetime) -> str:
    """One errorlog record (with its continuation lines), ending in a newline.

    >>> format_line(Prefix(2, 0, 36), "server", "hello", datetime(2019, 3, 26, 1, 41, 39, 170000))
    '00:0002:00000:00036:2019/03/26 01:41:39.17 server  hello\\n'
    """
    head = (
        f"{prefix.instance:02d}:{prefix.thread:04d}:{prefix.family:05d}:{prefix.spid:05d}:"
        f"{stamp(when)} {component}  "
    )
    return head + message.rstrip("\n") + "\n"


class ErrorlogWriter:
    """Appends records to one errorlog file. Thread-safe; close it when done."""

    def __init__(self, path: Path) -> None:
        """Open (create) ``path`` for appending. Raises ``OSError`` if it cannot."""
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(
        self, prefix: Prefix, component: Component, message: str, when: datetime | None = None
    ) -> datetime:
        """Append one record stamped ``when`` (default now). Returns the time used."""
        when = when or datetime.now()
        self._put(format_line(prefix, component, message, when))
        return when

    def write_block(
        self,
        prefix: Prefix,
        lines: Sequence[tuple[Component, str]],
        when: datetime | None = None,
    ) -> datetime:
        """Append several records with one prefix and one time stamp, in one write."""
        when = when or datetime.now()
        self._put("".join(format_line(prefix, comp, msg, when) for comp, msg in lines))
        return when

    def _put(self, text: str) -> None:
        data = text.encode("utf-8")
        with self._lock:
            view = memoryview(data)
            while view:
                # A regular-file write is not split in practice; loop anyway for a short write.
                n = os.write(self._fd, view)
                view = view[n:]

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
