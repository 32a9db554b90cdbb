"""The statistics behind the suspect ranking: cooperative bug isolation, exact tests, rates.

Pure numpy/scipy, vectorised over candidates. The measures follow Liblit et al.,
"Scalable Statistical Bug Isolation" (PLDI 2005): a *run* is a time window, a failing
run is the window before a crash, and a predicate is "X ran in the window".

- ``Failure(P) = F / (F + S)``: of the runs where P was true, the share that failed.
- ``Context(P) = F_obs / (F_obs + S_obs)``: every window observes every predicate here,
  so Context is the base failure rate ``NumF / (NumF + NumS)``.
- ``Increase(P) = Failure(P) - Context(P)``: how much P being true raises the chance of
  a crash. A procedure that runs in every window has Increase 0 however often it ran
  before a crash.
- ``Importance(P)``: the harmonic mean of Increase and ``log(F) / log(NumF)``.

The interval arithmetic (merged ``[start, end)`` sets of int64 nanoseconds) that the
exposures and windows are measured with lives here too.

Exact tests: the one-sided Fisher test of the 2x2 table (a hypergeometric tail),
Benjamini-Hochberg q-values, and the Poisson rate ratio of two exposures with its exact
(conditional binomial, Clopper-Pearson) confidence interval.

>>> round(float(importance(np.array([5]), np.array([4]), 5, 600)[0]), 3)
0.707
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special  # not scipy.stats: a third of the import time, the same functions

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.signedinteger[Any]]  # int64 times (ns); int32 window indexes and codes
BoolArray = npt.NDArray[np.bool_]
Intervals = tuple[IntArray, IntArray]  # sorted, disjoint [start, end) in ns


def _f(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def failure(f: npt.ArrayLike, s: npt.ArrayLike) -> FloatArray:
    """``F / (F + S)`` per candidate; 0 where the predicate was never true."""
    fa, sa = _f(f), _f(s)
    total = fa + sa
    return np.divide(fa, total, out=np.zeros_like(total), where=total > 0)


def context(num_f: int, num_s: int) -> float:
    """The base failure rate ``NumF / (NumF + NumS)`` (every window observes every predicate)."""
    total = num_f + num_s
    return num_f / total if total else 0.0


def increase(f: npt.ArrayLike, s: npt.ArrayLike, num_f: int, num_s: int) -> FloatArray:
    """``Failure(P) - Context(P)``; in -1..1."""
    return failure(f, s) - context(num_f, num_s)


def lift_share(f: int, s: float, num_f: int, num_s: float) -> float:
    """``1 - Context / Failure``: the share of P's failures above the base rate (0..1).

    The rate-scale counterpart of Increase for a bug that fires on a few of P's runs: a
    procedure that crashed 7 of its 230 runs when runs crash 1 in 10,000 scores 0.997
    (Increase: 0.03); one that runs on every task scores near 0 either way.

    >>> round(lift_share(7, 223, 10, 100_000), 3), lift_share(10, 100_000, 10, 100_000)
    (0.997, 0.0)
    """
    fail = f / (f + s) if f + s > 0 else 0.0
    base = num_f / (num_f + num_s) if num_f + num_s > 0 else 0.0
    if fail <= 0 or base <= 0:
        return 0.0
    return float(min(max(1.0 - base / fail, 0.0), 1.0))


def log_term(f: npt.ArrayLike, num_f: int) -> FloatArray:
    """``log(F) / log(NumF)``: the log-scaled share of the failures P covers (0..1).

    With one or two failures there is no log scale to speak of (``log(1)/log(2)`` would
    call a predicate covering one of two crashes worthless): the plain share ``F/NumF``.

    >>> log_term(np.array([1, 2, 4]), 4).round(3).tolist()
    [0.0, 0.5, 1.0]
    >>> log_term(np.array([1, 2]), 2).tolist()
    [0.5, 1.0]
    """
    fa = _f(f)
    if num_f <= 2:
        return np.clip(fa / max(num_f, 1), 0.0, 1.0)
    return np.log(np.maximum(fa, 1.0)) / math.log(num_f)


def harmonic(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """The harmonic mean of two scores in 0..1; 0 when either is 0 or negative."""
    aa, ba = np.clip(_f(a), 0.0, 1.0), np.clip(_f(b), 0.0, 1.0)
    total = aa + ba
    ok = (aa > 0) & (ba > 0)
    return np.divide(2.0 * aa * ba, total, out=np.zeros_like(total), where=ok)


def importance(f: npt.ArrayLike, s: npt.ArrayLike, num_f: int, num_s: int) -> FloatArray:
    """CBI Importance: harmonic mean of Increase and ``log(F)/log(NumF)``; 0 when Increase <= 0."""
    return harmonic(increase(f, s, num_f, num_s), log_term(f, num_f))


def fisher_greater(f: npt.ArrayLike, s: npt.ArrayLike, num_f: int, num_s: int) -> FloatArray:
    """One-sided Fisher exact p-values of ``[[F, S], [NumF-F, NumS-S]]`` (P raises failure).

    The hypergeometric tail: of ``NumF + NumS`` windows, ``F + S`` had P true; drawing the
    ``NumF`` failing windows, the chance of seeing ``F`` or more with P.
    """
    fa, sa = _f(f), _f(s)
    total = num_f + num_s
    if total == 0:
        return np.ones_like(fa)
    p = _hypergeom_at_least(fa, total, fa + sa, num_f)
    return np.clip(np.where(fa <= 0, 1.0, p), 0.0, 1.0).astype(np.float64)


def _log_choose(n: FloatArray, k: FloatArray) -> FloatArray:
    out: FloatArray = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    return out


def _hypergeom_at_least(x: FloatArray, total: int, marked: FloatArray, draws: int) -> FloatArray:
    """``P(X >= x)`` for X hypergeometric: ``draws`` of ``total``, ``marked`` of them marked.

    Summed term by term in log space over the (few: at most ``draws``) values from ``x`` up,
    vectorised over candidates; any shape in, the same shape out.

    >>> round(float(_hypergeom_at_least(np.array([3.0]), 20, np.array([5.0]), 4)[0]), 6)
    0.031992
    """
    shape = np.shape(x)
    xs = np.atleast_1d(np.asarray(x, dtype=np.float64)).ravel()
    m = np.broadcast_to(np.atleast_1d(np.asarray(marked, dtype=np.float64)).ravel(), xs.shape)[:, None]
    ks = xs[:, None] + np.arange(draws + 1, dtype=np.float64)[None, :]
    ok = (ks <= np.minimum(m, draws)) & (draws - ks <= total - m) & (ks >= 0)
    kc = np.where(ok, ks, 0.0)
    whole = _log_choose(np.array([float(total)]), np.array([float(draws)]))
    rest = np.full_like(kc, float(total)) - m
    logs = _log_choose(np.broadcast_to(m, kc.shape), kc) + _log_choose(rest, float(draws) - kc) - whole
    p: FloatArray = np.where(ok, np.exp(logs), 0.0).sum(axis=1).reshape(shape)
    return p


def bh(p: npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg q-values (monotone, capped at 1), in the input order.

    >>> bh([0.01, 0.04, 0.03, 0.2]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.2]
    """
    pa = _f(p)
    m = pa.size
    if m == 0:
        return pa
    order = np.argsort(pa, kind="stable")
    ranked = pa[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m, dtype=np.float64)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


