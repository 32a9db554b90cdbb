"""The suspect ranking on families of generated incidents (tests/suspects_scenarios.py).

Each family runs over ten seeds and asserts what a user relies on: the culprit procedure
first among procedures, the culprit setting and flag above the decoy flag, honest
confidence and notes. Where a family allows a miss, the test says why.
"""

from __future__ import annotations

import json
import re
from functools import cache

import pandas as pd
import pytest

from monitor.errors import InputError
from monitor.suspects import (
    Suspect,
    SuspectGroup,
    SuspectInputs,
    is_parallelism_setting,
    rank_suspects,
    suspects_json,
)
from tests.suspects_scenarios import (
    BATCH,
    COMPANION,
    CULPRIT,
    CULPRIT_FLAG,
    DECOY_FLAG,
    SECOND,
    SECOND_FLAG,
    SETTING,
    Scenario,
    make,
)

pytestmark = pytest.mark.unit
SEEDS = range(10)


@cache
def _run(seed: int, **kw: object) -> tuple[Scenario, tuple[SuspectGroup, ...]]:
    sc = make(seed, **kw)  # type: ignore[arg-type]
    return sc, tuple(rank_suspects(sc.inputs))


def run(seed: int, **kw: object) -> tuple[Scenario, tuple[SuspectGroup, ...]]:
    return _run(seed, **kw)


def group(groups: tuple[SuspectGroup, ...], signature: str = "sig-A") -> SuspectGroup:
    return next(g for g in groups if g.signature == signature)


def procedures(g: SuspectGroup) -> list[str]:
    return [s.name for s in g.suspects if s.kind == "procedure"]


def find(g: SuspectGroup, name: str) -> Suspect | None:
    return next((s for s in g.suspects if s.name == name), None)


def above(g: SuspectGroup, first: str, second: str) -> bool:
    """``first`` is listed, and above ``second`` (or ``second`` is not listed)."""
    names = [s.name for s in g.suspects]
    return first in names and (second not in names or names.index(first) < names.index(second))


def test_rare_culprit_first_and_frequent_innocent_near_zero() -> None:
    for seed in SEEDS:
        _, groups = run(seed)
        g = group(groups)
        assert procedures(g)[0] == CULPRIT, (seed, procedures(g)[:3])
        culprit = find(g, CULPRIT)
        assert culprit is not None and culprit.score >= 0.8
        # The companion runs 3,000 times an hour and on the crashing session before every crash.
        companion = find(g, COMPANION)
        assert companion is None or companion.score < 0.05, (seed, companion)


def test_procedure_running_9000_an_hour_before_every_crash_scores_near_zero() -> None:
    for seed in range(3):
        sc = make(seed, frequent=(9000.0, 300.0))
        g = group(tuple(rank_suspects(sc.inputs, limit=1000)))  # every candidate, not the top 20
        companion = find(g, COMPANION)
        assert companion is not None, seed
        assert companion.detail["direct"]["on_task"] == g.crashes  # type: ignore[index]
        assert companion.score < 0.02, (seed, companion.score)
        assert procedures(g)[0] == CULPRIT


def test_a_culprit_that_crashes_on_few_of_its_runs_is_still_first_and_strong() -> None:
    # Found by a blind evaluation: a bug that fires on one call in ten has a CBI Increase of
    # about 0.1 however sure the crashing-task test is, and ranked below chance items. The
    # rate-scale task evidence (lift over the base rate of crash-free tasks) keeps it first.
    for seed in range(6):
        _, groups = run(seed, crashes=8, misses=12.0)
        g = group(groups)
        culprit = find(g, CULPRIT)
        assert culprit is not None, seed
        top = [(s.name, round(s.score, 3)) for s in g.suspects[:4]]
        assert procedures(g)[0] == CULPRIT and CULPRIT in [n for n, _ in top[:2]], (seed, top)
        task = culprit.detail["task"]
        assert task["successful"] > 10 * task["failing"] / 2, (seed, task)  # type: ignore[index,operator]
        assert culprit.score >= 0.8 and culprit.confidence == "strong", (seed, culprit)


def test_identities_only_the_crash_blocks_name_are_weak_without_their_columns() -> None:
    # monSysStatement's own columns carry no login, host or application: a value only the
    # crash blocks name has nothing to compare against and must not read "in 0 of N
    # crash-free windows" (it was "strong" at the top before).
    for seed in range(4):
        sc = make(seed)
        stmts = sc.inputs.statements
        assert stmts is not None
        bare = stmts.drop(columns=[c for c in ("login", "host", "application") if c in stmts])
        inputs = SuspectInputs(
            sc.inputs.crashes, bare, sc.inputs.minutes, sc.inputs.changes, sc.inputs.uptime
        )
        g = group(tuple(rank_suspects(inputs, limit=1000)))
        assert procedures(g)[0] == CULPRIT, seed
        idents = [s for s in g.suspects if s.kind in ("login", "host", "application")]
        assert idents, seed  # still listed, from the blocks
        for s in idents:
            assert s.confidence == "weak" and s.score <= 0.3 + 1e-9, (seed, s)  # the block share only
            assert "no activity rows to compare against" in s.evidence, s.evidence


