"""The simulated server's live state: what a TDS thread will serve as MDA tables.

Everything a later TDS server thread in the same process needs lives in one
:class:`SimState` guarded by one lock: sessions (``monProcess``), the statement pipe
(``monSysStatement`` / ``monSysSQLText``, a ring that overwrites the oldest rows like
ASE's pipes), recent statements per spid, statements executing now
(``monProcessStatement``), flag values (the application's flag table), configuration
values (``sysconfigures``) and recorded application deployments. Readers get copies.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.sim.scenario import FlagValue

PER_SPID_HISTORY = 100


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
        self._deployments: list[Deployment] = []
        self._sessions: dict[int, Session] = {}
        self._recent: dict[int, deque[StatementRecord]] = {}
        self._pipe: deque[StatementRecord] = deque(maxlen=max(1, pipe_size))
        self._active: dict[int, StatementRecord] = {}
        self._seq = 0

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

    def record(self, stmt: StatementRecord) -> None:
        """Store a finished statement in the pipe and in its spid's recent history."""
        with self._lock:
            self._pipe.append(stmt)
            ring = self._recent.get(stmt.spid)
            if ring is None:
                ring = self._recent[stmt.spid] = deque(maxlen=PER_SPID_HISTORY)
            ring.append(stmt)
            if self._active.get(stmt.spid, stmt).seq == stmt.seq:
                self._active.pop(stmt.spid, None)

    def begin(self, stmt: StatementRecord) -> None:
        """Mark a statement as executing now on its spid (its SQL text is visible at once)."""
        with self._lock:
            self._active[stmt.spid] = stmt

    def recent(self, spid: int) -> tuple[StatementRecord, ...]:
        """The last statements of ``spid``, oldest first."""
        with self._lock:
            return tuple(self._recent.get(spid, ()))

    def since(self, seq: int) -> tuple[StatementRecord, ...]:
        """Statements still in the pipe with ``seq`` greater than the one given, oldest first."""
        with self._lock:
            return tuple(s for s in self._pipe if s.seq > seq)

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
        """Set a configuration value; returns the previous value."""
        with self._lock:
            old = self._config.get(name)
            self._config[name] = value
            return old

    def deploy(self, what: str, by: str) -> None:
        """Record an application deployment."""
        with self._lock:
            self._deployments.append(Deployment(time.time(), what, by))

    def deployments(self) -> tuple[Deployment, ...]:
        """Recorded deployments, oldest first."""
        with self._lock:
            return tuple(self._deployments)
