"""The errorlog around a crash and since the boot before it, read from the file by byte offset.

The crash block's ``offset`` (and a boot's) is where the follower read it. A log that
was rotated or truncated since no longer holds those bytes there, so the line at the
offset is checked against the record's time stamp; when it does not match, the file
is searched for the record's first line, and when it is not there at all the excerpt
is "not available" with the reason, never a wrong piece of log. A piece is byte ranges
of the file, read line by line when it is written out: memory is bounded by a line, not
by the log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_LINE_MAX = 1 << 20  # a longer "line" is cut: no excerpt is worth more
_SEARCH_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class LogPiece:
    """Part of an errorlog: ``[start, end)`` of ``path``, as the byte ``ranges`` kept (one range,
    or the head and the tail when ``cut`` bytes in the middle were left out)."""

    path: str
    start: int
    end: int
    ranges: tuple[tuple[int, int], ...]
    cut: int = 0

    @property
    def size(self) -> int:
        """Bytes kept."""
        return sum(b - a for a, b in self.ranges)

    def lines(self) -> Iterator[bytes]:
        """The kept lines, each with its newline (at most about 1 MiB each), with a marker line
        where bytes were left out. Raises OSError if the file cannot be read."""
        with open(self.path, "rb") as f:
            for i, (a, b) in enumerate(self.ranges):
                if i:
                    yield f"[... asewatch: {self.cut} bytes of errorlog left out here ...]\n".encode()
                f.seek(a)
                left = b - a
                while left > 0 and (line := f.readline(min(left, _LINE_MAX))):
                    left -= len(line)
                    yield line

    def contains(self, needle: bytes) -> bool:
        """Whether any kept line holds ``needle``."""
        return any(needle in line for line in self.lines())


def stamp(t: datetime) -> bytes:
    """The errorlog's time stamp of ``t`` to the second (``2024/03/14 10:12:33``).

    >>> stamp(datetime(2024, 3, 14, 10, 12, 33, 160000))
    b'2024/03/14 10:12:33'
    """
    return t.strftime("%Y/%m/%d %H:%M:%S").encode("ascii")


def locate(path: Path, offset: int, t: datetime, spid: int | None = None) -> int | None:
    """The offset of the record written at ``t`` (by ``spid``, when given): ``offset`` itself when
    the line there has that stamp, else the first such line in the file, else None.

    Raises OSError if the file cannot be read.
    """
    needle = stamp(t)
    tag = f":{spid:05d}:".encode() if spid is not None else b""
    with open(path, "rb") as f:
        f.seek(offset)
        first = f.readline(_LINE_MAX)
        if needle in first[:64] and tag in first[:40]:
            return offset
        f.seek(0)
        pos = 0
        carry = b""
        while block := f.read(_SEARCH_BLOCK):
            data = carry + block
            base = pos - len(carry)
            start = 0
            while (i := data.find(needle, start)) >= 0:
                # `data` starts at a line start (the carry begins after a newline).
                line_start = data.rfind(b"\n", 0, i) + 1
                head = data[line_start : i + len(needle)]
                if len(head) < 64 and tag in head:
                    return base + line_start
                start = i + 1
            cut = data.rfind(b"\n")
            carry = data[cut + 1 :][-_LINE_MAX:] if cut >= 0 else data[-_LINE_MAX:]
            pos += len(block)
    return None


def excerpt(path: Path, offset: int, before: int, after: int) -> LogPiece:
    """``before`` lines ending at ``offset`` and ``after`` lines from it (bounded by a byte cap of
    about 1 MiB per line). Raises OSError if the file cannot be read."""
    with open(path, "rb") as f:
        start = _lines_back(f.fileno(), offset, before)
        f.seek(offset)
        for _ in range(after):
            if not f.readline(_LINE_MAX):
                break
        end = f.tell()
    return LogPiece(str(path), start, end, ((start, end),))


def _lines_back(fd: int, offset: int, n: int) -> int:
    """The offset of the start of the line ``n`` lines before the one starting at ``offset``."""
    if n <= 0 or offset <= 0:
        return offset
    pos = offset
    seen = 0
    limit = max(0, offset - n * _LINE_MAX)
    while pos > limit:
        size = min(64 * 1024, pos - limit)
        data = os.pread(fd, size, pos - size)
        # The newline just before `offset` ends the previous line; it does not count as one back.
        end = len(data) - 1 if pos == offset and data.endswith(b"\n") else len(data)
        i = end
        while (i := data.rfind(b"\n", 0, i)) >= 0:
            seen += 1
            if seen == n:
                return pos - size + i + 1
        pos -= size
    return limit


def span(path: Path, start: int, end: int | None, max_bytes: int) -> LogPiece:
    """Bytes ``[start, end)`` of ``path`` (``end`` None: to the end of the file). Over ``max_bytes``
    the first and last halves are kept, cut at line ends, and ``cut`` says how much was left
    out. Raises OSError if the file cannot be read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        stop = size if end is None else min(end, size)
        start = min(start, stop)
        if stop - start <= max_bytes:
            return LogPiece(str(path), start, stop, ((start, stop),))
        half = max_bytes // 2
        head_end = _line_end_before(f.fileno(), start + half, start)
        tail_start = _line_end_before(f.fileno(), stop - half, head_end)
    cut = tail_start - head_end
    return LogPiece(str(path), start, stop, ((start, head_end), (tail_start, stop)), cut)


def _line_end_before(fd: int, pos: int, floor: int) -> int:
    """The offset just after the last newline before ``pos`` (not below ``floor``)."""
    look = min(_LINE_MAX, pos - floor)
    data = os.pread(fd, look, pos - look)
    i = data.rfind(b"\n")
    return pos - look + i + 1 if i >= 0 else pos
