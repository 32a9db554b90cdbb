"""Assemble one crash block from its lines.

A block starts at ``infected with …`` (a signal), ``timeslice -N, current process
infected at …`` (a timeslice error) or a bare ``pc:`` frame (another stack trace),
and collects every line of the same task (family, spid) until ``end of stack
trace``. ``FATAL UNHANDLED EXCEPTION`` right after it chains a second stack onto
the same crash and means the server is going down.
"""

from __future__ import annotations

from datetime import datetime

from collectors.errorlog import lines as ln
from monitor.events import CrashBlock, CrashKind
from monitor.signature import crash_signature


class CrashBuilder:
    """Mutable while the block is being read; ``finish()`` makes the frozen event."""

    def __init__(self, first: ln.Line, kind: CrashKind, signal: int | None) -> None:
        self.time: datetime = first.time
        self.kind: CrashKind = kind
        self.signal = signal
        self.thread = first.thread
        self.engine = first.engine
        self.family = first.family
        self.spid = first.spid
        self.offset = first.offset
        self.last_time = first.time
        self.kpid: int | None = None
        self.suid: int | None = None
        self.address_function: str | None = None
        self.sql_lines: list[str] | None = None
        self.sql_text: list[list[str]] = []
        self.statement_number: int | None = None
        self.line_number: int | None = None
        self.curdb: int | None = None
        self.lasterror: int | None = None
        self.transtate: int | None = None
        self.curcmd: int | None = None
        self.program: str | None = None
        self.hostname: str | None = None
        self.login: str | None = None
        self.frames: list[str] = []
        self.handlers: list[str] = []
        self.complete = False
        self.fatal = False
        self.terminated = False
        self.lines = 1
        self.idle_lines = 0  # lines of other tasks since this block's last line
        # Where unprefixed continuation lines go: the SQL being collected, if any.
        self._continuation: list[str] | None = None
        if kind == "other":
            fm = ln.FRAME_RE.match(first.text)
            if fm:
                self.frames.append(ln.function_name(fm.group(1)) or "(null)")

    @property
    def collecting_second_stack(self) -> bool:
        return self.fatal and not self.complete

    def add(self, line: ln.Line) -> None:
        """Take one prefixed line of this task. Sets ``complete`` at ``end of stack trace``."""
        self.lines += 1
        self.last_time = line.time
        self.idle_lines = 0
        self._continuation = None
        text = line.text
        if text.startswith("FATAL UNHANDLED EXCEPTION"):
            self.start_fatal(line)
            return
        if self.fatal:
            # The second stack after FATAL UNHANDLED EXCEPTION: keep its end, not its frames.
            m = ln.END_RE.match(text)
            if m:
                self.complete = True
            return
        if text.startswith("pc:"):
            fm = ln.FRAME_RE.match(text)
            if fm:
                self.frames.append(ln.function_name(fm.group(1)) or "(null)")
            return
        if text.startswith("[Handler pc:"):
            hm = ln.HANDLER_RE.match(text)
            if hm:
                self.handlers.append(hm.group(1))
            return
        m = ln.END_RE.match(text)
        if m:
            self.complete = True
            self.kpid = int(m.group(2))
            self.suid = int(m.group(3))
            return
        self._field(text)

    def _field(self, text: str) -> None:
        if text.startswith("SQL causing error :"):
            self.sql_lines = [text[len("SQL causing error :") :].lstrip()]
            self._continuation = self.sql_lines
        elif text.startswith("SQL Text:"):
            part = [text[len("SQL Text:") :].lstrip()]
            self.sql_text.append(part)
            self._continuation = part
        elif m := ln.ADDRESS_RE.match(text):
            self.address_function = ln.function_name(m.group(1))
        elif m := ln.STMT_RE.match(text):
            self.statement_number, self.line_number = int(m.group(1)), int(m.group(2))
        elif m := ln.CURDB_RE.match(text):
            self.curdb = int(m.group(1))
        elif m := ln.LASTERROR_RE.match(text):
            self.lasterror, self.transtate = int(m.group(1)), int(m.group(2))
        elif m := ln.CURCMD_RE.match(text):
            self.curcmd, self.program = int(m.group(1)), ln.blank_to_none(m.group(2))
        elif m := ln.EXTENDED_RE.match(text):
            self.hostname, self.login = ln.blank_to_none(m.group(1)), ln.blank_to_none(m.group(2))
        elif m := ln.ENGINE_RE.match(text):
            self.engine = int(m.group(1))

    def continuation(self, text: str) -> bool:
        """An unprefixed line: part of the SQL being collected. False when nothing takes it."""
        self.lines += 1
        if self._continuation is None:
            return False
        self._continuation.append(text.rstrip("\r"))
        return True

    def start_fatal(self, line: ln.Line) -> None:
        """``FATAL UNHANDLED EXCEPTION`` after this block: the server goes down with it."""
        self.lines += 1
        self.fatal = True
        self.terminated = True
        self.complete = False
        self.last_time = line.time

    def finish(self) -> CrashBlock:
        sql = _join(self.sql_lines) if self.sql_lines is not None else None
        # ASE writes "[no text]" when the task had no SQL (a system task).
        sql_text = tuple(t for t in (_join(p) for p in self.sql_text) if t and t != "[no text]")
        procedure = ln.exec_procedure(sql) or ln.exec_procedure(sql_text[0] if sql_text else None)
        frames = tuple(self.frames)
        return CrashBlock(
            time=self.time,
            kind=self.kind,
            signal=self.signal,
            thread=self.thread,
            engine=self.engine,
            family=self.family,
            spid=self.spid,
            kpid=self.kpid,
            suid=self.suid,
            address_function=self.address_function,
            sql=sql or None,
            statement_number=self.statement_number,
            line_number=self.line_number,
            sql_text=sql_text,
            curdb=self.curdb,
            lasterror=self.lasterror,
            transtate=self.transtate,
            curcmd=self.curcmd,
            program=self.program,
            hostname=self.hostname,
            login=self.login,
            frames=frames,
            handlers=tuple(self.handlers),
            # A fatal chain counts as complete once its first stack reached its end.
            complete=self.complete or self.fatal,
            server_terminated=self.terminated,
            procedure=procedure,
            signature=crash_signature(self.kind, self.signal, frames, self.address_function),
            offset=self.offset,
            lines=self.lines,
        )


def _join(parts: list[str]) -> str:
    """SQL lines joined as logged, without the blank lines ASE leaves at the end."""
    return "\n".join(parts).rstrip()
