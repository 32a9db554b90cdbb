"""The process watch on real processes: a fake ``dataserver`` script, real signals, real pidfds.

The fake is made the way the simulator runs: an executable script named ``dataserver``
whose shebang is this interpreter, so its argv is ``<python> …/bin/dataserver -sNAME``
and its comm is ``dataserver``. Every process a test starts is killed by pid in teardown.
"""

from __future__ import annotations

import contextlib
import doctest
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from collectors import process, process_find
from collectors.process import (
    DataserverTarget,
    ProcessWatch,
    find_dataservers,
    parse_dataserver_args,
    parse_run_file,
)
from monitor.errors import InputError
from monitor.events import (
    CollectorFailed,
    CollectorSucceeded,
    Event,
    ProcessExited,
    ProcessSample,
    ProcessStarted,
)

pytestmark = pytest.mark.integration

WAIT = 10.0  # s: bound on every wait for an event; generous for a loaded CI machine

FAKE = """#!{python}
import os, signal, sys, time
engines = int(os.environ.get("FAKE_ENGINES", "0"))
if engines and not any(a.startswith("-ONLINE:") for a in sys.argv[1:]):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the engines: no zombies
    kids = [os.posix_spawn(sys.argv[0], [sys.argv[0], f"-ONLINE:{{n}}"], os.environ)
            for n in range(1, engines + 1)]
    with open(os.environ["FAKE_PIDS"] + ".tmp", "w") as f:
        f.write(" ".join(map(str, kids)))
    os.rename(os.environ["FAKE_PIDS"] + ".tmp", os.environ["FAKE_PIDS"])
time.sleep(120)  # bounded: a process a broken test forgot dies by itself
"""


@pytest.fixture
def name() -> str:
    """A server name no other test run on this machine uses (tests may run concurrently)."""
    return "P" + uuid.uuid4().hex[:10].upper()


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """An executable ``dataserver`` that just sleeps."""
    path = tmp_path / "bin" / "dataserver"
    path.parent.mkdir()
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


