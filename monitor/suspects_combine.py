"""Scores: activity suspects (procedure, login, application, host), procedure ∧ state, confidence.

Each evidence kind is kept apart in ``detail`` and combined only here:

- **procedure**: ``a`` = CBI Importance of "ran in the window before the crash" (window
  level), or of "ran in the window while flag/setting = v" when that conjunction is
  higher; ``b`` = the larger of the CBI Importance of "ran on the crashing task" (runs are
  (session, window) pairs) and the crash blocks naming it (``0.9 x`` harmonic of 1 and
  ``log(k)/log(NumF)``). ``score = 1 - (1 - a)(1 - b)``.
- **login / application / host**: window-level Importance (the crashing task's value counts
  in its crash window); with no activity rows to compare against, only
  ``0.3 x`` the block share, and at most weak.
- **Combination, reported on the procedure**: for the top procedures and every flag and
  setting, the procedure's windows are split by the state in effect. When all its crash
  windows fall in one state and it also ran in another state without a crash, the
  procedure's evidence and ``detail["combination"]`` say "only while S = v: 5 of 5 runs
  under v crashed, 0 of 3 under w". The same split links states to the procedure: a
  state gains ``top procedure score x max(trigger, 0.8 x gating)``, where *trigger* is how
  much the state raises the procedure's failure rate and *gating* how surely the
  procedure ran only in that state (a feature flag that reaches it). A parallelism
  setting whose suspect value is the more parallel one gains ``0.3 x`` the share of
  crashes on parallel workers.
- **Task evidence on the rate scale**: a bug that fires on a few of many runs has a small
  Increase however sure it is, so the crashing-task comparison also scores
  ``strength(p) x harmonic(lift, log(k)/log(NumF))`` with ``lift = 1 - Context/Failure``
  (:func:`~monitor.suspects_stats.lift_share`), for procedures and for the crashing
  task's login, application and host alike. A value only the crash blocks name (the rows
  lack the column, or never show it) has nothing to compare against: block share only.
- **Confidence**: ``weak`` with two crashes or fewer, a score under 0.2, or q >= 0.25;
  ``strong`` only with at least four crashes, q < 0.05, a large effect (Increase >= 0.5,
  a task lift of at least :data:`LARGE_LIFT`, or a state rate ratio whose CI excludes 1
  and attributable share >= 0.5) and score >= 0.5; otherwise ``moderate``. A state is
  ``strong`` only with more than timing: a link to a top procedure or a clean revert; a
  state left while crashes went on is ``weak`` and keeps its share of them. A procedure
  ∧ state split must not fall below either part and is Bonferroni-corrected over the
  timelines tried; it adds to the score, never to the confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitor.suspects_evidence import Presence, Windows
from monitor.suspects_state import (
    hours_text,
    safe_name,
    window_label,
)
from monitor.suspects_stats import (
    IntArray,
    failure,
    fisher_greater,
    harmonic,
    importance,
    increase,
    lift_share,
    log_term,
    strength,
)
from monitor.suspects_stats import confidence as stats_confidence

BLOCK_WEIGHT = 0.9
ID_BLOCK_WEIGHT = 0.3
LINK_TOP = 3
LINK_MIN = 0.05
#: A task-level lift counts as a large effect from here: 1 - 1/4, a crash rate four times the base.
LARGE_LIFT = 0.75


@dataclass(frozen=True, slots=True)
class Scored:
    """A suspect before ranking (``detail`` holds plain numbers and strings)."""

    kind: str
    name: str
    score: float
    confidence: str
    evidence: str
    detail: dict[str, object]


@dataclass(frozen=True, slots=True)
class Group:
    """One crash group: its crashes' rows in the crash table, windows and sorted times."""

    rows: IntArray
    windows: IntArray
    times: IntArray
    workers: int

    @property
    def num_f(self) -> int:
        return int(self.rows.size)


@dataclass(frozen=True, slots=True)
class Activity:
    """What ran where, for every group (built once per call)."""

    windows: Windows
    width_s: float
    present: dict[str, Presence]  # procedure, login, application, host
    on_task: dict[str, tuple[frozenset[int], ...]]  # per crash row; empty without raw rows
    block: dict[str, tuple[frozenset[int], ...]]  # per crash row: named by the crash block
    bg_runs: dict[int, int]
    bg_total: float
    bg_ident: dict[str, dict[int, int]]  # login/application/host code -> background task runs
    known: dict[str, int]  # per kind: names below this code were seen in the rows (not only in blocks)
    crash_window: IntArray  # per crash row: its window
    anchor: IntArray  # per window: the time its state is read at (crash time, or the middle)
    hours: npt.NDArray[np.float64]  # per window: its length in hours


