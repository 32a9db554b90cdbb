"""What the agent costs beside a busy dataserver: CPU (% of one core) and peak RSS.

    .venv/bin/python bench/agent_cost.py [--window 60] [--warmup 10] [--rate R] [--scrape-interval 15]

A supervised :class:`~monitor.sim.control.SimServer` runs its steady workload (no
scenario; ``--rate`` statements per second, default the simulator's own) and
``asewatch agent -c <generated config>`` runs as a subprocess beside it, with the
default timing and ``/metrics`` on a free port, scraped every ``--scrape-interval``
seconds as Prometheus would (0: never). After the agent reports ``ase_up 1`` and a
warm-up, the window starts; over it the bench reads (psutil) the agent's CPU seconds,
user + system of all its threads, and samples its RSS every 0.5 s; the peak is the
larger of the samples and the kernel's high-water mark (``VmHWM``, since the agent
started). Baselines from the same run: the simulator's own CPU over the window
(supervisor + dataserver) and the RSS of an idle ``python -c 'import time;
time.sleep(…)'`` of the same interpreter. Targets: CPU <= 2 % of one core, RSS <= 100 MB.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from monitor.sim.control import SimServer
from monitor.sim.scenario import default_scenario

START_WAIT = 30.0  # seconds for the agent to report the server up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, state_dir: Path, errorlog: Path, port: int) -> None:
    path.write_text(
        f'[agent]\nstate_dir = "{state_dir}"\n\n'
        f'[[server]]\nname = "BENCH"\nerrorlog = "{errorlog}"\n\n'
        f"[metrics]\nport = {port}\n"
    )


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5.0) as r:
        return str(r.read().decode())


def wait_up(url: str, agent: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited ({agent.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if 'ase_up{server="BENCH"} 1.0' in scrape(url):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the agent did not report ase_up 1 within {START_WAIT} s:\n{log.read_text()[-2000:]}")


def cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (every thread of each)."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def hwm_bytes(pid: int) -> int:
    """The kernel's peak resident set size of ``pid`` (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def stop_pid(p: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--window", type=float, default=60.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after the agent reports ase_up 1")
    ap.add_argument("--rate", type=float, default=None, help="sim statements/s (default: the sim's)")
    ap.add_argument("--scrape-interval", type=float, default=15.0, help="seconds between /metrics GETs")
    opts = ap.parse_args()
    asewatch = Path(sys.executable).parent / "asewatch"

    with tempfile.TemporaryDirectory(prefix="asewatch-bench-") as tmp_s:
        tmp = Path(tmp_s)
        sim = SimServer(tmp / "sim", name="BENCH", scenario=None, rate=opts.rate, no_end=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        cfg = tmp / "asewatch.toml"
        write_config(cfg, tmp / "state", sim.errorlog, port)
        agent_log = tmp / "agent.log"
        agent: subprocess.Popen[bytes] | None = None
        idle: subprocess.Popen[bytes] | None = None
        sim.start()
        try:
            with agent_log.open("wb") as out:
                agent = subprocess.Popen(
                    [str(asewatch), "agent", "-c", str(cfg)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
                )
            wait_up(url, agent, agent_log)
            time.sleep(opts.warmup)
            idle = subprocess.Popen(
                [sys.executable, "-c", f"import time; time.sleep({opts.window + 10:.0f})"]
            )
            ap_ = psutil.Process(agent.pid)
            sim_procs = [psutil.Process(p) for p in (sim.supervisor_pid(), sim.pid()) if p is not None]
            sim_pid = sim.pid()
            rss_max = 0
            scrapes = 0
            a0, s0, w0 = cpu_s([ap_]), cpu_s(sim_procs), time.monotonic()
            next_scrape = w0 if opts.scrape_interval > 0 else float("inf")
            end = w0 + opts.window
            while (now := time.monotonic()) < end:
                if agent.poll() is not None:
                    raise SystemExit(
                        f"the agent exited ({agent.returncode}):\n{agent_log.read_text()[-2000:]}"
                    )
                rss_max = max(rss_max, ap_.memory_info().rss)
                if now >= next_scrape:
                    scrape(url)
                    scrapes += 1
                    next_scrape += opts.scrape_interval
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            a1, s1, w1 = cpu_s([ap_]), cpu_s(sim_procs), time.monotonic()
            rss_max = max(rss_max, ap_.memory_info().rss)
            hwm = hwm_bytes(agent.pid)
            threads = ap_.num_threads()
            idle_rss = max(psutil.Process(idle.pid).memory_info().rss, hwm_bytes(idle.pid))
            restarted = sim.pid() != sim_pid
        finally:
            if idle is not None:
                stop_pid(idle, signal.SIGKILL)
            if agent is not None:
                stop_pid(agent)
            sim.stop()

    span = w1 - w0
    agent_cpu = (a1 - a0) / span
    sim_cpu = (s1 - s0) / span
    peak = max(rss_max, hwm)
    mb = 1024 * 1024
    steady = default_scenario()
    rate = opts.rate if opts.rate is not None else steady.rate
    print(
        f"agent beside the simulator at steady load ({rate:g} statements/s, a client error every "
        f"~{steady.error_every:g} s in the errorlog), "
        f"{span:.1f} s window after {opts.warmup:g} s warm-up, {scrapes} /metrics scrapes "
        f"(Linux {os.uname().release}, {os.cpu_count()} CPUs)"
    )
    print(f"{'agent CPU (user+system)':<34} {agent_cpu * 100:7.3f} % of one core  ({a1 - a0:.2f} s)")
    print(f"{'simulator CPU (baseline)':<34} {sim_cpu * 100:7.3f} % of one core  ({s1 - s0:.2f} s)")
    print(f"{'ratio agent / simulator':<34} {agent_cpu / sim_cpu if sim_cpu else float('nan'):7.3f} x")
    print(
        f"{'agent peak RSS':<34} {peak / mb:7.1f} MB  (samples max {rss_max / mb:.1f}, VmHWM {hwm / mb:.1f}; "
        f"{threads} threads)"
    )
    print(f"{'idle python RSS (baseline)':<34} {idle_rss / mb:7.1f} MB")
    print(f"{'ratio agent / idle python':<34} {peak / idle_rss:7.2f} x")
    if restarted:
        print("note: the simulated dataserver restarted during the window")
    verdict = "met" if agent_cpu <= 0.02 and peak <= 100 * mb else "MISSED"
    print(f"targets (CPU <= 2 % of one core, RSS <= 100 MB): {verdict}")


if __name__ == "__main__":
    main()
