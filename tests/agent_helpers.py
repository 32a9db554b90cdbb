"""Shared helpers for the agent's end-to-end tests: configs, a subprocess agent, scraping, the CLI.

Everything here starts real things (the ``asewatch`` console script, HTTP scrapes of the
agent's ``/metrics``) with bounded waits, and stops what it started by PID. Server names
are unique per test process (``server_name``) so that a simulated dataserver started by
another test run on the same host is never matched by this run's agent (the process
watch matches ``-sNAME``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from monitor.agent import Agent
from monitor.config import AgentConfig, Config, ErrorlogConfig, MetricsConfig, ProcessConfig, ServerConfig
from monitor.redact import personal_numbers
from monitor.store import Store
from monitor.store_types import CrashRow, StoredEvent

T = TypeVar("T")

# The sim's patients (monitor/sim/workload.py): 19121212-NNNC and its 10-digit form 121212-NNNC;
# and any 10/12-digit number written with a - or + before its last four digits.
PNR_SHAPE = re.compile(r"(?<!\d)(?:\d{2})?\d{6}[-+]\d{4}(?!\d)|19121212-?1212|(?<!\d)121212\d{4}(?!\d)")

ASEWATCH = str(Path(sys.executable).with_name("asewatch"))
GRACE_S = 5.0  # CrashAssembler's default: an exit with no block becomes `unclean` after this

# A steady workload: no timeline, no trigger, so the only crashes are the ones a test causes.
STEADY_SCENARIO = """\
[scenario]
name = "steady-e2e"
seed = 11
restart_delay = 0.5

[workload]
rate = 20.0
sessions = 10
error_every = 3.0
"""


def server_name(tag: str) -> str:
    """A server name no other test process on this host uses: ``AW<pid>_<tag>``."""
    return f"AW{os.getpid()}_{tag}"


def write_scenario(directory: Path, text: str = STEADY_SCENARIO, name: str = "scenario.toml") -> Path:
    """Write a scenario TOML into ``directory`` (created) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def agent_config(
    state: Path,
    server: str,
    *,
    errorlog: Path | None = None,
    run_file: Path | None = None,
    quiet_period: float = 0.3,
) -> Config:
    """An in-process agent config with fast timings and a free metrics port."""
    return Config(
        agent=AgentConfig(state_dir=state),
        server=(ServerConfig(name=server, errorlog=errorlog, run_file=run_file),),
        process=ProcessConfig(poll_interval=0.2, sample_interval=1.0),
        errorlog=ErrorlogConfig(quiet_period=quiet_period, poll_interval=0.3),
        metrics=MetricsConfig(port=0),
    )