class Procs:
    """Starts processes and kills every one (and its descendants) by pid at teardown."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.popens.append(p)
        return p

    def teardown(self) -> None:
        victims = list(self.pids)
        for p in self.popens:
            with_children = [p.pid]
            with contextlib.suppress(psutil.NoSuchProcess):
                with_children += [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
            victims += with_children
        for pid in reversed(victims):  # descendants first, like a DBA stopping engines
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in self.popens:
            p.wait(timeout=5)


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.teardown()


class Runner:
    """A ProcessWatch on its own named thread, with its events collected."""

    def __init__(self, watch: ProcessWatch) -> None:
        self.watch = watch
        self.q: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=watch.run, args=(self.q.put, self.stop_event), name="test-process-watch"
        )
        self.thread.start()

    def drain(self) -> list[Event]:
        while True:
            try:
                self.seen.append(self.q.get_nowait())
            except queue.Empty:
                return self.seen

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = WAIT) -> Event:
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.seen):
                if pred(self.seen[index]):
                    return self.seen[index]
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event within {timeout} s; seen: {self.seen}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.q.get(timeout=remaining))

    def started(self, pid: int) -> ProcessStarted:
        ev = self.wait_for(lambda e: isinstance(e, ProcessStarted) and e.pid == pid)
        assert isinstance(ev, ProcessStarted)
        return ev

    def exited(self, pid: int) -> ProcessExited:
        ev = self.wait_for(lambda e: isinstance(e, ProcessExited) and e.pid == pid)
        assert isinstance(ev, ProcessExited)
        return ev

    def about(self, pid: int) -> list[Event]:
        return [e for e in self.drain() if getattr(e, "pid", None) == pid]

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


@pytest.fixture
def watching() -> Iterator[Callable[..., Runner]]:
    runners: list[Runner] = []

    def start(targets: list[DataserverTarget], **kw: object) -> Runner:
        kw.setdefault("poll_interval", 0.1)
        runner = Runner(ProcessWatch(targets, **kw))  # type: ignore[arg-type]
        runners.append(runner)
        return runner

    try:
        yield start
    finally:
        for r in runners:
            r.close()


def wait_file(path: Path) -> str:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


# --------------------------------------------------------------------------- parsers


def test_doctests_of_the_parsers_pass() -> None:
    for module in (process_find, process):
        assert doctest.testmod(module).failed == 0


def test_argv_forms_of_the_simulator_and_a_real_server() -> None:
    sim = parse_dataserver_args([sys.executable, "-s", "/x/bin/dataserver", "-sSIM", "-e", "/x/SIM.log"])
    assert (sim.server, sim.errorlog) == ("SIM", "/x/SIM.log")  # python's own -s is not the server's
    real = parse_dataserver_args(["/opt/sybase/ASE-16_0/bin/dataserver", "-d/data/master.dat", "-s", "PROD"])
    assert (real.server, real.master_device, real.online_engine) == ("PROD", "/data/master.dat", None)
    assert parse_dataserver_args(["dataserver", "-T3604,3605", "-T", "11889"]).trace_flags == (
        3604,
        3605,
        11889,
    )
    assert parse_dataserver_args(["tail", "-f", "dataserver.log", "-s", "X"]).server == "X"  # no dataserver


def test_run_file_with_quoted_paths_and_no_server_name() -> None:
    text = (
        "#!/bin/sh\n# header\nSYBASE=/opt/sybase; export SYBASE\n"
        "'/opt/my ase/bin/dataserver' \\\n-d'/data/m d.dat' \\\n-e/x.log\n"
    )
    args = parse_run_file(text)
    assert (args.server, args.master_device, args.errorlog) == (None, "/data/m d.dat", "/x.log")
    with pytest.raises(InputError, match=r"RUN_BAD.*quotation"):
        parse_run_file("/opt/bin/dataserver -s'PROD\n", source="RUN_BAD")


# --------------------------------------------------------------------------- finding


def test_found_by_name_and_a_kill_is_an_exit_with_its_signal(
    name: str, fake: Path, procs: Procs, watching
) -> None:
    p = procs.start([str(fake), f"-s{name}", "-e/tmp/PROD.log"])
    run = watching([DataserverTarget(name)])
    started = run.started(p.pid)
    assert started.server == name
    assert started.engine == 0
    assert f"-s{name}" in started.cmdline
    assert started.create_time == pytest.approx(psutil.Process(p.pid).create_time())

    killed_at = time.time()
    os.kill(p.pid, signal.SIGKILL)
    exited = run.exited(p.pid)
    assert (exited.server, exited.create_time) == (name, started.create_time)
    assert killed_at <= exited.exit_time <= exited.observed_at
    # It is this test's child, so its status can be read, but without reaping it:
    assert (exited.signal, exited.returncode) == (signal.SIGKILL, None)
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_found_by_pid_file_written_after_the_process_started(
    name: str, fake: Path, procs: Procs, watching, tmp_path: Path
) -> None:
    p = procs.start([str(fake), f"-d{tmp_path}/master.dat"])  # no -s: only the pid file names it
    pid_file = tmp_path / "PROD.pid"
    run = watching([DataserverTarget(name, pid_file=pid_file)])
    run.wait_for(lambda e: isinstance(e, CollectorSucceeded))
    assert run.about(p.pid) == []
    pid_file.write_text(f"{p.pid}\n")
    assert run.started(p.pid).server == name


@pytest.mark.parametrize("with_name", [True, False], ids=["run-file-s", "run-file-master-device"])
def test_found_by_run_file_started_like_startserver(
    name: str, fake: Path, procs: Procs, watching, tmp_path: Path, with_name: bool
) -> None:
    run_file = tmp_path / "RUN_MYSYBASE"
    name_line = f"-s{name} \\\n" if with_name else ""
    run_file.write_text(
        f"#!/bin/sh\n#\n# SAP Adaptive Server name:\tMYSYBASE\n#\n{fake} \\\n"
        f"-d{tmp_path}/master.dat \\\n-e{tmp_path}/{name}.log \\\n{name_line}-T11889 \\\n\n"
    )
    decoy = procs.start([str(fake), f"-d{tmp_path}/other_master.dat"])  # another server, no -s
    sh = procs.start(["/bin/sh", str(run_file)])
    run = watching([DataserverTarget("prod", run_file=run_file)])
    started = run.wait_for(lambda e: isinstance(e, ProcessStarted))
    assert isinstance(started, ProcessStarted)
    assert started.server == "prod"
    assert f"-d{tmp_path}/master.dat" in started.cmdline
    assert started.pid != decoy.pid
    assert started.pid == sh.pid or psutil.Process(started.pid).ppid() == sh.pid
    run.wait_for(lambda e: isinstance(e, CollectorSucceeded))
    assert [e for e in run.drain() if isinstance(e, ProcessStarted)] == [started]


@pytest.mark.parametrize(
    "delay",
    [
        pytest.param(1, id="re-read-while-young"),
        pytest.param(6, id="found-by-rescan", marks=pytest.mark.slow),
    ],
)
def test_a_process_that_execs_a_dataserver_late_is_found(
    name: str, fake: Path, procs: Procs, watching, delay: int
) -> None:
    # A wrapper script that does some work and then `exec`s the server: same pid, new program.
    # A pid is re-read for 5 s after it is first seen; after that, the periodic rescan finds it.
    sh = procs.start(["/bin/sh", "-c", f"sleep {delay}; exec {fake} -s{name}"])
    run = watching([DataserverTarget(name)], rescan_interval=1.0 if delay > 5 else 600.0)
    assert run.started(sh.pid).cmdline[-1] == f"-s{name}"


def test_a_server_with_another_name_is_ignored(name: str, fake: Path, procs: Procs, watching) -> None:
    other = procs.start([str(fake), f"-s{name}X"])
    prod = procs.start([str(fake), "-s", name])
    run = watching([DataserverTarget(name)])
    run.started(prod.pid)
    run.wait_for(lambda e: isinstance(e, CollectorSucceeded))
    assert run.about(other.pid) == []
    assert [p.pid for p in find_dataservers(name)] == [prod.pid]


def test_not_running_at_start_is_no_error_and_is_found_when_it_appears(
    name: str, fake: Path, procs: Procs, watching
) -> None:
    run = watching([DataserverTarget(name)])
    run.wait_for(lambda e: isinstance(e, CollectorSucceeded))
    p = procs.start([str(fake), f"-s{name}"])
    run.started(p.pid)
    assert not [e for e in run.drain() if isinstance(e, CollectorFailed)]


def test_a_restart_with_a_new_pid_is_a_new_start(name: str, fake: Path, procs: Procs, watching) -> None:
    first = procs.start([str(fake), f"-s{name}"])
    run = watching([DataserverTarget(name)])
    before = run.started(first.pid)
    os.kill(first.pid, signal.SIGKILL)
    run.exited(first.pid)
    first.wait(timeout=5)
    second = procs.start([str(fake), f"-s{name}"])
    after = run.started(second.pid)
    assert (after.pid, after.create_time) != (before.pid, before.create_time)
    assert after.engine == 0


def test_process_mode_engines_are_seen_with_their_numbers(
    name: str, fake: Path, procs: Procs, watching, tmp_path: Path
) -> None:
    pids_file = tmp_path / "engine.pids"
    env = {**os.environ, "FAKE_ENGINES": "2", "FAKE_PIDS": str(pids_file)}
    engine0 = procs.start([str(fake), "-d/data/master.dat", f"-s{name}"], env=env)
    engines = [int(x) for x in wait_file(pids_file).split()]
    procs.pids += engines
    run = watching([DataserverTarget(name)])
    seen = {pid: run.started(pid).engine for pid in [engine0.pid, *engines]}
    assert seen == {engine0.pid: 0, engines[0]: 1, engines[1]: 2}
    assert f"-s{name}" not in run.started(engines[0]).cmdline  # real engine children carry no -s
    assert [(p.pid, p.engine) for p in find_dataservers(name)] == list(seen.items())

    for pid in [*engines, engine0.pid]:  # children first, then engine 0
        os.kill(pid, signal.SIGKILL)
    assert [run.exited(pid).signal for pid in engines] == [None, None]  # not ours: no status
    assert run.exited(engine0.pid).signal == signal.SIGKILL


# --------------------------------------------------------------------------- resume, samples, health


def test_known_processes_are_settled_at_start(name: str, fake: Path, procs: Procs, watching) -> None:
    dead = procs.start([str(fake), f"-s{name}"])
    dead_ct = psutil.Process(dead.pid).create_time()
    dead.kill()
    dead.wait(timeout=5)
    alive = procs.start([str(fake), f"-s{name}"])
    alive_ct = psutil.Process(alive.pid).create_time()
    reused = procs.start([str(fake), f"-s{name}"])  # the store's (pid, create_time) names an older process
    reused_ct = psutil.Process(reused.pid).create_time()
    known = [
        (name, dead.pid, dead_ct),
        (name, alive.pid, alive_ct),
        (name, reused.pid, reused_ct - 100),
    ]

    began = time.time()
    run = watching([DataserverTarget(name)], known=known)
    gone = run.exited(dead.pid)
    assert (gone.create_time, gone.signal, gone.returncode) == (dead_ct, None, None)
    assert began <= gone.exit_time <= gone.observed_at  # the noticing time: an upper bound
    old = run.exited(reused.pid)
    assert old.create_time == reused_ct - 100
    assert run.started(reused.pid).create_time == pytest.approx(reused_ct)  # the new one is new
    assert run.started(alive.pid).create_time == alive_ct
    run.wait_for(lambda e: isinstance(e, CollectorSucceeded))
    assert not [e for e in run.about(alive.pid) if isinstance(e, ProcessExited)]

    os.kill(alive.pid, signal.SIGKILL)  # the adopted process is watched like any other
    assert run.exited(alive.pid).create_time == alive_ct


def test_samples_carry_plausible_values(name: str, fake: Path, procs: Procs, watching) -> None:
    p = procs.start([str(fake), f"-s{name}"])
    run = watching([DataserverTarget(name)], sample_interval=0.2)
    started = run.started(p.pid)
    samples = []
    for _ in range(2):
        ev = run.wait_for(lambda e: isinstance(e, ProcessSample) and e.pid == p.pid and e not in samples)
        assert isinstance(ev, ProcessSample)
        samples.append(ev)
    for s in samples:
        assert (s.server, s.create_time) == (name, started.create_time)
        assert s.rss_bytes > 0
        assert s.threads >= 1
        assert s.cpu_seconds >= 0.0
        assert s.open_files is not None
        assert s.open_files >= 3
    assert samples[1].time > samples[0].time


def test_the_polling_fallback_also_sees_an_exit(name: str, fake: Path, procs: Procs, watching) -> None:
    p = procs.start([str(fake), f"-s{name}"])
    run = watching([DataserverTarget(name)], use_pidfd=False)
    run.started(p.pid)
    os.kill(p.pid, signal.SIGKILL)  # not reaped yet: a zombie, which psutil calls running
    assert run.exited(p.pid).signal == signal.SIGKILL
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_an_unreadable_run_file_is_a_failure_event_and_the_watch_goes_on(
    name: str, fake: Path, procs: Procs, watching, tmp_path: Path
) -> None:
    missing = tmp_path / "RUN_GONE"
    p = procs.start([str(fake), f"-s{name}"])
    run = watching([DataserverTarget("GONE", run_file=missing), DataserverTarget(name)])
    failed = run.wait_for(lambda e: isinstance(e, CollectorFailed))
    assert isinstance(failed, CollectorFailed)
    assert failed.collector == "process"
    assert str(missing) in failed.reason
    assert run.started(p.pid).server == name
    assert run.thread.is_alive()


def test_a_failing_consumer_does_not_stop_the_watch(name: str, fake: Path, procs: Procs) -> None:
    calls: list[Event] = []

    def emit(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("queue full")

    p = procs.start([str(fake), f"-s{name}"])
    stop = threading.Event()
    t = threading.Thread(
        target=ProcessWatch([DataserverTarget(name)], poll_interval=0.1).run, args=(emit, stop)
    )
    t.start()
    try:
        deadline = time.monotonic() + WAIT
        while not any(isinstance(e, ProcessStarted) and e.pid == p.pid for e in calls):
            assert time.monotonic() < deadline
            assert t.is_alive()
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        while not any(isinstance(e, ProcessExited) and e.pid == p.pid for e in calls):
            assert time.monotonic() < deadline
            assert t.is_alive()
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(timeout=5)


@pytest.mark.parametrize("how", ["stop event", "stop()"])
def test_stop_returns_promptly_and_closes_its_descriptors(
    name: str, fake: Path, procs: Procs, watching, how: str
) -> None:
    p = procs.start([str(fake), f"-s{name}"])
    fds_before = len(os.listdir("/proc/self/fd"))
    run = watching([DataserverTarget(name)], poll_interval=5.0, sample_interval=60.0)
    run.started(p.pid)
    if how == "stop()":  # mid-sleep either way: the next scan is 5 s away
        run.watch.stop()
    else:
        run.stop_event.set()
    run.thread.join(timeout=1.0)  # documented: at once; the bound only absorbs a loaded machine
    assert not run.thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "process-watch-wake"]
    assert len(os.listdir("/proc/self/fd")) == fds_before  # pidfd and wake-up pipe closed