@dataclass(frozen=True, slots=True)
class RateRatio:
    """Events per hour in one exposure against another, with an exact 95% CI.

    ``ratio``/``high`` are ``inf`` when the other exposure had no event; ``nan`` when
    neither had one or an exposure is empty. ``p`` is the one-sided p-value of "the first
    rate is higher".
    """

    events: int
    hours: float
    other_events: int
    other_hours: float
    ratio: float
    low: float
    high: float
    p: float


def rate_ratio(
    events: int, hours: float, other_events: int, other_hours: float, level: float = 0.95
) -> RateRatio:
    """Poisson rate ratio ``(events/hours) / (other_events/other_hours)``, exact CI.

    Conditional on ``n = events + other_events``, ``events ~ Binomial(n, pi)`` with
    ``pi = hours*RR / (hours*RR + other_hours)``; the Clopper-Pearson interval of ``pi``
    maps to the interval of RR. Hours are floats (any unit, the same for both).

    >>> r = rate_ratio(5, 7.2, 0, 30.0)
    >>> r.ratio, round(r.low, 2), r.high
    (inf, 3.82, inf)
    """
    n = events + other_events
    nan = float("nan")
    if n == 0 or hours <= 0 or other_hours <= 0:
        return RateRatio(events, hours, other_events, other_hours, nan, nan, nan, 1.0)
    scale = other_hours / hours
    alpha = 1.0 - level
    ratio = math.inf if other_events == 0 else (events / hours) / (other_events / other_hours)
    lo_pi = 0.0 if events == 0 else float(special.betaincinv(events, n - events + 1, alpha / 2))
    hi_pi = 1.0 if events == n else float(special.betaincinv(events + 1, n - events, 1 - alpha / 2))
    low = lo_pi / (1.0 - lo_pi) * scale
    high = math.inf if hi_pi >= 1.0 else hi_pi / (1.0 - hi_pi) * scale
    share = hours / (hours + other_hours)
    p = 1.0 if events == 0 else float(special.bdtrc(events - 1, n, share))
    return RateRatio(events, hours, other_events, other_hours, ratio, low, high, min(max(p, 0.0), 1.0))