def write_agent_toml(
    path: Path,
    state: Path,
    server: str,
    *,
    errorlog: Path | None = None,
    run_file: Path | None = None,
    quiet_period: float = 0.3,
) -> Path:
    """The same config as :func:`agent_config`, as the TOML file ``asewatch agent -c`` reads."""
    lines = [
        "[agent]",
        f"state_dir = {json.dumps(str(state))}",
        'log_level = "INFO"',
        "",
        "[[server]]",
        f"name = {json.dumps(server)}",
    ]
    if errorlog is not None:
        lines.append(f"errorlog = {json.dumps(str(errorlog))}")
    if run_file is not None:
        lines.append(f"run_file = {json.dumps(str(run_file))}")
    lines += [
        "",
        "[process]",
        "poll_interval = 0.2",
        "sample_interval = 1.0",
        "",
        "[errorlog]",
        f"quiet_period = {quiet_period}",
        "poll_interval = 0.3",
        "",
        "[metrics]",
        "port = 0",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return it; AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


@contextmanager
def running_agent(config: Config, state: Path) -> Iterator[Agent]:
    """An in-process agent, started; stopped (every thread joined) on exit, also on failure."""
    agent = Agent(config, state)
    try:
        agent.start()
        yield agent
    finally:
        agent.stop()


# --------------------------------------------------------------------------- the store


def crash_rows(state: Path) -> list[CrashRow]:
    """The crash records in ``state``'s store (a reader beside a running agent is fine: WAL)."""
    with Store.open(state) as store:
        return store.crashes()


def count_events(state: Path, kind: str) -> int:
    """How many events of ``kind`` the store in ``state`` holds."""
    with Store.open(state) as store:
        return store.count_events(kind)


def stored_events(state: Path, kind: str) -> list[StoredEvent]:
    """Every stored event of ``kind`` in ``state``'s store, in log order."""
    with Store.open(state) as store:
        return list(store.events(kinds=(kind,)))


def pids_of(state: Path, kind: str) -> set[int]:
    """The pids of the stored ``ProcessStarted`` or ``ProcessExited`` events."""
    return {int(getattr(se.event, "pid", 0)) for se in stored_events(state, kind)}


def errorlog_offset(state: Path, server: str) -> int | None:
    """The committed errorlog resume offset (bytes) of ``server``, or None."""
    with Store.open(state) as store:
        raw = store.position(f"errorlog:{server}")
    return None if raw is None else int(json.loads(raw)["tail"]["offset"])


def metric_labels(text: str) -> str:
    """An exposition with the sample values cut off: names, labels and HELP text only. Values are
    byte counts and timestamps, and now and then one of them passes the date and Luhn checks by
    chance; personal data could only reach a scrape through a label or a HELP text."""
    return "\n".join(ln.rsplit(" ", 1)[0] if not ln.startswith("#") else ln for ln in text.splitlines())


def no_personal_numbers(text: str, where: str) -> None:
    """Assert ``text`` holds no personal identity number: none of the sim's shape, and none that
    :func:`monitor.redact.personal_numbers` accepts (date and Luhn checked, any digit form)."""
    shaped = PNR_SHAPE.findall(text)
    assert not shaped, f"personal identity numbers in {where}: {shaped[:5]}"
    assert personal_numbers(text)[1] == 0, f"a valid personal identity number in {where}"


# --------------------------------------------------------------------------- metrics over HTTP


def scrape(url: str) -> str:
    """GET the agent's /metrics (loopback, 5 s timeout)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode("utf-8"))


def scrape_until(url: str, name: str, want: float, timeout: float = 10.0, **labels: str) -> str:
    """Scrape until sample ``name{labels}`` is at least ``want`` (a gauge: equals it); return that scrape."""

    def ok() -> str | None:
        text = scrape(url)
        value = sample(text, name, **labels)
        if value is None:
            return None
        return text if (value >= want if name.endswith("_total") else value == want) else None

    return wait_until(ok, timeout, f"{name}{labels} reaches {want:g} at {url}")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample ``name`` whose labels include ``labels``, or None."""
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


# --------------------------------------------------------------------------- the command line


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``asewatch ARGS`` to completion (bounded); never raises on a non-zero exit."""
    return subprocess.run(
        [ASEWATCH, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def cli_json(*args: str) -> Any:
    """``asewatch ARGS`` that must exit 0 and print JSON; returns the parsed document."""
    r = run_cli(*args)
    assert r.returncode == 0, f"asewatch {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return json.loads(r.stdout)


_URL = re.compile(r"agent started: .* metrics (https?://\S+/metrics)")


@dataclass
class Stopped:
    """How a SIGTERM'd agent ended: exit code and seconds from the signal to the exit."""

    returncode: int | None
    seconds: float


class AgentProcess:
    """``asewatch agent -c CONFIG`` as a real subprocess; its log (stdout+stderr) goes to ``log``.

    ``start()`` may be called again after ``kill9()``/``terminate()``: a restart with the
    same config and store. ``stop()`` (teardown) ends it by PID whatever state it is in.
    """

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the agent (it must not be running)."""
        assert self.proc is None or self.proc.poll() is not None, "the agent is still running"
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [ASEWATCH, "agent", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.starts += 1

    def log_text(self, *, current_only: bool = False) -> str:
        """The agent's log so far (only since the latest start with ``current_only``)."""
        try:
            data = self.log.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_offset if current_only else 0 :].decode("utf-8", "replace")

    def metrics_url(self, timeout: float = 20.0) -> str:
        """The /metrics URL the running agent logged at start (waits for the line)."""

        def logged() -> str | None:
            assert self.proc is not None and self.proc.poll() is None, (
                f"the agent exited with {self.proc.returncode if self.proc else None}:\n{self.log_text()}"
            )
            m = _URL.search(self.log_text(current_only=True))
            return m.group(1) if m else None

        return wait_until(logged, timeout, f"the agent logs its start in {self.log}")

    def kill9(self) -> None:
        """SIGKILL the agent and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 10.0) -> Stopped:
        """SIGTERM the agent and wait for it (bounded); SIGKILL it if it does not exit in time."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return Stopped(None, time.monotonic() - t0)
        return Stopped(self.proc.returncode, time.monotonic() - t0)

    def stop(self) -> None:
        """Teardown: end the process by its PID (SIGTERM, then SIGKILL), bounded."""
        if self.proc is not None and self.proc.poll() is None:
            self.terminate(timeout=10.0)
