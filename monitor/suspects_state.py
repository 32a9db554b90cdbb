"""State evidence: flags, settings, deployments, procedure definitions and versions over time.

Each flag and setting gets a state timeline from the change ledger (its state before the
first change is that change's ``old``); deployments, versions and each procedure's
definitions are timelines too (the state is "which deployment / version / definition
was in effect"). Per state: hours of exposure within the observed uptime and the crashes
of the group that happened in it. The suspect state of a timeline is the one that best
explains the crashes (its rate against the overall rate, CBI-style, see
:func:`monitor.suspects_stats.attributable`), reported with the Poisson rate ratio
against the other states and its exact 95% CI, the time from the change into it to the
first crash, and whether crashes stopped after it was left (the revert).

A state entered after the group's first crash cannot have caused that crash: such a
suspect is kept with score 0 and says so (``ruled_out``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitor.redact import personal_numbers
from monitor.suspects_evidence import NS
from monitor.suspects_stats import (
    IntArray,
    Intervals,
    RateRatio,
    attributable,
    harmonic,
    intersect,
    length,
    log_term,
    rate_ratio,
    strength,
)

STATE_KINDS = ("flag", "setting", "procedure_change")
EVENT_KINDS = ("deployment", "version")
_ON = {"1", "true", "on", "yes", "y", "t", "enabled"}
_OFF = {"0", "false", "off", "no", "n", "f", "disabled"}
HOUR = 3600 * NS
DASH = "\u2013"  # the en dash of a range: "95% CI 3.1\u2013\u221e"


def is_parallelism_setting(name: str) -> bool:
    """Whether an ASE setting governs parallel query (named as such in the evidence).

    >>> [is_parallelism_setting(n) for n in ("max parallel degree", "number of worker processes",
    ...  "max memory")]
    [True, True, False]
    """
    n = " ".join(name.lower().split())
    return "parallel" in n or n == "number of worker processes"


_KIND_ALIASES = {"deploy": "deployment", "config": "setting", "procedure": "procedure_change",
                 "procedures": "procedure_change"}  # fmt: skip


def normal_changes(changes: pd.DataFrame | None) -> pd.DataFrame | None:
    """The ledger with kinds in the contract's words (``deploy`` -> ``deployment``, ...); None if unusable."""
    if changes is None or changes.empty or "time" not in changes or "kind" not in changes:
        return None
    out = changes.copy()
    kind = out["kind"].astype(str).str.strip().str.lower()
    out["kind"] = kind.map(lambda k: _KIND_ALIASES.get(k, k))
    for col in ("name", "old", "new"):
        if col not in out:
            out[col] = None
    return out


