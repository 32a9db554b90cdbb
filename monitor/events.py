"""The typed events every collector emits.

Events are frozen, slotted dataclasses: values, never mutated, safe to pass between
threads. Each has a ``key`` that identifies the fact it reports, so that seeing the
same fact twice (a re-read errorlog, an agent restarted after ``kill -9``) changes
nothing in the store.

Times are naive ``datetime`` values in the server's local time when they come from
the errorlog (ASE writes no zone), and float POSIX seconds when the agent observed
them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.eventkey import digest

CrashKind = Literal["signal", "timeslice", "other"]
ShutdownKind = Literal["requested", "nowait", "fatal", "unclean"]


_digest = digest

# --------------------------------------------------------------------------- errorlog records


@dataclass(frozen=True, slots=True)
class ErrorlogError:
    """An ``Error: N, Severity: S, State: T`` line and the message line after it."""

    time: datetime
    thread: int | None
    family: int
    spid: int
    number: int
    severity: int
    state: int
    message: str
    offset: int

    @property
    def key(self) -> str:
        return "err:" + _digest(self.time.isoformat(), self.spid, self.number, self.state, self.message)


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """``The configuration option 'X' has been changed by 'U' from 'A' to 'B'.``"""

    time: datetime
    spid: int
    option: str
    by: str
    old: str
    new: str
    offset: int

    @property
    def key(self) -> str:
        return "cfg:" + _digest(self.time.isoformat(), self.spid, self.option, self.old, self.new)


@dataclass(frozen=True, slots=True)
class ServerBooted:
    """A start-up sequence. ``version`` is the ``Adaptive Server Enterprise/…`` string when logged."""

    time: datetime
    version: str | None
    failed: bool
    failure: str | None
    offset: int

    @property
    def key(self) -> str:
        return "boot:" + _digest(self.time.isoformat())


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """How a server went down: requested, ``with nowait``, after a fatal error, or unclean.

    ``unclean`` means a boot followed with no shutdown sequence before it (an external
    kill, a host or power loss); its ``time`` is the last line written before the boot.
    """

    time: datetime
    kind: ShutdownKind
    by: str | None
    offset: int

    @property
    def key(self) -> str:
        return "shutdown:" + _digest(self.time.isoformat(), self.kind)


@dataclass(frozen=True, slots=True)
class CrashBlock:
    """One crash as the errorlog tells it: a signal, a timeslice error, or another stack trace.

    ``frames`` are function names with addresses, offsets and argument lists removed, in
    the order logged (innermost first). ``handlers`` are the ``[Handler pc: …]`` lines,
    kept apart. ``complete`` says whether ``end of stack trace`` was reached.
    ``server_terminated`` says whether the log shows the server going down with it
    (the ``FATAL UNHANDLED EXCEPTION`` chain or shutdown lines right after).
    Unknown values are ``None``.
    """

    time: datetime
    kind: CrashKind
    signal: int | None
    thread: int | None
    engine: int | None
    family: int
    spid: int
    kpid: int | None
    suid: int | None
    address_function: str | None
    sql: str | None
    statement_number: int | None
    line_number: int | None
    sql_text: tuple[str, ...]
    curdb: int | None
    lasterror: int | None
    transtate: int | None
    curcmd: int | None
    program: str | None
    hostname: str | None
    login: str | None
    frames: tuple[str, ...]
    handlers: tuple[str, ...]
    complete: bool
    server_terminated: bool
    procedure: str | None
    signature: str
    offset: int
    lines: int

    @property
    def key(self) -> str:
        return "crash:" + _digest(self.time.isoformat(), self.spid, self.kpid)


ErrorlogRecord = ErrorlogError | ConfigChanged | ServerBooted | ServerShutdown | CrashBlock


# --------------------------------------------------------------------------- process watch


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    """A dataserver process was found running. Identity is (pid, create_time)."""

    server: str
    pid: int
    create_time: float
    engine: int | None
    cmdline: tuple[str, ...]
    observed_at: float

    @property
    def key(self) -> str:
        return f"pstart:{self.server}:{self.pid}:{self.create_time:.3f}"


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """A dataserver process is gone. ``signal``/``returncode`` when the agent could learn them."""

    server: str
    pid: int
    create_time: float
    exit_time: float
    returncode: int | None
    signal: int | None
    observed_at: float

    @property
    def key(self) -> str:
        return f"pexit:{self.server}:{self.pid}:{self.create_time:.3f}"


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """Resource use of a running dataserver process at ``time``."""

    server: str
    pid: int
    create_time: float
    time: float
    rss_bytes: int
    cpu_seconds: float
    threads: int
    open_files: int | None

    @property
    def key(self) -> str:
        return f"psample:{self.server}:{self.pid}:{self.time:.3f}"


# --------------------------------------------------------------------------- collector health


@dataclass(frozen=True, slots=True)
class CollectorFailed:
    """A source failed; the agent keeps going and retries."""

    collector: str
    reason: str
    time: float

    @property
    def key(self) -> str:
        return f"cfail:{self.collector}:{self.time:.6f}"


@dataclass(frozen=True, slots=True)
class CollectorSucceeded:
    """A source was read successfully at ``time``."""

    collector: str
    time: float

    @property
    def key(self) -> str:
        return f"cok:{self.collector}:{self.time:.6f}"


ProcessEvent = ProcessStarted | ProcessExited | ProcessSample
HealthEvent = CollectorFailed | CollectorSucceeded

# Feature events live in their own modules (one owner each); the union makes them known
# to the codec and the store. Imported here, at the end, because they use only eventkey.
from monitor.events_changes import ChangeEvent  # noqa: E402
from monitor.events_dumps import DumpEvent  # noqa: E402
from monitor.events_mda import MdaEvent  # noqa: E402

Event = ErrorlogRecord | ProcessEvent | HealthEvent | ChangeEvent | MdaEvent | DumpEvent
