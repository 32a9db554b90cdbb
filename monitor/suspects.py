"""Ranked suspects for every crash group: which procedure, flag, setting or change, and how sure.

Pure: data frames in (:class:`SuspectInputs`), ranked :class:`SuspectGroup` out; no
file, database or network I/O. The agent, the CLI and the offline mode call
:func:`rank_suspects` and print :func:`suspects_json`.

The method (details in :mod:`monitor.suspects_evidence`, :mod:`monitor.suspects_state`,
:mod:`monitor.suspects_combine`, the statistics in :mod:`monitor.suspects_stats`):

- one group per crash ``signature``; each group is ranked on its own crashes, and every
  crash window of every group is left out of the crash-free windows (two bugs in one
  log do not pollute each other: CBI's iterative elimination, by signature);
- *direct*: the procedure the crash block names or ``exec``-s, and what the crashing task
  (spid and kpid; for a parallel worker also its family parent) ran in the window before;
- *across crashes*: CBI Failure/Context/Increase/Importance over windows, a one-sided
  Fisher test per candidate and Benjamini-Hochberg over the group's candidates;
- *state*: crashes per hour in each state of each flag, setting, deployment, version and
  procedure definition, a Poisson rate ratio with an exact CI, the lead time, the revert;
- *combination*: procedure ∧ state, reported on the procedure (see suspects_combine).

Every suspect keeps each evidence kind apart in ``detail``; ``evidence`` is one or two
plain sentences with the numbers, names only (never SQL text, never personal numbers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from monitor import suspects_combine as comb
from monitor import suspects_evidence as ev
from monitor import suspects_link as link
from monitor import suspects_tasks as tk
from monitor.errors import InputError
from monitor.suspects_json import suspects_json
from monitor.suspects_state import (
    Timeline,
    is_parallelism_setting,
    iso,
    local_time,
    normal_changes,
    state_evidence,
    timelines,
    window_label,
)
from monitor.suspects_stats import IntArray, Intervals, bh, intervals

__all__ = [
    "Suspect",
    "SuspectGroup",
    "SuspectInputs",
    "is_parallelism_setting",
    "rank_suspects",
    "suspects_json",
]

KINDS = (
    "procedure",
    "setting",
    "flag",
    "procedure_change",
    "deployment",
    "version",
    "login",
    "application",
    "host",
)
IDENTITY = ("login", "application", "host")
_REQUIRED = {"crashes": ("time",), "statements": ("start_time",), "minutes": ("minute",),
             "changes": ("time", "kind"), "uptime": ("start", "end")}  # fmt: skip
_EXEC = re.compile(r"\bexec(?:ute)?\s+(?:@[\w]+\s*=\s*)?((?:\[?[\w#$@]+\]?\s*\.\s*){0,3}\[?[\w#$]+\]?)", re.I)


@dataclass(frozen=True, slots=True)
class SuspectInputs:
    """The frames the ranking reads (columns in the issue-9 contract; times naive local ``datetime64``)."""

    crashes: pd.DataFrame
    statements: pd.DataFrame | None
    minutes: pd.DataFrame | None
    changes: pd.DataFrame | None
    uptime: pd.DataFrame | None


@dataclass(frozen=True, slots=True)
class Suspect:
    """One ranked suspect; ``detail`` holds each evidence kind's numbers apart."""

    rank: int
    kind: str
    name: str
    score: float
    confidence: str
    evidence: str
    detail: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SuspectGroup:
    """The suspects of one crash signature, best first (every kind in one list)."""

    signature: str
    crashes: int
    first: datetime
    last: datetime
    suspects: tuple[Suspect, ...]
    notes: tuple[str, ...]


def _text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _proc_name(text: str) -> str:
    """``db.owner.proc`` / ``[dbo].[p]`` -> ``p``."""
    return re.sub(r"[\[\]\s]", "", text).split(".")[-1]


def block_procedures(procedure: object, sql: object) -> frozenset[str]:
    """The procedures a crash block names: its procedure field and any ``exec name`` in its SQL.

    >>> sorted(block_procedures(None, "exec dbo.p_brev_sok @x = ?"))
    ['p_brev_sok']
    """
    names = {_proc_name(_text(procedure))} if _text(procedure) else set()
    names.update(_proc_name(m.group(1)) for m in _EXEC.finditer(_text(sql)))
    return frozenset(n for n in names if n)