def normal_value(kind: str, value: object) -> str:
    """The state a ledger value stands for: flags on/off, numbers without ``.0``, else stripped text.

    >>> normal_value("flag", "TRUE"), normal_value("setting", "4.0"), normal_value("setting", None)
    ('on', '4', '?')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "?"
    text = str(value).strip()
    if not text:
        return "?"
    if kind == "flag" and text.lower() in _ON | _OFF:
        return "on" if text.lower() in _ON else "off"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else text


@dataclass(frozen=True, slots=True)
class Timeline:
    """``states[k]`` holds from ``times[k-1]`` (or forever before) to ``times[k]`` (or forever after)."""

    kind: str
    name: str
    times: IntArray
    states: tuple[str, ...]

    def at(self, t: IntArray) -> IntArray:
        """The segment index in effect at each time (a change at ``t`` counts from ``t``)."""
        return np.searchsorted(self.times, t, side="right").astype(np.int64)

    def segments(self) -> Intervals:
        lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        return np.r_[lo, self.times].astype(np.int64), np.r_[self.times, hi].astype(np.int64)


def timelines(changes: pd.DataFrame | None) -> list[Timeline]:
    """One timeline per flag, setting and procedure, one for deployments and one for versions."""
    if changes is None or changes.empty:
        return []
    out: list[Timeline] = []
    frame = changes.assign(_t=changes["time"].astype("datetime64[ns]").to_numpy().view(np.int64))
    frame = frame[changes["time"].notna().to_numpy()].sort_values("_t", kind="stable")
    for kind in (*STATE_KINDS, *EVENT_KINDS):
        rows = frame[frame["kind"] == kind]
        if rows.empty:
            continue
        if kind in EVENT_KINDS:
            groups: list[tuple[str, pd.DataFrame]] = [(kind, rows)]
        else:
            groups = [(str(n), g) for n, g in rows.groupby(rows["name"].astype(str), sort=True)]
        for name, g in groups:
            times = g["_t"].to_numpy(dtype=np.int64)
            if kind == "procedure_change":
                stamps = [pd.Timestamp(int(t)).strftime("%Y-%m-%d %H:%M") for t in times]
                states = ("earlier definition", *(f"definition of {s}" for s in stamps))
            elif kind in EVENT_KINDS:
                first_old = normal_value(kind, g["old"].iloc[0]) if "old" in g else "?"
                before = first_old if first_old != "?" else f"before {normal_value(kind, g['name'].iloc[0])}"
                states = (before, *(normal_value(kind, v) for v in g["name"]))
            else:
                states = (normal_value(kind, g["old"].iloc[0]), *(normal_value(kind, v) for v in g["new"]))
            out.append(Timeline(kind, name, times, states))
    return out


def local_time(t: int) -> datetime:
    """A naive datetime from int64 nanoseconds (to the microsecond).

    >>> local_time(86_400_000_000_000 + 1_500)
    datetime.datetime(1970, 1, 2, 0, 0, 0, 1)
    """
    return datetime(1970, 1, 1) + timedelta(microseconds=int(t) // 1000)


def iso(t: int) -> str:
    """ISO 8601 to the second, no zone."""
    return local_time(t).isoformat(timespec="seconds")


def _clock(t: int, ref: int | None = None) -> str:
    """``HH:MM``; with the date when ``ref`` is given and ``t`` is on another day."""
    when = local_time(t)
    if ref is None or local_time(ref).date() == when.date():
        return when.strftime("%H:%M")
    return when.strftime("%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class StateEvidence:
    """How one state of one timeline lines up with a group's crashes (hours are observed uptime)."""

    kind: str
    name: str
    timeline: Timeline
    state: str
    others: tuple[str, ...]
    rate: RateRatio
    af: float
    importance: float
    ruled_out: bool
    entered_at: int | None
    first_crash: int
    reverted_at: int | None
    crashes_after_revert: int
    hours_after_revert: float
    reverted: bool
    returned: bool
    parallel: bool

    def numbers(self, q: float) -> dict[str, object]:
        """The state evidence apart, for ``detail["state"]`` (``q``: its Benjamini-Hochberg q)."""
        r = self.rate

        def at(t: int | None) -> str | None:
            return iso(t) if t is not None else None

        return {"value": self.state, "other_values": list(self.others), "crashes": r.events, "hours": r.hours,
                "other_crashes": r.other_events, "other_hours": r.other_hours, "rate_ratio": r.ratio,
                "ci_low": r.low, "ci_high": r.high, "p": r.p, "q": q, "attributable": self.af,
                "importance": self.importance, "ruled_out": self.ruled_out, "parallelism": self.parallel,
                "set_at": at(self.entered_at), "first_crash": iso(self.first_crash),
                "reverted_at": at(self.reverted_at),
                "crashes_after_revert": self.crashes_after_revert,
                "hours_after_revert": self.hours_after_revert}  # fmt: skip

    @property
    def label(self) -> str:
        if self.kind in ("flag", "setting"):
            return f"{self.name} = {self.state}"
        return self.state if self.kind in EVENT_KINDS else f"{self.name} ({self.state})"


