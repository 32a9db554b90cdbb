"""The agent's store as the ranking's inputs (monitor/suspects.py), from one snapshot.

- crashes: the crash records that have a signature (a crash block was read);
- statements: the flight recorder's raw ring plus what each crash record froze (the ring
  forgets within minutes, the frozen record does not). A frozen statement still in the
  ring is read once. The statement that crashed never finished, so monSysStatement has
  no row for it: the frozen batch text that was running (``exec p …``) and the frozen
  procedure call stack stand for it, as rows of the crashing task up to the crash time;
- minutes: the per-minute aggregates (background rates over days);
- changes: the change ledger (deployments, settings, flags, procedure definitions,
  versions; dump conditions and per-database summaries are not states and are left out);
- uptime: the dataserver process's lifetimes (engine 0) and the errorlog's boots and
  stops, joined (an interval still open has no end: the ranking ends it at the newest
  time it sees).

Store times are POSIX seconds; the frames hold naive server-local times, as offline (the
agent runs on the server's host, like ``asewatch export activity``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from collectors.errorlog.lines import exec_procedure
from monitor.errors import InputError
from monitor.events import CrashBlock, ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.ledger import ledger
from monitor.readmodel import servers as store_servers
from monitor.store_reader import StoreReader
from monitor.suspects import SuspectInputs
from monitor.suspects_uptime import logged_runs

#: The change ledger's kinds, as the ranking names them (dump conditions are not states;
#: ``procedures`` rows summarise the ``procedure`` rows beside them).
LEDGER_KINDS = {
    "deployment": "deployment",
    "config": "setting",
    "flag": "flag",
    "procedure": "procedure_change",
    "version": "version",
}
_COLS = ("spid", "kpid", "family", "procedure", "login", "host", "application", "start_time", "end_time")
_NAMES = ("procedure", "login", "host", "application")
_RING = """SELECT spid, kpid, family, procedure, login, host, program, start_time, end_time
    FROM activity_statements WHERE server = ? AND end_time >= ?"""
# Frozen statements (finished ones; the ring's unique key tells which the ring still holds),
# the running batch texts (no end: they end at the crash) and the call-stack frames.
_FROZEN = """SELECT DISTINCT s.spid, s.kpid, s.family, s.procedure, s.login, s.host, s.program, s.start_time,
        s.end_time
    FROM crash_activity_statements s JOIN crash_activity a ON a.crash_key = s.crash_key
    WHERE a.server = ? AND s.start_time IS NOT NULL AND s.end_time >= ? AND s.role != 'running'
        AND NOT EXISTS (SELECT 1 FROM activity_statements r WHERE r.server = a.server AND r.spid = s.spid
            AND r.kpid = s.kpid AND r.batch_id = s.batch_id AND r.context_id = s.context_id
            AND r.statement_number = s.statement_number AND r.line = s.line
            AND r.start_time = s.start_time)"""
_RUNNING = """SELECT s.spid, s.kpid, s.family, s.sql, s.login, s.host, s.program,
        min(coalesce(s.start_time, a.crash_time), a.crash_time), a.crash_time
    FROM crash_activity_statements s JOIN crash_activity a ON a.crash_key = s.crash_key
    WHERE a.server = ? AND a.crash_time >= ? AND s.role = 'running'"""
_STACK = """SELECT k.spid, k.kpid, NULL, k.name, a.login, a.host, a.program, min(k.sampled_at, a.crash_time),
        a.crash_time
    FROM crash_activity_stack k JOIN crash_activity a ON a.crash_key = k.crash_key
    WHERE a.server = ? AND a.crash_time >= ? AND k.name IS NOT NULL"""
_MINUTES = "SELECT minute, procedure, executions FROM activity_minute WHERE server = ? AND minute >= ?"


def _local(seconds: Any) -> pd.Series:
    """POSIX seconds -> naive local datetime64[ns] (NaN/None -> NaT), to the microsecond, as
    ``datetime.fromtimestamp`` gives them: each time with the UTC offset in force then (the
    errorlog's crash times are wall-clock times, summer and winter alike)."""
    values = pd.Series(seconds, dtype="float64").to_numpy()
    missing = np.isnan(values)
    v = np.where(missing, 0.0, values)
    micros = np.round(v * 1e6).astype(np.int64)  # float seconds carry no finer digits, only noise
    offsets = _utc_offsets(np.floor(v).astype(np.int64))
    ns = np.where(missing, np.iinfo(np.int64).min, (micros + offsets * 1_000_000) * 1000)
    return pd.Series(ns.view("datetime64[ns]"))


def _utc_offsets(seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The local UTC offset (s) at each time: looked up once per quarter hour (offsets change
    on quarter hours), and per value inside a quarter hour that holds a change."""
    quarter = seconds // 900
    uniq, inverse = np.unique(quarter, return_inverse=True)
    at = np.array([time.localtime(int(q) * 900).tm_gmtoff for q in uniq], dtype=np.int64)
    after = np.array([time.localtime(int(q) * 900 + 899).tm_gmtoff for q in uniq], dtype=np.int64)
    offsets = at[inverse]
    odd = (at != after)[inverse]
    if odd.any():
        offsets[odd] = [time.localtime(int(t)).tm_gmtoff for t in seconds[odd]]
    return offsets


def _naive(times: Sequence[datetime | None]) -> pd.Series:
    """Naive local datetimes (None allowed) as datetime64[ns]."""
    return pd.to_datetime(pd.Series(list(times), dtype="object")).astype("datetime64[ns]")


def _since_seconds(since: float | datetime | None) -> float:
    if since is None:
        return 0.0
    return since.timestamp() if isinstance(since, datetime) else float(since)


def store_inputs(
    r: StoreReader, server: str | None, *, since: float | datetime | None = None
) -> SuspectInputs:
    """Everything of ``server`` the ranking reads, from ``since`` (POSIX seconds or a naive
    local datetime; None = all the store holds) on. Changes and uptime are read whole: a
    state's exposure starts before ``since``.

    ``server`` None means the store's only server. Read-only. Raises InputError when
    ``server`` is None and the store holds several servers (or none), StoreError when the
    store cannot be read.
    """
    if server is None:
        crashed = [row[0] for row in r.query("SELECT DISTINCT server FROM crashes")]
        known = sorted({*store_servers(r), *crashed})
        if len(known) != 1:
            names = ", ".join(known) or "none"
            raise InputError("store", f"holds {len(known)} servers ({names})", hint="name one with --server")
        server = known[0]
    lo = _since_seconds(since)
    return SuspectInputs(
        crashes=_crashes(r, server, lo),
        statements=_statements(r, server, lo),
        minutes=_minutes(r, server, lo),
        changes=_changes(r, server),
        uptime=_uptime(r, server),
    )


def _crashes(r: StoreReader, server: str, since: float) -> pd.DataFrame:
    lo = datetime.fromtimestamp(since) if since > 0 else None
    rows = [
        c for c in r.crashes(server) if c.signature and c.time is not None and (lo is None or c.time >= lo)
    ]
    return pd.DataFrame(
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


def _statements(r: StoreReader, server: str, since: float) -> pd.DataFrame | None:
    args = (server, since)
    rows = r.query(_RING, args) + r.query(_FROZEN, args) + r.query(_STACK, args)
    rows += [(*row[:3], exec_procedure(row[3]) or "", *row[4:]) for row in r.query(_RUNNING, args)]
    if not rows:
        return None
    cols = dict(zip(_COLS, _columns(rows, len(_COLS)), strict=True))
    frame = pd.DataFrame({c: pd.array(cols[c], dtype="Int64") for c in ("spid", "kpid", "family")})
    for col in _NAMES:
        frame[col] = _category(cols[col])
    frame["start_time"] = _local(cols["start_time"])
    frame["end_time"] = _local(cols["end_time"])
    return frame


def _columns(rows: list[tuple[Any, ...]], n: int) -> list[list[Any]]:
    """Rows to columns (``zip(*rows)`` would pass every row as an argument: slow for many)."""
    return [[row[i] for row in rows] for i in range(n)]


def _category(values: Sequence[str | None]) -> pd.Categorical:
    """Text values as a categorical ("" for none), built without a DataFrame of objects."""
    codes, names = pd.factorize(np.array(values, dtype=object))
    names = pd.Index(names).fillna("").astype(str)
    return (
        pd.Categorical.from_codes(codes, categories=names)
        if names.is_unique
        else pd.Categorical(names[codes])
    )


def _minutes(r: StoreReader, server: str, since: float) -> pd.DataFrame | None:
    rows = r.query(_MINUTES, (server, since - 60 if since > 0 else 0))
    if not rows:
        return None
    minute, procedure, executions = _columns(rows, 3)
    return pd.DataFrame(
        {
            "minute": _local(minute),
            "procedure": _category(procedure),
            "executions": np.array(executions, dtype=np.int64),
        }
    )


def _changes(r: StoreReader, server: str) -> pd.DataFrame | None:
    rows = [c for c in ledger(r, server=server) if c.kind in LEDGER_KINDS]
    if not rows:
        return None
    return pd.DataFrame(
        {
            "time": _naive([c.time for c in rows]),
            "kind": [LEDGER_KINDS[c.kind] for c in rows],
            # ``db..p (asks for parallel plans)``: the definition's name is ``db..p``.
            "name": [c.what.split(" (")[0] if c.kind == "procedure" else c.what for c in rows],
            "old": [c.old for c in rows],
            "new": [c.new for c in rows],
        }
    )


def _uptime(r: StoreReader, server: str) -> pd.DataFrame | None:
    """Engine-0 process lifetimes; before the first one the agent saw, the errorlog's boot-to-
    stop intervals (its history reaches further back). An open end is NaT."""
    spans: dict[tuple[int, float], list[float]] = {}
    for se in r.events(kinds=(ProcessStarted, ProcessExited), server=server):
        e = se.event
        if isinstance(e, ProcessStarted) and e.engine in (None, 0):
            spans.setdefault((e.pid, round(e.create_time, 3)), [e.create_time, np.nan])
        elif isinstance(e, ProcessExited) and (e.pid, round(e.create_time, 3)) in spans:
            spans[(e.pid, round(e.create_time, 3))][1] = e.exit_time
    process = pd.DataFrame(
        {"start": _local([s for s, _ in spans.values()]), "end": _local([x for _, x in spans.values()])}
    )
    logged = _logged_uptime(r, server)
    if not process.empty:
        # The process watch is exact where it ran: the log speaks only for the time before it.
        first = process["start"].min()
        logged = logged[logged["start"] < first]
        logged = logged.assign(end=logged["end"].fillna(first).clip(upper=first))
    frames = [f for f in (logged, process) if not f.empty]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).sort_values("start", ignore_index=True)


def _logged_uptime(r: StoreReader, server: str) -> pd.DataFrame:
    """The errorlog's runs of the server (boot to stop or fatal crash); an open end is NaT."""
    events = (se.event for se in r.events(kinds=(ServerBooted, ServerShutdown, CrashBlock), server=server))
    runs = logged_runs(e for e in events if isinstance(e, ServerBooted | ServerShutdown | CrashBlock))
    return pd.DataFrame({"start": _naive([s for s, _ in runs]), "end": _naive([e for _, e in runs])})
