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
- **Confidence**: ``weak`` with two crashes or fewer, a score under 0.2, or q >= 0.25;
  ``strong`` only with at least four crashes, q < 0.05, a large effect (Increase >= 0.5,
  or a state rate ratio whose CI excludes 1 and attributable share >= 0.5) and score
  >= 0.5; otherwise ``moderate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitor.suspects_evidence import Presence, Windows
from monitor.suspects_state import (
    StateEvidence,
    Timeline,
    hours_text,
    safe_name,
    state_text,
    window_label,
)
from monitor.suspects_stats import (
    IntArray,
    failure,
    fisher_greater,
    harmonic,
    importance,
    increase,
    log_term,
    strength,
)
from monitor.suspects_stats import confidence as stats_confidence

BLOCK_WEIGHT = 0.9
ID_BLOCK_WEIGHT = 0.3
GATE_WEIGHT = 0.8
PARALLEL_WEIGHT = 0.3
LINK_TOP = 3
LINK_MIN = 0.05
CONJ_P = 0.05


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
    out = []
    for c in np.flatnonzero(f > 0).tolist():
        cand = Cand(kind, c, pres.names[c], num_f, k_task=int(k_task[c]), k_block=int(k_block[c]))
        cand.across = {"failing": int(f[c]), "successful": int(s[c]), "failing_windows": num_f,
                       "successful_windows": num_s, "failure": float(failure(f[c], s[c])),
                       "increase": float(inc[c]), "importance": float(imp[c]), "p": float(p[c])}  # fmt: skip
        a, b = float(imp[c]), 0.0
        if kind == "procedure" and act.bg_total > 0 and cand.k_task:
            t_s, t_n = act.bg_runs.get(c, 0), round(act.bg_total)
            cand.task = {"failing": cand.k_task, "successful": t_s, "successful_runs": t_n,
                         "increase": float(increase(cand.k_task, t_s, num_f, t_n)[()]),
                         "importance": float(importance(cand.k_task, t_s, num_f, t_n)[()]),
                         "p": float(fisher_greater(cand.k_task, t_s, num_f, t_n)[()])}  # fmt: skip
            b = float(cand.task["importance"])
        if cand.k_block and (kind == "procedure" or num_s == 0):
            # A login/host/application in the crash block is evidence only with nothing to compare
            # against; with activity rows it already counts in its crash window (a above).
            weight = BLOCK_WEIGHT if kind == "procedure" else ID_BLOCK_WEIGHT
            b = max(b, weight * float(harmonic(1.0, log_term(cand.k_block, num_f))[()]))
        cand.a, cand.b = a, b
        out.append(cand)
    return out


@dataclass(frozen=True, slots=True)
class _Split:
    """A procedure's windows split by the state of a timeline (arrays indexed by state)."""

    values: list[str]
    crashed: IntArray  # this group's crash windows where it ran
    clean: IntArray  # observed crash-free windows where it ran
    hours: npt.NDArray[np.float64]  # observed hours (those windows together)
    first_run: list[float]  # hours from entering the state to its first run there (nan: none)


def _split(act: Activity, g: Group, code: int, tl: Timeline) -> _Split:
    pres = act.present["procedure"]
    values = list(dict.fromkeys(tl.states))
    seg_value = np.array([values.index(v) for v in tl.states], dtype=np.int64)
    seg = tl.at(act.anchor)
    state = seg_value[seg]
    bg = act.windows.background & pres.observed
    ran = pres.ran[:, code]
    seen = bg.copy()
    seen[g.windows] = True
    crashed = np.bincount(state[g.windows][ran[g.windows]], minlength=len(values))
    hours = np.bincount(state[seen], weights=act.hours[seen], minlength=len(values))
    first_run = [math.nan] * len(values)
    runs = np.flatnonzero(seen & ran)
    for v in range(len(values)):
        mine = runs[state[runs] == v]
        if mine.size and seg[mine[0]] > 0:  # entered by a change we saw (not the initial state)
            entered = int(tl.times[seg[mine[0]] - 1])
            first_run[v] = max(int(act.anchor[mine[0]]) - max(entered, int(act.windows.start[0])), 0) / 3.6e12
    clean = np.bincount(state[bg & ran], minlength=len(values)).astype(np.int64)
    return _Split(values, crashed.astype(np.int64), clean, hours.astype(np.float64), first_run)


