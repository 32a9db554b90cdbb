"""The agent's store as the ranking's inputs (monitor/suspects.py), from one snapshot.

Crashes are the crash records with a signature; statements are the flight recorder's raw
ring plus the statements frozen with each crash (the ring forgets, the frozen record does
not); minutes are the per-minute aggregates; changes are the change ledger; uptime is the
dataserver process's lifetimes (engine 0), else boots and shutdowns from the errorlog.
Store times are POSIX seconds; the frames hold naive server-local times, as offline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from monitor.events import ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.ledger import ledger
from monitor.store_reader import StoreReader
from monitor.suspects import SuspectInputs

#: The change ledger's kinds, as the ranking names them (dump conditions are not states).
LEDGER_KINDS = {
    "deployment": "deployment",
    "config": "setting",
    "flag": "flag",
    "procedure": "procedure_change",
    "version": "version",
}
_STATEMENTS = """SELECT spid, kpid, family, procedure, login, host, program, start_time, end_time
    FROM activity_statements WHERE server = ? AND end_time >= ?
    UNION
    SELECT s.spid, s.kpid, s.family, s.procedure, s.login, s.host, s.program, s.start_time, s.end_time
    FROM crash_activity_statements s JOIN crash_activity a ON a.crash_key = s.crash_key
    WHERE a.server = ? AND s.start_time IS NOT NULL AND s.end_time >= ?"""
_MINUTES = "SELECT minute, procedure, executions FROM activity_minute WHERE server = ? AND minute >= ?"


def _local(seconds: Any) -> pd.Series:
    """POSIX seconds -> naive local datetime64 (the agent runs on the server's host)."""
    zone = datetime.now().astimezone().tzinfo
    utc = pd.to_datetime(pd.Series(seconds, dtype="float64"), unit="s", utc=True)
    return utc.dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[ns]")


def _naive(times: list[Any]) -> pd.Series:
    """Naive local datetimes (None allowed) as datetime64[ns]."""
    return pd.to_datetime(pd.Series(times, dtype="object")).astype("datetime64[ns]")


def store_inputs(r: StoreReader, server: str, *, since: float = 0.0) -> SuspectInputs:
    """Everything of ``server`` from ``since`` (POSIX seconds) on. Raises StoreError when
    the store cannot be read."""
    return SuspectInputs(
        crashes=_crashes(r, server, since),
        statements=_statements(r, server, since),
        minutes=_minutes(r, server, since),
        changes=_changes(r, server),
        uptime=_uptime(r, server),
    )


def _crashes(r: StoreReader, server: str, since: float) -> pd.DataFrame:
    rows = [c for c in r.crashes(server) if c.signature and c.time is not None]
    frame = pd.DataFrame(
        {
            "key": [c.key for c in rows],
            "signature": [c.signature for c in rows],
            "time": _naive([c.time for c in rows]),
            "spid": pd.array([c.spid for c in rows], dtype="Int64"),
            "kpid": pd.array([c.kpid for c in rows], dtype="Int64"),
            "family": pd.array([c.family for c in rows], dtype="Int64"),
            "procedure": [c.procedure for c in rows],
            "sql": [c.sql for c in rows],
            "login": [c.login for c in rows],
            "host": [c.host for c in rows],
            "application": [c.program for c in rows],
        }
    )
    if since > 0:
        frame = frame[frame["time"] >= _local([since]).iloc[0]].reset_index(drop=True)
    return frame


def _statements(r: StoreReader, server: str, since: float) -> pd.DataFrame | None:
    rows = r.query(_STATEMENTS, (server, since, server, since))
    if not rows:
        return None
    cols = ("spid", "kpid", "family", "procedure", "login", "host", "application", "start_time", "end_time")
    frame = pd.DataFrame(rows, columns=list(cols))
    for col in ("spid", "kpid", "family"):
        frame[col] = frame[col].astype("Int64")
    for col in ("procedure", "login", "host", "application"):
        frame[col] = frame[col].fillna("").astype("category")
    frame["start_time"] = _local(frame["start_time"])
    frame["end_time"] = _local(frame["end_time"])
    return frame


def _minutes(r: StoreReader, server: str, since: float) -> pd.DataFrame | None:
    rows = r.query(_MINUTES, (server, since))
    if not rows:
        return None
    frame = pd.DataFrame(rows, columns=["minute", "procedure", "executions"])
    frame["minute"] = _local(frame["minute"])
    frame["procedure"] = frame["procedure"].astype("category")
    frame["executions"] = frame["executions"].astype("int64")
    return frame


def _changes(r: StoreReader, server: str) -> pd.DataFrame | None:
    rows = [c for c in ledger(r, server=server) if c.kind in LEDGER_KINDS]
    if not rows:
        return None
    return pd.DataFrame(
        {
            "time": _naive([c.time for c in rows]),
            "kind": [LEDGER_KINDS[c.kind] for c in rows],
            "name": [c.what.split(" (")[0] if c.kind == "procedure" else c.what for c in rows],
            "old": [c.old for c in rows],
            "new": [c.new for c in rows],
        }
    )


def _uptime(r: StoreReader, server: str) -> pd.DataFrame | None:
    """Lifetimes of the engine-0 process; without process events, boot to shutdown."""
    spans: dict[tuple[int, float], list[float]] = {}
    kinds = (ProcessStarted, ProcessExited)
    for se in r.events(kinds=kinds, server=server):
        e = se.event
        if isinstance(e, ProcessStarted) and e.engine in (None, 0):
            spans.setdefault((e.pid, round(e.create_time, 3)), [e.create_time, np.nan])
        elif isinstance(e, ProcessExited) and (e.pid, round(e.create_time, 3)) in spans:
            spans[(e.pid, round(e.create_time, 3))][1] = e.exit_time
    if spans:
        starts = [s for s, _ in spans.values()]
        ends = [e for _, e in spans.values()]
        return pd.DataFrame({"start": _local(starts), "end": _local(ends)})
    boots: list[datetime] = []
    stops: list[datetime | None] = []
    for se in r.events(kinds=(ServerBooted, ServerShutdown), server=server):
        e = se.event
        if isinstance(e, ServerBooted) and not e.failed:
            boots.append(e.time)
            stops.append(None)
        elif isinstance(e, ServerShutdown) and stops and stops[-1] is None:
            stops[-1] = e.time
    if not boots:
        return None
    return pd.DataFrame(
        {
            "start": _naive(boots),
            "end": _naive(stops),
        }
    )
