"""Python API over the simulated server, for tests and ``asewatch demo``.

    with SimServer(tmp_path / "sim", scenario=path) as sim:
        pid = sim.pid()
        sim.crash_now()
        sim.wait_for(lambda: sim.pid() not in (None, pid), timeout=10)

Truth lines (``sim-truth.jsonl``, one JSON object per line, see truth.py). Every line has
``kind, time, st, source, pid, server, t0`` (``pid`` is the writer's: the dataserver's or the
supervisor's). Per kind:

- ``supervisor_start``: restart_delay, end_after, run_file
- ``boot``: log_time, errorlog_offset, version, scenario, engines, process_mode, engine_pids, flags, config,
  tds_port
- ``deployment``: event, at, by, what          - ``flag``: event, at, by, name, old, new
- ``config``: event, at, by, name, old, new, log_time (a timeline event), or by, name, old, new,
  log_time, via ("sp_configure"), spid, static (a change made over TDS)
- ``call``: call, at, procedure, outcome (ok | missed) [+ spid, kpid, login, program, statements, sql
  when ok]
- ``error``: number, severity, state, spid, login, host, log_time
- ``crash``: trigger (scenario | signal), call, at, log_time, signal, procedure, sql (the batch),
  causing_sql (what ``SQL causing error`` shows), spid (the worker), family (parent spid),
  kpid (the worker's), suid, login, host, program, db, engine, thread, fault, frames, flags, config,
  dump_path, dump_size
- ``dump``: path, bytes, complete               - ``shutdown``: by, log_time
- ``exit`` (supervisor): dataserver_pid, returncode, signal, stopped_by (null | sigterm | scenario end)
- ``supervisor_stop``: reason (shutdown | sigterm | scenario end | boot failures | too many restarts)

``log_time`` is the errorlog stamp (``YYYY/MM/DD HH:MM:SS.hh``, local time) of the record's first
line; ``at`` is the scheduled scenario second, ``st`` the actual one. A crash line is written after
the errorlog block and before the dump; wait for the ``dump`` line before reading the dump.

The sim answers TDS 5.0 on 127.0.0.1 (``tds_port``, default 0 = a free port; ``None`` = off)
for the real pyodbc + FreeTDS path: :meth:`SimServer.tds_address` waits for ``tds.port``,
:meth:`SimServer.connection_string` gives the ODBC string (logins ``asewatch`` and ``sa``,
password ``tds_password``). Test hooks, one-shot, consumed by the first matching query
(files in ``<workdir>/tds-control/``, see monitor/sim/tds/hooks.py):

- :meth:`SimServer.tds_hang` ``(seconds, table=None)``: the next query reading ``table`` (any
  statement when ``None``) waits ``seconds`` before answering; a client cancel (query timeout)
  during the wait is acknowledged at once and the connection stays usable.
- :meth:`SimServer.tds_drop_next` ``(table=None)``: the next such query gets half its reply,
  then the server closes the connection (the client sees "Unexpected EOF").

``waitfor delay 'hh:mm:ss'`` is a slow query without a hook. What the server accepts and
serves (the SQL contract, MDA and system tables, pipes) is described in monitor/sim/tds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import psutil

import monitor
from monitor.sim.layout import Layout, prepare
from monitor.sim.options import DEFAULT_PASSWORD, PASSWORD_ENV
from monitor.sim.scenario import default_scenario, incident_path, load_scenario
from monitor.sim.tds.hooks import add_hook
from monitor.sim.truth import TruthRecord, read_truth

T = TypeVar("T")


class SimServer:
    """A simulated dataserver (optionally supervised) in ``workdir``; stop it, or use ``with``."""

    def __init__(
        self,
        workdir: str | Path,
        name: str = "CLINIC1",
        scenario: str | Path | None = None,
        supervise: bool = True,
        *,
        dump_dir: str | Path | None = None,
        dump_size: int = 4 * 1024 * 1024,
        dump_seconds: float = 0.2,
        dump_truncate: float | None = None,
        rate: float | None = None,
        engines: int = 1,
        seed: int | None = None,
        restart_delay: float | None = None,
        end_after: float | None = None,
        no_end: bool = False,
        stop_timeout: float = 5.0,
        tds_port: int | None = 0,
        tds_password: str = DEFAULT_PASSWORD,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Describe the server; nothing starts until :meth:`start`.

        ``scenario`` is a TOML path, ``"incident"`` for the built-in one, or ``None``
        (steady workload, no crashes). ``restart_delay``/``end_after`` override the
        scenario's; ``no_end`` ignores its ``end_after``. ``dump_truncate`` (0-1) makes
        every crash die part-way through its dump. ``tds_port``: the TDS listener's port
        (0 = a free one, kept across restarts; ``None`` = no listener); ``tds_password`` is the
        password of the ``asewatch`` and ``sa`` logins.
        """
        self.layout = Layout(Path(workdir).resolve(), name)
        self.name = name
        if scenario == "incident":
            scenario = incident_path()
        self.scenario = Path(scenario).resolve() if scenario is not None else None
        self.supervise = supervise
        self.dump_dir = Path(dump_dir).resolve() if dump_dir else self.layout.dump_dir
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.end_after = end_after
        self.no_end = no_end
        extra = [f"--dump-dir={self.dump_dir}", f"--dump-size={dump_size}", f"--dump-seconds={dump_seconds}"]
        if self.scenario:
            extra.append(f"--scenario={self.scenario}")
        if dump_truncate is not None:
            extra.append(f"--dump-truncate={dump_truncate}")
        if rate is not None:
            extra.append(f"--rate={rate}")
        if engines > 1:
            extra.append(f"--engines={engines}")
        if seed is not None:
            extra.append(f"--seed={seed}")
        if tds_port is not None:
            extra.append(f"--tds-port={tds_port}")
        self.tds_password = tds_password
        self._extra = [*extra, *extra_args]
        self._proc: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None
        self._truth_offset = 0

    # ------------------------------------------------------------------ paths
    @property
    def errorlog(self) -> Path:
        return self.layout.errorlog

    @property
    def workdir(self) -> Path:
        return self.layout.workdir

    @property
    def cfg(self) -> Path:
        return self.layout.cfg

    @property
    def flags_path(self) -> Path:
        return self.layout.flags

    @property
    def truth_path(self) -> Path:
        return self.layout.truth

    @property
    def run_file(self) -> Path:
        return self.layout.run_file

    # --------------------------------------------------------------------- TDS
    def tds_address(self, timeout: float = 10.0) -> tuple[str, int]:
        """``("127.0.0.1", port)`` of the TDS listener, waiting up to ``timeout`` s for ``tds.port``.

        Raises ``TimeoutError`` if no port file appears (e.g. ``tds_port=None``).
        """

        def port() -> int | None:
            try:
                return int(self.layout.tds_port.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                return None

        return "127.0.0.1", self.wait_for(port, timeout)

    def connection_string(
        self, user: str = "asewatch", *, app: str = "asewatch", timeout: float = 10.0
    ) -> str:
        """The ODBC connection string of the SQL contract (FreeTDS, TDS 5.0) for ``user``."""
        host, port = self.tds_address(timeout)
        return (
            f"Driver=FreeTDS;Server={host};Port={port};TDS_Version=5.0;UID={user};"
            f"PWD={self.tds_password};APP={app};ClientCharset=UTF-8"
        )

    def tds_hang(self, seconds: float, table: str | None = None) -> Path:
        """The next query reading ``table`` (any statement if ``None``) waits ``seconds`` first.

        One-shot; returns the hook file (gone once a query took it).
        """
        return add_hook(self.layout.tds_control, "hang", seconds=seconds, table=table)

    def tds_drop_next(self, table: str | None = None) -> Path:
        """The next query reading ``table`` (any statement if ``None``) loses its connection mid-reply."""
        return add_hook(self.layout.tds_control, "drop", table=table)

    # --------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 15.0) -> int:
        """Prepare the workdir, start the supervisor (or the dataserver) and wait for the boot.

        Returns the dataserver pid. Raises ``TimeoutError`` (after stopping what it
        started) if no boot is recorded within ``timeout`` seconds, ``RuntimeError`` if
        already started.
        """
        if self._proc is not None:
            raise RuntimeError("SimServer already started")
        self._returncode = None
        scenario = load_scenario(self.scenario) if self.scenario else default_scenario()
        command = prepare(self.layout, self._extra, scenario.config, scenario.flags)
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        self._truth_offset = self.truth_path.stat().st_size if self.truth_path.exists() else 0
        root = str(Path(monitor.__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
            PASSWORD_ENV: self.tds_password,
        }
        if self.supervise:
            cmd = [
                sys.executable,
                "-m",
                "monitor.sim.supervisor",
                f"--workdir={self.workdir}",
                f"--name={self.name}",
            ]
            cmd += [f"--stop-timeout={self.stop_timeout}"]
            if self.scenario:
                cmd.append(f"--scenario={self.scenario}")
            if self.restart_delay is not None:
                cmd.append(f"--restart-delay={self.restart_delay}")
            if self.end_after is not None:
                cmd.append(f"--end-after={self.end_after}")
            if self.no_end:
                cmd.append("--no-end")
        else:
            cmd = command
        with self.layout.supervisor_log.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )
        try:
            return self.wait_boot(timeout=timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self, timeout: float | None = None) -> None:
        """Stop everything this object started, by PID, with bounded waits; never leaves processes.

        Supervised: SIGTERM to the supervisor (which shuts the dataserver down politely).
        Otherwise SIGTERM to the dataserver. SIGKILL whatever is left at the deadline.
        """
        proc = self._proc
        if proc is None:
            return
        wait = timeout if timeout is not None else 2 * self.stop_timeout + 5.0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)
        self._kill_leftovers()
        self._returncode = proc.returncode
        self._proc = None

    def _our_pids(self) -> set[int]:
        pids = {int(r.pid) for r in self.truth() if r.source == "dataserver"}
        current = self.pid()
        if current is not None:
            pids.add(current)
        for r in self.truth("boot"):
            pids.update(int(p) for p in r.get("engine_pids", []))
        return pids

    def _kill_leftovers(self) -> None:
        """SIGKILL any dataserver or engine process of this run that is still alive."""
        mine = []
        for pid in self._our_pids():
            try:
                p = psutil.Process(pid)
                if str(self.layout.dataserver) in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                    mine.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        deadline = time.monotonic() + 2.0
        while mine and time.monotonic() < deadline:  # engines notice engine 0 is gone within 0.2 s
            mine = [p for p in mine if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.05)
        for p in mine:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(mine, timeout=5.0)

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ queries
    def pid(self) -> int | None:
        """The dataserver pid in the pid file (the last one booted), or ``None``."""
        try:
            return int(self.layout.pidfile.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        """The supervisor's pid (``None`` when not supervised or not started)."""
        return self._proc.pid if self._proc is not None and self.supervise else None

    def running(self) -> bool:
        """Whether the process this object started (supervisor or dataserver) is alive."""
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        """Exit code of the supervisor (or unsupervised dataserver): ``None`` while it runs.

        Negative values are signals, as in :mod:`subprocess`.
        """
        return self._returncode if self._proc is None else self._proc.poll()

    def truth(self, kind: str | None = None) -> list[TruthRecord]:
        """Truth lines written since :meth:`start`, optionally only of ``kind``."""
        records = read_truth(self.truth_path, self._truth_offset)
        return [r for r in records if kind is None or r.kind == kind]

    def wait_for(self, predicate: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
        """Poll ``predicate`` until it returns something truthy; return that. Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"condition not met within {timeout:.1f} s (see {self.layout.supervisor_log})"
                )
            time.sleep(interval)

    def wait_boot(self, *, after: int | None = None, timeout: float = 15.0) -> int:
        """Wait for a boot after the boot of pid ``after`` (any boot when None); return its pid.

        Only boots recorded after ``after``'s own count: while a restart is still pending, an
        older incarnation's boot must not be mistaken for the new one.
        """

        def booted() -> int | None:
            pids = [r.pid for r in self.truth("boot")]
            if after is not None and after in pids:
                pids = pids[len(pids) - pids[::-1].index(after) :]
            pids = [p for p in pids if p != after]
            return pids[-1] if pids else None

        return self.wait_for(booted, timeout)

    # ------------------------------------------------------------------ actions
    def _signal(self, sig: signal.Signals) -> int:
        pid = self.pid()
        if pid is None:
            raise ProcessLookupError(f"no dataserver pid in {self.layout.pidfile}")
        os.kill(pid, sig)
        return pid

    def crash_now(self) -> int:
        """SIGUSR1: the dataserver crashes at once (block, dump, SIGSEGV). Returns its pid."""
        return self._signal(signal.SIGUSR1)

    def shutdown(self) -> int:
        """SIGTERM to the dataserver: a polite shutdown (the supervisor then stops). Returns its pid."""
        return self._signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL to the dataserver: nothing written; the supervisor restarts it. Returns its pid."""
        return self._signal(signal.SIGKILL)
