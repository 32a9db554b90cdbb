"""``asewatch demo``: the incident, replayed on the simulated dataserver, caught by the agent.

It starts the agent first (so it sees the first boot), then the simulated dataserver and
its supervisor playing ``monitor/sim/incident.toml``: an application upgrade, the feature
flag ``brevutskrift_central_search`` switched on, ``max parallel degree`` 1 -> 4, five
crashes in ``p_brev_sok_central_utskrift``, the workaround (back to 1) and calm. At the
end it checks what the agent recorded against what the simulator did (its truth file)
and prints the crash groups, the stops and restarts, and the configuration changes.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from monitor.agent import Agent
from monitor.config import AgentConfig, Config, ErrorlogConfig, MetricsConfig, ProcessConfig, ServerConfig
from monitor.config_changes import ChangesConfig
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.demo_report import SERVER, report
from monitor.sim.control import SimServer
from monitor.sim.options import DEFAULT_DUMP_SIZE

# The name of the variable that hands the simulator's login password to the agent.
PASSWORD_ENV = "ASEWATCH_DEMO_PASSWORD"  # noqa: S105 - a variable name, not a password
FLAGS_QUERY = "select name, value from imx..app_feature_flags"
SCENARIO_SECONDS = 86.0  # the incident's length (`python -m monitor.sim plan`)
DEADLINE_S = 150.0


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
        # dump_seconds: the server keeps answering while it writes its dump, as a parallel
        # query runs a while before it faults, so the flight recorder sees the crashing call.
        sim = SimServer(
            Path(tmp) / "sim",
            name=SERVER,
            scenario="incident",
            no_end=keep_running,
            tds_port=0,
            dump_seconds=2.0,
        )
        agent: Agent | None = None
        try:
            # The simulator first: the agent then finds the running process and reads the
            # errorlog from its first line, so it misses nothing and has nothing to wait for.
            log_file = _log_to_file(state)
            sim.start()
            os.environ[PASSWORD_ENV] = sim.tds_password
            inbox = state.parent / "vendor-inbox" if state_dir is None else state / "vendor-inbox"
            inbox.mkdir(parents=True, exist_ok=True, mode=0o700)  # a directory target must exist
            agent = Agent(demo_config(sim, state, inbox), state)
            agent.start()
            console.print(
                f"Simulated dataserver {SERVER} (pid {sim.pid()}, TDS on port {sim.tds_address()[1]}) "
                f"is playing the incident; asewatch serves {agent.metrics_url}"
            )
            _play(console, agent, sim, keep_running)
            _settle(agent)
            kept = keep_running or state_dir is not None
            _wait_for_packages(agent, len(sim.truth("crash")))
            outcome = report(
                console, agent, truth_crashes=sim.truth("crash"), state=state, state_kept=kept, inbox=inbox
            )
            if kept:
                console.print(f"The agent's log is {log_file}")
            if keep_running:
                _wait_for_interrupt(console, agent)
        finally:
            sim.stop()
            if agent is not None:
                agent.stop()
    if not outcome.ok:
        console.print(f"[red]demo did not run as designed:[/] {outcome.reason}")
        return 1
    console.print(f"[green]{outcome.reason}[/]")
    return 0


def _log_to_file(state: Path) -> Path:
    """The agent's log (warnings while the simulated server crashes, doctor findings) in a file."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state / "demo-agent.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def demo_config(sim: SimServer, state: Path, inbox: Path) -> Config:
    """The agent's config for the simulator: every collector on, short intervals, packages
    shipped to the directory ``inbox``."""
    host, port = sim.tds_address()
    database = DatabaseConfig(host=host, port=port, password_env=PASSWORD_ENV, query_timeout=3.0)
    return Config.model_validate(
        {
            "agent": AgentConfig(state_dir=state, log_level="WARNING"),
            # The RUN file ties the server to this simulator's master device: another
            # dataserver named CLINIC1 on the host (a test, a second demo) is not ours.
            "server": (
                ServerConfig(
                    name=SERVER, errorlog=sim.errorlog, run_file=sim.run_file, dump_dirs=(sim.dump_dir,),
                    database=database,
                ),
            ),
            "process": ProcessConfig(poll_interval=0.25, sample_interval=1.0),
            "errorlog": ErrorlogConfig(quiet_period=0.3, poll_interval=0.5),
            "metrics": MetricsConfig(port=0),
            "mda": MdaConfig(sample_interval=1.0, reconnect_initial=0.2, reconnect_backoff_max=2.0),
            # A complete shared-memory dump of the simulator has this size: a smaller one is truncated.
            "dumps": {"settle_seconds": 1.0, "expected_bytes": {SERVER: DEFAULT_DUMP_SIZE}},
            # The vendor's inbox stands in as a directory target: every package lands there.
            "ship": {"target": [{"name": "vendor-inbox", "kind": "directory", "path": str(inbox)}],
                     "scan_interval": 1.0, "retry_initial": 1.0, "retry_jitter": 0.5},
            "vendor": {
                "name": "SAP", "customer_number": "0001234567", "contract_id": "DEMO-SUPPORT-1",
                "contact_name": "DBA on call", "contact_email": "dba-jour@region.example",
            },
            "changes": ChangesConfig.model_validate(
                {
                    "settings": {"poll_interval": 2.0, "cfg_files": {SERVER: str(sim.cfg)}},
                    "procedures": {"databases": ["imx"], "poll_interval": 2.0},
                    "flags": [{"server": SERVER, "query": FLAGS_QUERY, "poll_interval": 1.0}],
                    "deployments_file": str(sim.layout.deploy_log),
                    "deployments_poll_interval": 1.0,
                }
            ),
        }
    )  # fmt: skip


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


def _wait_for_packages(agent: Agent, crashes: int, timeout: float = 45.0) -> None:
    """Each crash is packaged once its dump is finished, then shipped: wait for that (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with agent.store.reader() as r:
            shipped = r.query("SELECT COUNT(*) FROM ship_packages WHERE done_at IS NOT NULL")
        if shipped and int(shipped[0][0]) >= crashes:
            return
        time.sleep(0.5)


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