def _exposure(tl: Timeline, observed: Intervals) -> dict[str, float]:
    seg_s, seg_e = tl.segments()
    out: dict[str, float] = {}
    for k, state in enumerate(tl.states):
        piece = intersect(observed, (seg_s[k : k + 1], seg_e[k : k + 1]))
        out[state] = out.get(state, 0.0) + length(piece) / HOUR
    return out


def state_evidence(tl: Timeline, crash_times: IntArray, observed: Intervals) -> list[StateEvidence]:
    """The suspect state(s) of a timeline for one group (``crash_times`` sorted, ns).

    Flags, settings and procedure definitions give their best state; deployments and
    versions give one entry per deployment/version that held a crash or came before the
    first one. Empty when the timeline never changed within the observed time.
    """
    hours = _exposure(tl, observed)
    if sum(1 for h in hours.values() if h > 0) < 2 or crash_times.size == 0:
        return []
    at_crash = [tl.states[k] for k in tl.at(crash_times)]
    num_f, total = crash_times.size, sum(hours.values())
    first = int(crash_times[0])

    def imp(state: str) -> float:
        # CBI-style importance on the rate scale, scaled by how far the rate test sees it from chance.
        c, h = at_crash.count(state), hours.get(state, 0.0)
        sure = strength(rate_ratio(c, h, num_f - c, total - h).p)
        return sure * float(harmonic(attributable(c, h, num_f, total), log_term(c, num_f)).item())

    if tl.kind in EVENT_KINDS:
        # Every deployment/version that held a crash or was entered after the first one.
        entered_after = {tl.states[k + 1] for k, t in enumerate(tl.times.tolist()) if t > first}
        candidates = [s for s in dict.fromkeys(tl.states[1:]) if s in at_crash or s in entered_after]
    else:
        held = [s for s in hours if s in at_crash]
        candidates = [max(held, key=lambda s: (imp(s), at_crash.count(s)))] if held else []
    out = []
    for state in candidates:
        c, h = at_crash.count(state), hours.get(state, 0.0)
        ruled_out = at_crash[0] != state
        entered = [
            int(t) for k, t in enumerate(tl.times.tolist()) if tl.states[k + 1] == state and t <= first
        ]
        rev_at, after, h_after, back, again = _revert(tl, state, crash_times, observed)
        out.append(
            StateEvidence(
                kind=tl.kind,
                name=state if tl.kind in EVENT_KINDS else tl.name,
                timeline=tl,
                state=state,
                others=tuple(s for s in dict.fromkeys(tl.states) if s != state and hours.get(s, 0) > 0),
                rate=rate_ratio(c, h, num_f - c, total - h),
                af=attributable(c, h, num_f, total),
                importance=0.0 if ruled_out else imp(state),
                ruled_out=ruled_out,
                entered_at=entered[-1] if entered and not ruled_out else None,
                first_crash=first,
                reverted_at=rev_at,
                crashes_after_revert=after,
                hours_after_revert=h_after,
                reverted=back,
                returned=again,
                parallel=tl.kind == "setting" and is_parallelism_setting(tl.name),
            )
        )
    return out


def _revert(
    tl: Timeline, state: str, crash_times: IntArray, observed: Intervals
) -> tuple[int | None, int, float, bool, bool]:
    """The first change away from ``state`` after the first crash: its time, the crashes after it in
    other states, the observed hours after it in other states, and whether it went back to a
    value held before ``state`` (a revert), and whether ``state`` came back later."""
    seg_s, seg_e = tl.segments()
    for k, t in enumerate(tl.times.tolist()):
        if t > crash_times[0] and tl.states[k] == state and tl.states[k + 1] != state:
            later = crash_times[crash_times > t]
            after = sum(1 for j in tl.at(later) if tl.states[j] != state)
            rest = [i for i in range(k + 1, len(tl.states)) if tl.states[i] != state]
            h = sum(
                length(intersect(observed, (seg_s[i : i + 1], np.array([max(seg_e[i], t)], np.int64))))
                for i in rest
            )
            back = tl.states[k + 1] in tl.states[:k]
            return t, after, h / HOUR, back, state in tl.states[k + 2 :]
    return None, 0, 0.0, False, False


