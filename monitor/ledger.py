"""The change ledger: every change to a server and its application as one stream, in time order.

It reads the event log and makes one uniform :class:`LedgerRow` of each change:
deployments (``asewatch change add`` or the deployments file), ASE version/EBF changes
(a boot whose ``@@version`` differs from the previous boot's), configuration changes,
feature flags, stored-procedure changes and dump-condition changes.

Configuration changes are joined: the errorlog line ``The configuration option 'X' has
been changed by 'U' from 'A' to 'B'`` (who, to the hundredth of a second), the
``sysconfigures`` poll that saw the new value and the ``.cfg`` rewrite that followed are
one change, one row, with ``by`` from the errorlog and all witnesses in ``source``
(``errorlog+sysconfigures+cfgfile``). What only one source saw keeps its own row: a
``.cfg`` edited by hand shows as ``cfgfile`` alone, waiting for the next boot.

The ``known_*`` functions give the collectors what the store last knew, so an agent
restarted after a change reports it, and one restarted without a change reports nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from monitor.codec import decode_event
from monitor.crashes import local_epoch
from monitor.events import ConfigChanged, ServerBooted
from monitor.events_changes import (
    Deployment,
    DumpConditions,
    FlagChanged,
    ProcedureBaseline,
    ProcedureChanged,
    ProcedureChangeSummary,
    SettingChanged,
    SettingSource,
    SettingsSnapshot,
    SettingValue,
)
from monitor.readmodel import sql
from monitor.store_reader import StoreReader
from monitor.store_types import StoredEvent

#: How far apart (s) an errorlog config line and the poll that saw the same value may be to be one change.
JOIN_WINDOW_S = 900.0
#: How much earlier than the errorlog line a poll may claim to have seen it (clock granularity).
JOIN_SLACK_S = 5.0

COLUMNS = ("time", "server", "kind", "what", "old", "new", "by", "source")
LEDGER_KINDS = (
    "Deployment",
    "ServerBooted",
    "ConfigChanged",
    "SettingChanged",
    "FlagChanged",
    "ProcedureChangeSummary",
    "ProcedureChanged",
    "DumpConditions",
)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One change. ``time`` is the local time it happened (or was first seen). A deployment
    that concerns several servers has a row for each. ``kind``: deployment, version, config,
    flag, procedures (a summary), procedure, dump conditions. ``old``/``new`` are text,
    None where there is none. ``by`` is who did it, when known. ``source`` says who saw it."""

    time: datetime
    server: str
    kind: str
    what: str
    old: str | None
    new: str | None
    by: str | None
    source: str

    def to_json(self) -> dict[str, Any]:
        """The row as JSON values (time as ISO 8601 local time)."""
        return asdict(self) | {"time": self.time.isoformat()}


def _local(t: float) -> datetime:
    return datetime.fromtimestamp(t)


def _short(sha: str | None) -> str | None:
    return sha[:12] if sha else None


def ledger(
    r: StoreReader,
    *,
    since: datetime | None = None,
    server: str | None = None,
    kinds: Iterable[str] | None = None,
    window: float = JOIN_WINDOW_S,
) -> list[LedgerRow]:
    """Every change in the store, oldest first (ties in log order).

    ``since`` (local time) leaves out older rows; ``server`` keeps that server's rows;
    ``kinds`` keeps those row kinds. Raises StoreError when the store cannot be read.
    """
    stored = list(r.events(kinds=LEDGER_KINDS, server=server))
    keyed: list[tuple[datetime, int, LedgerRow]] = []
    keyed += _config_rows(stored, window)
    keyed += _version_rows(stored)
    keyed += _dump_rows(stored)
    for se in stored:
        row = _simple_row(se)
        if row is not None:
            keyed.append((row.time, se.seq, row))
    keyed.sort(key=lambda k: (k[0], k[1]))
    wanted = set(kinds) if kinds is not None else None
    return [
        row
        for _, _, row in keyed
        if (since is None or row.time >= since) and (wanted is None or row.kind in wanted)
    ]


def _simple_row(se: StoredEvent) -> LedgerRow | None:
    e, s = se.event, se.server
    if isinstance(e, Deployment):
        return LedgerRow(_local(e.time), s, "deployment", e.name, None, None, e.by, e.source)
    if isinstance(e, FlagChanged):
        return LedgerRow(_local(e.time), s, "flag", e.name, e.old, e.new, None, e.source)
    if isinstance(e, ProcedureChangeSummary):
        return LedgerRow(_local(e.time), s, "procedures", e.describe(), None, None, None, "syscomments")
    if isinstance(e, ProcedureChanged):
        what = f"{e.database}..{e.name}" + (" (asks for parallel plans)" if e.parallel else "")
        old, new = _short(e.old_sha256), _short(e.new_sha256)
        return LedgerRow(_local(e.time), s, "procedure", what, old, new, None, "syscomments")
    return None


def _version_rows(stored: list[StoredEvent]) -> Iterator[tuple[datetime, int, LedgerRow]]:
    """A boot whose version string differs from the same server's previous boot with a version."""
    last: dict[str, str] = {}
    for se in stored:
        e = se.event
        if not isinstance(e, ServerBooted) or e.version is None:
            continue
        before = last.get(se.server)
        if before is not None and before != e.version:
            row = LedgerRow(e.time, se.server, "version", "ASE version", before, e.version, None, "errorlog")
            yield e.time, se.seq, row
        last[se.server] = e.version