@dataclass(slots=True)
class Cand:
    """A candidate while its evidence is gathered: ``a`` window-level, ``b`` direct Importance."""

    kind: str
    code: int
    name: str
    num_f: int
    across: dict[str, float] = field(default_factory=dict)
    task: dict[str, float] = field(default_factory=dict)
    k_task: int = 0
    k_block: int = 0
    a: float = 0.0
    b: float = 0.0
    conj: dict[str, object] | None = None
    conj_imp: float = 0.0
    q: float = math.nan

    @property
    def base(self) -> float:
        """The score before any combination with a state."""
        return 1.0 - (1.0 - self.a) * (1.0 - self.b)


def activity_candidates(act: Activity, g: Group, kind: str) -> list[Cand]:
    """Window-level, task-level and block evidence for every name of ``kind`` seen at a crash."""
    pres = act.present.get(kind)
    if pres is None or not pres.names:
        return []
    num_f = g.num_f
    f = pres.ran[g.windows].sum(axis=0)
    s, num_s = pres.bg_ran, pres.num_s
    inc, imp = increase(f, s, num_f, num_s), importance(f, s, num_f, num_s)
    p = fisher_greater(f, s, num_f, num_s)
    k_task = np.zeros(len(pres.names), dtype=np.int64)
    k_block = np.zeros(len(pres.names), dtype=np.int64)
    for r in g.rows.tolist():
        for c in act.on_task.get(kind, ())[r] if act.on_task.get(kind) else ():
            k_task[c] += 1
        for c in act.block.get(kind, ())[r] if act.block.get(kind) else ():
            k_block[c] += 1
    known = act.known.get(kind, len(pres.names))
    bg = act.bg_runs if kind == "procedure" else act.bg_ident.get(kind, {})
    out = []
    for c in np.flatnonzero(f > 0).tolist():
        cand = Cand(kind, c, pres.names[c], num_f, k_task=int(k_task[c]), k_block=int(k_block[c]))
        # A login/host/application only the crash blocks name (the rows lack the column, or
        # never show the value): nothing to compare against, whatever the rows hold.
        unseen = kind != "procedure" and c >= known
        n_s = 0 if unseen else num_s
        cand.across = {"failing": int(f[c]), "successful": 0 if unseen else int(s[c]),
                       "failing_windows": num_f,
                       "successful_windows": n_s, "failure": 1.0 if unseen else float(failure(f[c], s[c])),
                       "increase": 0.0 if unseen else float(inc[c]),
                       "importance": 0.0 if unseen else float(imp[c]),
                       "p": 1.0 if unseen else float(p[c])}  # fmt: skip
        a, b = float(cand.across["importance"]), 0.0
        if act.bg_total > 0 and cand.k_task and not unseen:
            t_n = round(act.bg_total)  # estimated from sampled windows; exact counts may pass it
            b = _task_evidence(cand, min(bg.get(c, 0), t_n), t_n)
        if cand.k_block and (kind == "procedure" or n_s == 0):
            # A login/host/application in the crash block is evidence only with nothing to compare
            # against; with activity rows it already counts in its crash window (a above).
            weight = BLOCK_WEIGHT if kind == "procedure" else ID_BLOCK_WEIGHT
            b = max(b, weight * float(harmonic(1.0, log_term(cand.k_block, num_f))[()]))
        cand.a, cand.b = a, b
        out.append(cand)
    return out


