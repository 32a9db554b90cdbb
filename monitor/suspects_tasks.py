"""Direct evidence: what ran on each crashing task, and how often candidates ran on a task
in the crash-free windows.

The crashing task is matched on its spid **and** kpid (a spid is reused; the kpid is the
task's own); for a parallel worker, also its family (the parent session and the sibling
workers). A candidate's background is the (session, window) pairs of the raw crash-free
windows where it ran: exact for the rarer procedures, from a sample of windows for busy
ones and for logins, applications and hosts (an estimate cannot change their score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.suspects_evidence import RAW, RowWindows, Windows, chunks
from monitor.suspects_stats import IntArray

SAMPLE_WINDOWS = 64
EXACT_ROWS = 1_000_000


@dataclass(frozen=True, slots=True)
class CrashTasks:
    """The crashing tasks, one entry per crash: window index, spid, kpid, family (-1 = unknown/none)."""

    window: IntArray
    spid: IntArray
    kpid: IntArray
    family: IntArray


@dataclass(frozen=True, slots=True)
class TaskRuns:
    """What ran on each crashing task, and how often candidates ran on a task elsewhere.

    ``on_task[attr][i]``: the codes of ``attr`` (procedure, login, ...) on crash ``i``'s task
    (the task itself by spid and kpid; for a parallel worker also its family: the parent
    session and the sibling workers).
    ``bg_runs``: procedure code -> background (session, window) pairs in raw windows where
    it ran, for the procedures seen on a crashing task; ``bg_total`` estimates all such
    pairs (0 when no raw background window exists). ``bg_ident[attr]``: the same for the
    login, application and host values seen on a crashing task (from the sampled windows:
    these values are busy, an estimate cannot change a score).
    """

    on_task: dict[str, tuple[frozenset[int], ...]]
    bg_runs: dict[int, int]
    bg_total: float
    bg_ident: dict[str, dict[int, int]]


class RowIds:
    """The id columns of the statement rows, read only for the rows asked for (not all 10M)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._cols = [frame[c].array if c in frame else None for c in ("spid", "kpid", "family")]

    def __call__(self, rows: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """spid, kpid and family of ``rows`` (-1 = missing)."""
        out = [np.full(rows.size, -1, np.int64) if c is None else _int(c.take(rows)) for c in self._cols]
        return out[0], out[1], out[2]


def _int(values: object) -> IntArray:
    out: IntArray = pd.to_numeric(pd.Series(values), errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    return out


def _session(spid: IntArray, family: IntArray) -> IntArray:
    # A parallel worker belongs to its parent's session: count one run per session and window.
    return np.where(family > 0, family, spid)


def task_runs(
    win: Windows, rw: RowWindows, ids: RowIds, attrs: dict[str, IntArray], crashes: CrashTasks
) -> TaskRuns:
    """Direct evidence from raw rows (``rw`` holds raw-source windows only)."""
    rows_c, wins_c = rw.select(win.slot >= 0)
    order = np.argsort(wins_c, kind="stable")
    rows_c, wins_c = rows_c[order], wins_c[order]
    spid, kpid, family = ids(rows_c)
    proc = attrs["procedure"]
    on: dict[str, list[frozenset[int]]] = {a: [] for a in attrs}
    for i in range(crashes.window.size):
        lo, hi = np.searchsorted(wins_c, [crashes.window[i], crashes.window[i] + 1])
        sp, kp, fam = int(crashes.spid[i]), int(crashes.kpid[i]), int(crashes.family[i])
        k = kpid[lo:hi]
        match = (spid[lo:hi] == sp) & ((kp < 0) | (k < 0) | (k == kp))
        if fam > 0:
            match |= (spid[lo:hi] == fam) | (family[lo:hi] == fam)
        mine = rows_c[lo:hi][match]
        for a, codes in attrs.items():
            on[a].append(frozenset(int(c) for c in np.unique(codes[mine]) if c >= 0))
    cand = np.array(sorted(set().union(*on["procedure"])) if on["procedure"] else [], dtype=np.int64)
    raw_bg = np.flatnonzero(win.background & (win.source == RAW))
    if not raw_bg.size:
        return TaskRuns({a: tuple(v) for a, v in on.items()}, {}, 0.0, {})
    sample = raw_bg[
        np.unique(np.linspace(0, raw_bg.size - 1, min(SAMPLE_WINDOWS, raw_bg.size)).astype(np.int64))
    ]
    in_sample = np.zeros(win.start.size, dtype=bool)
    in_sample[sample] = True
    r, w = rw.select(in_sample)
    spid, _, family = ids(r)
    session = _session(spid, family)
    scale = raw_bg.size / sample.size  # one scale for every estimate: none counts more pairs than all
    bg_total = pd.unique(session * win.start.size + w).size * scale
    bg_runs = _bg_runs(win, rw, ids, proc, cand=cand, raw_bg=raw_bg, sampled=(r, w, session), scale=scale)
    bg_ident = {
        a: _sampled_runs(codes[r], w, session, nwin=win.start.size, scale=scale)
        for a, codes in attrs.items()
        if a != "procedure"
    }
    return TaskRuns({a: tuple(v) for a, v in on.items()}, bg_runs, bg_total, bg_ident)


def _sampled_runs(
    codes: IntArray, w: IntArray, session: IntArray, *, nwin: int, scale: float
) -> dict[int, int]:
    """Background (session, window) pairs per code in the sampled windows, scaled to all."""
    ok = codes >= 0
    if not ok.any():
        return {}
    top = int(codes.max()) + 1
    keys = pd.unique((session[ok] * nwin + w[ok]) * top + codes[ok])
    counts = np.bincount(keys % top, minlength=top) * scale
    return {int(c): round(float(n)) for c, n in enumerate(counts.tolist()) if n > 0}


def _bg_runs(
    win: Windows, rw: RowWindows, ids: RowIds, proc: IntArray, *, cand: IntArray, raw_bg: IntArray,
    sampled: tuple[IntArray, IntArray, IntArray], scale: float,
) -> dict[int, int]:  # fmt: skip
    """Background (session, window) runs per candidate procedure: exact for the candidates with the
    fewest rows (up to :data:`EXACT_ROWS` in all), from the sampled windows (``sampled``: their rows,
    windows and sessions; times ``scale``) for the busy ones, where an estimate cannot change a score."""
    if not cand.size:
        return {}
    nwin, top = win.start.size, int(proc.max(initial=0)) + 2
    rows = np.zeros(top, dtype=np.int64)
    for part in chunks(proc.size):
        rows += np.bincount(proc[part].astype(np.int32) + 1, minlength=top)
    rows = rows[cand + 1]
    order = np.argsort(rows, kind="stable")
    many = np.zeros(cand.size, dtype=bool)
    many[order[np.cumsum(rows[order]) > EXACT_ROWS]] = True
    counts = np.zeros(cand.size, dtype=np.float64)
    if (~many).any():
        lut = np.full(top, -1, dtype=np.int32)  # -1 for other procedures; code -1 reads the last entry
        lut[cand[~many]] = np.flatnonzero(~many)
        r = np.concatenate([np.flatnonzero(lut[proc[p]] >= 0) + p.start for p in chunks(proc.size)])
        is_bg = np.zeros(nwin + 1, dtype=bool)
        is_bg[raw_bg] = True
        w = rw.first[r]
        ok = is_bg[w]
        extra = (lut[proc[rw.extra_row]] >= 0) & is_bg[rw.extra_win]
        r, w = np.concatenate([r[ok], rw.extra_row[extra]]), np.concatenate([w[ok], rw.extra_win[extra]])
        spid, _, family = ids(r)
        keys = pd.unique((_session(spid, family) * nwin + w) * cand.size + lut[proc[r]])
        counts += np.bincount(keys % cand.size, minlength=cand.size)
    if many.any():
        r, w, session = sampled
        lut = np.full(top, -1, dtype=np.int32)
        lut[cand[many]] = np.flatnonzero(many)
        for i, n in _sampled_runs(lut[proc[r]], w, session, nwin=nwin, scale=scale).items():
            counts[i] += n
    return {int(k): round(n) for k, n in zip(cand.tolist(), counts.tolist(), strict=True)}
