"""Stored-procedure definitions: fingerprint every procedure, notice new, changed and dropped ones.

In each configured database the collector reads the procedures (``sysobjects`` type ``P``)
and their text (``syscomments`` pieces, joined here in ``colid`` order), and fingerprints
each with the SHA-256 of the normalized text. An application upgrade shows as one
``ProcedureChangeSummary`` per database and poll ("37 procedures changed in imx, among
them p_brev_sok_central_utskrift") plus one ``ProcedureChanged`` per procedure.

The first read of a database with no fingerprints in the store is a baseline
(``ProcedureBaseline``), not a flood of "new" events; the agent hands the collector the
last known fingerprints (``monitor.ledger.known_procedures``) so that, after a restart,
what changed while it was down is reported.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from monitor.errors import SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import (
    SUMMARY_NAMES,
    ProcedureBaseline,
    ProcedureChanged,
    ProcedureChangeSummary,
)
from monitor.sqlfiles import Connection, load_sql

log = logging.getLogger("asewatch.procedures")

Emit = Callable[[Sequence[Event], Mapping[str, str]], None]
DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
IDS_PER_QUERY = 100  # object ids per syscomments query: short statements, few round trips


def sql(name: str) -> str:
    """The statement in ``collectors/sql_settings/<name>.sql`` without its comment lines."""
    return load_sql("collectors", "sql_settings", name)


def normalize(text: str) -> str:
    """A definition with line endings unified, trailing blanks and surrounding blank lines dropped:
    what a re-install of the same procedure (another client, another line ending) leaves equal.

    >>> normalize("create proc p as\\r\\n  select 1   \\r\\n\\n")
    'create proc p as\\n  select 1'
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(ln.rstrip() for ln in lines).strip()


def fingerprint(text: str) -> str:
    """SHA-256 hex of the normalized definition."""
    return hashlib.sha256(normalize(text).encode("utf-8", "surrogateescape")).hexdigest()


_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_PARALLEL = re.compile(
    r"\bset\s+(?:scan_)?parallel_degree\s+(?:[2-9]|[1-9]\d+)\b|\(\s*parallel(?:\s+(?:[2-9]|[1-9]\d+))?\s*\)",
    re.I,
)


def asks_for_parallel(text: str) -> bool:
    """Whether a definition asks for parallel plans itself (comments ignored).

    >>> asks_for_parallel("set parallel_degree 4"), asks_for_parallel("from brev b (parallel 4), p")
    (True, True)
    >>> asks_for_parallel("set parallel_degree 1 /* (parallel 4) later */"), asks_for_parallel("-- parallel")
    (False, False)
    """
    return _PARALLEL.search(_COMMENT.sub(" ", text)) is not None


def join_text(rows: Iterable[Sequence[Any]]) -> dict[int, str]:
    """``(id, colid, text)`` rows to each object's whole text (pieces in colid order).

    >>> join_text([(7, 2, "ct 1"), (7, 1, "create proc p as sele")])
    {7: 'create proc p as select 1'}
    """
    pieces: dict[int, list[tuple[int, str]]] = {}
    for oid, colid, text in rows:
        pieces.setdefault(int(oid), []).append((int(colid), "" if text is None else str(text)))
    return {oid: "".join(t for _, t in sorted(parts)) for oid, parts in pieces.items()}


def compare(
    old: Mapping[str, str],
    new: Mapping[str, str],
    database: str,
    at: float,
    parallel: Collection[str] = (),
) -> tuple[ProcedureChangeSummary | None, list[ProcedureChanged]]:
    """The summary (None when nothing changed) and one event per new, changed or dropped procedure.

    ``old``/``new`` map names to fingerprints; ``parallel`` names the procedures whose new
    text asks for parallel plans.
    """
    added = sorted(new.keys() - old.keys())
    dropped = sorted(old.keys() - new.keys())
    changed = sorted(n for n in new.keys() & old.keys() if new[n] != old[n])
    par = {n for n in (*added, *changed) if n in parallel}
    events = (
        [ProcedureChanged(at, database, n, "new", None, new[n], n in par) for n in added]
        + [ProcedureChanged(at, database, n, "changed", old[n], new[n], n in par) for n in changed]
        + [ProcedureChanged(at, database, n, "dropped", old[n], None, False) for n in dropped]
    )
    if not events:
        return None, []
    ordered = sorted(par) + [n for n in (*added, *changed, *dropped) if n not in par]
    summary = ProcedureChangeSummary(
        at, database, len(added), len(changed), len(dropped), len(par), tuple(ordered[:SUMMARY_NAMES])
    )
    return summary, events


