"""The embedded SQLite store: the append-only event log, source positions, agent state, crashes.

One file, ``<state_dir>/asewatch.db`` (mode 0600, in a 0700 directory), in WAL mode so
readers never wait for the writer. Everything that happened is an event; an event's
identity is ``f"{server}|{event.key}"``, so storing it twice changes nothing, and a
source replayed after a restart (or a ``kill -9``) adds nothing new.

Durability: the one write connection uses ``synchronous=FULL``. With WAL, NORMAL is
safe against a killed process but may lose the last commits on power loss, and a
lost process-exit event could never be observed again (the process is gone), so every
commit is fsynced. Batching amortises the cost: the writer groups queued batches into
one transaction. Readers open connections of their own and change nothing.

Writes come in :class:`Batch` units: events, source positions and derived writes
commit together or not at all. :class:`StoreWriter` is the agent's one writer thread;
:meth:`Store.append` is the same write, synchronous, for tools and tests.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from monitor.codec import encode_event, event_kind, event_time
from monitor.errors import StoreError
from monitor.events import Event, ProcessExited, ProcessStarted
from monitor.store_reader import StoreReader, kind_names
from monitor.store_schema import SCHEMA_VERSION, migrate
from monitor.store_types import (
    CRASH_COLUMNS,
    Batch,
    CrashRow,
    CustomOp,
    DerivedOp,
    SetState,
    StoredEvent,
    UpsertCrash,
    crash_params,
)
from monitor.store_writer import StoreWriter, WriterStats

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Batch",
    "CrashRow",
    "CustomOp",
    "DerivedOp",
    "SetState",
    "Store",
    "StoreReader",
    "StoreWriter",
    "StoredEvent",
    "UpsertCrash",
    "WriterStats",
]

log = logging.getLogger(__name__)

DB_NAME = "asewatch.db"
_BUSY_TIMEOUT = 5.0  # seconds a connection waits for another process's lock

_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (key, server, kind, time, observed_at, payload) VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_POSITION = (
    "INSERT INTO positions (source, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
_UPSERT_STATE = (
    "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_CRASH_WRITE_COLUMNS = tuple(c for c in CRASH_COLUMNS if c != "id")
_UPSERT_CRASH = (
    f"INSERT INTO crashes ({', '.join(_CRASH_WRITE_COLUMNS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join('?' * len(_CRASH_WRITE_COLUMNS))}) ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CRASH_WRITE_COLUMNS if c != "key")
)


class Store:
    """An open store. Thread-safe for writes (one lock around the one write connection);
    reads open connections of their own.

    ``clock`` gives POSIX seconds for ``observed_at`` of events that carry none, and for
    ``updated_at`` columns.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """Open (creating if needed) the database at ``path`` and apply pending migrations.

        Creates the parent directory (0700) and the file (0600) when missing; existing
        ones keep their modes. Raises StoreError if the file is not a SQLite database,
        cannot use WAL, was written by a newer asewatch, or cannot be created.
        """
        self.path = Path(path)
        self._p = str(self.path)
        self._clock = clock
        self._lock = threading.Lock()
        _create_private(self.path)
        try:
            conn = sqlite3.connect(
                self._p, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(self._p, f"cannot open: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(self._p, f"cannot use WAL (journal mode {mode}); use a local file system")
            conn.execute("PRAGMA synchronous=FULL")
            migrate(conn, self._p)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(self._p, f"not a usable asewatch store: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    @classmethod
    def open(cls, state_dir: Path, *, clock: Callable[[], float] = time.time) -> Store:
        """Open ``<state_dir>/asewatch.db`` (see :class:`Store`)."""
        return cls(Path(state_dir) / DB_NAME, clock=clock)

    def close(self) -> None:
        """Close the write connection (idempotent). Stop any StoreWriter first."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    def append(self, batch: Batch) -> list[StoredEvent]:
        """Commit ``batch`` in one transaction; return the events that were new, with their seq.

        Events whose key is already stored are left as they are and are not returned:
        ``len(batch.events) - len(result)`` are the duplicates. Raises StoreError (and
        stores nothing of the batch) if an event cannot be encoded or SQLite fails.
        """
        return self.append_many((batch,))

    def append_many(self, batches: Sequence[Batch]) -> list[StoredEvent]:
        """Commit several batches in ONE transaction (all or none); return the new events in order."""
        now = self._clock()
        with self._lock:
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
                new = [stored for batch in batches for stored in self._write(conn, batch, now)]
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(self._p, f"write failed, the batch was not stored: {exc}") from exc
                raise
        return new

    def upsert_crash(self, row: CrashRow) -> CrashRow:
        """Insert or replace the crash with ``row.key`` in its own transaction; return it as stored."""
        self.append(Batch(ops=(UpsertCrash(row),)))
        stored = self.crash(row.key)
        if stored is None:  # pragma: no cover - only if another process deleted it meanwhile
            raise StoreError(self._p, f"crash {row.key!r} vanished after it was written")
        return stored

    def set_state(self, key: str, value: str | None) -> None:
        """Set (or, with None, delete) a bookkeeping value in its own transaction."""
        self.append(Batch(ops=(SetState(key, value),)))

    def _write(self, conn: sqlite3.Connection, batch: Batch, now: float) -> list[StoredEvent]:
        new: list[StoredEvent] = []
        for server, event in batch.events:
            try:
                kind = event_kind(event)
                payload = encode_event(event)
                at = event_time(event)
                params = (f"{server}|{event.key}", server, kind, None if at is None else str(at))
                observed = _observed_at(event, now)
                cursor = conn.execute(_INSERT_EVENT, (*params, observed, payload))
            except (TypeError, ValueError, AttributeError) as exc:
                raise StoreError(
                    self._p, f"cannot store {type(event).__name__} of {server!r}: {exc}"
                ) from exc
            if cursor.rowcount == 1 and cursor.lastrowid is not None:
                new.append(StoredEvent(cursor.lastrowid, server, kind, observed, event))
        for source, value in batch.positions.items():
            conn.execute(_UPSERT_POSITION, (source, value, now))
        for op in batch.ops:
            _apply(conn, op, now)
        return new

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(self._p, "the store is closed")
        return self._conn

    # ------------------------------------------------------------------ reads

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        """A reader on a new read-only connection, for this thread, with one snapshot.

        Every read in the ``with`` block sees the same committed state; the connection
        is closed at the end. Raises StoreError if the database cannot be opened.
        """
        try:
            conn = sqlite3.connect(
                f"file:{quote(self._p)}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(self._p, f"cannot open for reading: {exc}") from exc
        try:
            conn.execute("PRAGMA query_only=ON")
            conn.execute("BEGIN")
            yield StoreReader(conn, self._p)
        except sqlite3.Error as exc:
            raise StoreError(self._p, f"read failed: {exc}") from exc
        finally:
            conn.close()

    def events(
        self,
        kinds: Iterable[str | type] | None = None,
        server: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> Iterator[StoredEvent]:
        """Stored events after ``since_seq`` in log order (see :meth:`StoreReader.events`).

        The iterator holds its own read connection until it is exhausted or closed.
        Raises ValueError at once for an unknown kind.
        """
        kind_names(kinds)  # fail at the call, not at the first next()
        return self._events(kinds, server, since_seq, limit)

    def _events(
        self, kinds: Iterable[str | type] | None, server: str | None, since_seq: int, limit: int | None
    ) -> Iterator[StoredEvent]:
        with self.reader() as r:
            yield from r.events(kinds, server, since_seq, limit)

    def position(self, source: str) -> str | None:
        """The resume position last committed for ``source``, or None."""
        with self.reader() as r:
            return r.position(source)

    def count_events(self, kind: str | type, server: str | None = None) -> int:
        """How many events of ``kind`` (class name or class), of ``server`` when given, are stored."""
        with self.reader() as r:
            return r.count_events(kind, server)

    def get_state(self, key: str) -> str | None:
        """The bookkeeping value under ``key``, or None."""
        with self.reader() as r:
            return r.get_state(key)

    def crashes(self, server: str | None = None) -> list[CrashRow]:
        """Every crash row (of ``server`` when given), oldest first."""
        with self.reader() as r:
            return r.crashes(server)

    def crash(self, id_or_key: int | str) -> CrashRow | None:
        """The crash with this id (int) or key (str), or None."""
        with self.reader() as r:
            return r.crash(id_or_key)

    def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: the problems found, empty when the file is sound."""
        with self.reader() as r:
            return r.integrity_check()


def _observed_at(event: Event, now: float) -> float:
    # The process watcher timestamps its own observations; for everything else the
    # commit time is when the agent knew it.
    if isinstance(event, ProcessStarted | ProcessExited):
        return event.observed_at
    return now


def _apply(conn: sqlite3.Connection, op: DerivedOp, now: float) -> None:
    if isinstance(op, UpsertCrash):
        values = dict(zip(CRASH_COLUMNS, crash_params(replace(op.row, updated_at=now)), strict=True))
        # Without id: the key is the identity, and the row keeps the id it first got.
        conn.execute(_UPSERT_CRASH, tuple(values[c] for c in _CRASH_WRITE_COLUMNS))
    elif isinstance(op, SetState):
        if op.value is None:
            conn.execute("DELETE FROM state WHERE key = ?", (op.key,))
        else:
            conn.execute(_UPSERT_STATE, (op.key, op.value))
    else:
        op.apply(conn, now)


def _rollback(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        # SQLite already rolled back (e.g. after an I/O error); nothing was committed.
        log.debug("rollback after a failed write was refused", exc_info=True)


def _create_private(path: Path) -> None:
    """Create the state directory (0700) and the database file (0600) if missing."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            path.parent.chmod(0o700)  # mkdir's mode is filtered by the umask
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(str(path), f"cannot create: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
    finally:
        os.close(fd)
