"""Generated errorlogs in the real ASE format, with crash blocks made from real ones.

Used by bench/errorlog.py (four variants) and bench/errorlog_tail.py (the catch-up read).
Crash blocks are every crash block of ``../shared/corpus/errorlogs/`` in turn, with new
times, spids, kpids and addresses; without ``../shared`` a built-in block is used and
the caller says so.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from collectors.errorlog import lines as ln
from collectors.errorlog.reader import parse_file
from monitor.events import CrashBlock

CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus/errorlogs"

ROUTINE = [
    ("server", "Checkpoint of database 'tempdb' complete."),
    ("kernel", "Cannot read, host process disconnected: ws-avd12-034 spid: {spid}"),
    ("server", "Started estimating recovery log boundaries for database 'journal'."),
    ("kernel", "Initializing virtual device 4, '/sybdev/journal_data01.dat' with dsync 'off'."),
    ("server", "Login failed for user 'vardpersonal07' (host ws-avd03-011, program 'IMX Klient')."),
    ("kernel", "Network and device connection limit is 65519."),
    ("server", "Configuration file '/opt/sap/ASE-16_0/CLINIC1.cfg' has been written."),
    ("kernel", "Port 4100 is listening."),
    (
        "server",
        "The transaction log in database 'tempdb' is almost full. Your transaction is being suspended.",
    ),
]
ERRORS = [
    (1608, 18, 4, "A client process exited abnormally, or a network error was encountered."),
    (2601, 14, 6, "Attempt to insert duplicate key row in object 'brev' with unique index 'brev_pk'"),
    (1105, 17, 3, "Can't allocate space for object 'syslogs' in database 'journal'."),
]
# The register dump ASE writes in a signal context (several spaces after "kernel").
REGISTERS = [
    ("      ", "PC : 0x0000000001ded8cf (LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af)"),
    ("         ", "RAX : 0x00002aab46894800  RBX : (nil)"),
    ("         ", "RCX : 0x6c6e6f2064610072  RDX : 0x0000000009090a79"),
    ("      ", "RBP : 0x00002aaab78b4cf0  RSP : 0x00002aaab78b0cb0"),
    ("      ", "R8  : 0x000000000000000c  R9  : 0x00002aab46894800"),
    ("      ", "EFL : 0x0000000000010206"),
]
_BUILTIN = [
    ("kernel", "  ", "Current process (0x72ff02a0) infected with signal 11 (SIGSEGV)"),
    ("kernel", "  ", "Address 0x0x0000000001ded8cf (LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af), siginfo (code, address) = (1, 0x0x0)"),
    ("kernel", "  ", "**** Saved signal context (0x0x00002aaac0b1c900): ****"),
    *(("kernel", sep, text) for sep, text in REGISTERS),
    ("kernel", "  ", "**** end of signal context ****"),
    ("kernel", "  ", "SQL causing error : select b.brev_id, b.pnr from brev b where b.utskrift_central = 1"),
    ("server", "  ", "SQL Text: exec p_brev_sok_central_utskrift @avd = 4"),
    ("kernel", "  ", "curdb = 4 tempdb = 2 pstat = 0x10100 p2stat = 0x101000"),
    ("kernel", "  ", "extended error information: hostname: ws-avd12-034 login: sekr_karin"),
    ("kernel", "  ", "pc: 0x00000000012aee1c pcstkwalk+0x46e()"),
    ("kernel", "  ", "pc: 0x00000000012ae9f3 ucstkgentrace+0x20f()"),
    ("kernel", "  ", "pc: 0x0000000001ded8cf LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af()"),
    ("kernel", "  ", "pc: 0x0000000001c09621 exec_lava+0x506()"),
    ("kernel", "  ", "end of stack trace, spid 308, kpid 732758348, suid 4"),
]  # fmt: skip
_HEX = re.compile(r"0x[0-9a-fA-F]{8,}")
_ENDSTACK = re.compile(r"spid \d+, kpid -?\d+")
_TIMESLICE_SPID = re.compile(r"spid \d+ exhausted")


@dataclass(frozen=True)
class Block:
    """One crash block as (component, separator, message) lines; ``name`` says where from."""

    name: str
    lines: tuple[tuple[str, str, str], ...]

    @property
    def has_registers(self) -> bool:
        return any(len(sep) > 2 for _, sep, _ in self.lines)


def corpus_blocks() -> list[Block]:
    """Every crash block of the corpus, its lines as written (those of the crashing task)."""
    if not CORPUS.is_dir():
        return []
    out: list[Block] = []
    for path in sorted(CORPUS.glob("*.log")):
        data = path.read_bytes()
        blocks = [r for r in parse_file(path) if isinstance(r, CrashBlock)]
        out += [Block(path.name, tuple(_block_lines(data, rec))) for rec in blocks]
    return out


def _block_lines(data: bytes, rec: CrashBlock) -> Iterator[tuple[str, str, str]]:
    for raw in data[rec.offset :].decode("utf-8", "replace").splitlines():
        line = ln.parse_line(raw, 0)
        if line is None or line.task != (rec.family, rec.spid):
            continue
        m = ln.PREFIX_RE.search(raw)
        assert m is not None
        yield line.component, raw[m.end(6) : m.end()], line.text
        if line.text.startswith("end of stack trace"):
            return


def builtin_block() -> Block:
    return Block("built-in", tuple(_BUILTIN))


def prefix(t: datetime, thread: int, family: int, spid: int, comp: str, sep: str) -> str:
    return f"00:{thread:04d}:{family:05d}:{spid:05d}:{t:%Y/%m/%d %H:%M:%S}.{t.microsecond // 10000:02d} {comp}{sep}"


def render(block: Block, t: datetime, rng: random.Random, *, sep: str, registers: bool) -> str:
    """The block at time ``t`` with a new spid, kpid and addresses; register lines kept (and
    added where the block has none) or dropped; the usual two-space separator as ``sep``."""
    spid, kpid, thread = rng.randint(100, 2000), rng.randint(10**8, 2 * 10**9), rng.randint(2, 9)
    lines = list(block.lines)
    if registers and not block.has_registers:
        lines[1:1] = [("kernel", s, text) for s, text in REGISTERS]
    out = []
    for comp, s, original in lines:
        if len(s) > 2 and not registers:
            continue
        text = _HEX.sub(
            lambda m: f"0x{rng.getrandbits(4 * (len(m.group()) - 2)):0{len(m.group()) - 2}x}", original
        )
        text = _ENDSTACK.sub(f"spid {spid}, kpid {kpid}", text)
        text = _TIMESLICE_SPID.sub(f"spid {spid} exhausted", text)
        out.append(prefix(t, thread, 0, spid, comp, sep if s == "  " else s) + text + "\n")
    return "".join(out)


def segment(day0: datetime, rng: random.Random, sep: str, n: int = 100_000) -> tuple[str, datetime]:
    """n routine lines of one morning (error pairs every 97 lines, a configuration change
    every 5,000); returns the text and the time of its last line."""
    t = day0
    out: list[str] = []
    for i in range(n):
        t += timedelta(milliseconds=rng.choice((0, 10, 20, 30)))
        if i % 97 == 0:
            num, sev, st, msg = rng.choice(ERRORS)
            spid = rng.randint(10, 900)
            p = prefix(t, 2, 0, spid, "server", sep)
            out.append(f"{p}Error: {num}, Severity: {sev}, State: {st}\n{p}{msg}\n")
        elif i % 5000 == 1:
            v = rng.randint(1, 8)
            text = f"The configuration option 'max parallel degree' has been changed by 'sa' from '{v}' to '{v + 1}'."
            out.append(prefix(t, 2, 0, 12, "server", sep) + text + "\n")
        else:
            comp, msg = ROUTINE[i % len(ROUTINE)]
            spid = rng.randint(0, 900)
            out.append(prefix(t, rng.randint(0, 7), 0, spid, comp, sep) + msg.format(spid=spid) + "\n")
    return "".join(out), t


def write_log(path: Path, size: int, blocks: list[Block], *, sep: str, registers: bool, seed: int = 1) -> int:
    """Write at least ``size`` bytes: days of one generated morning each, a crash block from
    ``blocks`` in turn at the end of each. Returns the number of crash blocks written."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, 7, 0, 0)
    template, last = segment(base, rng, sep)
    stamp = f"{base:%Y/%m/%d}"
    crashes = written = 0
    with path.open("w", encoding="utf-8") as f:
        while written < size:
            day = base + timedelta(days=crashes)
            text = template.replace(stamp, f"{day:%Y/%m/%d}")
            text += render(blocks[crashes % len(blocks)], last + timedelta(days=crashes, seconds=1), rng,
                           sep=sep, registers=registers)  # fmt: skip
            f.write(text)
            written += len(text)
            crashes += 1
    return crashes
