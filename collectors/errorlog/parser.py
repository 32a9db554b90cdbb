"""A streaming parser over errorlog bytes: feed it any pieces, get typed records.

Speed comes from not looking at most lines. Routine lines (the vast majority) are
counted, never decoded: one vectorised pass over each chunk (collectors/errorlog/scan.py)
finds the few lines whose message starts with a marker (``Error:``, ``Current
process``, ``The configuration option``, boot and shutdown lines, ``pc:``) or that do
not look like prefixed lines, and only those lines — and every line of a crash block
or boot sequence once one has started — are decoded and parsed. The pass costs the
same whatever the log holds: separators, layouts and crash blocks do not change it.

The parser is the same offline (``asewatch errorlog``) and live (the agent's
tail): ``feed()`` takes bytes, ``flush_idle()`` is called after a quiet period,
``close()`` at the end of a file. ``safe_offset`` is the stream offset before
which every record has been returned: a follower persists it, and after a restart
re-reads from there, so nothing is reported twice or missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from collectors.errorlog import lines as ln
from collectors.errorlog.crashblock import CrashBuilder
from collectors.errorlog.scan import MARKER_TEXT_RE, scan_lines
from monitor.events import (
    ConfigChanged,
    ErrorlogError,
    ErrorlogRecord,
    ServerBooted,
    ServerShutdown,
    ShutdownKind,
)

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOOT_FAIL_RE = re.compile(
    r"will not boot|could not create shared memory|couldn't create kernel region|"
    r"can't allocate \d+ bytes|unable to (?:boot|start)",
    re.IGNORECASE,
)
_BOOT_LINE_LIMIT = 5000
_BLOCK_GAP_SECONDS = 5.0
_BLOCK_LINE_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class ParserState:
    """What a follower persists with its offset so a restarted parser continues the story."""

    down: bool = False
    seen_line: bool = False
    recent_fatal: bool = False
    last_time: str | None = None


class _Boot:
    __slots__ = ("failure", "lines", "offset", "time", "version")

    def __init__(self, time: datetime, offset: int) -> None:
        self.time = time
        self.offset = offset
        self.version: str | None = None
        self.failure: str | None = None
        self.lines = 0


class ErrorlogParser:
    """Incremental errorlog parser. Not thread-safe: one parser per stream.

    ``lines`` counts every line; ``unparsed_lines`` counts lines without a valid
    prefix that no record could take (text before the first prefixed line, and lines
    with control characters: binary junk). ``long_lines`` counts lines cut at
    ``max_line`` bytes so memory stays bounded whatever the input.
    """

    def __init__(self, *, offset: int = 0, state: ParserState | None = None, max_line: int = 1 << 20) -> None:
        st = state or ParserState()
        self._base = offset  # stream offset of self._buf[0]
        self._origin = offset  # while a piece is processed: the stream offset of its byte 0
        self._buf = b""
        self._skipping = False  # inside an over-long line, dropping bytes to its newline
        self._max_line = max_line
        self._down = st.down
        self._seen_line = st.seen_line
        self._recent_fatal = st.recent_fatal
        self._last_time = datetime.fromisoformat(st.last_time) if st.last_time else None
        self._blocks: dict[tuple[int, int], CrashBuilder] = {}
        self._held: CrashBuilder | None = None
        self._boot: _Boot | None = None
        self._pending_error: tuple[ln.Line, int, int, int] | None = None
        self._cont_block: CrashBuilder | None = None
        self._out: list[ErrorlogRecord] = []
        # Lines skipped unread since the last handled one: (buf, start, end), parsed only when
        # their last time is needed (an unclean stop's time, a persisted state).
        self._skipped: tuple[bytes, int, int] | None = None
        # The state at the first line of each held block or boot: what a resume from there needs.
        self._hold_states: dict[int, ParserState] = {}
        self.lines = 0
        self.unparsed_lines = 0
        self.long_lines = 0
        self.examined_bytes = 0  # bytes the scanner looked at: linear in the input, whatever it holds

    # ------------------------------------------------------------------ public API

    def feed(self, data: bytes) -> list[ErrorlogRecord]:
        """Parse more bytes of the stream; returns the records completed by them."""
        start = 0
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                self._base += len(data)
                return self._take()
            self._base += nl + 1
            start = nl + 1
            self._skipping = False
        nl = data.find(b"\n", start)
        if nl < 0:
            rest = self._buf + data[start:]
        else:
            if self._buf:  # the line cut at the end of the last piece, on its own
                head = self._buf + data[start : nl + 1]
                self._process(head, 0, len(head))
                self._base += len(head)
                start = nl + 1
            end = data.rfind(b"\n", start) + 1
            if end > start:  # the piece's whole lines, in place (no copy of the piece)
                self._process(data, start, end)
                self._base += end - start
                start = end
            rest = data[start:]
        if len(rest) > self._max_line:
            # An over-long line: keep its head as a line, drop the rest up to its newline.
            self.long_lines += 1
            self._process(rest[: self._max_line] + b"\n", 0, self._max_line + 1)
            self._base += len(rest)
            rest = b""
            self._skipping = True
        self._buf = rest
        return self._take()

    def flush_idle(self, *, incomplete: bool = True) -> list[ErrorlogRecord]:
        """After a quiet period: emit what waits for more lines (held crash, boot, pending error).

        With ``incomplete=False`` blocks that have not reached ``end of stack trace`` stay
        open: a server still writing its stack must not have it cut in two. The live
        follower closes those only after a longer quiet (the writer died mid-block).
        """
        self._emit_held()
        if incomplete:
            for key in list(self._blocks):
                self._close_block(key)
        self._close_boot()
        if self._pending_error is not None:
            self._finish_error(None)
        return self._take()

    def close(self) -> list[ErrorlogRecord]:
        """End of the stream: parse a last line without newline and flush everything."""
        if self._buf and not self._skipping:
            self._process(self._buf + b"\n", 0, len(self._buf))
            self._base += len(self._buf)
            self._buf = b""
        return self._take() + self.flush_idle()

    @property
    def safe_offset(self) -> int:
        """Stream offset before which every record has been returned by this parser."""
        starts = [b.offset for b in self._blocks.values()]
        if self._held is not None:
            starts.append(self._held.offset)
        if self._boot is not None:
            starts.append(self._boot.offset)
        if self._pending_error is not None:
            starts.append(self._pending_error[0].offset)
        return min(starts) if starts else self._base

    @property
    def holding(self) -> bool:
        """Whether a record waits for more lines (or for ``flush_idle``)."""
        return bool(self._blocks or self._held or self._boot or self._pending_error)

    def state(self) -> ParserState:
        """The cross-record state at ``safe_offset``, to persist beside it."""
        held = self._hold_states.get(self.safe_offset) if self.holding else None
        return held if held is not None else self._current_state()

    def _current_state(self) -> ParserState:
        self._resolve_skipped()
        last = self._last_time.isoformat() if self._last_time else None
        return ParserState(self._down, self._seen_line, self._recent_fatal, last)

    # ------------------------------------------------------------------ scanning

    def _take(self) -> list[ErrorlogRecord]:
        if not self.holding:
            self._hold_states.clear()
        elif len(self._hold_states) > 1:  # keep only what state() can still be asked for
            safe = self.safe_offset
            self._hold_states = {o: st for o, st in self._hold_states.items() if o >= safe}
        out, self._out = self._out, []
        return out

    def _line_mode(self) -> bool:
        return bool(self._blocks or self._held or self._boot or self._pending_error or self._cont_block)

    def _process(self, buf: bytes, start: int, end: int) -> None:
        """Handle the complete lines in ``buf[start:end]`` (``end`` is just past a newline;
        ``buf[start]`` is at stream offset ``self._base``)."""
        self._origin = self._base - start  # stream offset of buf[0]
        sc = scan_lines(buf, end, start)
        self.lines += sc.lines
        self.examined_bytes += sc.examined
        pos = start
        for first, nl in zip(sc.starts, sc.ends, strict=True):
            pos = self._read_record_lines(buf, pos, end)
            if first < pos:  # already read while a record was open
                continue
            if first > pos:
                self._skip(buf, pos, first)
            self._handle(buf[first:nl], self._origin + first)
            pos = nl + 1
        pos = self._read_record_lines(buf, pos, end)
        if pos < end:
            self._skip(buf, pos, end)
        self._resolve_skipped()  # buf is gone after this call

    def _read_record_lines(self, buf: bytes, pos: int, end: int) -> int:
        """While a record is open every line is read, in order; returns where that stopped."""
        while pos < end and self._line_mode():
            nl = buf.index(b"\n", pos)
            self.examined_bytes += nl - pos
            self._handle(buf[pos:nl], self._origin + pos)
            pos = nl + 1
        return pos

    def _skip(self, buf: bytes, start: int, end: int) -> None:
        """Note lines passed over unread. Unprefixed lines handled in between (blank, junk) do
        not end a skipped range: the last prefixed line before the next one is still in it."""
        if self._skipped is not None and self._skipped[0] is buf:
            start = self._skipped[1]
        self._skipped = (buf, start, end)

    def _resolve_skipped(self) -> None:
        """Take the time of the last prefixed line among the skipped ones, if any."""
        if self._skipped is None:
            return
        buf, lo, end = self._skipped
        self._skipped = None
        while end > lo:
            start = max(buf.rfind(b"\n", lo, end - 1) + 1, lo)
            line = ln.parse_line(ln.decode(buf[start : end - 1]), self._origin + start)
            if line is not None:
                self._last_time = line.time
                self._seen_line = True
                return
            end = start

    # ------------------------------------------------------------------ one line

    def _handle(self, raw: bytes, offset: int) -> None:
        text = ln.decode(raw)
        line = ln.parse_line(text, offset)
        if line is None:
            self._unprefixed(text)
            return
        self._take_line(line)
        self._skipped = None  # this line comes after them
        self._last_time = line.time
        self._seen_line = True

    def _take_line(self, line: ln.Line) -> None:
        if self._pending_error is not None:
            is_message = line.task == self._pending_error[0].task
            self._finish_error(line if is_message else None)
            if is_message:
                return
        self._cont_block = None
        block = self._blocks.get(line.task)
        if block is not None:
            block.add(line)
            self._cont_block = block
            if block.complete:
                del self._blocks[line.task]
                self._emit_held()
                self._held = block
            return
        if self._held is not None and self._held_takes(line):
            return
        self._expire_blocks(line)
        self._classify(line)

    def _unprefixed(self, text: str) -> None:
        if self._cont_block is not None and self._cont_block.continuation(text):
            return
        if text.strip() and (not self._seen_line or _CONTROL_RE.search(text)):
            self.unparsed_lines += 1

    def _held_takes(self, line: ln.Line) -> bool:
        """The line right after a finished stack: the fatal chain, or the server going down."""
        held = self._held
        assert held is not None
        text = line.text
        if text.startswith("FATAL UNHANDLED EXCEPTION"):
            held.start_fatal(line)
            self._held = None
            self._blocks[line.task] = held
            return True
        if text.startswith(("ueshutdown", "Main thread performing final shutdown")):
            held.terminated = True
        self._emit_held()
        return False

    def _classify(self, line: ln.Line) -> None:
        text = line.text
        if self._boot is not None:
            self._boot_line(line)
        if not MARKER_TEXT_RE.match(text):
            return
        if text.startswith("Error: "):
            m = ln.ERROR_RE.match(text)
            if m:
                self._pending_error = (line, int(m.group(1)), int(m.group(2)), int(m.group(3)))
            return
        if text.startswith("The configuration option"):
            m = ln.CONFIG_RE.match(text)
            if m:
                option, by, old, new = m.groups()
                self._out.append(ConfigChanged(line.time, line.spid, option, by, old, new, line.offset))
            return
        if "infected" in text:
            sm = ln.SIGNAL_RE.search(text)
            if sm:
                self._open_block(line, "signal", int(sm.group(1)))
                return
            tm = ln.TIMESLICE_RE.match(text)
            if tm:
                b = self._open_block(line, "timeslice", None)
                b.address_function = ln.function_name(tm.group(1))
                return
        if text.startswith("pc:"):
            self._open_block(line, "other", None)
            return
        if text.startswith(("SySAM: Using", "Using config area", "Adaptive Server Enterprise")):
            if self._boot is None:
                self._start_boot(line)
            return
        self._shutdown_line(line)

    # ------------------------------------------------------------------ records

    def _finish_error(self, message_line: ln.Line | None) -> None:
        assert self._pending_error is not None
        first, number, severity, state = self._pending_error
        self._pending_error = None
        msg = message_line.text if message_line is not None else ""
        if severity >= 19:
            self._recent_fatal = True
        self._out.append(
            ErrorlogError(
                first.time, first.thread, first.family, first.spid, number, severity, state, msg, first.offset
            )
        )

    def _open_block(self, line: ln.Line, kind: str, signal: int | None) -> CrashBuilder:
        self._hold_states.setdefault(line.offset, self._current_state())
        b = CrashBuilder(line, kind, signal)  # type: ignore[arg-type]
        old = self._blocks.pop(line.task, None)
        if old is not None:
            self._out.append(old.finish())
        self._blocks[line.task] = b
        self._cont_block = b
        return b

    def _close_block(self, key: tuple[int, int]) -> None:
        self._emit(self._blocks.pop(key))

    def _expire_blocks(self, line: ln.Line) -> None:
        """Another task's line: blocks of other tasks stay open (engines log concurrently)
        unless they went quiet in log time or were overtaken by many lines."""
        for key, b in list(self._blocks.items()):
            b.idle_lines += 1
            gap = (line.time - b.last_time).total_seconds()
            if gap > _BLOCK_GAP_SECONDS or gap < 0 or b.idle_lines > _BLOCK_LINE_LIMIT:
                self._close_block(key)

    def _emit_held(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._emit(held)

    def _emit(self, b: CrashBuilder) -> None:
        crash = b.finish()
        self._out.append(crash)
        self._recent_fatal = True
        if crash.server_terminated and not self._down:
            self._out.append(ServerShutdown(crash.time, "fatal", None, crash.offset))
            self._down = True

    def _start_boot(self, line: ln.Line) -> None:
        self._resolve_skipped()  # the unclean stop is dated by the last line before the boot
        if not self._down and self._seen_line and self._last_time is not None:
            self._out.append(ServerShutdown(self._last_time, "unclean", None, line.offset))
            self._down = True  # reported: a parser resumed at this boot must not report it again
        self._hold_states.setdefault(line.offset, self._current_state())
        self._boot = _Boot(line.time, line.offset)
        self._down = False
        self._recent_fatal = False
        self._boot_line(line)

    def _boot_line(self, line: ln.Line) -> None:
        boot = self._boot
        assert boot is not None
        boot.lines += 1
        text = line.text
        if boot.version is None:
            vm = ln.VERSION_RE.match(text)
            if vm:
                boot.version = vm.group(1)
        if _BOOT_FAIL_RE.search(text):
            boot.failure = boot.failure or text.strip()
            self._close_boot()
            self._down = True
            return
        if line.spid != 0 or boot.lines > _BOOT_LINE_LIMIT:
            self._close_boot()

    def _close_boot(self) -> None:
        boot, self._boot = self._boot, None
        if boot is not None:
            self._out.append(
                ServerBooted(boot.time, boot.version, boot.failure is not None, boot.failure, boot.offset)
            )

    def _shutdown_line(self, line: ln.Line) -> None:
        text = line.text
        kind: ShutdownKind | None = None
        by: str | None = None
        if text.startswith("Shutdown started"):
            m = ln.SHUTDOWN_BY_RE.match(text)
            by = m.group(1) if m else None
            sql = (m.group(2) or "") if m else ""
            kind = "nowait" if "nowait" in sql.lower() else "requested"
        elif text.startswith("ASE shutdown by request"):
            kind = "requested"
        elif text.startswith(("ueshutdown", "Main thread performing final shutdown", "FATAL UNHANDLED")):
            kind = "fatal" if (self._recent_fatal or text.startswith("FATAL")) else "requested"
        if kind is not None and not self._down:
            self._out.append(ServerShutdown(line.time, kind, by, line.offset))
            self._down = True
