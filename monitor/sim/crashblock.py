"""The signal 11 crash block, line by line as ASE 15.7/16 writes it.

Modelled on the real block in ``corpus/errorlogs/dbxtune_sigsegv_query_text_2018.log``:
infected line, ``Address 0x0x…`` line, saved signal context with the x86_64 registers,
the ``SQL causing error`` box, ``SQL Text:`` lines, PSS state, program and login, the
``pc:`` frames with ``[Handler pc: …]`` lines, and ``end of stack trace``. The function
path of the simulated parallel-query bug is fixed; addresses and offsets are random per
crash, as they are between builds, so a signature must strip them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from monitor.sim.errorlog_writer import Component

# The signal machinery ASE always prints first (generic, dropped by a signature).
MACHINERY: tuple[str, ...] = ("pcstkwalk", "ucstkgentrace", "ucbacktrace", "terminate_process", "kisignal")

# The simulated bug: a parallel exchange operator reading a freed message buffer.
# ("frame", name) entries are printed as pc: lines; ("handler", name) entries as
# "[Handler pc: ...]" lines, which ASE prints before the frame that installed them.
BUG_PATH: tuple[tuple[str, str], ...] = (
    ("frame", "LeXchgOp::_LeOpNext(ExeCtxt&)"),
    ("frame", "LeNLJoinOp::_LeOpNext(ExeCtxt&)"),
    ("frame", "LeEmitNoSndOp::_LeOpNext(ExeCtxt&)"),
    ("frame", "LePlanNext"),
    ("handler", "le_execerr"),
    ("frame", "exec_lava"),
    ("frame", "s_execute"),
    ("handler", "hdl_stack"),
    ("handler", "s_handle"),
    ("frame", "sequencer"),
    ("frame", "execproc"),
    ("frame", "s_execute"),
    ("handler", "hdl_stack"),
    ("handler", "s_handle"),
    ("frame", "sequencer"),
    ("frame", "tdsrecv_language"),
    ("handler", "ut_handle"),
    ("frame", "conn_hdlr"),
)

STARS = "************************************"


@dataclass(frozen=True, slots=True)
class CrashContext:
    """The task that crashes and what it was running.

    ``spid``/``kpid`` are the parallel worker's, ``family`` its parent's spid; ``login``,
    ``host`` and ``program`` are the parent session's (a worker inherits them).
    """

    spid: int
    kpid: int
    family: int
    suid: int
    login: str
    host: str
    program: str
    curdb: int
    sql: str
    inner_sql: str
    statement_number: int
    line_number: int
    # What ``SQL causing error`` shows: the batch (``sql``) by default; a statement inside the
    # procedure (as in most real crashes in a procedure) when set.
    causing_sql: str | None = None


@dataclass(frozen=True, slots=True)
class CrashText:
    """A rendered crash block: the lines (component, message), the faulting function and frames."""

    lines: tuple[tuple[Component, str], ...]
    fault: str
    frames: tuple[str, ...]


def _reg(value: int) -> str:
    return "(nil)" if value == 0 else f"0x{value:016x}"


def _heap(rng: random.Random) -> int:
    return 0x00002AAA00000000 + rng.randrange(0, 0x1_0000_0000, 8)


def _code(rng: random.Random) -> int:
    return rng.randrange(0x0000000000F00000, 0x0000000002200000)


def render(ctx: CrashContext, rng: random.Random) -> CrashText:
    """Render the block for ``ctx``; every address and offset is drawn from ``rng``."""
    names = [name for kind, name in BUG_PATH if kind == "frame"]
    fault = names[0]
    fault_off = rng.randrange(0x20, 0x900)
    fault_pc = _code(rng)
    sig_addr = rng.randrange(0x8, 0x400, 8)
    k: list[tuple[Component, str]] = []

    def kern(msg: str) -> None:
        k.append(("kernel", msg))

    kern(f"Current process (0x{ctx.kpid:x}) infected with signal 11 (SIGSEGV)")
    kern(
        f"Address 0x0x{fault_pc:016x} ({fault}+0x{fault_off:x}), "
        f"siginfo (code, address) = (1, 0x0x{sig_addr:016x})"
    )
    kern(f"**** Saved signal context (0x0x{_heap(rng):016x}): ****")
    kern("uc_flags: 0x1, uc_link: 0x(nil)")
    kern(f"uc_sigmask: 0x{rng.randrange(0x400000, 0x7FFFFFFF):x} 0xb 0x1 0x{sig_addr:x}")
    kern("uc_stack: ss_sp: 0x(nil), ss_size: 0x0, ss_flags: 0x2")
    kern("General Registers (uc_mcontext.gregs):")
    kern(f"     PC : 0x{fault_pc:016x} ({fault}+0x{fault_off:x})")
    rsp = _heap(rng)
    regs = {
        "RAX": _heap(rng),
        "RBX": 0,
        "RCX": rng.getrandbits(64),
        "RDX": rng.randrange(0, 0x10000000),
        "RBP": rsp + rng.randrange(0x100, 0x4000, 16),
        "RSP": rsp,
        "R8": rng.randrange(0, 0x40),
        "R9": _heap(rng),
        "R10": 0,
        "R11": 0x00007FFF00000000 + rng.randrange(0, 0x100000000),
        "R12": _heap(rng),
        "R13": _heap(rng),
        "R14": _heap(rng),
        "R15": _heap(rng),
        "RDI": _heap(rng),
        "RSI": sig_addr,
    }
    kern(f"        RAX : {_reg(regs['RAX'])}  RBX : {_reg(regs['RBX'])}")
    kern(f"        RCX : {_reg(regs['RCX'])}  RDX : {_reg(regs['RDX'])}")
    for left, right in (
        ("RBP", "RSP"),
        ("R8", "R9"),
        ("R10", "R11"),
        ("R12", "R13"),
        ("R14", "R15"),
        ("RDI", "RSI"),
    ):
        kern(f"     {left:<3} : {_reg(regs[left])}  {right:<3} : {_reg(regs[right])}")
    kern(f"     RIP : 0x{fault_pc:016x}  CSGSFS : 0x0000000000000033")
    kern("     TRAPNO : 0x000000000000000e  ERR : 0x0000000000000004")
    kern("     EFL : 0x0000000000010246")
    kern("**** end of signal context ****")
    kern(STARS)
    kern(f"SQL causing error : {ctx.causing_sql or ctx.sql}")
    kern(f"Current statement number: {ctx.statement_number} Current line number: {ctx.line_number}")
    kern(STARS)
    k.append(("server", f"SQL Text: {ctx.sql}"))
    k.append(("server", f"SQL Text: {ctx.inner_sql}"))
    kern(f"curdb = {ctx.curdb} tempdb = 2 pstat = 0x10000 p2stat = 0x101000")
    kern("p3stat = 0x800 p4stat = 0x0 p5stat = 0xc008 p6stat = 0x10000011 p7stat = 0x10000")
    kern("lasterror = 0 preverror = 0 transtate = 1")
    kern(f"curcmd = 193 program = {ctx.program}")
    kern(f"extended error information: hostname: {ctx.host} login: {ctx.login}")
    for name in MACHINERY:
        kern(f"pc: 0x{_code(rng):016x} {name}+0x{rng.randrange(0x20, 0x1000):x}()")
    first = True
    for kind, name in BUG_PATH:
        if kind == "handler":
            kern(f"[Handler pc: 0x0x{_code(rng):016x} {name} installed by the following function:-]")
        elif first:
            kern(f"pc: 0x{fault_pc:016x} {name}+0x{fault_off:x}()")
            first = False
        else:
            kern(f"pc: 0x{_code(rng):016x} {name}+0x{rng.randrange(0x20, 0x4000):x}()")
    kern(f"end of stack trace, spid {ctx.spid}, kpid {ctx.kpid}, suid {ctx.suid}")
    return CrashText(tuple(k), f"{fault}+0x{fault_off:x}", (*MACHINERY, *names))