def link(act: Activity, g: Group, cand: Cand, tl: Timeline, value: str) -> dict[str, float]:
    """How state ``value`` of ``tl`` shapes the procedure's crashes: trigger, gating (0..1 each).

    *Trigger*: how much the state raises the procedure's failure rate (normalised lift),
    times the log share of crashes. *Gating* is a necessary condition (a flag that makes
    the procedure reachable): one run outside the state breaks it; with none, how surely
    it would have run there at its rate inside, discounted when it first ran long after
    the state was entered (a flag switched an hour before the one that gates it).
    """
    sp = _split(act, g, cand.code, tl)
    f_v, s_v = sp.crashed, sp.clean
    if value not in sp.values or f_v.sum() == 0:
        return {"trigger": 0.0, "gating": 0.0}
    v = sp.values.index(value)
    f_x, s_x = int(f_v.sum()), int(s_v.sum())
    base = float(failure(f_x, s_x)[()])
    lift = (float(failure(f_v[v], s_v[v])[()]) - base) / (1.0 - base) if base < 1 else 0.0
    p = float(fisher_greater(f_v[v], s_v[v], f_x, s_x)[()])
    trigger = max(lift, 0.0) * strength(p) * float(log_term(f_v[v], g.num_f)[()]) * f_v[v] / f_x
    runs_in, runs_out = int(f_v[v] + s_v[v]), int(f_x + s_x - f_v[v] - s_v[v])
    h_in, h_out = float(sp.hours[v]), float(sp.hours.sum() - sp.hours[v])
    gating = 0.0
    if h_in > 0 and runs_out == 0:
        gating = strength(math.exp(-runs_in * h_out / h_in))  # p of no run outside at the inside rate
        if not math.isnan(sp.first_run[v]):
            gating *= 0.5 + 0.5 * math.exp(-runs_in / h_in * sp.first_run[v])
    return {"trigger": float(trigger), "gating": float(gating)}


def best_conjunction(act: Activity, g: Group, cand: Cand, tls: list[Timeline]) -> None:
    """The flag/setting state that best sharpens the procedure (CBI Importance of procedure ∧ state).

    States whose split of the procedure's runs is identical (changed alongside, so the
    runs cannot tell them apart) are listed under ``also``.
    """
    pres = act.present["procedure"]
    found: list[tuple[float, float, str, dict[str, object]]] = []
    for tl in tls:
        sp = _split(act, g, cand.code, tl)
        values, f_v, s_v = sp.values, sp.crashed, sp.clean
        imp = importance(f_v, s_v, g.num_f, pres.num_s)
        v = int(np.argmax(imp))
        if imp[v] <= 0:
            continue
        f_x, s_x = int(f_v.sum()), int(s_v.sum())
        out_runs = f_x + s_x - int(f_v[v] + s_v[v])
        p = float(fisher_greater(f_v[v], s_v[v], f_x, s_x)[()])
        split: dict[str, object] = {
            "setting" if tl.kind == "setting" else "flag": tl.name,
            "value": values[v],
        }
        split.update(
            crashed_under=int(f_v[v]), runs_under=int(f_v[v] + s_v[v]), crashed_other=f_x - int(f_v[v])
        )
        split.update(runs_other=out_runs, importance=float(imp[v]), p=p)
        split["other_values"] = [w for i, w in enumerate(values) if i != v and f_v[i] + s_v[i]]
        split["only_while"] = bool(f_v[v] == f_x and out_runs > 0)
        found.append((float(imp[v]), -p, f"{tl.name} = {values[v]}", split))  # (importance, -p, label, split)
    if not found:
        return
    found.sort(key=lambda x: (-x[0], -x[1], x[2]))
    best_imp, neg_p, _, best = found[0]
    if -neg_p >= CONJ_P:
        return  # not shown, not used: the split could be chance
    counts = ("crashed_under", "runs_under", "crashed_other", "runs_other")
    best["also"] = [lab for _, _, lab, d in found[1:] if all(d[k] == best[k] for k in counts)]
    cand.conj_imp, cand.conj = best_imp, best


