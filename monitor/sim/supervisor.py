"""The supervisor: runs the command in ``RUN_<NAME>`` and restarts it after a crash.

Its own OS process (``python -m monitor.sim.supervisor --workdir W --name N``), like a
RUN file plus an operator who restarts the server. Its start is the scenario's t0,
passed to every dataserver incarnation as ``--t0``. It restarts after an exit by a
signal or a non-zero code (after ``restart_delay``), and stops when the dataserver
exits 0 (a shutdown), on SIGTERM/SIGINT (then it SIGTERMs the dataserver, waits
bounded, SIGKILLs), or at the scenario's ``end_after`` (a polite shutdown). It is a
child subreaper, so engine processes orphaned by a crash are reaped here.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

from monitor.sim.layout import Layout, read_run_file
from monitor.sim.scenario import default_scenario, load_scenario
from monitor.sim.truth import TruthWriter

PR_SET_CHILD_SUBREAPER = 36
QUICK_FAILURE = 2.0  # seconds: an exit sooner than this after start counts as a boot failure
MAX_QUICK_FAILURES = 5


def _say(msg: str) -> None:
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor[{os.getpid()}]: {msg}", file=sys.stderr, flush=True
    )


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        _say("cannot become a child subreaper; orphaned engines go to init")


class Supervisor:
    """Runs and restarts one simulated server. :meth:`run` returns the exit code."""

    def __init__(
        self,
        layout: Layout,
        *,
        restart_delay: float,
        end_after: float | None,
        max_restarts: int,
        stop_timeout: float,
    ) -> None:
        self.layout = layout
        self.restart_delay = restart_delay
        self.end_after = end_after
        self.max_restarts = max_restarts
        self.stop_timeout = stop_timeout
        self.t0 = time.time()
        self.stopping = False
        self.truth = TruthWriter(layout.truth, source="supervisor", server=layout.name, t0=self.t0)

    def _on_term(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _ended(self) -> bool:
        return self.end_after is not None and time.time() - self.t0 >= self.end_after

    def run(self) -> int:
        """Supervise until shutdown, SIGTERM, scenario end or too many failed boots."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        _become_subreaper()
        self.truth.write(
            "supervisor_start",
            restart_delay=self.restart_delay,
            end_after=self.end_after,
            run_file=str(self.layout.run_file),
        )
        reason = self._supervise()
        self._reap_all(deadline=time.monotonic() + self.stop_timeout)
        self.truth.write("supervisor_stop", reason=reason)
        _say(f"stopped: {reason}")
        return 0 if reason != "boot failures" else 1

    def _supervise(self) -> str:
        restarts = quick = 0
        while True:
            if self.stopping:
                return "sigterm"
            if self._ended():
                return "scenario end"
            cmd = [*read_run_file(self.layout.run_file), "--t0", repr(self.t0)]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
            started = time.monotonic()
            _say(f"started dataserver pid {proc.pid}")
            why = self._wait(proc)
            rc = proc.returncode
            sig = -rc if rc < 0 else None
            self.truth.write("exit", dataserver_pid=proc.pid, returncode=rc, signal=sig, stopped_by=why)
            _say(f"dataserver pid {proc.pid} exited: " + (f"signal {sig}" if sig else f"code {rc}"))
            if why:
                return why
            if rc == 0:
                return "shutdown"
            quick = quick + 1 if time.monotonic() - started < QUICK_FAILURE else 0
            if quick >= MAX_QUICK_FAILURES:
                return "boot failures"
            restarts += 1
            if restarts > self.max_restarts:
                return "too many restarts"
            deadline = time.monotonic() + self.restart_delay
            while time.monotonic() < deadline and not self.stopping and not self._ended():
                time.sleep(0.05)
                self._reap_orphans(proc.pid)

    def _wait(self, proc: subprocess.Popen[bytes]) -> str | None:
        """Wait for the dataserver to exit; stop it politely on SIGTERM or at scenario end."""
        while proc.poll() is None:
            if self.stopping or self._ended():
                why = "sigterm" if self.stopping else "scenario end"
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    _say(f"dataserver pid {proc.pid} ignored SIGTERM for {self.stop_timeout:.0f} s: SIGKILL")
                    proc.kill()
                    proc.wait(timeout=self.stop_timeout)
                return why
            time.sleep(0.05)
            self._reap_orphans(proc.pid)
        return None

    def _reap_orphans(self, keep: int) -> None:
        """Collect exited engine processes that were re-parented to us."""
        for child in psutil.Process().children():
            if child.pid == keep:
                continue
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, os.WNOHANG)

    def _reap_all(self, deadline: float) -> None:
        """Wait (bounded) for every remaining child, SIGKILL those still there at the deadline."""
        while True:
            children = psutil.Process().children()
            if not children:
                return
            for child in children:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child.pid, os.WNOHANG)
            if time.monotonic() > deadline:
                for child in children:
                    try:
                        os.kill(child.pid, signal.SIGKILL)
                        os.waitpid(child.pid, 0)
                    except (ProcessLookupError, ChildProcessError):
                        pass
                return
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """``python -m monitor.sim.supervisor``: supervise ``<workdir>/RUN_<NAME>``."""
    p = argparse.ArgumentParser(prog="python -m monitor.sim.supervisor", allow_abbrev=False)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--scenario", type=Path, help="read restart_delay and end_after from this scenario")
    p.add_argument("--restart-delay", type=float, help="seconds between a crash and the restart")
    p.add_argument("--end-after", type=float, help="polite shutdown after this many seconds")
    p.add_argument("--no-end", action="store_true", help="ignore the scenario's end_after")
    p.add_argument("--max-restarts", type=int, default=100)
    p.add_argument("--stop-timeout", type=float, default=5.0, help="seconds to wait after SIGTERM")
    ns = p.parse_args(argv)
    scenario = load_scenario(ns.scenario) if ns.scenario else default_scenario()
    end_after = ns.end_after if ns.end_after is not None else scenario.end_after
    sup = Supervisor(
        Layout(ns.workdir.resolve(), ns.name),
        restart_delay=ns.restart_delay if ns.restart_delay is not None else scenario.restart_delay,
        end_after=None if ns.no_end else end_after,
        max_restarts=ns.max_restarts,
        stop_timeout=ns.stop_timeout,
    )
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
