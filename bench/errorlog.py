"""Benchmark: `asewatch errorlog --json` on 1 GiB errorlogs of four shapes, against `grep -c`.

    .venv/bin/python bench/errorlog.py [--size-mib 1024] [--variants standard,registers,single,tab]

Each variant is generated in the real ASE format (bench/errorlog_gen.py: routine lines,
error pairs, configuration changes, and a crash block every 100,000 lines, the blocks
taken in turn from every crash block in ``../shared/corpus/errorlogs/`` with new times,
spids, kpids and addresses), then, in the same run on the same warm file: the baseline
`grep -c "infected with" FILE` and `asewatch errorlog --json FILE`. Variants:

- ``standard``: two spaces after kernel/server, the crash blocks without register lines;
- ``registers``: the same with the real register dump (``kernel       PC : 0x…``) in
  every crash block;
- ``single``: one space after kernel/server (as old 12.5 logs), register lines kept;
- ``tab``: a TAB after kernel/server, register lines kept.

Prints MB/s, the ratio to grep and asewatch's peak RSS (wait4 of the child) per variant,
and exits 1 ("FAIL") if asewatch found a different number of crashes than were written,
left lines unparsed, or missed a target. Targets (issue 8): >= 250 MB/s, <= 12x grep,
peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from errorlog_gen import builtin_block, corpus_blocks, write_log

ASEWATCH = Path(sys.executable).parent / "asewatch"
VARIANTS = {"standard": ("  ", False), "registers": ("  ", True), "single": (" ", True), "tab": ("\t", True)}
MIN_MBS, MAX_RATIO, MAX_RSS = 250.0, 12.0, 150e6


def run_timed(argv: list[str]) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS in bytes (wait4 of that child), stdout."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        data = out.read()
    if code not in (0, 1):  # grep -c exits 1 when it counts 0
        raise SystemExit(f"{argv[0]} failed with {code}")
    return elapsed, usage.ru_maxrss * 1024, data


def measure(path: Path, expected: int, rounds: int) -> tuple[float, float, int, list[str]]:
    """(grep s, asewatch s, RSS, problems): the best of ``rounds`` alternating runs of each."""
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    g_best = a_best = float("inf")
    rss, problems = 0, []
    for _ in range(rounds):
        g_time, _, _ = run_timed(["grep", "-c", "infected with", str(path)])
        a_time, a_rss, a_out = run_timed([str(ASEWATCH), "errorlog", "--json", str(path)])
        g_best, a_best, rss = min(g_best, g_time), min(a_best, a_time), max(rss, a_rss)
    report = json.loads(a_out)
    if len(report["crashes"]) != expected:
        problems.append(f"{len(report['crashes'])} crashes found, {expected} written")
    if report["unparsed_lines"]:
        problems.append(f"{report['unparsed_lines']} lines unparsed")
    return g_best, a_best, rss, problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--rounds", type=int, default=2, help="timed runs of each command per variant (best kept)"
    )
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "asewatch-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    blocks = corpus_blocks()
    if blocks:
        print(f"crash blocks: {len(blocks)} from the corpus ({', '.join(b.name for b in blocks)})")
    else:
        print("crash blocks: ../shared/corpus/errorlogs is absent; using the built-in block")
        blocks = [builtin_block()]
    failed = False
    print(f"{'variant':10s} {'size':>8s} {'crashes':>8s} {'grep':>7s} {'asewatch':>9s} {'MB/s':>6s} "
          f"{'x grep':>7s} {'RSS MB':>7s}")  # fmt: skip
    for name in args.variants.split(","):
        sep, registers = VARIANTS[name]
        path = args.dir / f"errorlog-{name}-{args.size_mib}MiB.log"
        try:
            crashes = write_log(path, args.size_mib << 20, blocks, sep=sep, registers=registers)
            size = path.stat().st_size
            g, a, rss, problems = measure(path, crashes, args.rounds)
        finally:
            path.unlink(missing_ok=True)
        mbs, ratio = size / a / 1e6, a / g
        if mbs < MIN_MBS or ratio > MAX_RATIO or rss > MAX_RSS:
            problems.append("below target")
        failed |= bool(problems)
        verdict = "ok" if not problems else "FAIL: " + "; ".join(problems)
        print(f"{name:10s} {size / 1e6:6.0f}MB {crashes:8d} {g:6.2f}s {a:8.2f}s {mbs:6.0f} {ratio:6.1f}x "
              f"{rss / 1e6:7.0f}  {verdict}")  # fmt: skip
    print(f"targets: >= {MIN_MBS:.0f} MB/s, <= {MAX_RATIO:.0f}x grep -c, peak RSS < {MAX_RSS / 1e6:.0f} MB")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
