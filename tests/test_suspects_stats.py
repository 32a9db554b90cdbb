"""The statistics of the suspect ranking against known values and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitor.suspects_evidence import coverage
from monitor.suspects_stats import (
    attributable,
    bh,
    confidence,
    context,
    failure,
    fisher_greater,
    harmonic,
    importance,
    increase,
    intersect,
    intervals,
    log_term,
    rate_ratio,
    strength,
    subtract,
)

pytestmark = pytest.mark.unit


def test_fisher_greater_matches_scipy_fisher_exact() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        num_f, num_s = int(rng.integers(1, 40)), int(rng.integers(1, 400))
        f, s = int(rng.integers(0, num_f + 1)), int(rng.integers(0, num_s + 1))
        want = stats.fisher_exact([[f, s], [num_f - f, num_s - s]], alternative="greater").pvalue
        got = float(fisher_greater(np.array([f]), np.array([s]), num_f, num_s)[0])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (f, s, num_f, num_s)


def test_cbi_measures_by_hand() -> None:
    # A rare procedure: ran before all 5 crashes and in 4 of 600 crash-free windows.
    f, s, num_f, num_s = np.array([5]), np.array([4]), 5, 600
    assert failure(f, s)[0] == pytest.approx(5 / 9)
    assert context(num_f, num_s) == pytest.approx(5 / 605)
    inc = 5 / 9 - 5 / 605
    assert increase(f, s, num_f, num_s)[0] == pytest.approx(inc)
    assert importance(f, s, num_f, num_s)[0] == pytest.approx(2 / (1 / inc + 1 / 1.0))
    # A frequent procedure: ran in every window, crash or not -> Increase 0, Importance 0.
    assert increase(np.array([5]), np.array([600]), 5, 600)[0] == pytest.approx(0.0)
    assert importance(np.array([5]), np.array([600]), 5, 600)[0] == 0.0
    # Half the crashes: log(3)/log(9) = 0.5; the harmonic mean with Increase 2/5 - 9/609.
    inc3 = 3 / 5 - 9 / 609
    assert log_term(np.array([3]), 9)[0] == pytest.approx(0.5)
    assert importance(np.array([3]), np.array([2]), 9, 600)[0] == pytest.approx(2 * inc3 * 0.5 / (inc3 + 0.5))
    # One failure of many is worth nothing (log 1 = 0); with two crashes the plain share is used.
    assert importance(np.array([1]), np.array([0]), 5, 600)[0] == 0.0
    assert log_term(np.array([1, 2]), 2).tolist() == [0.5, 1.0]
    assert harmonic(0.5, -0.1) == 0.0


def test_benjamini_hochberg_by_hand_and_against_scipy() -> None:
    # m = 5: sorted p 0.001 0.008 0.039 0.041 0.6 -> p*m/rank 0.005 0.02 0.065 0.05125 0.6,
    # then the running minimum from the top: 0.005 0.02 0.05125 0.05125 0.6.
    p = [0.039, 0.001, 0.6, 0.041, 0.008]
    assert bh(p).tolist() == pytest.approx([0.05125, 0.005, 0.6, 0.05125, 0.02])
    rng = np.random.default_rng(5)
    for _ in range(20):
        q = rng.uniform(0, 1, 30) ** 3
        assert bh(q) == pytest.approx(stats.false_discovery_control(q, method="bh"))
    assert bh([]).size == 0


def test_poisson_rate_ratio_known_values() -> None:
    # 5 crashes in 7.2 h, none in 30 h: RR infinite; lower bound from Beta(5, 1).ppf(0.025) =
    # 0.025 ** (1/5), mapped through pi / (1 - pi) * 30 / 7.2.
    r = rate_ratio(5, 7.2, 0, 30.0)
    lo_pi = 0.025 ** (1 / 5)
    assert math.isinf(r.ratio) and math.isinf(r.high)
    assert r.low == pytest.approx(lo_pi / (1 - lo_pi) * 30 / 7.2)
    assert r.low == pytest.approx(3.818, abs=1e-3)
    assert r.p == pytest.approx((7.2 / 37.2) ** 5)
    # A finite case against scipy's exact (Clopper-Pearson) binomial interval.
    r = rate_ratio(12, 10.0, 4, 20.0)
    ci = stats.binomtest(12, 16, 10 / 30).proportion_ci(confidence_level=0.95, method="exact")
    assert r.ratio == pytest.approx((12 / 10) / (4 / 20))
    assert r.low == pytest.approx(ci.low / (1 - ci.low) * 20 / 10)
    assert r.high == pytest.approx(ci.high / (1 - ci.high) * 20 / 10)
    assert r.p == pytest.approx(stats.binomtest(12, 16, 10 / 30, alternative="greater").pvalue)
    assert math.isnan(rate_ratio(0, 5.0, 0, 5.0).ratio)


def test_attributable_share_and_strength() -> None:
    assert attributable(5, 7.0, 5, 20.0) == pytest.approx(1 - 7 / 20)
    assert attributable(5, 20.0, 5, 20.0) == 0.0  # in effect the whole time: no evidence
    assert attributable(1, 1.0, 4, 20.0) == pytest.approx(1 - (1 / 20) / (1 / 4))
    assert strength(0.1) == pytest.approx(1 / 3)
    assert strength(1.0) == 0.0 and strength(1e-9) == 1.0


def test_confidence_rules() -> None:
    assert confidence(2, 0.99, 1e-9, True) == "weak"  # two crashes: never more than weak
    assert confidence(5, 0.9, 0.01, True) == "strong"
    assert confidence(3, 0.9, 0.01, True) == "moderate"  # too few crashes for strong
    assert confidence(5, 0.9, 0.01, False) == "moderate"  # a small effect
    assert confidence(5, 0.9, 0.3, True) == "weak"  # weak statistical support
    assert confidence(5, 0.1, 1e-6, True) == "weak"
    assert confidence(5, 0.6, math.nan, False, direct=True) == "moderate"  # named by crash blocks, no test


def test_interval_arithmetic_and_coverage() -> None:
    a = intervals([0, 5, 20], [10, 12, 30])
    assert [x.tolist() for x in a] == [[0, 20], [12, 30]]
    b = intervals([8, 25], [22, 26])
    assert [x.tolist() for x in intersect(a, b)] == [[8, 20, 25], [12, 22, 26]]
    assert [x.tolist() for x in subtract(a, b)] == [[0, 22, 26], [8, 25, 30]]
    minute = 60 * 10**9
    times = np.array([0, 30, 61, 15 * 60, 15 * 60 + 5], dtype=np.int64) * 10**9
    cov = coverage(times, gap_s=600)
    assert [x.tolist() for x in cov] == [[0, 15 * minute], [2 * minute, 16 * minute]]
