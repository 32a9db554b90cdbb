"""Reading a large errorlog backlog without holding up the live end.

When the follower starts with many bytes not yet read (the first start on a 1 GiB
errorlog, or a restart after a long stop), a crash written *now* must not wait until
the history is parsed. The backlog is split at a line boundary ``split`` near the
current end:

- the live tail starts at ``split``, about :data:`LIVE_TAIL` bytes before the end, at
  once, with the parser state taken from the :data:`SEED_BYTES` before it: a crash
  written in the last moments before the start, or appended now, is reported within
  the usual quiet period;
- a :class:`Backlog` reads ``[start, split)`` in slices between live reads, with its
  own parser, and emits the history's records as it goes.

Until the backlog is done the persisted position stays at the backlog's safe offset
(with its parser state), so a ``kill -9`` during catch-up loses nothing: the restart
re-reads from there, and records it sees twice carry the same keys (the store keeps
one). When the backlog reaches ``split`` the live position takes over.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from collectors.errorlog.parser import ErrorlogParser, ParserState
from monitor.events import ErrorlogRecord
from monitor.tail import TailPosition

#: A backlog smaller than this is read in line, as before (a few tenths of a second).
CATCHUP_MIN = 32 << 20
#: Bytes at the end of the file read by the live parser at once (the newest records).
LIVE_TAIL = 1 << 20
#: Bytes before the split parsed to seed the live parser's state.
SEED_BYTES = 1 << 20
#: Bytes of history parsed per turn of the follower's loop, between live reads.
SLICE = 8 << 20
_HEAD_LEN = 1024


@dataclass(frozen=True, slots=True)
class Split:
    """Where the live tail starts (``live``, with ``live_state``) and the backlog's extent."""

    live: TailPosition
    live_state: ParserState
    start: int
    start_state: ParserState


def plan_split(path: Path, saved: TailPosition | None, state: ParserState) -> Split | None:
    """A split when the file at ``path`` has more than :data:`CATCHUP_MIN` unread bytes after
    ``saved`` (None: never read) and ``saved`` names this very file; else None (read in line).
    Raises OSError when the file cannot be opened or read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        head = os.pread(fd, _HEAD_LEN, 0)
        start = 0
        if saved is not None:
            same = (st.st_dev, st.st_ino) == (saved.device, saved.inode)
            if not same or hashlib.sha256(os.pread(fd, saved.head_len, 0)).hexdigest() != saved.head_hash:
                return None  # rotated or rewritten: the tailer's own resume logic handles it
            start = saved.offset
        if st.st_size - start < CATCHUP_MIN or len(head) < _HEAD_LEN:
            return None
        seed_to = st.st_size - LIVE_TAIL
        seed_from = max(start, seed_to - SEED_BYTES)
        tail = os.pread(fd, seed_to - seed_from, seed_from)
    finally:
        os.close(fd)
    nl = tail.rfind(b"\n")
    first = tail.find(b"\n") + 1
    if nl < 0 or first > nl:
        return None
    # Parse whole lines of the seed; start live where the seed parser holds nothing, so a
    # record that spans the split is read whole by the live parser.
    seed = ErrorlogParser(offset=seed_from + first)
    seed.feed(tail[first : nl + 1])
    split = seed.safe_offset
    if split - start < CATCHUP_MIN // 2:
        return None
    live = TailPosition(str(path), st.st_dev, st.st_ino, split, hashlib.sha256(head).hexdigest(), _HEAD_LEN)
    return Split(live, seed.state(), start, state)


class Backlog:
    """The history ``[start, end)`` of one file, parsed a slice at a time.

    Holds its own fd, so a rotation of the live file does not cut the history short.
    """

    def __init__(self, path: Path, split: Split) -> None:
        self.path = str(path)
        self.split = split
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._pos = split.start
        self._end = split.live.offset
        self._template = split.live
        self.parser = ErrorlogParser(offset=split.start, state=split.start_state)

    @property
    def done(self) -> bool:
        return self._fd < 0

    def step(self) -> list[ErrorlogRecord]:
        """Parse the next slice; at the split, flush and close. Raises OSError on a read error."""
        data = os.pread(self._fd, min(SLICE, self._end - self._pos), self._pos)
        if not data:  # the file shrank under us: what was read is all there is
            self._end = self._pos
        self._pos += len(data)
        records = self.parser.feed(data)
        if self._pos >= self._end:
            records += self.parser.flush_idle()
            self.close()
        return records

    def position(self) -> tuple[TailPosition, ParserState]:
        """The resume point while the backlog is not done: its parser's safe offset."""
        t = self._template
        pos = TailPosition(t.path, t.device, t.inode, self.parser.safe_offset, t.head_hash, t.head_len)
        return pos, self.parser.state()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