class ProceduresCollector:
    """Procedure fingerprints of ``databases`` on one server, every ``poll_interval`` s.

    ``known`` maps a database to its last known fingerprints (name -> SHA-256); a database
    missing from it gets a baseline on its first read. ``poll()`` is one step: it returns
    the events and the failures (one SourceError per database that could not be read;
    the others are still read, and a failed database keeps its fingerprints).
    Raises ValueError at construction for a database name that is not an identifier.
    """

    def __init__(
        self,
        server: str,
        connect: Callable[[], Connection],
        databases: Sequence[str],
        *,
        known: Mapping[str, Mapping[str, str]] | None = None,
        poll_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        bad = [d for d in databases if not DATABASE_NAME.fullmatch(d)]
        if bad:
            raise ValueError(f"not database names: {bad}")
        self.server = server
        self.source = f"procedures:{server}"
        self._connect = connect
        self._conn: Connection | None = None
        self._databases = tuple(databases)
        self._known: dict[str, dict[str, str]] = {d: dict(fp) for d, fp in (known or {}).items()}
        self._interval = poll_interval
        self._clock = clock

    def fingerprints(self, database: str) -> dict[str, str]:
        """Procedure name -> SHA-256 of every procedure in ``database`` now. Raises SourceError."""
        return self._read(database)[0]

    def _read(self, database: str) -> tuple[dict[str, str], set[str]]:
        """(name -> SHA-256, names whose text asks for parallel plans). Raises SourceError."""
        procs = self._rows(sql("procedures").format(db=database))
        names = {int(oid): str(name).strip() for oid, name in procs if name is not None}
        ids = sorted(names)
        texts: dict[int, str] = {}
        for i in range(0, len(ids), IDS_PER_QUERY):
            chunk = ", ".join(str(x) for x in ids[i : i + IDS_PER_QUERY])
            texts.update(join_text(self._rows(sql("procedure_text").format(db=database, ids=chunk))))
        # A procedure without text rows (being created, or text removed) still counts: its
        # fingerprint is that of the empty text.
        prints = {names[oid]: fingerprint(texts.get(oid, "")) for oid in ids}
        return prints, {names[oid] for oid in ids if asks_for_parallel(texts.get(oid, ""))}

    def poll(self) -> tuple[list[Event], list[SourceError]]:
        """Read every database once; return (events, failures)."""
        events: list[Event] = []
        failures: list[SourceError] = []
        for db in self._databases:
            try:
                current, parallel = self._read(db)
            except SourceError as e:
                failures.append(e)
                continue
            now = self._clock()
            old = self._known.get(db)
            if old is None:
                names = sorted(current)
                events.append(ProcedureBaseline(now, db, tuple(names), tuple(current[n] for n in names)))
            else:
                summary, changes = compare(old, current, db, now, parallel)
                if summary is not None:
                    log.info("%s: %s", self.server, summary.describe())
                    events += [summary, *changes]
            self._known[db] = current
        return events, failures

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; never raises for a failing source. Each poll's events go
        out in one emit (one transaction). Closes its connection."""
        try:
            while not stop.is_set():
                events, failures = self.poll()
                now = self._clock()
                if failures:
                    reason = "; ".join(e.reason for e in failures)
                    events.append(CollectorFailed(self.source, reason, now))
                else:
                    events.append(CollectorSucceeded(self.source, now))
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
                log.debug("closing the procedures connection failed", exc_info=True)

    def _rows(self, statement: str) -> list[Sequence[Any]]:
        try:
            if self._conn is None:
                self._conn = self._connect()
            cur = self._conn.cursor()
            try:
                cur.execute(statement)
                return list(cur.fetchall())
            finally:
                cur.close()
        except Exception as e:  # the driver's own errors (pyodbc.Error), translated here
            self.close()
            raise SourceError(self.source, f"{' '.join(statement.split())[:80]!r} failed: {e}") from e
