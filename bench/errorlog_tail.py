"""Latency from appending a whole crash block to the CrashBlock record reaching emit.

An ErrorlogFollower with its defaults (quiet period 0.5 s, watchdog on, poll 1 s) follows
a file; N crash blocks (the real SIGSEGV block from the corpus, each with its own time,
spid and kpid) are appended with one os.write each and nothing after them -- the worst
case: the parser holds a finished block until the next line or the quiet period, in case a
FATAL UNHANDLED EXCEPTION chain follows. Baseline, in the same run on the same appends: a
bare FileTailer (watchdog on, poll 1 s) on its own thread, timed when the block's last byte
comes out of read() after wait(). Prints p50 / p95 / max of both against the 1 s target.

Usage: .venv/bin/python bench/errorlog_tail.py [N]   (N >= 30, default 40)
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from collectors.errorlog import ErrorlogParser
from collectors.errorlog.follow import ErrorlogFollower
from monitor.events import CrashBlock, Event
from monitor.tail import Chunk, FileTailer

CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus/errorlogs/dbxtune_sigsegv_query_text_2018.log"
TARGET_S = 1.0
_PREFIX = "00:0004:00000:00308:2018/05/04 19:37:01.48"


def crash_block(template: str, when: datetime, spid: int, kpid: int) -> bytes:
    stamp = f"{when:%Y/%m/%d %H:%M:%S}.{when.microsecond // 10000:02d}"
    text = template.replace(_PREFIX, f"00:0004:00000:{spid:05d}:{stamp}")
    return text.replace("spid 308, kpid 732758348", f"spid {spid}, kpid {kpid}").encode()


def run(n: int, template: str) -> tuple[list[float], list[float]]:
    """(follower latencies, tailer latencies) in seconds for n appended crash blocks."""
    rng = random.Random(1)
    arrived: dict[str, float] = {}  # record key -> monotonic time it reached emit
    seen: list[float] = []  # monotonic time the tailer had read past ends[i]
    ends: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def emit(events: Sequence[Event], positions: Mapping[str, str]) -> None:
        now = time.monotonic()
        with lock:
            arrived.update((e.key, now) for e in events if isinstance(e, CrashBlock))

    def tail(log: Path) -> None:
        total = 0
        with FileTailer(log) as tailer:
            while not stop.is_set():
                tailer.wait(1.0)
                total += sum(len(i.data) for i in tailer.read() if isinstance(i, Chunk))
                now = time.monotonic()
                with lock:
                    while len(seen) < len(ends) and total >= ends[len(seen)]:
                        seen.append(now)

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "BENCH.log"
        log.write_bytes(b"00:0002:00000:00042:2026/03/02 08:00:00.00 server  bench start\n")
        follower = ErrorlogFollower("BENCH", lambda: log, None)
        threads = [
            threading.Thread(target=follower.run, args=(emit, stop), name="bench-follower"),
            threading.Thread(target=tail, args=(log,), name="bench-tailer"),
        ]
        for t in threads:
            t.start()
        time.sleep(1.5)  # both have read the first line and are waiting
        keys, written = [], []
        when, size = datetime(2026, 3, 2, 8, 0, 1), log.stat().st_size
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(n):
                when += timedelta(seconds=rng.uniform(1, 30))
                data = crash_block(template, when.replace(microsecond=0), 100 + i, 900000 + i)
                parser = ErrorlogParser()
                [key] = [r.key for r in parser.feed(data) + parser.close() if isinstance(r, CrashBlock)]
                size += len(data)
                with lock:
                    ends.append(size)
                keys.append(key)
                written.append(time.monotonic())
                os.write(fd, data)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    with lock:
                        if key in arrived and len(seen) > i:
                            break
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.1, 0.5))  # crashes do not come in phase with anything
        finally:
            os.close(fd)
            stop.set()
            for t in threads:
                t.join(timeout=10)
    follow = [arrived[k] - w for k, w in zip(keys, written, strict=True) if k in arrived]
    tailer = [s - w for s, w in zip(seen, written, strict=False)]
    return follow, tailer


def describe(name: str, lat: list[float], n: int) -> float:
    ms = sorted(x * 1000 for x in lat)
    p50, p95 = statistics.median(ms), ms[int(0.95 * (len(ms) - 1))]
    print(f"{name:<44} n={len(ms)}/{n}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms")
    return p50


def main() -> None:
    n = max(30, int(sys.argv[1]) if len(sys.argv) > 1 else 40)
    if not CORPUS.is_file():
        sys.exit(f"the corpus crash block is not at {CORPUS}")
    follow, tailer = run(n, CORPUS.read_text())
    fp50 = describe("follower: append -> CrashBlock in emit", follow, n)
    tp50 = describe("baseline: append -> bytes out of FileTailer", tailer, n)
    worst = max(follow) if follow else float("inf")
    verdict = "meets" if len(follow) == n and worst <= TARGET_S else "MISSES"
    print(f"target {TARGET_S:.1f} s for every crash block: {verdict} it (max {worst * 1000:.1f} ms)")
    print(f"p50 ratio follower / tailer baseline: {fp50 / tp50:.1f}")


if __name__ == "__main__":
    main()
