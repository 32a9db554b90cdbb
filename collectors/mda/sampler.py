"""The MDA sampler: one persistent monitoring connection per server, read every few seconds.

``MdaSampler(server, db, mda).run(emit, stop)`` runs on its own thread until ``stop`` is
set. Every ``sample_interval`` it reads the pipe tables whole and snapshots the session
tables (see :mod:`collectors.mda.read`), then calls ``emit(events, sample)``:

- ``events``: :class:`~monitor.events.CollectorSucceeded` / ``CollectorFailed`` for the
  agent's health, and :class:`~monitor.events_mda.ServerStartSeen` when
  ``monState.StartDate`` changed (a restart, even one the process watch missed);
- ``sample``: an :class:`~collectors.mda.rows.MdaSample` of frozen rows for the flight
  recorder (``up=False`` with the reason when the attempt failed).

Failures never stop it: a lost connection (driver error, timeout, a crashed server) is
reported, closed and re-opened with exponential back-off; after a reconnect the pipes
return their whole ring again, which the flight recorder dedupes by row identity.
A failed login backs off to the maximum at once, so a wrong password cannot lock the
login through ASE's ``maximum failed logins``. Every call is bounded by the query or
login timeout, so ``stop`` is honoured within one timeout.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import pyodbc

from collectors.mda.connect import Connect, Connection, OdbcError, Target, close_quietly, open_connection
from collectors.mda.read import NAME_CACHE, SESSION_CACHE, Lru, SampleReader
from collectors.mda.rows import PIPE_TABLES, MdaSample
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.errors import SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_mda import ServerStartSeen

log = logging.getLogger("asewatch.mda")

Emit = Callable[[Sequence[Event], MdaSample | None], None]
FAST_FRACTION = 0.5  # a read more than this full of its pipe: sample again sooner
MIN_INTERVAL_S = 0.2


class MdaSampler:
    """Samples one server's MDA tables (see module doc). ``source`` is ``mda:<server>``.

    ``known_start`` is the ``StartDate`` the store saw last (so the first sample after an
    agent restart reports a restart that happened meanwhile with its predecessor).
    ``connect`` is the ODBC factory (``pyodbc.connect``; a fake in unit tests), ``clock``
    gives POSIX seconds.
    """

    def __init__(
        self,
        server: str,
        db: DatabaseConfig,
        mda: MdaConfig,
        *,
        connect: Connect | None = None,
        clock: Callable[[], float] = time.time,
        known_start: datetime | None = None,
    ) -> None:
        self.server = server
        self.source = f"mda:{server}"
        self._target = Target(server, self.source, db)
        self._mda = mda
        self._connect: Connect = connect or pyodbc.connect
        self._clock = clock
        self._start = known_start
        self._reader: SampleReader | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._down_logged = False
        self._problems_logged: set[str] = set()
        self._sessions = Lru(SESSION_CACHE)
        self._names = Lru(NAME_CACHE)

    def __repr__(self) -> str:
        return f"MdaSampler({self.server!r}, {self._target.describe()!r})"

    # ------------------------------------------------------------------ the loop

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Sample until ``stop`` is set; never raises for a source failure."""
        backoff = self._mda.reconnect_initial
        first = True
        try:
            while not stop.is_set():
                began = time.monotonic()
                if self._reader is None:
                    try:
                        self._open()
                    except SourceError as exc:
                        backoff = self._failed(emit, exc, backoff, login=True)
                        stop.wait(self._jitter(backoff))
                        continue
                    first = True
                reader = self._reader
                assert reader is not None
                try:
                    sample = reader.read(first=first)
                except OdbcError as exc:
                    self._close()
                    if stop.is_set():
                        break  # interrupted (cancelled) for the stop: nothing to report
                    backoff = self._failed(emit, exc, backoff, login=False)
                    stop.wait(self._jitter(backoff))
                    continue
                backoff = self._mda.reconnect_initial
                first = False
                emit(self._events(sample), sample)
                stop.wait(max(0.0, began + self._interval(sample, reader) - time.monotonic()))
        finally:
            self._close()

    def interrupt(self) -> None:
        """Cancel the query in flight (thread-safe), so a stop need not wait for its timeout."""
        with self._lock:
            reader = self._reader
        if reader is not None:
            reader.cancel()

    # ------------------------------------------------------------------ helpers

    def _open(self) -> None:
        conn = open_connection(self._target, self._connect)
        reader = SampleReader(
            conn,
            self.source,
            clock=self._clock,
            statement_pipe_size=self._mda.statement_pipe_size,
            sql_text_pipe_size=self._mda.sql_text_pipe_size,
            sessions=self._sessions,
            names=self._names,
        )
        try:
            reader.prepare()
        except OdbcError:
            close_quietly(conn)
            raise
        with self._lock:
            self._conn, self._reader = conn, reader
        for note in reader.skipped:
            log.warning("%s: not sampling %s", self.source, note)
        for name in ("enable monitoring", "statement pipe active", "sql text pipe active"):
            if reader.config.get(name) == 0:
                log.warning("%s: '%s' is 0 on the server; the flight recorder stays empty", self.source, name)
        log.info(
            "%s: connected as %s (spid %s, %s)",
            self.source,
            self._target.describe(),
            reader.own_spid,
            reader.version or "version unknown",
        )
        self._down_logged = False

    def _close(self) -> None:
        with self._lock:
            conn, self._conn, self._reader = self._conn, None, None
        if conn is not None:
            close_quietly(conn)

    def _failed(self, emit: Emit, exc: SourceError, backoff: float, *, login: bool) -> float:
        """Report a failure (health event + a down sample); return the next back-off (s)."""
        now = self._clock()
        if not self._down_logged:
            log.warning("%s: %s (retrying with back-off up to %gs)",
                        self.source, exc.reason, self._mda.reconnect_backoff_max)  # fmt: skip
            self._down_logged = True
        emit(
            [CollectorFailed(self.source, exc.reason, now)],
            MdaSample(time=now, duration=0.0, up=False, error=exc.reason),
        )
        if login and "Login failed" in exc.reason:
            return self._mda.reconnect_backoff_max  # do not lock the login with retries
        return min(self._mda.reconnect_backoff_max, backoff * 2)

    @staticmethod
    def _jitter(seconds: float) -> float:
        # Several agents restarted together should not hammer a recovering server in step.
        return seconds * random.uniform(0.8, 1.2)

    def _events(self, sample: MdaSample) -> list[Event]:
        events: list[Event] = []
        if sample.start_date is not None and sample.start_date != self._start:
            events.append(
                ServerStartSeen(time=sample.time, start_date=sample.start_date, previous=self._start)
            )
            if self._start is not None:
                log.warning("%s: the server restarted (StartDate %s, was %s)",
                            self.source, sample.start_date, self._start)  # fmt: skip
            if self._start is not None:  # a new incarnation: its spids and kpids start over
                self._sessions.clear()
                self._names.clear()
            self._start = sample.start_date
        fresh = [p for p in sample.problems if p not in self._problems_logged]
        for p in fresh:
            log.warning("%s: %s", self.source, p)
        self._problems_logged.update(fresh)
        blind = [p for p in sample.problems if any(t in p for t in PIPE_TABLES)]
        if blind:  # without its pipes the flight recorder records nothing: the source is down
            events.append(CollectorFailed(self.source, "; ".join(blind), sample.time))
        else:  # a snapshot table it may not read is logged once; the recording goes on
            events.append(CollectorSucceeded(self.source, sample.time))
        return events

    def _interval(self, sample: MdaSample, reader: SampleReader) -> float:
        """The configured interval, or a quarter of it while a pipe fills more than half."""
        interval = self._mda.sample_interval
        for r in sample.reads:
            size = reader.pipe_size(r.table)
            if size and r.rows > FAST_FRACTION * size:
                return max(MIN_INTERVAL_S, interval / 4)
        return interval
