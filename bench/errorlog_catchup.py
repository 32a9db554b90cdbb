"""The agent's first read of a large errorlog must not hold up a crash written now.

    .venv/bin/python bench/errorlog_catchup.py [--size-mib 1024] [--rounds 3]

An in-process :class:`~monitor.agent.Agent` (default timing, no dataserver running, the
errorlog named in the config, a fresh store) is started on an existing errorlog; right
after ``agent.start()`` a crash block (a real one from the corpus, new time, spid and
kpid) is appended with one write, followed by a routine line. Measured: from that write
to the moment the store has committed the ``CrashBlock`` (the store writer's after-commit
callback, as in bench/agent_detect.py), and from the start to the moment the whole
history is committed (the last historical crash block). The same round on a 1 MiB
errorlog, in the same run, is the baseline. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from errorlog_gen import builtin_block, corpus_blocks, prefix, render, write_log

from monitor.agent import Agent
from monitor.config import AgentConfig, Config, MetricsConfig, ServerConfig
from monitor.store import StoredEvent

WAIT = 120.0


class Commits:
    """Times (time.time()) at which CrashBlock events with given spids were committed."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: dict[str, float] = {}

    def saw(self, new: list[StoredEvent]) -> None:
        now = time.time()
        with self.cond:
            for se in new:
                if se.kind == "CrashBlock":
                    self.seen.setdefault(se.event.key, now)
            self.cond.notify_all()

    def wait_count(self, n: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.seen) >= n, timeout=WAIT):
                raise SystemExit(f"timed out: {len(self.seen)} of {n} crash blocks committed")


def one_round(tmp: Path, size: int, blocks: list, seed: int) -> tuple[float, float, float]:
    """(append -> live crash committed, start -> history committed, history MB) for one start."""
    log = tmp / f"CLINIC1-{seed}.log"
    history = write_log(log, size, blocks, sep="  ", registers=True, seed=seed) if size else 0
    if not size:
        log.write_text("")
    rng = random.Random(seed)
    t = datetime(2030, 1, 1, 8, 0, 0)
    live = render(blocks[0], t, rng, sep="  ", registers=True)
    live += prefix(t, 2, 0, 12, "server", "  ") + "Checkpoint of database 'tempdb' complete.\n"
    state = tmp / f"state-{seed}"
    config = Config(
        agent=AgentConfig(state_dir=state),
        server=(ServerConfig(name="CLINIC1", errorlog=log),),
        metrics=MetricsConfig(port=0),
    )
    commits = Commits()
    agent = Agent(config, state)
    writer = agent._writer  # private on purpose: observe the commit without editing monitor/
    inner = writer._on_committed

    def observed(new: list[StoredEvent]) -> None:
        commits.saw(new)
        if inner is not None:
            inner(new)

    writer._on_committed = observed
    started = time.time()
    agent.start()
    try:
        with log.open("ab", buffering=0) as f:
            appended = time.time()
            f.write(live.encode())
        commits.wait_count(1)
        first = min(commits.seen.values())
        commits.wait_count(history + 1)
        done = max(commits.seen.values())
    finally:
        agent.stop()
    # The first commit is the live crash (what is asserted here: it did not wait for history).
    return first - appended, done - started, log.stat().st_size / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the doctor warns of the missing dump folders
    blocks = corpus_blocks() or [builtin_block()]
    base, big, hist = [], [], []
    with tempfile.TemporaryDirectory(prefix="asewatch-catchup-") as d:
        tmp = Path(d)
        for r in range(opts.rounds):
            base.append(one_round(tmp, 0, blocks, 100 + r)[0])
            live, total, mb = one_round(tmp, opts.size_mib << 20, blocks, 200 + r)
            big.append(live)
            hist.append((total, mb))
            for p in tmp.glob("CLINIC1-*.log"):
                os.unlink(p)
    b50, l50 = statistics.median(base), statistics.median(big)
    print(f"crash appended at agent start -> CrashBlock committed ({opts.rounds} rounds each):")
    print(f"  on an empty errorlog (baseline): median {b50:.3f} s, max {max(base):.3f} s")
    print(f"  on a {opts.size_mib} MiB errorlog:        median {l50:.3f} s, max {max(big):.3f} s")
    print(f"  ratio: {l50 / b50:.2f}x")
    for total, mb in hist:
        print(f"  whole history ({mb:.0f} MB) committed {total:.1f} s after start ({mb / total:.0f} MB/s)")


if __name__ == "__main__":
    main()