def hours_text(h: float) -> str:
    """Hours for evidence text: one decimal, whole hours from 100 on; minutes or seconds
    under a tenth of an hour (a short outage, the time-compressed demo).

    >>> hours_text(0.02), hours_text(0.0001), hours_text(5.46), hours_text(120.4)
    ('1.2 min', '0.36 s', '5.5 h', '120 h')
    """
    if h < 1 / 60:
        return f"{h * 3600:.2g} s"
    if h < 0.1:
        return f"{h * 60:.2g} min"
    return f"{h:.1f} h" if h < 100 else f"{h:.0f} h"


def _ratio(rr: RateRatio) -> str:
    def num(x: float) -> str:
        return "∞" if math.isinf(x) else f"{x:.2g}" if x < 1 else f"{x:.1f}" if x < 10 else f"{x:.0f}"

    if math.isnan(rr.ratio):
        return "rate ratio not defined"
    return f"rate ratio {num(rr.ratio)}, 95% CI {num(rr.low)}{DASH}{num(rr.high)}"


def state_text(ev: StateEvidence) -> str:
    """One or two plain sentences with the numbers (names and times only, never SQL)."""
    r = ev.rate
    crashes = f"{r.events} crash{'es' if r.events != 1 else ''}"
    others = " or ".join(ev.others[:3]) + (" or others" if len(ev.others) > 3 else "") or "other values"
    if ev.kind in ("flag", "setting"):
        what = f"with {ev.name} = {ev.state}"
        other = f"with {others}"
    elif ev.kind == "procedure_change":
        what, other = f"with the {ev.state} of {ev.name}", "with earlier or later definitions"
    else:
        what, other = f"with {ev.kind} {ev.state} in effect", "before or after it"
    rest = (
        f"none in {hours_text(r.other_hours)}"
        if r.other_events == 0
        else f"{r.other_events} in {hours_text(r.other_hours)}"
    )
    first = f"{crashes} in {hours_text(r.hours)} {what}, {rest} {other}"
    if ev.parallel:
        first += " (a parallelism setting)"
    parts = [first, _ratio(r)]
    if ev.ruled_out:
        when = _clock(ev.first_crash)
        return f"{first}. Changed to {ev.state} after the first crash at {when}: it cannot have caused it."
    if ev.entered_at is not None:
        lead = (ev.first_crash - ev.entered_at) / HOUR
        parts.append(
            f"set at {_clock(ev.entered_at, ev.first_crash)}, {hours_text(lead)} before the first crash"
        )
    if ev.reverted_at is not None:
        when = _clock(ev.reverted_at, ev.first_crash)
        change = f"the revert at {when}" if ev.reverted else f"the change at {when}"
        if ev.crashes_after_revert == 0:
            h = hours_text(ev.hours_after_revert)
            since = f"the {h} under other values since" if ev.returned else f"{h} since"
            parts.append(f"crashes stopped after {change} (none in {since})")
        else:
            parts.append(
                f"crashes went on after {change} ({ev.crashes_after_revert} more under other values)"
            )
    return "; ".join(parts) + "."


def safe_name(name: str) -> str:
    """A name fit for evidence: personal identity numbers replaced."""
    return personal_numbers(name)[0]


def window_label(width_s: float) -> str:
    """A window's length for evidence text.

    >>> window_label(120), window_label(5.9975), window_label(90)
    ('2-min', '6-s', '90-s')
    """
    if width_s >= 60 and width_s % 60 == 0:
        return f"{width_s / 60:g}-min"
    return f"{width_s:.3g}-s" if width_s < 100 else f"{width_s:.0f}-s"
