"""The streaming parser on every prefix variant, separators, junk, encodings and block shapes."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from collectors.errorlog import ErrorlogParser
from monitor.events import ConfigChanged, CrashBlock, ErrorlogError, ServerBooted, ServerShutdown

pytestmark = pytest.mark.unit

P = "00:0005:00000:01279:2020/01/27 12:20:05.16 kernel  "
S = "00:0005:00000:01279:2020/01/27 12:20:05.16 server  "


def parse(data: bytes, pieces: int = 1, seed: int = 0) -> tuple[list[object], ErrorlogParser]:
    """Parse ``data`` fed in ``pieces`` random pieces."""
    p = ErrorlogParser()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(pieces - 1, len(data) - 1))) if pieces > 1 else []
    out: list[object] = []
    last = 0
    for c in [*cuts, len(data)]:
        out += p.feed(data[last:c])
        last = c
    out += p.close()
    return out, p


def block(prefix: str = P, sql: str = "exec p_x 1", end: bool = True) -> str:
    lines = [
        "Current process (0x72ff02a0) infected with signal 11 (SIGSEGV)",
        "Current Process is running on Engine 3",
        "Address 0x0x00000000022d79ad (LeUpdateOp::_LeOpNext(ExeCtxt&)+0x14d), siginfo (code, address) = (1, 0x0x0)",
        "************************************",
        f"SQL causing error : {sql}",
        "Current statement number: 1 Current line number: 1",
        "************************************",
        "curcmd = 197 program = SqlWindow",
        "extended error information: hostname: gorans login: sa",
        "pc: 0x0000000001534c10 pcstkwalk+0x482()",
        "pc: 0x00000000015612a4 kisignal+0x868()",
        "pc: 0x0000001100000000 ()",
        "pc: 0x00000000022d79ad LeUpdateOp::_LeOpNext(ExeCtxt&)+0x14d()",
        "pc: 0x000000000183bffd LePlanNext+0xed()",
    ]
    if end:
        lines.append("end of stack trace, spid 1279, kpid 1929314976, suid 1")
    return "".join(prefix + ln + "\n" for ln in lines)


def crashes(records: list[object]) -> list[CrashBlock]:
    return [r for r in records if isinstance(r, CrashBlock)]


@pytest.mark.parametrize(
    ("prefix", "thread", "engine", "spid"),
    [
        ("00:0005:00000:01279:2020/01/27 12:20:05.16 kernel  ", 5, 3, 1279),
        ("05:00000:01279:2020/01/27 12:20:05.16 kernel  ", 5, 3, 1279),  # pre-15.7, 3 fields
        ("00:05:00000:01279:2020/01/27 12:20:05.16 kernel  ", 5, 3, 1279),  # 2-digit engine
        ("00:0005:00000:01279:2020/01/27 12:20:05.16 kernel ", 5, 3, 1279),  # one space
        ("00:0005:00000:01279:2020/01/27 12:20:05.16 kernel\t", 5, 3, 1279),  # a TAB
        ("00:0005:00000:01279:2020/01/27 12:20:05.16 kernel     ", 5, 3, 1279),  # many spaces
    ],
)
def test_prefix_variants(prefix: str, thread: int, engine: int, spid: int) -> None:
    [c] = crashes(parse(block(prefix).encode())[0])
    assert (c.thread, c.engine, c.spid, c.kpid) == (thread, engine, spid, 1929314976)
    assert c.time == datetime(2020, 1, 27, 12, 20, 5, 160000)
    assert c.complete and c.login == "sa" and c.program == "SqlWindow"


def test_engine_from_a_process_mode_prefix_without_engine_line() -> None:
    text = block("07:00000:01279:2020/01/27 12:20:05.16 kernel  ").replace(
        "Current Process is running on Engine 3", "x"
    )
    [c] = crashes(parse(text.encode())[0])
    assert c.engine == 7
    [c4] = crashes(parse(block().replace("Current Process is running on Engine 3", "x").encode())[0])
    assert c4.engine is None  # a 4-digit field is an OS thread: the engine is unknown, not guessed


def test_multiline_sql_keeps_every_line_and_crlf_is_stripped() -> None:
    sql = "update brev\n  set brev.xanstal = bf.xid_anst_ratt\nfrom brev_fel bf\nwhere bf.xid = brev.xid\n"
    text = block(sql=sql).replace("\n", "\r\n")
    [c] = crashes(parse(text.encode())[0])
    assert (
        c.sql
        == "update brev\n  set brev.xanstal = bf.xid_anst_ratt\nfrom brev_fel bf\nwhere bf.xid = brev.xid"
    )
    assert c.procedure is None


def test_junk_before_the_prefix_and_blank_lines() -> None:
    text = "\n\n" + "".join(
        "<br>[code]" + ln + "\n" if i % 3 == 0 else ln + "\n" for i, ln in enumerate(block().splitlines())
    )
    recs, p = parse(text.encode())
    [c] = crashes(recs)
    assert c.complete and c.frames[-1] == "LePlanNext"
    assert p.unparsed_lines == 0


def test_swedish_text_in_utf8_and_cp1252() -> None:
    line_utf8 = (
        S + "The configuration option 'max parallel degree' has been changed by 'dbå' from '1' to '4'.\n"
    )
    line_1252 = (S + "extended error information: hostname: vårdcentral login: läkare\n").replace(S, P)
    data = line_utf8.encode("utf-8") + block().replace(
        P + "extended error information: hostname: gorans login: sa\n", line_1252
    ).encode("cp1252")
    recs, _ = parse(data)
    [cfg] = [r for r in recs if isinstance(r, ConfigChanged)]
    assert cfg.by == "dbå" and cfg.option == "max parallel degree" and (cfg.old, cfg.new) == ("1", "4")
    [c] = crashes(recs)
    assert (c.hostname, c.login) == ("vårdcentral", "läkare")


def test_fatal_chain_is_one_crash_and_the_server_goes_down() -> None:
    fatal = (
        P + "FATAL UNHANDLED EXCEPTION: signal 0 hit while handling a previously hit signal. "
        "The server cannot continue and will shut down.\n"
        + P
        + "pc: 0x0000000001534c10 pcstkwalk+0x482()\n"
        + P
        + "pc: 0x00000000021fdd75 kepanic+0xe5()\n"
        + P
        + "end of stack trace, spid 1279, kpid 1929314976, suid 1\n"
        + P
        + "ueshutdown: exiting\n"
        + "00:0000:00000:00000:2020/01/27 12:20:05.18 kernel  Main thread performing final shutdown.\n"
    )
    recs, _ = parse((block() + fatal).encode())
    [c] = crashes(recs)
    assert c.server_terminated and c.complete
    assert c.frames[-1] == "LePlanNext"  # the second stack does not replace the first
    shutdowns = [r for r in recs if isinstance(r, ServerShutdown)]
    assert [(s.kind, s.by) for s in shutdowns] == [("fatal", None)]


def test_truncated_block_is_marked_and_still_grouped() -> None:
    recs, _ = parse(block(end=False).encode())
    [c] = crashes(recs)
    assert not c.complete
    assert c.kpid is None  # only end of stack trace says it
    [full] = crashes(parse(block().encode())[0])
    assert c.signature == full.signature


def test_interleaved_tasks_do_not_cut_a_block() -> None:
    other = (
        "00:0002:00000:00044:2020/01/27 12:20:05.16 server  Error: 1608, Severity: 18, State: 4\n"
        "00:0002:00000:00044:2020/01/27 12:20:05.16 server  A client process exited abnormally.\n"
    )
    lines = block().splitlines(keepends=True)
    text = "".join(lines[:8]) + other + "".join(lines[8:])
    recs, _ = parse(text.encode())
    [c] = crashes(recs)
    assert c.complete and c.login == "sa"
    [e] = [r for r in recs if isinstance(r, ErrorlogError)]
    assert (e.number, e.spid, e.message) == (1608, 44, "A client process exited abnormally.")


def test_parallel_worker_keeps_its_family() -> None:
    worker = "00:0005:00312:01279:2020/01/27 12:20:05.16 kernel  "
    [c] = crashes(parse(block(worker).encode())[0])
    assert (c.family, c.spid) == (312, 1279)


def test_old_style_infected_with_number() -> None:
    text = block().replace("infected with signal 11 (SIGSEGV)", "infected with 11")
    [c] = crashes(parse(text.encode())[0])
    assert (c.kind, c.signal) == ("signal", 11)


def test_stack_trace_without_infection_is_kind_other() -> None:
    text = "".join(ln + "\n" for ln in block().splitlines() if "pc:" in ln or "end of stack" in ln)
    [c] = crashes(parse(text.encode())[0])
    assert (c.kind, c.signal, c.complete) == ("other", None, True)


def test_boot_with_version_then_unclean_stop_then_boot() -> None:
    z = "00:0000:00000:00000:2026/11/26 08:00:0{}.00 kernel  {}\n"
    version = "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/SLES 12.5/ase160sp04pl03x/3541/64-bit/FBO/Mon Jun 15 10:12:33 2023"
    boot = (
        z.format(0, "SySAM: Using licenses from: /opt/sap/SYSAM-2_0/licenses")
        + z.format(1, "Using config area from primary master device.")
        + z.format(2, version)
    )
    work = "00:0002:00000:00044:2026/11/26 08:00:05.00 server  Error: 1608, Severity: 18, State: 4\n00:0002:00000:00044:2026/11/26 08:00:05.00 server  x\n"
    recs, _ = parse((boot + work + boot.replace("08:00:0", "09:00:0")).encode())
    kinds = [type(r).__name__ for r in recs]
    assert kinds == ["ServerBooted", "ErrorlogError", "ServerShutdown", "ServerBooted"]
    b1 = recs[0]
    assert isinstance(b1, ServerBooted) and b1.version == version and not b1.failed
    sd = recs[2]
    assert isinstance(sd, ServerShutdown) and sd.kind == "unclean"
    assert sd.time == datetime(2026, 11, 26, 8, 0, 5)  # the last line the server wrote


def test_requested_and_nowait_shutdowns_and_no_unclean_after_them() -> None:
    z = "00:0000:00000:00000:2026/11/26 08:00:0{}.00 kernel  {}\n"
    u = "00:0006:00000:00012:2026/11/26 08:00:0{}.00 server  {}\n"
    text = (
        z.format(0, "Using config area from primary master device.")
        + u.format(1, "Shutdown started by user 'sa'. SQL text: shutdown with nowait")
        + z.format(2, "Using config area from primary master device.")
        + u.format(3, "Shutdown started by user 'dba_erik'. SQL text: shutdown")
        + u.format(4, "ASE shutdown by request.")
        + z.format(5, "ueshutdown: exiting")
        + z.format(6, "Using config area from primary master device.")
    )
    recs, _ = parse(text.encode())
    shutdowns = [(r.kind, r.by) for r in recs if isinstance(r, ServerShutdown)]
    assert shutdowns == [("nowait", "sa"), ("requested", "dba_erik")]
    assert sum(isinstance(r, ServerBooted) for r in recs) == 3


@pytest.mark.parametrize("pieces", [2, 7, 50, 400])
def test_any_split_of_the_input_gives_the_same_records(corpus: Path, pieces: int) -> None:
    data = b"".join(p.read_bytes() for p in sorted(corpus.glob("*.log")))
    data += block().encode() + block(sql="exec p_y").encode()
    whole, pw = parse(data)
    for seed in range(5):
        split, ps = parse(data, pieces=pieces, seed=seed)
        assert split == whole
        assert (ps.lines, ps.unparsed_lines) == (pw.lines, pw.unparsed_lines)


def test_safe_offset_never_passes_an_unfinished_record() -> None:
    text = (block() + block(sql="exec p_y")).encode()
    p = ErrorlogParser()
    got: list[object] = []
    for i in range(len(text)):
        got += p.feed(text[i : i + 1])
        assert p.safe_offset <= i + 1
        # a restart from safe_offset would re-read whatever was not returned yet
        if not crashes(got):
            assert p.safe_offset == 0
    got += p.close()
    assert len(crashes(got)) == 2


def test_binary_junk_is_counted_not_fatal() -> None:
    data = b"\x00\x01\x02garbage\xff\xfe\n" + block().encode() + b"\x7f\x00\x00\n"
    recs, p = parse(data)
    assert len(crashes(recs)) == 1
    assert p.unparsed_lines == 2