def state_link(
    act: Activity, g: Group, ev: StateEvidence, tops: list[tuple[Cand, float]]
) -> tuple[float, dict[str, object]]:
    """The state's link to the top procedures (with their scores), and the parallel-worker link.

    Crashes in parallel workers need parallel query: a parallelism setting whose other
    values turn it off (<= 1) is then a necessary condition (weighted like gating); one
    that is merely more parallel than before gets :data:`PARALLEL_WEIGHT`.
    """
    best, detail = 0.0, {}
    if ev.kind in ("flag", "setting"):
        for cand, score in tops:
            lk = link(act, g, cand, ev.timeline, ev.state)
            value = score * max(lk["trigger"], GATE_WEIGHT * lk["gating"])
            if value > best:
                best, detail = value, {"procedure": cand.name, **lk}
    weight = _parallel_weight(ev) if ev.parallel and g.workers else 0.0
    if weight:
        detail["parallel_workers"] = g.workers
        detail["parallel_needed"] = weight == GATE_WEIGHT
        best = 1.0 - (1.0 - best) * (1.0 - weight * g.workers / g.num_f)
    return best, detail


def _parallel_weight(ev: StateEvidence) -> float:
    try:
        state, others = float(ev.state), [float(o) for o in ev.others]
    except ValueError:
        return 0.0
    if not others or not all(state > o for o in others):
        return 0.0
    return GATE_WEIGHT if max(others) <= 1 else PARALLEL_WEIGHT


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
    if cand.task:
        raw_h = float((act.windows.background & (act.windows.source == 1)).sum()) * act.width_s / 3600
        second = f"{cand.task['successful']:,} runs in {hours_text(raw_h)} without a crash"
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
    incs = [float(cand.across["increase"]), float(cand.task.get("increase", 0.0))]
    if cand.conj is not None:
        incs.append(float(cand.conj["importance"]))  # type: ignore[arg-type]
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


def state_scored(
    act: Activity, g: Group, e: StateEvidence, q: float, tops: list[tuple[Cand, float]]
) -> Scored:
    lk, ldetail = (0.0, {}) if e.ruled_out else state_link(act, g, e, tops)
    score = 0.0 if e.ruled_out else 1.0 - (1.0 - e.importance) * (1.0 - lk)
    large = e.af >= 0.5 and e.rate.low > 1.0
    conf = "weak" if e.ruled_out else stats_confidence(g.num_f, score, q, large)
    more: list[str] = []
    proc = ldetail.get("procedure")
    if proc and lk >= 0.1:
        trig = float(ldetail["trigger"]) >= float(ldetail["gating"])  # type: ignore[arg-type]
        how = "it crashed only under this value" if trig else "it ran only while this held"
        more.append(f"linked to {proc}: {how}")
    if ldetail.get("parallel_workers"):
        need = f", which need {e.name} above 1" if ldetail.get("parallel_needed") else ""
        workers = f"{ldetail['parallel_workers']} of {g.num_f} crashes{need}"
        more.append(f"the crashing tasks were parallel workers in {workers}")
    # Two sentences at most: the state's numbers, then its links.
    text = state_text(e) + (" " + "; ".join(more)[0].upper() + "; ".join(more)[1:] + "." if more else "")
    detail: dict[str, object] = {"state": e.numbers(q)}
    if ldetail:
        detail["combination"] = ldetail
    return Scored(e.kind, safe_name(e.name), score, conf, safe_name(text), detail)
