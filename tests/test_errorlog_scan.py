"""The scanner: linear work whatever the log holds, and no marker line ever skipped.

The guard below is not a timing: it counts the bytes the scanner looked at. The scanner
before issue 8 re-searched the rest of each 4 MB chunk for every marker once a log had
shown one register line (``kernel       PC : …``), so its work grew with the number of
markers per chunk; on the worst shape below it looked at 383x the input with 500 rounds
and 3,065x with 4,000 (counted by instrumenting it the same way).
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.errorlog import ErrorlogParser
from collectors.errorlog import lines as ln
from collectors.errorlog.scan import MARKER_RE, scan_lines

pytestmark = pytest.mark.unit

_P4 = "00:0004:00000:{spid:05d}:2026/11/26 07:{m:02d}:{s:02d}.{h:02d} {comp}{sep}"
_P3 = "{eng:02d}:00000:{spid:05d}:2026/11/26 07:{m:02d}:{s:02d}.{h:02d} {comp}{sep}"
_SEPS = ("  ", " ", "\t", "   ", " \t", "\t ")
_REGISTERS = (
    "     PC : 0x0000001100000000 ()",
    "        RAX : 0x00002aab46894800  RBX : (nil)",
    "     RBP : 0x00002aaab78b4cf0  RSP : 0x00002aaab78b0cb0",
)


def _line(
    i: int, text: str, *, sep: str = "  ", comp: str = "kernel", spid: int = 12, three: bool = False
) -> str:
    m, s, h = (i // 6000) % 60, (i // 100) % 60, i % 100
    fmt = _P3 if three else _P4
    return fmt.format(spid=spid, m=m, s=s, h=h, comp=comp, sep=sep, eng=i % 4) + text + "\n"


def _crash(i: int, spid: int, sep: str) -> str:
    body = [
        "Current process (0x72ff02a0) infected with signal 11 (SIGSEGV)",
        "Address 0x0x0000000001ded8cf (LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af), siginfo (code, address) = (1, 0x0x0)",
        *_REGISTERS,
        "SQL causing error : select b.brev_id from brev b where b.avd_id = @avd",
        "pc: 0x0000000001ded8cf LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af()",
        "pc: 0x0000000000a21b3c exec_lava+0x506()",
        f"end of stack trace, spid {spid}, kpid {1000 + i}, suid 4",
    ]
    return "".join(_line(i, t, sep=sep, spid=spid) for t in body)


def worst(n: int) -> bytes:
    """A register line first, then n rounds of error pairs and config changes (server lines),
    then n / 10 crash blocks (kernel lines): every separator, every round a marker."""
    out = [_line(0, _REGISTERS[0])]
    for i in range(1, n + 1):
        sep = _SEPS[i % len(_SEPS)]
        out.append(_line(i, "Error: 1608, Severity: 18, State: 4", sep=sep, comp="server", spid=40 + i % 50))
        out.append(_line(i, "A client process exited abnormally.", sep=sep, comp="server", spid=40 + i % 50))
        text = f"The configuration option 'max parallel degree' has been changed by 'sa' from '{i}' to '{i + 1}'."
        out.append(_line(i, text, sep=sep, comp="server"))
    out += [_crash(n + i, 100 + i % 800, _SEPS[i % len(_SEPS)]) for i in range(n // 10)]
    return "".join(out).encode()


def _parse(data: bytes, chunk: int = 4 << 20) -> ErrorlogParser:
    p = ErrorlogParser()
    for at in range(0, len(data), chunk):
        p.feed(data[at : at + chunk])
    p.close()
    return p


@pytest.mark.parametrize("n", [500, 4000])
def test_work_is_linear_in_the_input_on_the_worst_shape(n: int) -> None:
    data = worst(n)
    p = _parse(data)
    # Every byte once for the newline pass, a fixed head per line, and the marker lines
    # and crash blocks read whole: a small constant factor, the same for 500 rounds or 4000.
    assert p.examined_bytes <= 3 * len(data), (p.examined_bytes, len(data))
    assert p.lines == data.count(b"\n")


def test_the_work_ratio_does_not_grow_with_the_number_of_markers() -> None:
    small, big = worst(300), worst(6000)
    r_small = _parse(small).examined_bytes / len(small)
    r_big = _parse(big).examined_bytes / len(big)
    assert r_big <= r_small * 1.1


def _records_without_offsets(data: bytes) -> list[object]:
    p = ErrorlogParser()
    recs = p.feed(data) + p.close()
    return [dataclasses.replace(r, offset=0) for r in recs]


def test_separators_and_layouts_do_not_change_the_records() -> None:
    base = worst(200).decode()
    want = _records_without_offsets(base.encode())
    assert sum(type(r).__name__ == "CrashBlock" for r in want) == 20
    assert sum(type(r).__name__ == "ConfigChanged" for r in want) == 200
    for sep in ("  ", " ", "\t", "    "):
        text = re.sub(
            r"(kernel|server)(?:  | |\t|   | \t|\t )(?=\S)", lambda m, sep=sep: m.group(1) + sep, base
        )
        assert _records_without_offsets(text.encode()) == want, repr(sep)
    crlf = base.replace("\n", "\r\n").encode()
    assert [type(r) for r in _records_without_offsets(crlf)] == [type(r) for r in want]


def _must_read(line: bytes) -> bool:
    """The reference: a line the parser must read (a marker starts its message, or no prefix)."""
    text = ln.decode(line)
    parsed = ln.parse_line(text, 0)
    if parsed is None or not text[:2].isdigit():
        return True
    return bool(MARKER_RE.match(parsed.text.encode("utf-8", "surrogateescape")))


_TEXTS = st.sampled_from(
    [
        "Error: 1105, Severity: 17, State: 4",
        "The transaction log in database 'tempdb' is almost full.",
        "The configuration option 'x' has been changed by 'sa' from '1' to '2'.",
        "Current process (0x1) infected with signal 11 (SIGSEGV)",
        "pc: 0x0000000001ded8cf exec_lava+0x506()",
        "end of stack trace, spid 1, kpid 2, suid 1",
        "Checkpoint of database 'tempdb' complete.",
        "ueshutdown: exiting",
        "Err",
        "",
        *_REGISTERS,
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            _TEXTS,
            st.sampled_from(_SEPS),
            st.sampled_from(("kernel", "server", "backup")),
            st.booleans(),
            st.sampled_from(("", "", "", "junk>>", "\x00\x01")),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_no_line_that_must_be_read_is_skipped(rows: list[tuple[str, str, str, bool, str]]) -> None:
    lines = [
        (junk + _line(i, text, sep=sep, comp=comp, three=three)).encode()
        for i, (text, sep, comp, three, junk) in enumerate(rows)
    ]
    data = b"".join(lines)
    sc = scan_lines(data, len(data))
    assert sc.lines == len(lines)
    read = set(sc.starts)
    at = 0
    for raw in lines:
        if _must_read(raw[:-1]):
            assert at in read, raw
        at += len(raw)