def _crash_table(crashes: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"t": ev.to_ns(crashes["time"]) if "time" in crashes else np.empty(0, np.int64)})
    for col in ("spid", "kpid", "family"):
        out[col] = ev.ids_of(crashes, col)
    for col in ("key", "signature", "procedure", "sql", *IDENTITY):
        out[col] = [_text(v) for v in crashes[col]] if col in crashes else [""] * len(crashes)
    out["signature"] = out["signature"].replace("", "unknown")
    return out[out["t"] != np.iinfo(np.int64).min].reset_index(drop=True)


def _window(crash_t: IntArray, width_s: float, notes: list[str]) -> float:
    gaps = np.diff(np.unique(crash_t)) / ev.NS
    if gaps.size and float(np.median(gaps)) < 2 * width_s:
        short = max(float(np.median(gaps)) / 2, 1.0)
        notes.append(
            f"window shortened from {width_s:g} s to {short:.3g} s: crashes are {np.median(gaps):.3g} s apart"
        )
        return short
    return width_s


def _observed(inputs: SuspectInputs, times: list[IntArray], notes: list[str]) -> Intervals:
    up = inputs.uptime
    if up is not None and not up.empty:
        start, end = ev.to_ns(up["start"]), ev.to_ns(up["end"])
        ok = start != np.iinfo(np.int64).min
        end = np.where(end == np.iinfo(np.int64).min, max(int(t.max()) for t in times if t.size), end)
        return intervals(start[ok], end[ok])
    seen = np.concatenate([t[t != np.iinfo(np.int64).min] for t in times])
    lo, hi = int(seen.min()), int(seen.max())
    notes.append(f"uptime unknown: assumed one interval from {iso(lo)} to {iso(hi)}")
    return intervals([lo], [hi + ev.NS])


def _minute_pairs(win: ev.Windows, minutes: pd.DataFrame, names: list[str]) -> tuple[IntArray, IntArray]:
    """(window, code) pairs of the per-minute aggregates that had executions, for minute windows only.

    ``names`` is extended in place with procedures only the aggregates know.
    """
    execs = pd.to_numeric(minutes.get("executions", pd.Series(1, index=minutes.index)), errors="coerce")
    rows = minutes[execs.fillna(0).to_numpy() > 0]
    codes, mnames = ev.codes_of(rows.get("procedure"), len(rows))
    index = {nm: i for i, nm in enumerate(names)}
    remap = np.empty(len(mnames), dtype=np.int32)
    for i, nm in enumerate(mnames):
        if nm not in index:
            index[nm] = len(names)
            names.append(nm)
        remap[i] = index[nm]
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)] if remap.size else -1, -1)
    start = ev.to_ns(rows["minute"])
    rw = ev.overlapping(win, start, start + ev.MINUTE - 1).keep(win.source == ev.MINUTES)
    w, c = zip(*rw.pairs(codes), strict=True)
    return np.concatenate(w), np.concatenate(c)


