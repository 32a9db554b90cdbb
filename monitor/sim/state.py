"""The simulated server's live state: what a TDS thread will serve as MDA tables.

Everything the TDS server threads (monitor/sim/tds) serve lives in one :class:`SimState`
guarded by one lock: sessions (``monProcess``; TDS clients get spids from
``CLIENT_SPIDS``), the statement pipe (``monSysStatement``) and the SQL text pipe
(``monSysSQLText``), rings that overwrite the oldest rows like ASE's pipes and are sized
by ``statement pipe max messages`` / ``sql text pipe max messages`` (whole rings, not per
engine), recent statements per spid, statements executing now (``monProcessStatement``),
flag values (the application's flag table), configuration values (run values, plus static
changes pending a reboot) and recorded application deployments. Readers get copies; the
lock is held only for copying, never while encoding or sending.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from monitor.sim.scenario import FlagValue

PER_SPID_HISTORY = 100
CLIENT_SPIDS = range(400, 2000)  # TDS clients (the monitor): apart from workload users and workers
TEXT_CHUNK = 255  # monSysSQLText.SQLText is varchar(255); longer batches take several rows
STATEMENT_PIPE = "statement pipe max messages"
TEXT_PIPE = "sql text pipe max messages"


@dataclass(frozen=True, slots=True)
class Session:
    """One connection (or parallel worker task). ``family`` is the parent spid of a worker, else 0."""

    spid: int
    kpid: int
    login: str
    suid: int
    host: str
    program: str
    db: str
    dbid: int
    engine: int
    family: int
    connected_at: float


@dataclass(frozen=True, slots=True)
class StatementRecord:
    """One executed (or executing) statement, in ``monSysStatement`` terms.

    Times are POSIX seconds; ``end`` is ``None`` while it runs. ``seq`` increases by one
    per record server-wide, so a reader can ask for what it has not seen yet.
    """

    seq: int
    spid: int
    kpid: int
    family: int
    login: str
    host: str
    program: str
    db: str
    dbid: int
    procedure: str
    proc_id: int
    line: int
    statement_number: int
    batch_id: int
    context_id: int
    start: float
    end: float | None
    cpu_ms: int
    wait_ms: int
    logical_reads: int
    physical_reads: int
    rows: int
    error: int
    sql: str


@dataclass(frozen=True, slots=True)
class TextRecord:
    """One ``monSysSQLText`` row: up to 255 characters of a batch, numbered by ``sequence``."""

    seq: int
    spid: int
    kpid: int
    suid: int
    batch_id: int
    sequence: int
    text: str


@dataclass(frozen=True, slots=True)
class Deployment:
    """An application change recorded by the scenario (e.g. ``IMX 7.1.0``)."""

    time: float
    what: str
    by: str


class SimState:
    """Live state of one dataserver incarnation. All methods are thread-safe."""

    def __init__(
        self,
        server: str,
        version: str,
        flags: Mapping[str, FlagValue],
        config: Mapping[str, str],
        pipe_size: int = 5000,
    ) -> None:
        self.server = server
        self.version = version
        self.boot_time = time.time()
        self._lock = threading.Lock()
        self._flags = dict(flags)
        self._config = dict(config)
        self._pending: dict[str, str] = {}  # static parameters changed since boot (run value unchanged)
        self._deployments: list[Deployment] = []
        self._sessions: dict[int, Session] = {}
        self._recent: dict[int, deque[StatementRecord]] = {}
        # (pipe position, record): positions follow the order rows enter the pipe, which is not
        # the order of StatementRecord.seq (a statement gets its seq when it starts).
        self._pipe: deque[tuple[int, StatementRecord]] = deque(maxlen=self._size(STATEMENT_PIPE, pipe_size))
        self._pipe_pos = 0
        self._texts: deque[TextRecord] = deque(maxlen=self._size(TEXT_PIPE, pipe_size))
        self._active: dict[int, StatementRecord] = {}
        self._seq = 0
        self._text_seq = 0
        self._statements = 0
        self._dumping = False
        self._stmt_on = self._text_on = True
        self._switches()

    def _size(self, name: str, default: int) -> int:
        try:
            return max(0, int(self._config.get(name, default)))
        except ValueError:
            return max(0, default)

    def _switches(self) -> None:
        """Pipes record only while monitoring and the pipe are on, as in ASE (caller holds the lock)."""
        on = self._config.get("enable monitoring", "1") != "0"
        self._stmt_on = on and self._config.get("statement pipe active", "1") != "0"
        self._text_on = on and self._config.get("sql text pipe active", "1") != "0"

    # ------------------------------------------------------------------ sessions
    def connect(self, session: Session) -> None:
        """Add a session (replaces one with the same spid)."""
        with self._lock:
            self._sessions[session.spid] = session
            self._recent.setdefault(session.spid, deque(maxlen=PER_SPID_HISTORY))

    def disconnect(self, spid: int) -> None:
        """Remove a session; its recent statements stay readable until the spid is reused."""
        with self._lock:
            self._sessions.pop(spid, None)
            self._active.pop(spid, None)

    def connect_client(self, make: Callable[[int], Session]) -> Session:
        """Register a TDS client on the lowest free spid of ``CLIENT_SPIDS``; ``make(spid)`` builds it.

        Raises ``RuntimeError`` when every client spid is taken.
        """
        with self._lock:
            spid = next((s for s in CLIENT_SPIDS if s not in self._sessions), None)
            if spid is None:
                raise RuntimeError("no free spid for a client connection")
            session = self._sessions[spid] = make(spid)
            return session

    def sessions(self) -> tuple[Session, ...]:
        """The connected sessions, ordered by spid."""
        with self._lock:
            return tuple(self._sessions[s] for s in sorted(self._sessions))

    # ---------------------------------------------------------------- statements
    def next_seq(self) -> int:
        """Reserve the next statement sequence number."""
        with self._lock:
            self._seq += 1
            return self._seq

    def record(self, stmt: StatementRecord, *, text: bool = True) -> None:
        """Store a finished statement in the pipe and in its spid's recent history.

        Its SQL text enters the text pipe now unless :meth:`begin` put it there already
        (ASE writes the text when a statement starts and the statement row when it ends)
        or ``text`` is false (a later statement of a batch whose text is there already).
        """
        with self._lock:
            self._statements += 1
            if self._stmt_on:
                self._pipe_pos += 1
                self._pipe.append((self._pipe_pos, stmt))
            ring = self._recent.get(stmt.spid)
            if ring is None:
                ring = self._recent[stmt.spid] = deque(maxlen=PER_SPID_HISTORY)
            ring.append(stmt)
            running = self._active.get(stmt.spid)
            if running is not None and running.seq == stmt.seq:
                del self._active[stmt.spid]
            elif self._text_on and text:
                self._add_text(stmt)

    def begin(self, stmt: StatementRecord) -> None:
        """Mark a statement as executing now on its spid (its SQL text is visible at once)."""
        with self._lock:
            self._active[stmt.spid] = stmt
            if self._text_on:
                self._add_text(stmt)

    def _add_text(self, stmt: StatementRecord) -> None:
        session = self._sessions.get(stmt.spid)
        suid = session.suid if session else 0
        text = stmt.sql or " "
        for i in range(0, len(text), TEXT_CHUNK):
            self._text_seq += 1
            self._texts.append(
                TextRecord(
                    self._text_seq,
                    stmt.spid,
                    stmt.kpid,
                    suid,
                    stmt.batch_id,
                    i // TEXT_CHUNK + 1,
                    text[i : i + TEXT_CHUNK],
                )
            )

    def recent(self, spid: int) -> tuple[StatementRecord, ...]:
        """The last statements of ``spid``, oldest first."""
        with self._lock:
            return tuple(self._recent.get(spid, ()))

    def since(self, seq: int) -> tuple[StatementRecord, ...]:
        """Statements still in the pipe with ``seq`` greater than the one given, in pipe order."""
        with self._lock:
            return tuple(s for _, s in self._pipe if s.seq > seq)

    def pipe_read(self, position: int) -> tuple[int, tuple[StatementRecord, ...]]:
        """A reader's unread statements: (its new position, the rows after ``position``, oldest first).

        Rows the ring overwrote since the reader's last read are simply gone (overflow).
        """
        with self._lock:
            out = []
            for pos, s in reversed(self._pipe):  # newest first: stop at the reader's position
                if pos <= position:
                    break
                out.append(s)
            last = self._pipe[-1][0] if self._pipe else position
        out.reverse()
        return max(last, position), tuple(out)

    def text_since(self, seq: int) -> tuple[TextRecord, ...]:
        """SQL text rows still in the text pipe with ``seq`` greater than the one given, oldest first."""
        with self._lock:
            out = []
            for t in reversed(self._texts):
                if t.seq <= seq:
                    break
                out.append(t)
        out.reverse()
        return tuple(out)

    def statements_total(self) -> int:
        """Statements finished since this incarnation booted."""
        with self._lock:
            return self._statements

    def set_dumping(self, on: bool) -> None:
        """Whether a shared-memory dump is being written now (``monState.DiagnosticDumps``)."""
        with self._lock:
            self._dumping = on

    def dumping(self) -> bool:
        """True while a shared-memory dump is being written."""
        with self._lock:
            return self._dumping

    def active(self) -> tuple[StatementRecord, ...]:
        """Statements executing now, ordered by spid."""
        with self._lock:
            return tuple(self._active[s] for s in sorted(self._active))

    # --------------------------------------------------------- flags and config
    def flags(self) -> dict[str, FlagValue]:
        """A copy of the current application flag values."""
        with self._lock:
            return dict(self._flags)

    def config(self) -> dict[str, str]:
        """A copy of the current configuration values (run values, as strings)."""
        with self._lock:
            return dict(self._config)

    def set_flag(self, name: str, value: FlagValue) -> FlagValue | None:
        """Set a flag; returns the previous value (``None`` if it was unset)."""
        with self._lock:
            old = self._flags.get(name)
            self._flags[name] = value
            return old

    def set_config(self, name: str, value: str) -> str | None:
        """Set a configuration run value; returns the previous value.

        A pipe size change resizes its ring at once (keeping the newest rows), as the
        dynamic ASE parameters do.
        """
        with self._lock:
            old = self._config.get(name)
            self._config[name] = value
            self._pending.pop(name, None)
            if name == STATEMENT_PIPE:
                self._pipe = deque(self._pipe, maxlen=self._size(name, 0))
            elif name == TEXT_PIPE:
                self._texts = deque(self._texts, maxlen=self._size(name, 0))
            self._switches()
            return old

    def set_pending(self, name: str, value: str) -> str | None:
        """Change a static parameter's configured value (the run value waits for a reboot).

        Returns the previous configured value.
        """
        with self._lock:
            old = self._pending.get(name, self._config.get(name))
            self._pending[name] = value
            return old

    def configured(self) -> dict[str, str]:
        """Configured values (``sysconfigures``, the ``.cfg``): run values plus pending static changes."""
        with self._lock:
            return {**self._config, **self._pending}

    def pipe_sizes(self) -> tuple[int, int]:
        """Capacity of the statement pipe and of the SQL text pipe, in rows."""
        with self._lock:
            return self._pipe.maxlen or 0, self._texts.maxlen or 0

    def deploy(self, what: str, by: str, when: float | None = None) -> None:
        """Record an application deployment (``when``: POSIX seconds, default now)."""
        with self._lock:
            self._deployments.append(Deployment(time.time() if when is None else when, what, by))
            self._deployments.sort(key=lambda d: d.time)

    def deployments(self) -> tuple[Deployment, ...]:
        """Recorded deployments, oldest first."""
        with self._lock:
            return tuple(self._deployments)
