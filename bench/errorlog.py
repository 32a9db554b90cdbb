"""Benchmark: `asewatch errorlog --json` on a >= 1 GiB errorlog against `grep -c` on the same warm file.

    .venv/bin/python bench/errorlog.py [--size-mib 1024] [--keep]

Generates the file in the real ASE format (mostly routine lines, error pairs, a crash
block about every 100,000 lines), warms the page cache, then times in the same run:
the baseline `grep -c "infected with" FILE` and `asewatch errorlog --json FILE`.
Prints MB/s, the ratio to grep, and asewatch's peak RSS (from wait4 on the child).
Targets (issue 2): >= 200 MB/s, <= 15x grep, peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASEWATCH = Path(sys.executable).parent / "asewatch"

ROUTINE = [
    ("server", "Checkpoint of database 'tempdb' complete."),
    ("kernel", "Cannot read, host process disconnected: ws-avd12-034 spid: {spid}"),
    ("server", "Started estimating recovery log boundaries for database 'journal'."),
    ("kernel", "Initializing virtual device 4, '/sybdev/journal_data01.dat' with dsync 'off'."),
    ("server", "Login failed for user 'vardpersonal07' (host ws-avd03-011, program 'IMX Klient')."),
    ("kernel", "Network and device connection limit is 65519."),
    ("server", "Configuration file '/opt/sap/ASE-16_0/CLINIC1.cfg' has been written."),
    ("kernel", "Port 4100 is listening."),
]
ERRORS = [
    (1608, 18, 4, "A client process exited abnormally, or a network error was encountered."),
    (2601, 14, 6, "Attempt to insert duplicate key row in object 'brev' with unique index 'brev_pk'"),
    (1105, 17, 3, "Can't allocate space for object 'syslogs' in database 'journal'."),
]
FRAMES = [
    "pcstkwalk+0x46e()",
    "ucstkgentrace+0x20f()",
    "ucbacktrace+0x50()",
    "terminate_process+0xf4c()",
    "kisignal+0x31b()",
    "LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af()",
    "LeEmitNoSndOp::_LeOpNext(ExeCtxt&)+0x1af()",
    "LePlanNext+0x7d3()",
    "exec_lava+0x506()",
    "s_execute+0xfb5()",
    "sequencer+0xcb1()",
    "execproc+0x76c()",
    "conn_hdlr+0xef8()",
]


def prefix(t: datetime, thread: int, family: int, spid: int, comp: str) -> str:
    hs = t.microsecond // 10000
    return f"00:{thread:04d}:{family:05d}:{spid:05d}:{t:%Y/%m/%d %H:%M:%S}.{hs:02d} {comp}  "


def crash_block(t: datetime, rng: random.Random) -> list[str]:
    spid, family, kpid = rng.randint(100, 2000), rng.randint(100, 2000), rng.randint(10**8, 2 * 10**9)
    p = prefix(t, 5, family, spid, "kernel")
    out = [
        p + "Current process (0x72ff02a0) infected with signal 11 (SIGSEGV)",
        p
        + "Address 0x0x0000000001ded8cf (LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af), siginfo (code, address) = (1, 0x0x0)",
        p + "**** Saved signal context (0x0x00002aaac0b1c900): ****",
        p + "**** end of signal context ****",
        p + "************************************",
        p + "SQL causing error : exec p_brev_sok_central_utskrift @pnr = '19121212-1212'",
        p + "Current statement number: 12 Current line number: 48",
        p + "************************************",
        prefix(t, 5, family, spid, "server")
        + "SQL Text: exec p_brev_sok_central_utskrift @pnr = '19121212-1212'",
        p + "curdb = 4 tempdb = 2 pstat = 0x10100 p2stat = 0x101000",
        p + "lasterror = 0 preverror = 0 transtate = 1",
        p + "curcmd = 197 program = IMX Klient",
        p + "extended error information: hostname: ws-avd12-034 login: lakare_anna",
    ]
    out += [p + f"pc: 0x{rng.getrandbits(40):016x} {f}" for f in FRAMES]
    out.append(p + f"end of stack trace, spid {spid}, kpid {kpid}, suid 4")
    return out


def generate(path: Path, size: int) -> tuple[int, int]:
    """Write the file; returns (lines, crash blocks)."""
    rng = random.Random(20261126)
    t = datetime(2026, 11, 26, 7, 0, 0)
    lines = crashes = 0
    with path.open("w", encoding="utf-8") as f:
        written = 0
        while written < size:
            batch: list[str] = []
            for i in range(100_000):
                t += timedelta(milliseconds=rng.choice((0, 10, 20, 30)))
                if i % 97 == 0:
                    n, s, st, msg = rng.choice(ERRORS)
                    spid = rng.randint(10, 900)
                    batch.append(prefix(t, 2, 0, spid, "server") + f"Error: {n}, Severity: {s}, State: {st}")
                    batch.append(prefix(t, 2, 0, spid, "server") + msg)
                else:
                    comp, msg = ROUTINE[i % len(ROUTINE)]
                    spid = rng.randint(0, 900)
                    batch.append(prefix(t, rng.randint(0, 7), 0, spid, comp) + msg.format(spid=spid))
            batch += crash_block(t, rng)
            crashes += 1
            text = "\n".join(batch) + "\n"
            f.write(text)
            written += len(text)
            lines += len(batch)
    return lines, crashes


def run_timed(argv: list[str]) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS in bytes (wait4 of that child), stdout."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        data = out.read()
    if proc.returncode not in (0, 1):  # grep -c exits 1 when it counts 0
        raise SystemExit(f"{argv[0]} failed with {proc.returncode}")
    return elapsed, usage.ru_maxrss * 1024, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "asewatch-bench")
    ap.add_argument("--keep", action="store_true", help="keep the generated file for the next run")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"errorlog-{args.size_mib}MiB.log"
    size = args.size_mib << 20
    if args.generate_only:
        t0 = time.perf_counter()
        n, c = generate(path, size)
        print(
            f"generated {path} ({path.stat().st_size / 1e6:.0f} MB, {n} lines, {c} crash blocks) "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        return
    if not path.exists() or path.stat().st_size < size:
        # In a child process: this process stays small, so the children it forks for the
        # timed runs do not inherit a large resident image (wait4's ru_maxrss would count it).
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate-only",
                "--size-mib",
                str(args.size_mib),
                "--dir",
                str(args.dir),
            ],
            check=True,
        )
    nbytes = path.stat().st_size
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    g_time, _, g_out = run_timed(["grep", "-c", "infected with", str(path)])
    a_time, a_rss, a_out = run_timed([str(ASEWATCH), "errorlog", "--json", str(path)])
    report = json.loads(a_out)
    assert len(report["crashes"]) == int(g_out), (len(report["crashes"]), g_out)
    print(
        f"file: {nbytes / 1e6:.0f} MB, {report['lines']} lines, {len(report['crashes'])} crashes "
        f"in {len(report['signatures'])} signature(s)"
    )
    print(f"grep -c:           {g_time:6.2f} s  {nbytes / g_time / 1e6:7.0f} MB/s")
    print(
        f"asewatch errorlog: {a_time:6.2f} s  {nbytes / a_time / 1e6:7.0f} MB/s  peak RSS {a_rss / 1e6:.0f} MB"
    )
    print(f"ratio asewatch/grep: {a_time / g_time:.1f}x  (targets: >= 200 MB/s, <= 15x, RSS < 150 MB)")
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
