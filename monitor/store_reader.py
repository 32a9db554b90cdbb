"""Read access to the store, on a connection of the reader's own.

WAL lets readers run beside the one writer without blocking it or being blocked.
A :class:`StoreReader` wraps one read-only connection that belongs to the thread that
opened it (:meth:`monitor.store.Store.reader`); every read in one ``with`` block sees
the same snapshot, so a metrics scrape never mixes two commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from monitor.codec import EVENT_TYPES, decode_event
from monitor.errors import StoreError
from monitor.store_types import CRASH_COLUMNS, CrashRow, StoredEvent, crash_from_sql

_CRASH_SELECT = f"SELECT {', '.join(CRASH_COLUMNS)} FROM crashes"  # noqa: S608 - fixed column names


def kind_names(kinds: Iterable[str | type] | None) -> tuple[str, ...] | None:
    """Event kinds given as class names or classes, checked. Raises ValueError for an unknown one."""
    if kinds is None:
        return None
    names = tuple(k if isinstance(k, str) else k.__name__ for k in kinds)
    unknown = sorted(set(names) - EVENT_TYPES.keys())
    if unknown:
        raise ValueError(f"unknown event kinds {unknown}; known: {sorted(EVENT_TYPES)}")
    return names


class StoreReader:
    """Read queries over one connection. Raises StoreError when SQLite fails or a row is unreadable."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._path = path

    def events(
        self,
        kinds: Iterable[str | type] | None = None,
        server: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> Iterator[StoredEvent]:
        """Stored events with ``seq > since_seq`` in log order, optionally only of ``kinds``
        (class names or classes) and of ``server``, at most ``limit`` of them.

        Raises ValueError at once for an unknown kind; StoreError while iterating if a
        payload cannot be decoded (a row written by a newer asewatch, or damage).
        """
        names = kind_names(kinds)
        sql = "SELECT seq, server, kind, observed_at, payload FROM events WHERE seq > ?"
        params: list[object] = [since_seq]
        if names is not None:
            sql += f" AND kind IN ({', '.join('?' * len(names))})"
            params.extend(names)
        if server is not None:
            sql += " AND server = ?"
            params.append(server)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._iter_events(sql, params)

    def _iter_events(self, sql: str, params: list[object]) -> Iterator[StoredEvent]:
        with self._translate():
            cursor = self._conn.execute(sql, params)
            for seq, server, kind, observed_at, payload in cursor:
                try:
                    event = decode_event(kind, payload)
                except ValueError as exc:
                    raise StoreError(self._path, f"event seq {seq} cannot be read: {exc}") from None
                yield StoredEvent(seq=seq, server=server, kind=kind, observed_at=observed_at, event=event)

    def position(self, source: str) -> str | None:
        """The resume position last committed for ``source``, or None if it has none."""
        with self._translate():
            row = self._conn.execute("SELECT value FROM positions WHERE source = ?", (source,)).fetchone()
        return None if row is None else row[0]

    def count_events(self, kind: str | type, server: str | None = None) -> int:
        """How many events of ``kind`` (of ``server``, when given) the log holds."""
        name = kind if isinstance(kind, str) else kind.__name__
        kind_names([name])
        sql = "SELECT COUNT(*) FROM events WHERE kind = ?"
        params: tuple[str, ...] = (name,)
        if server is not None:
            sql += " AND server = ?"
            params = (name, server)
        with self._translate():
            return int(self._conn.execute(sql, params).fetchone()[0])

    def last_seq(self) -> int:
        """The highest ``seq`` in the log (0 when it is empty)."""
        with self._translate():
            return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def get_state(self, key: str) -> str | None:
        """The bookkeeping value stored under ``key``, or None."""
        with self._translate():
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def crashes(self, server: str | None = None) -> list[CrashRow]:
        """Every crash row (of ``server``, when given), oldest id first."""
        sql = _CRASH_SELECT
        params: tuple[str, ...] = ()
        if server is not None:
            sql, params = _CRASH_SELECT + " WHERE server = ?", (server,)
        with self._translate():
            rows = self._conn.execute(sql + " ORDER BY id", params).fetchall()
        return [crash_from_sql(r) for r in rows]

    def crash(self, id_or_key: int | str) -> CrashRow | None:
        """The crash with this id (int) or identity key (str), or None."""
        column = "key" if isinstance(id_or_key, str) else "id"
        with self._translate():
            row = self._conn.execute(f"{_CRASH_SELECT} WHERE {column} = ?", (id_or_key,)).fetchone()
        return None if row is None else crash_from_sql(row)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (the connection is ``query_only``); for the read models."""
        with self._translate():
            return [tuple(row) for row in self._conn.execute(sql, tuple(params)).fetchall()]

    def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: the problems found, empty when the file is sound."""
        with self._translate():
            problems = [str(row[0]) for row in self._conn.execute("PRAGMA integrity_check")]
        return [] if problems == ["ok"] else problems

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(self._path, f"read failed: {exc}") from exc