def _activity(
    inputs: SuspectInputs, table: pd.DataFrame, width_s: float, observed: Intervals, notes: list[str]
) -> comb.Activity:
    st, mi = inputs.statements, inputs.minutes
    st = st if st is not None and not st.empty else None
    mi = mi if mi is not None and not mi.empty else None
    s = e = np.empty(0, np.int64)
    if st is not None:
        s = ev.to_ns(st["start_time"])
        e = ev.to_ns(st["end_time"]) if "end_time" in st else s
        nat = np.iinfo(np.int64).min
        if (s == nat).any():  # a row with one time missing stands at the other
            s = np.where(s == nat, e, s)
        if (e == nat).any():
            e = np.where(e == nat, s, e)
        if (e < s).any():
            s, e = np.minimum(s, e), np.maximum(s, e)
    raw_cov = ev.coverage(s)
    m_start = ev.to_ns(mi["minute"]) if mi is not None else np.empty(0, np.int64)
    m_start = m_start[m_start != np.iinfo(np.int64).min]
    min_cov = intervals(m_start, m_start + ev.MINUTE, gap=int(ev.COVER_GAP_S * ev.NS))
    times = np.unique(table["t"].to_numpy())
    width = int(width_s * ev.NS)
    win = ev.build_windows(times, observed, raw_cov, min_cov, width)
    n = len(st) if st is not None else 0
    proc, names = ev.codes_of(st["procedure"] if st is not None and "procedure" in st else None, n)
    rw = ev.overlapping(win, s, e)
    if not (win.source == ev.RAW).all():
        rw = rw.keep(win.source == ev.RAW)
    pairs = rw.pairs(proc)
    if mi is not None:
        pairs.append(_minute_pairs(win, mi, names))
    block_names = [block_procedures(p, q) for p, q in zip(table["procedure"], table["sql"], strict=True)]
    index = {nm: i for i, nm in enumerate(names)}
    for nm in sorted(set().union(*block_names)) if block_names else []:
        if nm not in index:
            index[nm] = len(names)
            names.append(nm)
    present = {"procedure": ev.presence(win, names, pairs, win.source > 0)}
    attrs = {"procedure": proc}
    block = {"procedure": tuple(frozenset(index[nm] for nm in b) for b in block_names)}
    known: dict[str, int] = {}
    for col in IDENTITY:
        codes, vals = ev.codes_of(st[col] if st is not None and col in st else None, n)
        known[col] = len(vals) if (codes >= 0).any() else 0
        vindex = {v: i for i, v in enumerate(vals)}
        for v in sorted(set(table[col]) - {""} - set(vindex)):
            vindex[v] = len(vals)
            vals.append(v)
        attrs[col] = codes
        block[col] = tuple(frozenset({vindex[v]} if v else set()) for v in table[col])
        if vals:
            present[col] = ev.presence(win, vals, rw.pairs(codes), win.source == ev.RAW)
    slot_window = np.full(times.size, -1, dtype=np.int64)
    slot_window[win.slot[win.slot >= 0]] = np.flatnonzero(win.slot >= 0)
    crash_window = slot_window[np.searchsorted(times, table["t"].to_numpy())]
    on_task: dict[str, tuple[frozenset[int], ...]] = {}
    bg_runs: dict[int, int] = {}
    bg_ident: dict[str, dict[int, int]] = {}
    bg_total = 0.0
    if st is not None:
        tasks = tk.CrashTasks(
            crash_window, *(table[c].to_numpy(dtype=np.int64) for c in ("spid", "kpid", "family"))
        )
        runs = tk.task_runs(win, rw, tk.RowIds(st), attrs, tasks)
        on_task, bg_runs, bg_total, bg_ident = runs.on_task, runs.bg_runs, runs.bg_total, runs.bg_ident
    for kind, pres in present.items():
        for i, wi in enumerate(crash_window.tolist()):
            for c in block[kind][i] | (on_task[kind][i] if kind in on_task else frozenset()):
                pres.ran[wi, c] = True
    anchor = np.where(win.slot >= 0, times[np.maximum(win.slot, 0)], (win.start + win.end) // 2)
    _activity_notes(win, st is not None, mi is not None, width_s, notes)
    hours = (win.end - win.start) / (3600 * ev.NS)
    return comb.Activity(
        win, width_s, present, on_task, block, bg_runs, bg_total, bg_ident, known, crash_window, anchor, hours
    )


def _activity_notes(win: ev.Windows, raw: bool, minutes: bool, width_s: float, notes: list[str]) -> None:
    if not raw and not minutes:
        notes.append(
            "no statement rows and no per-minute aggregates: ranked on the crash blocks and the changes only"
        )
        return
    n_raw, n_min = int((win.source == ev.RAW).sum()), int((win.source == ev.MINUTES).sum())
    notes.append(
        f"activity per {window_label(width_s)} window: raw statements in {n_raw}, "
        f"per-minute aggregates in {n_min}"
    )
    if not raw:
        notes.append("no statement rows: procedures from per-minute aggregates; the crashing task, logins, "
                     "applications and hosts from the crash blocks only")  # fmt: skip


def _rank_group(
    act: comb.Activity, table: pd.DataFrame, sig: str, *,
    tls: list[Timeline], observed: Intervals, limit: int, common: list[str],
) -> SuspectGroup:  # fmt: skip
    rows = np.flatnonzero(table["signature"].to_numpy() == sig)
    g_times = np.sort(table["t"].to_numpy()[rows])
    workers = int((table["family"].to_numpy()[rows] > 0).sum())
    g = comb.Group(rows, act.crash_window[rows], g_times, workers)
    notes = list(common)
    cands = [c for kind in ("procedure", *IDENTITY) for c in comb.activity_candidates(act, g, kind)]
    p_across = [float(c.across["p"]) for c in cands]
    p_task = [float(c.task["p"]) for c in cands if c.task]
    untested = sum(len(p.names) for p in act.present.values()) - len(cands)
    q = bh(np.r_[p_across, p_task, np.ones(max(untested, 0))])
    task_q = iter(q[len(cands) : len(cands) + len(p_task)].tolist())
    for c, qa in zip(cands, q[: len(cands)].tolist(), strict=True):
        c.q = min(qa, next(task_q)) if c.task else qa
    procs = sorted((c for c in cands if c.kind == "procedure"), key=lambda c: (-c.base, c.name))
    tops = [c for c in procs[: comb.LINK_TOP] if c.base >= comb.LINK_MIN]
    for c in tops:
        link.best_conjunction(act, g, c, [tl for tl in tls if tl.kind in ("flag", "setting")])
    scored = [comb.activity_scored(act, c) for c in cands]
    final = {c.code: s.score for c, s in zip(cands, scored, strict=True) if c.kind == "procedure"}
    linked = [(c, final[c.code]) for c in tops]
    evs = [e for tl in tls for e in state_evidence(tl, g_times, observed)]
    for e, qs in zip(evs, bh([e.rate.p for e in evs]).tolist(), strict=True):
        scored.append(link.state_scored(act, g, e, qs, linked))
    scored = link.tie_gates(scored)
    ruled = sorted({f"{e.kind} {e.label}" for e in evs if e.ruled_out})
    if ruled:
        notes.append(f"changed after the first crash, so not its cause (score 0): {', '.join(ruled)}")
    if g.num_f <= 2:
        notes.append(f"only {g.num_f} crash{'es' if g.num_f != 1 else ''}: every suspect is weak")
    if not tls:
        notes.append("no changes: flags, settings and deployments not ranked")
    order = sorted(scored, key=lambda s: (-round(s.score, 9), KINDS.index(s.kind), s.name))[:limit]
    suspects = tuple(
        Suspect(i + 1, s.kind, s.name, s.score, s.confidence, s.evidence, s.detail)
        for i, s in enumerate(order)
    )
    first, last = (local_time(int(t)) for t in (g_times[0], g_times[-1]))
    return SuspectGroup(sig, g.num_f, first, last, suspects, tuple(notes))


def rank_suspects(
    inputs: SuspectInputs, *, window_seconds: float = 120.0, limit: int = 20
) -> list[SuspectGroup]:
    """Rank the suspects of every crash group (largest group first, then by first crash).

    ``window_seconds``: the window before a crash (and the background window length);
    shortened to half the median gap when crashes come closer than two windows.
    ``limit``: suspects kept per group. Pure: reads the frames, changes nothing.
    Raises :class:`monitor.errors.InputError` when a frame lacks a required column (crashes
    ``time``, statements ``start_time``, minutes ``minute``, changes ``time``/``kind``, uptime
    ``start``/``end``).
    """
    if window_seconds <= 0:
        raise InputError("window_seconds", f"must be positive, got {window_seconds}")
    for name, cols in _REQUIRED.items():
        frame = getattr(inputs, name)
        missing = [c for c in cols if frame is not None and len(frame) and c not in frame]
        if missing:
            raise InputError(name, f"no {missing[0]!r} column", hint="see monitor.suspects.SuspectInputs")
    table = _crash_table(inputs.crashes)
    if table.empty:
        return []
    notes: list[str] = []
    width_s = _window(table["t"].to_numpy(), window_seconds, notes)
    changes = normal_changes(inputs.changes)
    times = [table["t"].to_numpy()]
    for frame, col in ((inputs.statements, "start_time"), (inputs.minutes, "minute"), (changes, "time")):
        if frame is not None and col in frame and len(frame):
            times.append(np.array([ev.to_ns(frame[col]).max(), ev.to_ns(frame[col]).min()]))  # fmt: skip
    observed = _observed(inputs, times, notes)
    act = _activity(inputs, table, width_s, observed, notes)
    tls = timelines(changes)
    if len(set(table["signature"])) > 1:
        notes.append("each group is ranked on its own crashes; all groups' crash windows are left out of the "
                     "crash-free windows")  # fmt: skip
    sigs = (
        table.groupby("signature")["t"]
        .agg(["size", "min"])
        .sort_values(["size", "min"], ascending=[False, True])
    )
    return [
        _rank_group(act, table, str(sig), tls=tls, observed=observed, limit=limit, common=notes)
        for sig in sigs.index
    ]
