"""Signature stability: the same bug keeps its signature; other top frames change it."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from collectors.errorlog import ErrorlogParser
from monitor.events import CrashBlock
from monitor.signature import crash_signature, meaningful_frames

pytestmark = pytest.mark.unit


def crashes_of(text: str) -> list[CrashBlock]:
    p = ErrorlogParser()
    recs = p.feed(text.encode()) + p.close()
    return [r for r in recs if isinstance(r, CrashBlock)]


def mutate(text: str, rng: random.Random) -> str:
    """The same crash on another day, spid, kpid, engine thread, addresses and offsets."""
    spid, kpid, thread = rng.randint(1, 65000), rng.randint(1, 2**31 - 1), rng.randint(0, 9999)
    day = f"20{rng.randint(10, 30)}/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}"
    hhmm = (
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 99):02d}"
    )
    text = re.sub(
        r"^00:\d{4}:00000:\d{5}:\S+ \S+", f"00:{thread:04d}:00000:{spid:05d}:{day} {hhmm}", text, flags=re.M
    )
    text = re.sub(r"0x[0-9a-f]{6,16}", lambda _: f"0x{rng.getrandbits(44):016x}", text)
    text = re.sub(r"\+0x[0-9a-f]+", lambda _: f"+0x{rng.getrandbits(12):x}", text)
    return re.sub(r"spid \d+, kpid \d+", f"spid {spid}, kpid {kpid}", text)


def test_same_bug_keeps_its_signature(corpus: Path) -> None:
    original = (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text()
    [base] = crashes_of(original)
    rng = random.Random(7)
    for _ in range(25):
        text = mutate(original, rng)
        [c] = crashes_of(text)
        assert c.spid != base.spid or c.kpid != base.kpid or c.time != base.time
        assert c.signature == base.signature, text.splitlines()[0]


def test_timeslice_keeps_its_signature(corpus: Path) -> None:
    original = (corpus / "dbxtune_timeslice_501_checkpoint_2021.log").read_text()
    [base] = crashes_of(original)
    [again] = crashes_of(mutate(original, random.Random(3)))
    assert again.signature == base.signature


def test_different_top_frames_change_the_signature(corpus: Path) -> None:
    original = (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text()
    [base] = crashes_of(original)
    other_fault = original.replace(
        "pc: 0x0000000000f43be0 query_text+0x1dd()", "pc: 0x0000000000f43be0 memmove+0x1d()"
    )
    [c1] = crashes_of(other_fault)
    assert c1.signature != base.signature
    deeper = original.replace(
        "LeScalarOp::_LeOpNext(ExeCtxt&)+0x4e()", "LeHashJoinOp::_LeOpNext(ExeCtxt&)+0x4e()"
    )
    [c2] = crashes_of(deeper)
    assert c2.signature != base.signature
    # A different signal with the same frames is a different crash class.
    [c3] = crashes_of(
        original.replace("infected with signal 11 (SIGSEGV)", "infected with signal 10 (SIGBUS)")
    )
    assert c3.signature != base.signature


def test_frames_below_the_top_five_do_not_count(corpus: Path) -> None:
    original = (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text()
    [base] = crashes_of(original)
    [c] = crashes_of(original.replace("conn_hdlr+0xef8()", "other_handler+0x10()"))
    assert c.signature == base.signature


def test_handler_lines_do_not_count(corpus: Path) -> None:
    original = (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text()
    [base] = crashes_of(original)
    [c] = crashes_of(original.replace("le_execerr installed", "something_else installed"))
    assert c.signature == base.signature


def test_machinery_frames_are_dropped_wherever_they_sit() -> None:
    with_machinery = ["pcstkwalk", "ucstkgentrace", "ucbacktrace", "terminate_process", "kisignal", "f", "g"]
    assert meaningful_frames(with_machinery) == ("f", "g")
    assert crash_signature("signal", 11, with_machinery, None) == crash_signature(
        "signal", 11, ["f", "g"], None
    )
    assert meaningful_frames(["kepanic", "kitermproc", "(null)", "a", "b", "c", "d", "e", "f"]) == (
        "a", "b", "c", "d", "e",
    )  # fmt: skip


def test_truncated_block_falls_back_to_the_address_function() -> None:
    a = crash_signature("signal", 11, [], "query_text")
    b = crash_signature("signal", 11, ["pcstkwalk", "kisignal"], "query_text")
    assert a == b
    assert a != crash_signature("signal", 11, [], "memmove")
