"""Application feature flags: from a configured SQL query, or from a JSON (or YAML) file.

Every change is a ``FlagChanged`` (name, old, new, source); the first sight of a flag is a
change from None, a flag that disappears is a change to None. The incident this answers:
the feature that crashed the server had been switched on by a flag nobody told the DBA about.

The query returns ``(name, value)`` rows, e.g. ``select name, value from imx..app_feature_flags``.
The file is a JSON object ``{"name": value, ...}`` or a list of ``{"name": …, "value": …}``;
``.yaml``/``.yml`` files need PyYAML (not a dependency of asewatch: JSON is always enough).
Values become text: JSON ``true``/``false`` -> ``true``/``false``, numbers as written,
``null`` -> the flag is absent.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monitor.errors import SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import FlagChanged, FlagSource
from monitor.sqlfiles import Connection

log = logging.getLogger("asewatch.flags")

Emit = Callable[[Sequence[Event], Mapping[str, str]], None]


def flag_text(value: object) -> str | None:
    """A flag value as text; None for a missing one.

    >>> flag_text(True), flag_text(0), flag_text(" on "), flag_text(None)
    ('true', '0', 'on', None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def flags_from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """``(name, value)`` rows to a dict; a NULL value means the flag is absent. Raises
    ValueError when a row has fewer than two columns (the query is wrong)."""
    out: dict[str, str] = {}
    for row in rows:
        if len(row) < 2:
            raise ValueError(f"the flag query must return (name, value) rows; got {len(row)} column(s)")
        name, value = flag_text(row[0]), flag_text(row[1])
        if name and value is not None:
            out[name] = value
    return out


def flags_from_document(doc: object) -> dict[str, str]:
    """A parsed flags file: an object ``{name: value}`` or a list of ``{"name", "value"}``.
    Raises ValueError for any other shape."""
    if isinstance(doc, dict):
        items = list(doc.items())
    elif isinstance(doc, list) and all(isinstance(x, dict) and "name" in x for x in doc):
        items = [(x["name"], x.get("value")) for x in doc]
    else:
        raise ValueError('expected an object {"flag": value, ...} or a list of {"name": ..., "value": ...}')
    return flags_from_rows([(k, v) for k, v in items if not isinstance(v, dict | list)])


def parse_flags_file(path: Path, text: str) -> dict[str, str]:
    """Flags in a JSON file (or YAML, when PyYAML is installed). Raises ValueError if unreadable."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            yaml: Any = importlib.import_module("yaml")
        except ImportError:
            raise ValueError("a YAML flags file needs PyYAML (pip install pyyaml); or use JSON") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"not valid YAML: {e}") from None
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
    return flags_from_document(doc)


def diff_flags(
    old: Mapping[str, str], new: Mapping[str, str], at: float, source: FlagSource
) -> list[FlagChanged]:
    """One FlagChanged per flag that appeared, changed or disappeared, by name."""
    return [
        FlagChanged(at, name, old.get(name), new.get(name), source)
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]


class FlagsCollector:
    """One server's application flags, from ``query`` over ``connect`` or from ``path``.

    ``known`` is what the store last knew (``monitor.ledger.known_flags``), so a restart
    reports only real changes. ``poll()`` is one step (raises SourceError; on failure the
    state is kept, so an unreadable source never looks like "every flag dropped").
    """

    def __init__(
        self,
        server: str,
        *,
        query: str | None = None,
        connect: Callable[[], Connection] | None = None,
        path: Path | None = None,
        known: Mapping[str, str] | None = None,
        poll_interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises ValueError unless exactly one of ``query`` (with ``connect``) and ``path`` is given."""
        if (query is None) == (path is None) or (query is not None and connect is None):
            raise ValueError("give either query and connect, or path")
        self.server = server
        self.source = f"flags:{server}"
        self._query = query
        self._connect = connect
        self._conn: Connection | None = None
        self._path = path
        self._kind: FlagSource = "query" if query is not None else "file"
        self._flags = dict(known or {})
        self._stat: tuple[int, int, int] | None = None
        self._interval = poll_interval
        self._clock = clock

    @property
    def flags(self) -> dict[str, str]:
        """The flags as last read."""
        return dict(self._flags)

    def poll(self) -> list[FlagChanged]:
        """Read the flags once; return the changes. Raises SourceError."""
        current = self._read_query() if self._query is not None else self._read_file()
        if current is None:
            return []
        changes = diff_flags(self._flags, current, self._clock(), self._kind)
        self._flags = current
        return changes

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Poll every ``poll_interval`` s until ``stop`` is set. Never raises for a failing
        source (CollectorFailed, retried next interval). Closes its connection."""
        try:
            while not stop.is_set():
                try:
                    events: list[Event] = [*self.poll(), CollectorSucceeded(self.source, self._clock())]
                except SourceError as e:
                    events = [CollectorFailed(self.source, e.reason, self._clock())]
                emit(events, {})
                stop.wait(self._interval)
        finally:
            self.close()

    def close(self) -> None:
        """Close the database connection, if open (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection may fail to close; nothing to do
                log.debug("closing the flags connection failed", exc_info=True)

    def _read_query(self) -> dict[str, str]:
        assert self._query is not None
        assert self._connect is not None
        try:
            if self._conn is None:
                self._conn = self._connect()
            cur = self._conn.cursor()
            try:
                cur.execute(self._query)
                rows = list(cur.fetchall())
            finally:
                cur.close()
        except Exception as e:  # the driver's own errors (pyodbc.Error), translated here
            self.close()
            raise SourceError(self.source, f"the flag query failed: {e}") from e
        try:
            return flags_from_rows(rows)
        except ValueError as e:
            raise SourceError(self.source, str(e)) from None

    def _read_file(self) -> dict[str, str] | None:
        """The flags, or None when the file has not changed since the last read."""
        assert self._path is not None
        try:
            st = self._path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stat:
                return None
            text = self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise SourceError(self.source, f"cannot read: {reason}", path=str(self._path)) from e
        try:
            flags = parse_flags_file(self._path, text)
        except ValueError as e:
            # Often a writer caught mid-write: keep the state, read again next time.
            raise SourceError(self.source, str(e), path=str(self._path)) from None
        self._stat = stamp
        return flags
