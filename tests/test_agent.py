"""The agent end to end, on the simulated dataserver: what a DBA relies on when ASE falls over.

Real processes, real signals: the simulated dataserver (its supervisor restarts it like
a RUN file), killed with SIGKILL, crashed with a real crash block + SIGSEGV, or shut down
politely; the agent in-process (``Agent.start()/stop()``) or as ``asewatch agent -c``;
its metrics scraped over HTTP; the CLI run as a subprocess on the store it wrote.

Every wait is bounded; every process is stopped by PID in a ``finally``. Server names are
unique per test process (see ``agent_helpers.server_name``).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from monitor.agent import Agent
from monitor.sim.control import SimServer
from monitor.sim.truth import TruthRecord
from monitor.store_types import CrashRow
from tests.agent_helpers import (
    GRACE_S,
    PNR_SHAPE,
    AgentProcess,
    Stopped,
    agent_config,
    cli_json,
    crash_rows,
    metric_labels,
    no_personal_numbers,
    pids_of,
    run_cli,
    sample,
    scrape,
    scrape_until,
    server_name,
    stored_events,
    wait_until,
    write_agent_toml,
    write_scenario,
)

pytestmark = pytest.mark.e2e

KiB = 1024
AGENT_THREADS = ("process-watch", "store-writer", "crash-tick", "metrics-http")
CRASH_JSON_KEYS = {
    "id", "server", "time", "kind", "signal", "signature", "spid", "login", "sql", "procedure",
    "server_terminated", "state", "family", "kpid", "host", "program", "complete", "exit_pid", "exit_time",
}  # fmt: skip


def make_sim(workdir: Path, name: str, scenario: Path, **kw: Any) -> SimServer:
    """A steady simulated server with a small, quick dump (crashes are the test's to cause)."""
    return SimServer(workdir, name=name, scenario=scenario, dump_size=256 * KiB, dump_seconds=0.1, **kw)


def log_time(record: TruthRecord) -> datetime:
    """The errorlog stamp of a truth line (``YYYY/MM/DD HH:MM:SS.hh``)."""
    return datetime.strptime(record["log_time"], "%Y/%m/%d %H:%M:%S.%f")


def booted(sim: SimServer, n: int, timeout: float = 15.0) -> int:
    """Wait for the n-th boot of this run; return its dataserver pid."""
    return wait_until(
        lambda: len(sim.truth("boot")) >= n and sim.truth("boot")[n - 1].pid,
        timeout,
        f"boot #{n} of {sim.name} (see {sim.layout.supervisor_log})",
    )


def seen(state: Path, pid: int, timeout: float = 10.0) -> None:
    """Wait until the agent has stored the start of dataserver ``pid``."""
    wait_until(lambda: pid in pids_of(state, "ProcessStarted"), timeout, f"the agent sees pid {pid}")


def crash_now(sim: SimServer, state: Path) -> tuple[int, TruthRecord, CrashRow]:
    """Crash the running dataserver (block + dump + SIGSEGV); wait for its record joined with the exit."""
    crashed = sim.crash_now()
    truth = wait_until(
        lambda: next((r for r in sim.truth("crash") if r.pid == crashed), None), 10, "the crash truth line"
    )
    row = wait_until(
        lambda: next((r for r in crash_rows(state) if r.exit_pid == crashed and r.kind == "signal"), None),
        20,
        f"a signal crash record joined with the exit of pid {crashed}",
    )
    return crashed, truth, row


def exit_time(sim: SimServer, pid: int) -> float:
    """POSIX time the supervisor saw ``pid`` exit (from the truth file)."""
    return wait_until(
        lambda: next((r.time for r in sim.truth("exit") if r["dataserver_pid"] == pid), None),
        15,
        f"the supervisor's exit line for pid {pid}",
    )


def past_grace(after: float) -> None:
    """Sleep until an exit at ``after`` (POSIX s) has certainly been decided (grace + 2 ticks)."""
    time.sleep(max(0.0, after + GRACE_S + 1.5 - time.time()))


# --------------------------------------------------------------------------- the subprocess agent


@dataclass
class Recorded:
    """A store written by ``asewatch agent`` over a SIGKILL and a SIGSEGV crash, then SIGTERM."""

    state: Path
    config: Path
    server: str
    killed_pid: int
    crashed_pid: int
    crash_truth: TruthRecord
    stopped: Stopped
    agent_log: str
    rows: list[CrashRow]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Run ``asewatch agent -c`` beside a steady sim: SIGKILL the dataserver, then crash it
    (crash block + SIGSEGV), wait past the grace period, and SIGTERM the agent while the
    dataserver still runs. No thread of this process is involved (module scope is safe)."""
    tmp = tmp_path_factory.mktemp("recorded")
    server = server_name("rec")
    sim = make_sim(tmp / "sim", server, write_scenario(tmp))
    state = tmp / "state"
    config = write_agent_toml(
        tmp / "asewatch.toml", state, server, errorlog=sim.errorlog, run_file=sim.run_file
    )
    agent = AgentProcess(config, tmp / "agent.log")
    try:
        agent.start()
        agent.metrics_url()
        first = sim.start()
        seen(state, first)
        killed = sim.kill()
        second = booted(sim, 2)
        wait_until(lambda: crash_rows(state), 15, "the record of the SIGKILL")
        seen(state, second)
        crashed, truth, _ = crash_now(sim, state)
        booted(sim, 3)
        past_grace(exit_time(sim, crashed))
        stopped = agent.terminate(timeout=10.0)
    finally:
        agent.stop()
        sim.stop()
    return Recorded(
        state, config, server, killed, crashed, truth, stopped, agent.log_text(), crash_rows(state)
    )


def test_a_sigkilled_dataserver_is_one_unclean_crash(recorded: Recorded) -> None:
    """SIGKILL writes nothing to the errorlog: the exit alone is an unclean stop, recorded once."""
    mine = [r for r in recorded.rows if r.exit_pid == recorded.killed_pid]
    assert len(mine) == 1, recorded.rows
    row = mine[0]
    assert (row.kind, row.state, row.server_terminated, row.signature) == ("unclean", "crashed", True, None)
    assert row.server == recorded.server


def test_a_sigsegv_after_a_crash_block_is_one_signal_crash_joined_with_its_exit(recorded: Recorded) -> None:
    """The crash block and the process exit are one record, with who and what the sim says ran."""
    assert len(recorded.rows) == 2, recorded.rows  # the SIGKILL and this crash, nothing else
    mine = [r for r in recorded.rows if r.exit_pid == recorded.crashed_pid]
    assert len(mine) == 1, recorded.rows
    row, truth = mine[0], recorded.crash_truth
    assert (row.kind, row.signal, row.state, row.server_terminated) == ("signal", 11, "crashed", True)
    assert row.exit_time is not None and row.complete is True
    assert re.fullmatch(r"[0-9a-f]{16}", row.signature or "")
    assert (row.login, row.procedure) == (truth["login"], truth["procedure"])
    assert (row.spid, row.family, row.kpid) == (truth["spid"], truth["family"], truth["kpid"])
    assert row.time == log_time(truth)


def test_sigterm_stops_the_agent_with_exit_0_within_5_s(recorded: Recorded) -> None:
    assert recorded.stopped.returncode == 0, recorded.agent_log[-3000:]
    assert recorded.stopped.seconds < 5.0
    assert "received SIGTERM: stopping" in recorded.agent_log


def test_crashes_json_lists_every_record_with_its_public_keys(recorded: Recorded) -> None:
    doc = cli_json("crashes", "--json", "--state-dir", str(recorded.state))
    assert isinstance(doc, list) and len(doc) == 2
    for item in doc:
        assert set(item) >= CRASH_JSON_KEYS, sorted(CRASH_JSON_KEYS - set(item))
    by_kind = {item["kind"]: item for item in doc}
    sig, truth = by_kind["signal"], recorded.crash_truth
    assert sig["server"] == recorded.server
    assert (sig["signal"], sig["spid"], sig["login"], sig["procedure"]) == (
        11, truth["spid"], truth["login"], truth["procedure"],
    )  # fmt: skip
    assert sig["server_terminated"] is True and sig["exit_pid"] == recorded.crashed_pid
    assert datetime.fromisoformat(sig["time"]) == log_time(truth)
    assert sig["sql"] and "p_brev_sok_central_utskrift" in sig["sql"]
    assert by_kind["unclean"]["signature"] is None and by_kind["unclean"]["exit_pid"] == recorded.killed_pid
    other = cli_json("crashes", "--json", "--server", "NOSUCH", "--state-dir", str(recorded.state))
    assert other == []


def test_status_json_and_show_read_the_same_store(recorded: Recorded) -> None:
    status = cli_json("status", "--json", "--state-dir", str(recorded.state))
    assert [s["server"] for s in status] == [recorded.server]
    assert status[0]["crashes"] == 2
    assert status[0]["last_crash"]["exit_pid"] == recorded.crashed_pid

    crash_id = next(r.id for r in recorded.rows if r.kind == "signal")
    shown = run_cli("show", str(crash_id), "--state-dir", str(recorded.state))
    assert shown.returncode == 0, shown.stderr
    assert recorded.crash_truth["procedure"] in shown.stdout and "Stack" in shown.stdout
    doc = cli_json("show", str(crash_id), "--json", "--state-dir", str(recorded.state))
    assert doc["id"] == crash_id and doc["errorlog"]["frames"]
    # The sim logs C++ argument lists; asewatch keeps function names (the README's rule).
    assert doc["errorlog"]["frames"] == [re.sub(r"\(.*\)$", "", f) for f in recorded.crash_truth["frames"]]

    missing = run_cli("show", "999999", "--state-dir", str(recorded.state))
    assert missing.returncode == 2 and "no crash" in missing.stderr and "Traceback" not in missing.stderr


def test_config_check_accepts_a_good_file_and_names_file_and_key_of_a_bad_one(
    recorded: Recorded, tmp_path: Path
) -> None:
    good = run_cli("config", "check", str(recorded.config))
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout and recorded.server in good.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[[server]]\nname = "CLINIC1"\nerrorlog_path = "/x.log"\n', encoding="utf-8")
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2
    assert str(bad) in r.stderr and "server[0].errorlog_path" in r.stderr and "Traceback" not in r.stderr

    bad.write_text('[[server]]\nname = "CLINIC1"\n[process]\npoll_interval = -1\n', encoding="utf-8")
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2 and str(bad) in r.stderr and "process.poll_interval" in r.stderr


# --------------------------------------------------------------------------- the in-process agent


def test_a_requested_shutdown_is_not_a_crash(tmp_path: Path) -> None:
    server = server_name("shut")
    sim = make_sim(tmp_path / "sim", server, write_scenario(tmp_path))
    state = tmp_path / "state"
    agent = Agent(agent_config(state, server, errorlog=sim.errorlog), state)
    try:
        agent.start()
        pid = sim.start()
        seen(state, pid)
        sim.shutdown()
        wait_until(lambda: not sim.running(), 15, "the supervisor stops after the shutdown")
        wait_until(lambda: pid in pids_of(state, "ProcessExited"), 10, "the agent stores the exit")
        wait_until(
            lambda: any(se.event.kind == "requested" for se in stored_events(state, "ServerShutdown")),
            10,
            "the agent stores the requested shutdown",
        )
        past_grace(exit_time(sim, pid))
        assert crash_rows(state) == []
        assert agent.metrics_url is not None
        assert sample(scrape(agent.metrics_url), "ase_up", server=server) == 0
    finally:
        sim.stop()
        agent.stop()


def test_a_shutdown_while_the_agent_was_down_is_not_a_crash(tmp_path: Path) -> None:
    """The agent is stopped (an upgrade, a reboot), ASE is shut down politely meanwhile, and
    the agent starts again: it learns of the exit at once and of the shutdown from the
    errorlog it catches up on. That is still a requested shutdown, not a crash."""
    server = server_name("down")
    sim = make_sim(tmp_path / "sim", server, write_scenario(tmp_path))
    state = tmp_path / "state"
    config = agent_config(state, server, errorlog=sim.errorlog)
    agents = [Agent(config, state)]
    try:
        agents[0].start()
        pid = sim.start()
        seen(state, pid)
        agents[0].stop()
        sim.shutdown()
        wait_until(lambda: not sim.running(), 15, "the supervisor stops after the shutdown")
        agents.append(Agent(config, state))
        agents[1].start()
        wait_until(lambda: pid in pids_of(state, "ProcessExited"), 10, "the agent stores the exit")
        wait_until(lambda: stored_events(state, "ServerShutdown"), 10, "the agent reads the shutdown")
        time.sleep(GRACE_S + 1.5)  # the exit is timed at the restart: let the grace pass
        assert crash_rows(state) == []
    finally:
        sim.stop()
        for agent in agents:
            agent.stop()


def test_a_crash_block_read_after_the_grace_stays_one_record_across_restarts(tmp_path: Path) -> None:
    """The follower can lag the exit by more than the grace (a slow errorlog disk; here a long
    quiet period and no restart, so nothing releases the held-back block). The exit first
    becomes an unclean stop, then the block joins it: one record. A restarted agent replays
    the event log and must land on the same record, not add a second one."""
    server = server_name("late")
    sim = make_sim(tmp_path / "sim", server, write_scenario(tmp_path), supervise=False)
    state = tmp_path / "state"
    config = agent_config(state, server, errorlog=sim.errorlog, quiet_period=GRACE_S + 2.5)
    agents = [Agent(config, state)]
    try:
        agents[0].start()
        pid = sim.start()
        seen(state, pid)
        crashed, truth, row = crash_now(sim, state)
        assert crashed == pid and row.kind == "signal"
        assert len(crash_rows(state)) == 1, crash_rows(state)
        # The premise: the block was stored more than the grace after the exit.
        (exit_event,) = stored_events(state, "ProcessExited")
        (block_event,) = stored_events(state, "CrashBlock")
        assert block_event.observed_at - exit_event.observed_at > GRACE_S
        agents[0].stop()
        agents.append(Agent(config, state))
        agents[1].start()
        rows = crash_rows(state)
        assert len(rows) == 1, [(r.key, r.kind, r.exit_pid) for r in rows]
        assert rows[0].time == log_time(truth)
    finally:
        sim.stop()
        for agent in agents:
            agent.stop()


def test_metrics_over_http_follow_the_server(tmp_path: Path) -> None:
    server = server_name("met")
    sim = make_sim(tmp_path / "sim", server, write_scenario(tmp_path))
    state = tmp_path / "state"
    agent = Agent(agent_config(state, server, errorlog=sim.errorlog), state)
    try:
        agent.start()
        url = agent.metrics_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        pid = sim.start()
        text = scrape_until(url, "ase_up", 1, server=server)
        started = sample(text, "ase_server_start_time_seconds", server=server)
        assert started == pytest.approx(psutil.Process(pid).create_time(), abs=0.01)
        assert sample(text, "ase_crashes_total", server=server, kind="signal") is None

        crash_now(sim, state)
        restarted = booted(sim, 2)
        seen(state, restarted)
        text = scrape_until(url, "ase_up", 1, server=server)
        assert sample(text, "ase_server_start_time_seconds", server=server) == pytest.approx(
            psutil.Process(restarted).create_time(), abs=0.01
        )
        assert sample(text, "ase_server_start_time_seconds", server=server) != started
        assert sample(text, "ase_crashes_total", server=server, kind="signal") == 1
        assert (sample(text, "ase_crash_last_timestamp_seconds", server=server) or 0) > 0
        assert sample(text, "asewatch_collector_up", collector=f"errorlog:{server}") == 1
        assert sample(text, "asewatch_collector_up", collector="process") == 1
        assert not PNR_SHAPE.findall(text), "a personal identity number in the metrics"
        no_personal_numbers(metric_labels(text), "the metrics")

        sim.stop()
        text = scrape_until(url, "ase_up", 0, server=server)
        assert sample(text, "ase_server_start_time_seconds", server=server) is None
        assert sample(text, "ase_crashes_total", server=server, kind="signal") == 1
    finally:
        sim.stop()
        agent.stop()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make system)")
def test_promtool_accepts_the_live_scrape(tmp_path: Path) -> None:
    """Up, after a crash (labelled crash series) and down: each live scrape passes promtool."""
    server = server_name("prom")
    sim = make_sim(tmp_path / "sim", server, write_scenario(tmp_path))
    state = tmp_path / "state"
    agent = Agent(agent_config(state, server, errorlog=sim.errorlog), state)
    try:
        agent.start()
        url = agent.metrics_url
        assert url is not None
        seen(state, sim.start())
        promtool(scrape_until(url, "ase_up", 1, server=server))
        crash_now(sim, state)
        promtool(scrape_until(url, "ase_crashes_total", 1, server=server, kind="signal"))
        sim.stop()
        promtool(scrape_until(url, "ase_up", 0, server=server))
    finally:
        sim.stop()
        agent.stop()


def promtool(text: str) -> None:
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_stop_leaves_no_thread_behind(tmp_path: Path) -> None:
    server = server_name("stop")
    sim = make_sim(tmp_path / "sim", server, write_scenario(tmp_path))
    state = tmp_path / "state"
    before = set(threading.enumerate())
    agent = Agent(agent_config(state, server, errorlog=sim.errorlog), state)
    try:
        agent.start()
        seen(state, sim.start())
        names = {t.name for t in threading.enumerate() if t not in before}
        assert {*AGENT_THREADS, f"errorlog-{server}"} <= names, names
    finally:
        sim.stop()
        agent.stop()
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


# --------------------------------------------------------------------------- sources that are not there yet


def _problem_then_recovery(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    *,
    tag: str,
    configure_errorlog: bool,
    before: str,
    expect: str,
) -> None:
    """Start the agent while the source is broken (``before``), check it says so in its log and
    in asewatch_collector_errors_total, then fix it and start the sim: a crash is recorded."""
    caplog.set_level(logging.INFO)
    server = server_name(tag)
    work = tmp_path / "sim"
    sim = make_sim(work, server, write_scenario(tmp_path))
    if before == "missing file":
        work.mkdir()
    elif before == "directory at the file's path":
        sim.errorlog.mkdir(parents=True)
    elif before == "file at the directory's path":
        work.write_text("not a directory\n", encoding="utf-8")
    state = tmp_path / "state"
    config = agent_config(state, server, errorlog=sim.errorlog if configure_errorlog else None)
    agent = Agent(config, state)
    source = f"errorlog:{server}"
    try:
        agent.start()
        url = agent.metrics_url
        assert url is not None
        text = scrape_until(url, "asewatch_collector_errors_total", 1, collector=source)
        assert sample(text, "asewatch_collector_up", collector=source) == 0
        assert sample(text, "ase_up", server=server) == 0
        warned = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.WARNING and source in r.getMessage()
        ]
        assert any(expect in m for m in warned), warned
        assert all(t.is_alive() for t in threading.enumerate() if t.name in AGENT_THREADS)

        if before == "directory at the file's path":
            sim.errorlog.rmdir()
        elif before == "file at the directory's path":
            work.unlink()
        pid = sim.start()
        seen(state, pid)
        scrape_until(url, "asewatch_collector_up", 1, collector=source)
        _, truth, row = crash_now(sim, state)
        assert (row.state, row.login) == ("crashed", truth["login"])
        assert any(r.getMessage() == f"{source}: recovered" for r in caplog.records)
    finally:
        sim.stop()
        agent.stop()


def test_a_missing_errorlog_is_reported_and_followed_once_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The configured errorlog does not exist yet (its directory does)."""
    _problem_then_recovery(
        tmp_path, caplog, tag="miss", configure_errorlog=True, before="missing file", expect="does not exist"
    )


@pytest.mark.parametrize(
    ("before", "expect"),
    [
        # The configured errorlog path is a directory: open() works, but it is no log file.
        ("directory at the file's path", "is not a regular file"),
        # A regular file sits where the errorlog's directory should be: open() fails with ENOTDIR.
        ("file at the directory's path", "Not a directory"),
    ],
)
def test_an_unreadable_errorlog_path_is_reported_and_followed_once_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, before: str, expect: str
) -> None:
    """Tests run as root, which permission bits do not stop; so "unreadable" is made honestly
    from the file system's shape: a directory where the errorlog file is expected, or a
    regular file where its directory is expected. Both fail for root too."""
    _problem_then_recovery(
        tmp_path, caplog, tag="unrd", configure_errorlog=True, before=before, expect=expect
    )


def test_a_dataserver_not_running_at_start_is_reported_and_found_when_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No errorlog configured: the agent takes the running dataserver's -e, and there is none yet."""
    _problem_then_recovery(
        tmp_path, caplog, tag="nors", configure_errorlog=False, before="nothing", expect="is not running"
    )
