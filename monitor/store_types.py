"""The values that cross the store's boundary: batches in, stored events and crash rows out.

Import them from :mod:`monitor.store`; they live here only to keep the modules small.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from monitor.events import Event


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the log holds it. ``seq`` orders the whole log; ``observed_at`` is POSIX seconds."""

    seq: int
    server: str
    kind: str
    observed_at: float
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashRow:
    """One row of the derived ``crashes`` table. The store stores and reads it; monitor/crashes.py
    decides what goes in it.

    ``key`` is the crash identity (unique); ``id`` is assigned by the store and ignored on
    upsert. ``time`` is the errorlog's naive local time of the crash, ``exit_time`` POSIX
    seconds. ``payload`` is a JSON document owned by the caller (e.g. the crash block as
    :func:`monitor.codec.encode_event` writes it). ``updated_at`` is set by the store on
    every upsert.
    """

    id: int | None = None
    server: str
    key: str
    time: datetime | None = None
    kind: str | None = None
    signal: int | None = None
    signature: str | None = None
    spid: int | None = None
    kpid: int | None = None
    family: int | None = None
    login: str | None = None
    host: str | None = None
    program: str | None = None
    sql: str | None = None
    procedure: str | None = None
    server_terminated: bool | None = None
    complete: bool | None = None
    exit_pid: int | None = None
    exit_time: float | None = None
    errorlog_event_seq: int | None = None
    exit_event_seq: int | None = None
    state: str | None = None
    payload: str = "{}"
    updated_at: float | None = None


#: The crashes table's columns, in CrashRow's field order.
CRASH_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CrashRow))


def crash_params(row: CrashRow) -> tuple[Any, ...]:
    """SQL parameters for ``row`` in :data:`CRASH_COLUMNS` order (datetime as ISO, bools as 0/1)."""
    values: list[Any] = []
    for name in CRASH_COLUMNS:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bool):
            value = int(value)
        values.append(value)
    return tuple(values)


def crash_from_sql(values: Sequence[Any]) -> CrashRow:
    """The CrashRow for one ``SELECT <CRASH_COLUMNS> FROM crashes`` row."""
    doc = dict(zip(CRASH_COLUMNS, values, strict=True))
    if doc["time"] is not None:
        doc["time"] = datetime.fromisoformat(doc["time"])
    for flag in ("server_terminated", "complete"):
        if doc[flag] is not None:
            doc[flag] = bool(doc[flag])
    return CrashRow(**doc)


@dataclass(frozen=True, slots=True)
class UpsertCrash:
    """Insert the crash ``row``, or replace every column of the row with the same ``key``."""

    row: CrashRow


@dataclass(frozen=True, slots=True)
class SetState:
    """Set the agent bookkeeping value ``key`` (``None`` deletes it)."""

    key: str
    value: str | None


@runtime_checkable
class CustomOp(Protocol):
    """A feature module's own write (flight recorder rows, dump states, shipments), applied on
    the writer's connection inside the batch's transaction. It must only write its own tables
    and raise ``sqlite3.Error`` (rolled back with the whole batch) on failure."""

    def apply(self, conn: sqlite3.Connection, now: float) -> None: ...


#: A write to derived state, committed in the same transaction as the batch's events.
DerivedOp = UpsertCrash | SetState | CustomOp


@dataclass(frozen=True, slots=True)
class Batch:
    """The unit of work: events, source positions and derived writes, committed together or not at all.

    ``events`` are ``(server, event)`` pairs; ``positions`` map a source name (e.g.
    ``"errorlog:SRV"``) to its resume position, so records and the offset after them land
    atomically. The sequences are copied on construction: a collector may reuse its lists.
    """

    events: Sequence[tuple[str, Event]] = ()
    positions: Mapping[str, str] = field(default_factory=dict)
    ops: Sequence[DerivedOp] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))
        object.__setattr__(self, "ops", tuple(self.ops))