def test_heavy_batch_near_half_the_crashes_is_not_the_culprit() -> None:
    for seed in SEEDS:
        _, groups = run(seed, batch=True)
        g = group(groups)
        assert procedures(g)[0] == CULPRIT, (seed, procedures(g)[:3])
        batch = find(g, BATCH)
        assert batch is not None and batch.detail["across"]["failing"] >= 2  # type: ignore[index]
        assert batch.score < 0.3, (seed, batch.score, batch.evidence)


def test_decoy_flag_switched_the_same_morning_ranks_below_setting_and_flag() -> None:
    misses = 0
    for seed in SEEDS:
        _, groups = run(seed)
        g = group(groups)
        assert above(g, SETTING, DECOY_FLAG), (seed, [(s.name, s.score) for s in g.suspects[:6]])
        misses += not above(g, CULPRIT_FLAG, DECOY_FLAG)
    # One miss allowed: a decoy switched after the culprit flag is told apart only by the one or
    # two calls of the culprit between the two switches (the generator ensures at least one).
    assert misses <= 1


def test_two_flags_that_both_gate_the_culprit_name_each_other_and_neither_is_strong() -> None:
    # A decoy switched before the culprit flag, with no culprit call in between: the culprit
    # ran only while either held, and timing alone cannot say which one opened the way.
    tied = 0
    for seed in range(20):
        _, groups = run(seed)
        g = group(groups)
        decoy, flag = find(g, DECOY_FLAG), find(g, CULPRIT_FLAG)
        assert decoy is not None and flag is not None, seed
        if "gates_alike" not in decoy.detail:
            continue
        tied += 1
        for s, other in ((decoy, CULPRIT_FLAG), (flag, DECOY_FLAG)):
            assert s.detail["gates_alike"] == [other], (seed, s.name, s.detail)
            assert s.confidence != "strong" and f"as while {other} held" in s.evidence, (seed, s)
    assert tied >= 3  # the family holds such decoys (half are switched before the flag, some linked)


def test_two_crashes_only_are_weak() -> None:
    first = 0
    for seed in SEEDS:
        _, groups = run(seed, crashes=2)
        g = group(groups)
        assert g.crashes == 2
        assert all(s.confidence == "weak" for s in g.suspects), seed
        assert any("only 2 crashes" in n for n in g.notes)
        first += procedures(g)[:1] == [CULPRIT]
    # A crash whose culprit call left no statement row (10% each) leaves one crash of two to go on.
    assert first >= 9


def test_a_hundred_crashes() -> None:
    for seed in range(5):
        _, groups = run(seed, crashes=100, crash_rate=5.0)
        g = group(groups)
        assert g.crashes == 100
        assert procedures(g)[0] == CULPRIT
        top = {s.name: s for s in g.suspects[:3]}
        assert top[CULPRIT].confidence == "strong"
        assert SETTING in top and top[SETTING].confidence == "strong"


def test_two_bugs_in_one_log_get_two_groups_each_with_its_culprit_first() -> None:
    for seed in SEEDS:
        _, groups = run(seed, two_bugs=True)
        assert {g.signature for g in groups} == {"sig-A", "sig-B"}
        a, b = group(groups, "sig-A"), group(groups, "sig-B")
        assert procedures(a)[0] == CULPRIT, (seed, procedures(a)[:3])
        assert procedures(b)[0] == SECOND, (seed, procedures(b)[:3])
        # Neither bug's procedure pollutes the other group.
        assert SECOND not in procedures(a)[:3] and CULPRIT not in procedures(b)[:3]
        assert above(b, SECOND_FLAG, DECOY_FLAG)
        assert any("own crashes" in n for n in a.notes)


def test_reverted_setting_and_crashes_stopping_is_said() -> None:
    for seed in SEEDS:
        sc, groups = run(seed)
        g = group(groups)
        setting = find(g, SETTING)
        assert setting is not None and sc.revert_at is not None
        when = sc.revert_at.strftime("%H:%M")
        assert f"crashes stopped after the revert at {when}" in setting.evidence, setting.evidence
        assert "(a parallelism setting)" in setting.evidence
        assert re.search(r"rate ratio ∞, 95% CI [\d.]+\u2013∞", setting.evidence)
        state = setting.detail["state"]
        assert state["reverted_at"] == sc.revert_at.isoformat(timespec="seconds")  # type: ignore[index]
        assert state["crashes_after_revert"] == 0  # type: ignore[index]
        assert setting.detail["state"]["parallelism"] is True  # type: ignore[index]


def test_only_while_the_setting_holds_is_reported_on_the_procedure() -> None:
    _, groups = run(0)
    culprit = find(group(groups), CULPRIT)
    assert culprit is not None
    combo = culprit.detail["combination"]
    assert combo["setting"] == SETTING and combo["value"] == "4" and combo["only_while"]  # type: ignore[index]
    assert (
        f"Only while {SETTING} = 4: {combo['crashed_under']} of {combo['runs_under']} runs"
        in culprit.evidence
    )  # type: ignore[index]