def attributable(events: int, hours: float, num_f: int, total_hours: float) -> float:
    """How much a state raises the crash rate over the overall rate: ``1 - overall/rate`` (0..1).

    The rate-scale counterpart of Increase for states that hold for hours (a state in
    effect the whole time scores 0; one holding all crashes in a short time scores near 1).

    >>> round(attributable(5, 7.0, 5, 20.0), 2)
    0.65
    """
    if events <= 0 or hours <= 0 or total_hours <= 0 or num_f <= 0:
        return 0.0
    ratio = (hours / total_hours) / (events / num_f)
    return float(min(max(1.0 - ratio, 0.0), 1.0))


def poisson_fewer(observed: int, expected: float) -> float:
    """``P(N > observed)`` for ``N ~ Poisson(expected)``: how surprising so few events are (0..1).

    >>> round(poisson_fewer(0, 3.0), 3)
    0.95
    """
    if expected <= 0:
        return 0.0
    return float(special.pdtrc(observed, expected))


def strength(p: float) -> float:
    """How much a p-value says, 0..1: ``-log10(p) / 3`` (p = 0.001 or less counts fully).

    Scales an effect that rests on a few events (a split that looks clean by chance).

    >>> strength(0.1), strength(1e-6)
    (0.3333333333333333, 1.0)
    """
    return min(1.0, -math.log10(min(max(p, 1e-300), 1.0)) / 3.0)


def confidence(num_f: int, score: float, q: float, large: bool, direct: bool = False) -> str:
    """``strong`` / ``moderate`` / ``weak`` (see the module docstring); ``direct``: named by crash blocks."""
    if num_f <= 2 or score < 0.2:
        return "weak"
    if math.isnan(q):
        return "moderate" if direct and score >= 0.3 else "weak"
    if num_f >= 4 and q < 0.05 and large and score >= 0.5:
        return "strong"
    return "moderate" if q < 0.25 else "weak"


# Interval arithmetic over time (int64 ns): uptime, coverage, state segments, windows.


def intervals(starts: npt.ArrayLike, ends: npt.ArrayLike, gap: int = 0) -> Intervals:
    """Sorted, merged intervals ``[start, end)``; pieces closer than ``gap`` ns join."""
    s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return s, e
    order = np.argsort(s, kind="stable")
    s, e = s[order], np.maximum.accumulate(e[order])
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > e[:-1] + gap
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, s.size - 1]
    return s[first], e[last]


def intersect(a: Intervals, b: Intervals) -> Intervals:
    """The intersection of two merged interval sets."""
    out_s: list[int] = []
    out_e: list[int] = []
    i = j = 0
    while i < a[0].size and j < b[0].size:
        lo, hi = max(a[0][i], b[0][j]), min(a[1][i], b[1][j])
        if lo < hi:
            out_s.append(int(lo))
            out_e.append(int(hi))
        if a[1][i] < b[1][j]:
            i += 1
        else:
            j += 1
    return np.array(out_s, dtype=np.int64), np.array(out_e, dtype=np.int64)


def subtract(a: Intervals, b: Intervals) -> Intervals:
    """``a`` minus ``b`` (both merged)."""
    if b[0].size == 0:
        return a
    gaps_s = np.r_[np.iinfo(np.int64).min, b[1]]
    gaps_e = np.r_[b[0], np.iinfo(np.int64).max]
    return intersect(a, intervals(gaps_s, gaps_e))


def length(iv: Intervals) -> int:
    """Total length in ns."""
    return int((iv[1] - iv[0]).sum())
