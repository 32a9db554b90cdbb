"""``asewatch demo``: the incident, replayed on the simulated dataserver, caught by the agent.

It starts the agent first (so it sees the first boot), then the simulated dataserver and
its supervisor playing ``monitor/sim/incident.toml``: an application upgrade, the feature
flag ``brevutskrift_central_search`` switched on, ``max parallel degree`` 1 -> 4, five
crashes in ``p_brev_sok_central_utskrift``, the workaround (back to 1) and calm. At the
end it checks what the agent recorded against what the simulator did (its truth file)
and prints the crash groups, the stops and restarts, and the configuration changes.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from monitor.agent import Agent
from monitor.config import AgentConfig, Config, ErrorlogConfig, MetricsConfig, ProcessConfig, ServerConfig
from monitor.events import ConfigChanged, ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.redact import personal_numbers, sql_shape
from monitor.sim.control import SimServer
from monitor.store_types import CrashRow

SERVER = "CLINIC1"
SCENARIO_SECONDS = 86.0  # the incident's length (`python -m monitor.sim plan`)
DEADLINE_S = 150.0
PROCEDURE = "p_brev_sok_central_utskrift"


@dataclass
class Outcome:
    ok: bool
    reason: str


def missing_prerequisites() -> list[str]:
    """What the demo needs from this machine and does not find."""
    problems = []
    if not Path("/proc/self/cmdline").exists():
        problems.append("/proc is not mounted: the process watch reads it")
    if not hasattr(os, "pidfd_open"):
        problems.append("os.pidfd_open is missing (Linux 5.3+ and Python 3.9+): exits would only be polled")
    return problems


def run_demo(console: Console, state_dir: Path | None = None, keep_running: bool = False) -> int:
    """Play the incident; returns 0 when asewatch found what the simulator did, else 1."""
    problems = missing_prerequisites()
    if problems:
        for p in problems:
            console.print(f"[red]cannot run the demo:[/] {p}")
        return 1
    with tempfile.TemporaryDirectory(prefix="asewatch-demo-") as tmp:
        state = state_dir or Path(tmp) / "state"
        sim = SimServer(Path(tmp) / "sim", name=SERVER, scenario="incident", no_end=keep_running)
        config = Config(
            agent=AgentConfig(state_dir=state, log_level="WARNING"),
            server=(
                # The RUN file ties the server to this simulator's master device: another
                # dataserver named CLINIC1 on the host (a test, a second demo) is not ours.
                ServerConfig(
                    name=SERVER, errorlog=sim.errorlog, run_file=sim.run_file, dump_dirs=(sim.dump_dir,)
                ),
            ),
            process=ProcessConfig(poll_interval=0.25, sample_interval=1.0),
            errorlog=ErrorlogConfig(quiet_period=0.3, poll_interval=0.5),
            metrics=MetricsConfig(port=0),
        )
        # The simulator first: the agent then finds the running process and reads the
        # errorlog from its first line, so it misses nothing and has nothing to wait for.
        agent = Agent(config, state)
        try:
            sim.start()
            agent.start()
            console.print(
                f"Simulated dataserver {SERVER} (pid {sim.pid()}) is playing the incident; "
                f"asewatch serves {agent.metrics_url}"
            )
            _play(console, agent, sim, keep_running)
            _settle(agent)
            outcome = _report(console, agent, sim, state, keep_running or state_dir is not None)
            if keep_running:
                _wait_for_interrupt(console, agent)
        finally:
            sim.stop()
            agent.stop()
    if not outcome.ok:
        console.print(f"[red]demo did not run as designed:[/] {outcome.reason}")
        return 1
    console.print(f"[green]{outcome.reason}[/]")
    return 0


def _play(console: Console, agent: Agent, sim: SimServer, keep_running: bool) -> None:
    start = time.monotonic()
    seen = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("incident", total=SCENARIO_SECONDS)
        while time.monotonic() - start < DEADLINE_S:
            elapsed = time.monotonic() - start
            rows = agent.store.crashes(SERVER)
            if len(rows) != seen and not console.is_terminal:
                console.print(f"  t={elapsed:5.1f}s  crashes recorded: {len(rows)}")
            seen = len(rows)
            progress.update(
                task, completed=min(elapsed, SCENARIO_SECONDS), description=f"crashes recorded: {seen}"
            )
            if keep_running and elapsed >= SCENARIO_SECONDS:
                break
            if not keep_running and not sim.running():
                break
            time.sleep(0.5)


def _settle(agent: Agent, quiet: float = 2.0) -> None:
    """Let the agent commit the last facts (the final shutdown, the last exit)."""
    deadline = time.monotonic() + 10.0
    last = -1
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        with agent.store.reader() as r:
            n = r.last_seq()
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            return
        time.sleep(0.2)


def _report(console: Console, agent: Agent, sim: SimServer, state: Path, state_kept: bool) -> Outcome:
    rows = [r for r in agent.store.crashes(SERVER) if r.kind != "unclean" or r.state != "task"]
    truth_crashes = sim.truth("crash")
    console.print(_groups_table(rows))
    console.print(_timeline_table(agent))
    if state_kept:
        console.print(f"The store is kept in {state}: try `asewatch crashes --state-dir {state}`.")
    console.print(f"Metrics were served at {agent.metrics_url}")
    signatures = {r.signature for r in rows if r.kind == "signal"}
    procedures = {r.procedure for r in rows}
    if len(rows) != len(truth_crashes):
        return Outcome(
            False, f"the simulator crashed {len(truth_crashes)} times; asewatch recorded {len(rows)}"
        )
    if len(signatures) != 1 or procedures != {PROCEDURE}:
        return Outcome(False, f"expected one signature in {PROCEDURE}; got {signatures} in {procedures}")
    if not all(r.state == "crashed" and r.exit_pid for r in rows):
        return Outcome(False, "not every crash was joined with the exit of the dataserver process")
    return Outcome(True, f"asewatch caught all {len(rows)} crashes as one signature ({signatures.pop()}).")


def _groups_table(rows: list[CrashRow]) -> Table:
    t = Table(title="Crash groups")
    for col in (
        "signature",
        "count",
        "kind",
        "procedure",
        "SQL (literals removed)",
        "logins",
        "first",
        "last",
    ):
        t.add_column(col, overflow="fold")
    groups: dict[str, list[CrashRow]] = {}
    for r in rows:
        groups.setdefault(r.signature or r.kind or "-", []).append(r)
    for sig, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = rs[0]
        sql = personal_numbers(sql_shape(first.sql))[0] if first.sql else "-"
        times = sorted(r.time for r in rs if r.time)
        t.add_row(
            sig, str(len(rs)), f"{first.kind} {first.signal or ''}".strip(), first.procedure or "-", sql,
            ", ".join(f"{k} ({n})" for k, n in Counter(r.login or "-" for r in rs).most_common()),
            times[0].strftime("%H:%M:%S") if times else "-", times[-1].strftime("%H:%M:%S") if times else "-",
        )  # fmt: skip
    return t


def _timeline_table(agent: Agent) -> Table:
    """Stops, restarts and configuration changes, in order."""
    t = Table(title=f"Stops, restarts and configuration changes of {SERVER}")
    t.add_column("time")
    t.add_column("what")
    lines: list[tuple[float, str]] = []
    crash_exits = {r.exit_pid for r in agent.store.crashes(SERVER) if r.exit_pid}
    kinds = ("ProcessStarted", "ProcessExited", "ServerShutdown", "ServerBooted", "ConfigChanged")
    for se in agent.store.events(kinds=kinds, server=SERVER):
        e = se.event
        if isinstance(e, ProcessStarted) and e.engine in (None, 0):
            lines.append((e.create_time, f"dataserver started (pid {e.pid})"))
        elif isinstance(e, ProcessExited):
            why = "crashed" if e.pid in crash_exits else "stopped"
            lines.append((e.exit_time, f"dataserver pid {e.pid} exited: {why}"))
        elif isinstance(e, ServerShutdown) and e.kind != "unclean":
            by = f" by {e.by}" if e.by else ""
            lines.append((e.time.timestamp(), f"shutdown ({e.kind}){by}"))
        elif isinstance(e, ConfigChanged):
            lines.append((e.time.timestamp(), f"'{e.option}' changed by {e.by}: {e.old} -> {e.new}"))
        elif isinstance(e, ServerBooted) and e.version:
            lines.append((e.time.timestamp(), f"boot: {e.version.split('/')[1]}"))
    for at, what in sorted(lines):
        t.add_row(time.strftime("%H:%M:%S", time.localtime(at)), what)
    return t


def _wait_for_interrupt(console: Console, agent: Agent) -> None:
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    console.print(f"Everything keeps running (metrics at {agent.metrics_url}); Ctrl-C stops it.")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