def test_without_statements_notes_say_so_and_changes_are_still_ranked() -> None:
    for seed in SEEDS:
        sc, groups = run(seed, mode="none")
        assert sc.inputs.statements is None and sc.inputs.minutes is None
        g = group(groups)
        assert any("no statement rows and no per-minute aggregates" in n for n in g.notes)
        states = [s for s in g.suspects if s.kind in ("setting", "flag", "deployment")]
        assert states and states[0].name == SETTING, (seed, [(s.name, s.score) for s in states])
        named = any(CULPRIT in str(p) or CULPRIT in str(q) for p, q in zip(
            sc.inputs.crashes["procedure"], sc.inputs.crashes["sql"], strict=True))  # fmt: skip
        if named:  # a block names it (procedure field or exec): it is the procedure suspect
            assert procedures(g)[0] == CULPRIT


def test_minutes_only() -> None:
    for seed in SEEDS:
        sc, groups = run(seed, mode="minutes")
        assert sc.inputs.statements is None and sc.inputs.minutes is not None
        g = group(groups)
        assert procedures(g)[0] == CULPRIT, (seed, procedures(g)[:3])
        assert any("per-minute aggregates" in n for n in g.notes)


def test_raw_ring_beside_aggregates() -> None:
    for seed in range(5):
        _, groups = run(seed, mode="ring")
        g = group(groups)
        assert procedures(g)[0] == CULPRIT
        assert any(
            re.search(r"raw statements in [1-9]\d*, per-minute aggregates in [1-9]", n) for n in g.notes
        )


def test_change_after_the_first_crash_is_never_ranked_as_cause() -> None:
    for seed in SEEDS:
        sc, groups = run(seed, late=True)
        g = group(groups)
        assert sc.late_change is not None
        late = find(g, sc.late_change)
        if late is not None:
            assert late.score == 0.0 and "cannot have caused it" in late.evidence, late
        assert any("changed after the first crash" in n and sc.late_change in n for n in g.notes)
        assert procedures(g)[0] == CULPRIT


def test_unknown_uptime_is_assumed_and_said() -> None:
    _, groups = run(0, uptime=False)
    g = group(groups)
    assert any(n.startswith("uptime unknown: assumed one interval") for n in g.notes)
    assert procedures(g)[0] == CULPRIT


def test_json_shape_and_no_sql_or_personal_numbers() -> None:
    sc, _ = run(1, two_bugs=True)
    crashes = sc.inputs.crashes.copy()
    crashes.loc[0, "login"] = "19121212-1212"  # a personal identity number as a login name
    doc = suspects_json(rank_suspects(SuspectInputs(crashes, *[getattr(sc.inputs, f) for f in (
        "statements", "minutes", "changes", "uptime")])))  # fmt: skip
    text = json.dumps(doc, allow_nan=False, ensure_ascii=False)
    assert "19121212" not in text and "1212-1212" not in text
    assert "brev b" not in text and "b.status" not in text  # the block's SQL never leaves
    assert set(doc) == {"groups"}
    for g in doc["groups"]:  # type: ignore[union-attr]
        assert {"signature", "crashes", "first", "last", "notes", "suspects"} <= set(g)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", g["first"])
        ranks = [s["rank"] for s in g["suspects"]]
        assert ranks == list(range(1, len(ranks) + 1))
        scores = [s["score"] for s in g["suspects"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
        for s in g["suspects"]:
            assert set(s) == {"rank", "kind", "name", "score", "confidence", "evidence", "detail"}
            assert s["confidence"] in {"strong", "moderate", "weak"} and s["score"] == round(s["score"], 3)
            assert 1 <= s["evidence"].count(". ") + 1 <= 2 or s["evidence"].count(".") <= 2


def test_limit_and_edge_inputs() -> None:
    sc, groups = run(2)
    assert len(group(groups).suspects) == 20
    assert len(rank_suspects(sc.inputs, limit=3)[0].suspects) == 3
    empty = pd.DataFrame(columns=["key", "signature", "time", "spid", "kpid", "family"])
    assert rank_suspects(SuspectInputs(empty, None, None, None, None)) == []
    one = sc.inputs.crashes.iloc[:1]
    (g,) = rank_suspects(SuspectInputs(one, None, None, None, None))
    assert g.crashes == 1 and all(s.confidence == "weak" for s in g.suspects)
    assert any("no changes" in n for n in g.notes)
    stm = sc.inputs.statements
    assert stm is not None
    with pytest.raises(InputError, match="statements: no 'start_time' column"):
        rank_suspects(SuspectInputs(sc.inputs.crashes, stm.drop(columns="start_time"), None, None, None))


def test_parallelism_setting_names() -> None:
    assert is_parallelism_setting("max parallel degree")
    assert is_parallelism_setting("Max Scan Parallel Degree")
    assert is_parallelism_setting("number of worker processes")
    assert is_parallelism_setting("enable deferred parallel")
    assert not is_parallelism_setting("number of user connections")
