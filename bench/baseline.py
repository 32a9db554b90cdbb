"""Baselines shared by the benchmarks (imported by the scripts beside it)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

WAIT = 5.0


def bare_pidfd_kill(argv: Sequence[str], clock: Callable[[], float] = time.time) -> float:
    """Start ``argv``, wait on its pidfd with a bare ``select.poll`` in a thread, SIGKILL it:
    seconds from just before the kill to the poll returning."""
    p = subprocess.Popen(list(argv))
    try:
        time.sleep(0.3)  # started, as the watched process is by the time it is killed
        fd = os.pidfd_open(p.pid)
        fired: list[float] = []

        def waiter() -> None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(WAIT * 1000)
            fired.append(clock())

        t = threading.Thread(target=waiter, name="bench-bare-pidfd")
        t.start()
        time.sleep(0.01)  # the waiter is blocked in poll
        t0 = clock()
        os.kill(p.pid, signal.SIGKILL)
        t.join(timeout=WAIT)
        os.close(fd)
        if not fired:
            raise SystemExit(f"bare pidfd wait did not return within {WAIT} s")
        return fired[0] - t0
    finally:
        p.kill()
        p.wait(timeout=5)
