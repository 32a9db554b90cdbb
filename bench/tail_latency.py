"""Latency from an append to the bytes coming out of FileTailer.read() after wait().

A writer thread appends 200 numbered lines at random 10-50 ms intervals and notes the
monotonic time of each write; the reader loops wait(1.0) -> read() and notes when each
line arrives. Run twice in the same process: watchdog on (poll 1 s, so only the inotify
notification can make it fast) and the polling baseline (watchdog off, poll 0.1 s).
Prints p50 / p95 / max per run and the ratio of the p50s.

Usage: .venv/bin/python bench/tail_latency.py [N]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from monitor.tail import Chunk, FileTailer


def run(n: int, *, use_watchdog: bool, poll: float) -> list[float]:
    """Latencies in seconds for n appended lines."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "errorlog"
        log.touch()
        written: dict[int, float] = {}
        arrived: dict[int, float] = {}
        rng = random.Random(1)

        def writer() -> None:
            with log.open("ab", buffering=0) as w:
                for i in range(n):
                    time.sleep(rng.uniform(0.01, 0.05))
                    written[i] = time.monotonic()
                    w.write(b"%06d 00:0002:00000:00042:2026/11/26 10:00:00.00 server  bench line\n" % i)

        with FileTailer(log, use_watchdog=use_watchdog, poll_interval=poll) as tailer:
            thread = threading.Thread(target=writer, name="bench-writer")
            thread.start()
            buf = b""
            deadline = time.monotonic() + n * 0.05 + 30
            while len(arrived) < n and time.monotonic() < deadline:
                tailer.wait(1.0)
                for item in tailer.read():
                    if isinstance(item, Chunk):
                        now = time.monotonic()
                        buf += item.data
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            arrived[int(line[:6])] = now
            thread.join()
        return [arrived[i] - written[i] for i in range(n) if i in arrived]


def describe(name: str, lat: list[float], n: int) -> float:
    ms = sorted(x * 1000 for x in lat)
    p50 = statistics.median(ms)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print(f"{name:<28} n={len(ms)}/{n}  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  max {ms[-1]:7.2f} ms")
    return p50


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    fast = describe("watchdog (poll 1 s)", run(n, use_watchdog=True, poll=1.0), n)
    base = describe("baseline: polling 0.1 s", run(n, use_watchdog=False, poll=0.1), n)
    print(f"p50 ratio watchdog / polling-0.1s baseline: {fast / base:.3f}")


if __name__ == "__main__":
    main()