def _task_evidence(cand: Cand, t_s: int, t_n: int) -> float:
    """Ran on the crashing task in ``k_task`` crashes, and in ``t_s`` of ``t_n`` crash-free
    (session, window) pairs: the larger of CBI Importance and its rate-scale counterpart
    (:func:`lift_share` in place of Increase, scaled by the exact test's strength), so a
    bug that fires on a few of many runs is not capped at its per-run crash rate."""
    k, n = cand.k_task, cand.num_f
    p = float(fisher_greater(k, t_s, n, t_n)[()])
    lift = lift_share(k, t_s, n, t_n)
    rate = strength(p) * float(harmonic(lift, log_term(k, n))[()])
    cand.task = {"failing": k, "successful": t_s, "successful_runs": t_n,
                 "increase": float(increase(k, t_s, n, t_n)[()]),
                 "importance": float(importance(k, t_s, n, t_n)[()]),
                 "lift": lift, "rate_importance": rate, "p": p}  # fmt: skip
    return max(float(cand.task["importance"]), rate)


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def activity_text(act: Activity, cand: Cand) -> str:
    """One or two sentences with the numbers for a procedure, login, application or host."""
    n, a, lab = cand.num_f, cand.across, window_label(act.width_s)
    if cand.kind == "procedure":
        if cand.k_task:
            first = f"ran on the crashing task before {cand.k_task} of {n} crashes"
            first += f" (named by the crash block in {cand.k_block})" if cand.k_block else ""
        elif cand.k_block:
            first = f"named by the crash block in {cand.k_block} of {n} crashes"
        else:
            first = f"ran in the {lab} window before {a['failing']} of {n} crashes, not on the crashing task"
    elif cand.k_task or cand.k_block:
        first = f"the crashing task's {cand.kind} in {max(cand.k_task, cand.k_block)} of {n} crashes"
    else:
        first = f"active in the {lab} window before {a['failing']} of {n} crashes"
    num_s = int(a["successful_windows"])
    if cand.task and cand.kind == "procedure":
        raw_h = float((act.windows.background & (act.windows.source == 1)).sum()) * act.width_s / 3600
        second = f"{cand.task['successful']:,} runs in {hours_text(raw_h)} without a crash"
    elif cand.task:
        second = (f"on {cand.task['successful']:,} of {cand.task['successful_runs']:,} sessions"
                  f" in crash-free {lab} windows")  # fmt: skip
    elif num_s:
        h = num_s * act.width_s / 3600
        second = f"in {a['successful']:,} of {num_s:,} crash-free {lab} windows ({hours_text(h)})"
    else:
        second = "no activity rows to compare against"
    text = f"{first}; {second}."
    c = cand.conj
    if c is not None and cand.conj_imp > float(a["importance"]) + 0.05:
        what = c.get("setting", c.get("flag"))
        others = " or ".join(str(o) for o in _strs(c["other_values"])) or "other values"
        lead = "Only while" if c["only_while"] else "Mostly while"
        also = _strs(c.get("also"))
        alike = f" (or {' or '.join(also)}, which changed alongside)" if also else ""
        text += (f" {lead} {what} = {c['value']}{alike}: {c['crashed_under']} of {c['runs_under']} runs under"
                 f" {c['value']} crashed, {c['crashed_other']} of {c['runs_other']}"
                 f" under {others}.")  # fmt: skip
    return safe_name(text[0].upper() + text[1:])


def activity_scored(act: Activity, cand: Cand) -> Scored:
    """The activity suspect with its score, confidence and ``detail``."""
    a = max(cand.a, cand.conj_imp if cand.a > 0 or cand.b > 0 else 0.0)
    score = min(max(1.0 - (1.0 - a) * (1.0 - cand.b), 0.0), 1.0)
    # A large effect of its own (a procedure ∧ state split is a view of it, not more evidence).
    incs = [float(cand.across["increase"]), float(cand.task.get("increase", 0.0))]
    if float(cand.task.get("rate_importance", 0.0)) >= 0.5 and float(cand.task["lift"]) >= LARGE_LIFT:
        incs.append(1.0)
    conf = stats_confidence(cand.num_f, score, cand.q, max(incs) >= 0.5, direct=cand.k_block >= 2)
    if cand.kind != "procedure" and int(cand.across["successful_windows"]) == 0:
        conf = "weak"
    detail: dict[str, object] = {
        "direct": {"crashes": cand.num_f, "on_task": cand.k_task, "block": cand.k_block},
        "across": {**cand.across, "q": cand.q},
    }
    if cand.task:
        detail["task"] = dict(cand.task)
    if cand.conj is not None:
        detail["combination"] = dict(cand.conj)
    return Scored(cand.kind, safe_name(cand.name), score, conf, activity_text(act, cand), detail)
