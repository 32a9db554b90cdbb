"""Procedure ∧ state: a procedure's crash windows split by a flag's or setting's state, the
state's link to the top procedures (trigger, gating, parallel workers), and the state
suspects' scores. The rules are in monitor/suspects_combine.py's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.suspects_combine import Activity, Cand, Group, Scored
from monitor.suspects_state import StateEvidence, Timeline, safe_name, state_text
from monitor.suspects_stats import IntArray, failure, fisher_greater, importance, log_term, strength
from monitor.suspects_stats import confidence as stats_confidence

GATE_WEIGHT = 0.8
PARALLEL_WEIGHT = 0.3
CONJ_P = 0.05
#: A link to a top procedure this strong is said in the evidence (and lets a state be strong).
LINK_SHOWN = 0.1
#: The gating link's words; :func:`tie_gates` adds the other states that gate alike to them.
_HELD = "it ran only while this held"
#: A clean revert counts when this many crashes were expected after it at the rate before it.
REVERT_EXPECTED = 3.0


@dataclass(frozen=True, slots=True)
class _Split:
    """A procedure's windows split by the state of a timeline (arrays indexed by state)."""

    values: list[str]
    crashed: IntArray  # this group's crash windows where it ran
    clean: IntArray  # observed crash-free windows where it ran
    hours: npt.NDArray[np.float64]  # observed hours (those windows together)
    first_run: list[float]  # hours from entering the state to its first run there (nan: none)
    alone: npt.NDArray[np.float64]  # window-level CBI Importance of each state on its own


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
    alone = importance(
        np.bincount(state[g.windows], minlength=len(values)), np.bincount(state[bg], minlength=len(values)),
        g.num_f, pres.num_s,
    )  # fmt: skip
    return _Split(values, crashed.astype(np.int64), clean, hours.astype(np.float64), first_run, alone)


def link(act: Activity, g: Group, cand: Cand, tl: Timeline, value: str) -> dict[str, float]:
    """How state ``value`` of ``tl`` shapes the procedure's crashes: trigger, gating (0..1 each).

    *Trigger*: how much the state raises the procedure's failure rate (normalised lift),
    times the log share of crashes. *Gating* is a necessary condition (a flag that makes
    the procedure reachable): one run outside the state breaks it; with none, how surely
    it would have run there at its rate inside, times the chance of no run in the delay
    from entering the state to its first run there (a flag switched an hour before the
    one that gates it keeps little).
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
            # Had this state opened the way, the first run would have come at the rate seen
            # inside: the chance of none in the delay (a flag switched hours before the one
            # that gates it keeps little).
            gating *= math.exp(-runs_in / h_in * sp.first_run[v])
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
        # CBI's rule for a compound predicate: it must not fall below either part, the
        # procedure alone or the state alone (a procedure that merely ran while a crash-prone
        # state held says less than the state).
        if imp[v] <= 0 or imp[v] < max(cand.a, float(sp.alone[v])):
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
    if -neg_p * len(tls) >= CONJ_P:
        return  # not shown, not used: the split could be chance (Bonferroni over the timelines tried)
    counts = ("crashed_under", "runs_under", "crashed_other", "runs_other")
    best["also"] = [lab for _, _, lab, d in found[1:] if all(d[k] == best[k] for k in counts)]
    cand.conj_imp, cand.conj = best_imp, best


def _clean_revert(e: StateEvidence) -> bool:
    """Crashes stopped after the state was left, for long enough to say so: at the crash rate
    while it held, :data:`REVERT_EXPECTED` crashes would have come in the time since."""
    if e.reverted_at is None or e.crashes_after_revert or e.rate.hours <= 0:
        return False
    return e.rate.events / e.rate.hours * e.hours_after_revert >= REVERT_EXPECTED


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


def state_scored(
    act: Activity, g: Group, e: StateEvidence, q: float, tops: list[tuple[Cand, float]]
) -> Scored:
    lk, ldetail = (0.0, {}) if e.ruled_out else state_link(act, g, e, tops)
    score = 0.0 if e.ruled_out else 1.0 - (1.0 - e.importance) * (1.0 - lk)
    large = e.af >= 0.5 and e.rate.low > 1.0
    went_on = e.reverted_at is not None and e.crashes_after_revert > 0
    if went_on:
        # Crashes went on after the state was left: it is not needed for them. Its share of
        # the crashes since it was entered is what is left of the score, and at most weak.
        score *= e.rate.events / (e.rate.events + e.crashes_after_revert)
    conf = "weak" if e.ruled_out or went_on else stats_confidence(g.num_f, score, q, large)
    if conf == "strong" and lk < LINK_SHOWN and not _clean_revert(e):
        conf = "moderate"  # timing alone: changes made hours apart share the same crash times
    more: list[str] = []
    proc = ldetail.get("procedure")
    if proc and lk >= LINK_SHOWN:
        trig = float(ldetail["trigger"]) >= float(ldetail["gating"])  # type: ignore[arg-type]
        how = "it crashed only under this value" if trig else _HELD
        more.append(f"linked to {proc}: {how}")
    if ldetail.get("parallel_workers"):
        need = f", which need {e.name} above 1" if ldetail.get("parallel_needed") else ""
        workers = f"{ldetail['parallel_workers']} of {g.num_f} crashes{need}"
        more.append(f"the crashing tasks were parallel workers in {workers}")
    # Two sentences at most: the state's numbers, then its links.
    text = state_text(e) + (" " + "; ".join(more)[0].upper() + "; ".join(more)[1:] + "." if more else "")
    detail: dict[str, object] = {"state": e.numbers(q)}
    if ldetail:
        detail["combination"] = {**ldetail, "link": lk}
    return Scored(e.kind, safe_name(e.name), score, conf, safe_name(text), detail)


def tie_gates(scored: list[Scored]) -> list[Scored]:
    """Flags and settings that each gate the same procedure (it ran only while each held) are
    told apart by timing alone: none of them is ``strong`` on that, and each names the others."""
    gates: dict[str, list[int]] = {}
    for i, sc in enumerate(scored):
        lk = sc.detail.get("combination")
        if sc.kind in ("flag", "setting") and isinstance(lk, dict) and lk.get("procedure"):
            gating, trigger = float(lk.get("gating", 0.0)), float(lk.get("trigger", 0.0))
            if float(lk.get("link", 0.0)) >= LINK_SHOWN and gating >= trigger:
                gates.setdefault(str(lk["procedure"]), []).append(i)
    out = list(scored)
    for members in gates.values():
        if len(members) < 2:
            continue
        for i in members:
            sc = out[i]
            alike = sorted(scored[j].name for j in members if j != i)
            text = sc.evidence.replace(_HELD, f"{_HELD}, as while {' and '.join(alike)} held")
            detail = {**sc.detail, "gates_alike": alike}
            conf = "moderate" if sc.confidence == "strong" else sc.confidence
            out[i] = Scored(sc.kind, sc.name, sc.score, conf, text, detail)
    return out