def _dump_rows(stored: list[StoredEvent]) -> Iterator[tuple[datetime, int, LedgerRow]]:
    """Dump conditions that differ from the same server's previous reading (the first is a baseline)."""
    last: dict[str, str] = {}
    for se in stored:
        e = se.event
        if not isinstance(e, DumpConditions):
            continue
        text, before = e.describe(), last.get(se.server)
        if before is not None and before != text:
            row = LedgerRow(
                _local(e.time), se.server, "dump conditions", "dump conditions",
                before, text, None, "sp_shmdumpconfig",
            )  # fmt: skip
            yield row.time, se.seq, row
        last[se.server] = text


def _config_rows(stored: list[StoredEvent], window: float) -> list[tuple[datetime, int, LedgerRow]]:
    """Errorlog config lines, each joined with the sysconfigures and .cfg changes that saw the
    same new value soon after; then the poll changes nobody logged."""
    polls = [
        (se, se.event) for se in stored if isinstance(se.event, SettingChanged)
    ]  # fmt: skip
    used: set[int] = set()
    out: list[tuple[datetime, int, LedgerRow]] = []
    for se in stored:
        c = se.event
        if not isinstance(c, ConfigChanged):
            continue
        at = local_epoch(c.time)
        witnesses = ["errorlog"]
        for source in ("sysconfigures", "cfgfile"):
            match = _match(polls, used, se.server, c, at=at, source=source, window=window)
            if match is not None:
                used.add(match)
                witnesses.append(source)
        row = LedgerRow(c.time, se.server, "config", c.option, c.old, c.new, c.by, "+".join(witnesses))
        out.append((c.time, se.seq, row))
    for pse, p in polls:
        if pse.seq in used:
            continue
        run_moved = p.old_run != p.new_run
        what = p.name if run_moved or p.source == "cfgfile" else f"{p.name} (configured value)"
        old, new = (p.old_run, p.new_run) if run_moved else (p.old_configured, p.new_configured)
        row = LedgerRow(_local(p.time), pse.server, "config", what, old, new, None, p.source)
        out.append((row.time, pse.seq, row))
    return out


def _match(
    polls: list[tuple[StoredEvent, SettingChanged]],
    used: set[int],
    server: str,
    c: ConfigChanged,
    *,
    at: float,
    source: str,
    window: float,
) -> int | None:
    """The seq of the nearest unused poll change of ``source`` that saw ``c``'s new value."""
    best: tuple[float, int] | None = None
    for se, p in polls:
        if se.seq in used or p.source != source or se.server != server:
            continue
        if p.name.lower() != c.option.lower() or c.new not in (p.new_run, p.new_configured):
            continue
        if not at - JOIN_SLACK_S <= p.time <= at + window:
            continue
        if best is None or p.time - at < best[0]:
            best = (p.time - at, se.seq)
    return None if best is None else best[1]


# --------------------------------------------------------------------------- what the store knew


def _newest(r: StoreReader, kind: str, server: str, limit: int = 8) -> Iterator[tuple[int, Any]]:
    """Events of ``kind`` of ``server``, newest first (``limit`` per read, then the rest)."""
    rows = r.query(sql("latest_events"), (kind, server, limit))
    for seq, payload in rows:
        yield int(seq), decode_event(kind, payload)
    if len(rows) == limit:
        older = [se for se in r.events(kinds=[kind], server=server) if se.seq < int(rows[-1][0])]
        for se in reversed(older):
            yield se.seq, se.event


def known_settings(r: StoreReader, server: str, source: SettingSource) -> dict[str, SettingValue] | None:
    """The parameters as ``source`` last showed them: the newest snapshot, with the changes
    after it applied. None when the store has no snapshot of that source (a first start)."""
    snap = next(((seq, e) for seq, e in _newest(r, "SettingsSnapshot", server) if e.source == source), None)
    if snap is None:
        return None
    seq, event = snap
    assert isinstance(event, SettingsSnapshot)
    values = event.values()
    for se in r.events(kinds=[SettingChanged], server=server, since_seq=seq):
        p = se.event
        if not isinstance(p, SettingChanged) or p.source != source:
            continue
        if p.new_configured is None and p.new_run is None:
            values.pop(p.name, None)
        else:
            values[p.name] = SettingValue(p.name, p.section, p.new_configured, p.new_run, p.parallel)
    return values


def known_flags(r: StoreReader, server: str) -> dict[str, str]:
    """Every flag's last known value (flags last seen as gone are left out)."""
    flags: dict[str, str] = {}
    for se in r.events(kinds=[FlagChanged], server=server):
        e = se.event
        if isinstance(e, FlagChanged):
            if e.new is None:
                flags.pop(e.name, None)
            else:
                flags[e.name] = e.new
    return flags


def known_procedures(r: StoreReader, server: str) -> dict[str, dict[str, str]]:
    """Per database, every procedure's last known fingerprint: the newest baseline with the
    changes after it applied. A database with no baseline is absent."""
    known: dict[str, dict[str, str]] = {}
    since: dict[str, int] = {}
    for se in r.events(kinds=[ProcedureBaseline, ProcedureChanged], server=server):
        e = se.event
        if isinstance(e, ProcedureBaseline):
            known[e.database], since[e.database] = e.fingerprints(), se.seq
        elif isinstance(e, ProcedureChanged) and e.database in known and se.seq > since[e.database]:
            if e.new_sha256 is None:
                known[e.database].pop(e.name, None)
            else:
                known[e.database][e.name] = e.new_sha256
    return known


def rows_json(rows: Iterable[LedgerRow]) -> str:
    """The rows as one JSON array (the public shape of ``asewatch changes --json``)."""
    return json.dumps([row.to_json() for row in rows], ensure_ascii=False)
