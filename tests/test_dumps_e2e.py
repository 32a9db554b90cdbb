"""Dumps end to end: the simulated dataserver crashes and writes its dump; the agent finds it,
judges it and attaches it to that crash. And a watcher killed with SIGKILL while hashing a
dump resumes it at its next start.

``DumpAgent`` is the agent with the dumps wiring proposed for monitor/agent.py (the same
lines, as a subclass, until the lead applies them there). Real processes, real signals;
every wait is bounded and every process is stopped by PID in a ``finally``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from collectors.dumps import DumpWatch, WatchedFolder
from monitor.agent import Agent
from monitor.config import AgentConfig, Config, ErrorlogConfig, MetricsConfig, ProcessConfig, ServerConfig
from monitor.config_dumps import DumpsConfig
from monitor.dumps import DumpKeeper, DumpRow, list_dumps
from monitor.dumps_agent import start_dumps
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_dumps import DumpSeen
from monitor.sim.control import SimServer
from monitor.sim.truth import TruthRecord
from monitor.store import Batch, Store, StoredEvent
from tests.agent_helpers import crash_rows, pids_of, server_name, stored_events, wait_until, write_scenario

pytestmark = pytest.mark.e2e

KiB = 1024
DUMP_SIZE = 256 * KiB


class DumpAgent(Agent):
    """The agent plus the dumps wiring proposed for monitor/agent.py (the same calls)."""

    def __init__(self, config: Config, state_dir: Path, dumps: DumpsConfig) -> None:
        super().__init__(config, state_dir)
        self.dumps_config = dumps
        self.dumps = DumpKeeper(self.store, dumps)

    def start(self) -> None:
        self.dumps.catch_up()  # before the writer starts: events committed before a kill -9
        super().start()
        start_dumps(self, self.dumps, self.dumps_config)

    def _committed(self, new: list[StoredEvent]) -> None:
        super()._committed(new)
        self.dumps.on_committed(new)


def dumps_in(state: Path) -> list[DumpRow]:
    with Store.open(state) as store, store.reader() as r:
        return list_dumps(r)


def run_crash(tmp_path: Path, tag: str, **sim_kw: object) -> tuple[Path, TruthRecord, DumpRow, int]:
    """Start a sim and the agent, crash the sim once; return the state dir, the dump truth line,
    the dump's row once finished, and the crash record's id."""
    server = server_name(tag)
    dump_dir = tmp_path / "dumps"
    sim = SimServer(
        tmp_path / "sim", name=server, scenario=write_scenario(tmp_path), dump_size=DUMP_SIZE,
        dump_seconds=0.3, dump_dir=dump_dir, **sim_kw,  # type: ignore[arg-type]
    )  # fmt: skip
    state = tmp_path / "state"
    config = Config(
        agent=AgentConfig(state_dir=state),
        server=(ServerConfig(name=server, errorlog=sim.errorlog, dump_dirs=(dump_dir,)),),
        process=ProcessConfig(poll_interval=0.2, sample_interval=1.0),
        errorlog=ErrorlogConfig(quiet_period=0.3, poll_interval=0.3),
        metrics=MetricsConfig(port=0),
    )
    dumps = DumpsConfig(settle_seconds=0.5, poll_interval=0.2, expected_bytes={server: DUMP_SIZE})
    agent = DumpAgent(config, state, dumps)
    try:
        agent.start()
        pid = sim.start()
        wait_until(lambda: pid in pids_of(state, "ProcessStarted"), 10, f"the agent sees pid {pid}")
        crashed = sim.crash_now()
        truth = wait_until(
            lambda: next((r for r in sim.truth("dump") if r.pid == crashed), None), 15, "the dump truth line"
        )
        crash = wait_until(
            lambda: next((r for r in crash_rows(state) if r.exit_pid == crashed), None),
            20,
            "the crash record",
        )
        row = wait_until(
            lambda: next((d for d in dumps_in(state) if d.state != "writing" and d.crash_id), None),
            20,
            "the dump finished and attached",
        )
        writing = [se.event for se in stored_events(state, "DumpSeen") if se.event.state == "writing"]
    finally:
        sim.stop()
        agent.stop()
    assert crash.id is not None
    assert writing, "the dump was seen while the dataserver wrote it"
    return state, truth, row, crash.id


def test_a_crash_dump_is_found_complete_and_attached_to_its_crash(tmp_path: Path) -> None:
    _state, truth, row, crash_id = run_crash(tmp_path, "dmpok")
    path = Path(str(truth["path"]))
    assert truth["complete"] is True
    assert row.path == str(path) and row.state == "complete" and row.crash_id == crash_id
    assert row.size == DUMP_SIZE == path.stat().st_size
    assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert row.retention == "kept" and not row.suppressed


def test_a_dump_cut_short_by_the_dying_server_is_truncated_and_still_attached(tmp_path: Path) -> None:
    _state, truth, row, crash_id = run_crash(tmp_path, "dmpcut", dump_truncate=0.5)
    assert truth["complete"] is False
    assert row.state == "truncated" and row.crash_id == crash_id
    assert row.reason == f"{DUMP_SIZE // 2} bytes of the {DUMP_SIZE} expected"


# --------------------------------------------------------------------------- SIGKILL while hashing

BIG = 4 << 30  # a sparse file: hashing it takes seconds, storing it takes nothing


def _worker(state: Path, folder: Path) -> None:
    """The watcher + keeper committing to a real store, as the agent does (run in a child)."""
    store = Store.open(state)
    keeper = DumpKeeper(store, DumpsConfig(settle_seconds=0.2))
    keeper.catch_up()
    resume = keeper.resume()
    watch = DumpWatch(
        [WatchedFolder(folder, "SRV", ("*",))], settle_seconds=0.2, poll_interval=0.1,
        known=resume.known, resume=resume.writing, hashing=resume.hashing,
    )  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())

    def emit(events: Sequence[Event], positions: Mapping[str, str]) -> None:
        facts = [
            (str(getattr(e, "server", "")), e)
            for e in events
            if not isinstance(e, CollectorFailed | CollectorSucceeded)
        ]
        keeper.on_committed(store.append(Batch(events=facts, positions=positions)))

    watch.run(emit, stop)
    store.close()


def _start_worker(state: Path, folder: Path) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-m", "tests.test_dumps_e2e", str(state), str(folder)], env=env)


@pytest.mark.slow
def test_a_watcher_killed_while_hashing_resumes_that_dump_and_reports_it_once(tmp_path: Path) -> None:
    folder, state = tmp_path / "dumps", tmp_path / "state"
    folder.mkdir()
    big = folder / "SRV_big.dmp"
    with big.open("wb") as f:
        f.truncate(BIG)
        f.seek(BIG - 5)
        f.write(b"tail!")
    Store.open(state).close()

    def hashing() -> str | None:
        with Store.open(state) as s:
            return s.position("dumps:hashing") or None

    first = _start_worker(state, folder)
    try:
        wait_until(hashing, 30, "the worker starts hashing the big dump")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
    if any(se.event.state == "complete" for se in stored_events(state, "DumpSeen")):
        pytest.skip("the hash finished before the kill landed (a very fast machine)")
    assert "SRV_big.dmp" in (hashing() or "")
    second = _start_worker(state, folder)
    try:
        done = wait_until(
            lambda: [se.event for se in stored_events(state, "DumpSeen") if se.event.state == "complete"],
            120,
            "the resumed hash completes",
        )
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(timeout=10)
    h = hashlib.sha256()
    zeros = bytes(1 << 20)
    for _ in range(BIG // len(zeros) - 1):
        h.update(zeros)
    h.update(zeros[: len(zeros) - 5] + b"tail!")
    assert len(done) == 1 and isinstance(done[0], DumpSeen)
    assert done[0].sha256 == h.hexdigest() and done[0].size == BIG
    assert hashing() is None
    assert [d.state for d in dumps_in(state)] == ["complete"]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
