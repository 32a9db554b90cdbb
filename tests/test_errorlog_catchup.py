"""A large errorlog backlog is read beside the live end: a crash written now is not held up.

The follower starts on a 40 MB errorlog (or resumes 40 MB behind); the crash at the end
of the file must come out while the history is still being read, every record of the
file must come out (nothing lost, and the only repeats are those a resume re-reads, which
carry the same keys), and every position emitted during the catch-up must resume.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.errorlog.catchup import CATCHUP_MIN, plan_split
from collectors.errorlog.follow import decode_position
from collectors.errorlog.parser import ParserState
from monitor.events import CrashBlock, Event
from tests.test_errorlog_follow import SOURCE, Followed, Stream, block, follow, norm, offline

pytestmark = pytest.mark.integration

__all__ = ["block", "follow"]  # fixtures, imported for pytest


def _history(block: str, seed: int) -> bytes:
    """At least CATCHUP_MIN + 8 MB of errorlog: one realistic stretch repeated (keys repeat)."""
    s = Stream(block, seed)
    unit = "".join(s.life(40)).encode()
    return unit * ((CATCHUP_MIN + (8 << 20)) // len(unit) + 1)


def _keys(records: list[Event]) -> Counter[str]:
    return Counter(r.key for r in records)


def test_small_or_foreign_backlogs_are_read_in_line(tmp_path: Path, block: str) -> None:
    log = tmp_path / "CLINIC1.log"
    log.write_bytes(_history(block, 1)[: 1 << 20])
    assert plan_split(log, None, ParserState()) is None
    log.write_bytes(_history(block, 1))
    split = plan_split(log, None, ParserState())
    assert split is not None
    assert split.start == 0 and CATCHUP_MIN // 2 <= split.live.offset <= log.stat().st_size
    assert log.read_bytes()[split.live.offset - 1 : split.live.offset] == b"\n"
    # A saved position in another file (rotated away), or near the end: the tailer's own way.
    other = tmp_path / "other.log"
    other.write_bytes(log.read_bytes())
    foreign = dataclasses.replace(split.live, inode=other.stat().st_ino, offset=0)
    assert plan_split(log, foreign, ParserState()) is None
    near_end = dataclasses.replace(split.live, offset=log.stat().st_size - (1 << 20))
    assert plan_split(log, near_end, ParserState()) is None
    far = dataclasses.replace(split.live, offset=0)
    assert plan_split(log, far, ParserState()) is not None


def test_the_live_crash_comes_out_before_the_history_is_done(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    rng, s = random.Random(3), Stream(block, 3)
    history = _history(block, 3)
    # A routine line after the block ends it at once (no quiet period to wait out).
    crash = (s.crash() + s.routine()).encode()
    log = tmp_path / "CLINIC1.log"
    log.write_bytes(history + crash)
    [want] = [r for r in offline(crash) if isinstance(r, CrashBlock)]
    f = follow(log)
    records = f.finish()
    assert f.failures() == []
    emits = f.snapshot()
    live_at = next(i for i, (evs, _) in enumerate(emits) if any(e.key == want.key for e in evs))
    # The position persisted with the live crash is still inside the history: the catch-up
    # had not finished, so the crash did not wait for it.
    pos = decode_position(emits[live_at][1][SOURCE])[0]
    assert pos is not None and pos.offset < len(history) // 2
    # Everything the file holds came out exactly once (the follower ran without a restart).
    truth = offline(history + crash)
    assert _keys(records) == _keys(truth)
    assert sorted(map(repr, norm(records))) == sorted(map(repr, norm(truth)))
    del rng


def test_every_position_emitted_during_catch_up_resumes(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    history = _history(block, 7)
    log = tmp_path / "CLINIC1.log"
    log.write_bytes(history)
    f = follow(log)
    f.finish()
    truth = set(_keys(offline(history)))
    emits = f.snapshot()
    positions = [i for i, (_, p) in enumerate(emits) if SOURCE in p]
    assert len(positions) >= 4, "the catch-up emits a position per slice"
    for i in positions[:: max(1, len(positions) // 4)]:
        g = follow(log, emits[i][1][SOURCE], use_watchdog=False, poll_interval=0.05, quiet_period=0.1)
        rest = g.finish(settle=0.2)
        assert g.failures() == []
        before = [e for evs, _ in emits[: i + 1] for e in evs if hasattr(e, "offset")]
        assert set(_keys(before)) | set(_keys(rest)) == truth, f"resuming from emit {i}"
