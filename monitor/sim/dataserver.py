"""The simulated ``dataserver`` process: boot, workload, timeline, crash, polite shutdown.

Started as ``<workdir>/bin/dataserver -sNAME -e<errorlog> -c<cfg> -M<dir> ... --t0 EPOCH``
(see layout.py). Signals: SIGTERM/SIGINT = polite shutdown, exit 0; SIGUSR1 = crash now
(same path as a scenario crash); SIGKILL simply kills. A crash writes the block to the
errorlog, a dump file, truth lines, then dies by a real SIGSEGV with core dumps off.
With ``--engines N`` (process mode) N-1 engine child processes run as
``dataserver -ONLINE:k -sNAME``; they exit when engine 0 is gone. With ``--tds-port N`` it
answers TDS 5.0 on 127.0.0.1 (monitor/sim/tds) from its live state; the port goes to
``<workdir>/tds.port`` and a restart within the run keeps it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any, NoReturn

from monitor.errors import AsewatchError
from monitor.sim import bootlog
from monitor.sim.crash import crash_and_die
from monitor.sim.errorlog_writer import Component, ErrorlogWriter, Prefix, stamp
from monitor.sim.layout import read_cfg, write_atomic, write_json
from monitor.sim.options import PARENT_ENV, Options, engine_child, parse_args
from monitor.sim.scenario import Scenario, ScheduledCall, TimelineEvent, default_scenario, load_scenario
from monitor.sim.state import SimState
from monitor.sim.tds.host import Host
from monitor.sim.tds.server import TdsServer
from monitor.sim.truth import TruthWriter, read_truth
from monitor.sim.workload import Topology, Workload, procedure_named

TICK = 0.02  # seconds between workload ticks


class Dataserver:
    """One incarnation of the simulated server. :meth:`run` returns the exit code."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.scenario: Scenario = load_scenario(opts.scenario) if opts.scenario else default_scenario()
        seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "big")
        self.rng = random.Random(seed)
        process_mode = opts.engines > 1
        self.topology = Topology(opts.engines if process_mode else self.scenario.engines, process_mode)
        self.truth = TruthWriter(opts.truth, source="dataserver", server=opts.name, t0=opts.t0)
        self.children: list[subprocess.Popen[bytes]] = []
        self.stop_requested = False
        self.crash_requested = False
        self.crashing = False
        self.log = ErrorlogWriter(opts.errorlog)
        config = dict(self.scenario.config)
        config.update(read_cfg(opts.cfg))  # the persisted configuration wins
        flags = dict(self.scenario.flags)
        if opts.flags.exists():
            flags.update(json.loads(opts.flags.read_text(encoding="utf-8")))
        pipe = int(config.get("statement pipe max messages", "5000"))
        self.state = SimState(opts.name, self.scenario.version, flags, config, pipe_size=pipe)
        self.host = Host(
            state=self.state,
            log=self.log,
            truth=self.truth,
            cfg=opts.cfg,
            topology=self.topology,
            dump_dir=opts.dump_dir,
            password=opts.tds_password,
        )
        self.tds: TdsServer | None = None
        self.workload: Workload | None = None
        self.pending_events: list[TimelineEvent] = []
        self.pending_calls: list[tuple[int, ScheduledCall]] = []

    def st(self) -> float:
        """Scenario seconds now."""
        return time.time() - self.opts.t0

    # ------------------------------------------------------------------- signals
    def _on_term(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.crashing:
            self.stop_requested = True

    def _on_usr1(self, _signum: int, _frame: FrameType | None) -> None:
        self.crash_requested = True

    # ---------------------------------------------------------------------- run
    def run(self) -> int:
        """Boot, then run the workload and timeline until shutdown (0) or crash (never returns)."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        try:
            workload = self.boot()
            return self.loop(workload)
        finally:
            self.log.close()

    def boot(self) -> Workload:
        """Write the pid file, the .krg file and the boot lines; apply missed timeline events."""
        opts = self.opts
        write_atomic(opts.pidfile, f"{os.getpid()}\n")
        write_atomic(
            opts.shm_dir / f"{opts.name}.krg", f"{opts.name} kernel region pid={os.getpid()}\n", 0o600
        )
        write_json(opts.flags, self.state.flags())
        offset = opts.errorlog.stat().st_size
        port = 5000
        if opts.tds_port is not None:
            self.tds = TdsServer(
                self.host,
                port=opts.tds_port,
                port_file=opts.workdir / "tds.port",
                control_dir=opts.workdir / "tds-control",
            )
            port = self.tds.bind()  # listening now; logins are served once recovery is done
        if self.topology.process_mode:
            self._start_engines()
        pids = [os.getpid()] + [c.pid for c in self.children]
        lines = bootlog.boot_lines(
            version=self.scenario.version,
            cfg=opts.cfg,
            errorlog=opts.errorlog,
            master=opts.master,
            topology=self.topology,
            engine_pid=lambda e: (
                pids[e] if self.topology.process_mode else os.getpid() + self.topology.thread(e)
            ),
            port=port,
        )
        first = None
        for i, (prefix, comp, msg) in enumerate(lines):
            when = self.log.write(prefix, comp, msg)
            first = first or when
            if i % 8 == 7:
                time.sleep(0.01)  # boot takes a moment; stamps should not all be equal
        workload = self.workload = Workload(self.state, self.rng, self.topology, self.scenario.sessions)
        self._restore_deployments()
        if self.tds is not None:
            self.tds.start()
        self.truth.write(
            "boot",
            log_time=stamp(first) if first else None,
            errorlog_offset=offset,
            version=self.scenario.version,
            scenario=self.scenario.name,
            engines=self.topology.engines,
            process_mode=self.topology.process_mode,
            engine_pids=pids if self.topology.process_mode else [os.getpid()],
            flags=self.state.flags(),
            config=self.state.config(),
            tds_port=self.tds.port if self.tds else None,
        )
        done_events, done_calls = self._already_done()
        now = self.st()
        for ev in self.scenario.events:
            if ev.index in done_events:
                continue
            if ev.at <= now:
                self.apply(ev)  # it fell into a downtime: apply it now, exactly once
            else:
                self.pending_events.append(ev)
        for i, call in enumerate(self.scenario.calls):
            if i in done_calls:
                continue
            if call.at < now:
                self.truth.write("call", call=i, at=call.at, procedure=call.procedure, outcome="missed")
            else:
                self.pending_calls.append((i, call))
        return workload

    def _already_done(self) -> tuple[set[int], set[int]]:
        """Timeline events and calls earlier incarnations of this run (same t0) handled."""
        events, calls = set(), set()
        for rec in read_truth(self.opts.truth):
            if rec.source != "dataserver" or abs(rec.t0 - self.opts.t0) > 1e-3:
                continue
            if rec.kind in ("config", "flag", "deployment") and "event" in rec.fields:
                events.add(int(rec["event"]))
            elif rec.kind in ("call", "crash") and rec.get("call") is not None:
                calls.add(int(rec["call"]))
        return events, calls

    def _restore_deployments(self) -> None:
        """Deployments earlier incarnations of this run applied (the application's code stays deployed)."""
        for rec in read_truth(self.opts.truth):
            if rec.source == "dataserver" and rec.kind == "deployment" and abs(rec.t0 - self.opts.t0) <= 1e-3:
                self.state.deploy(str(rec["what"]), str(rec.get("by", "")), when=rec.time)

    def _start_engines(self) -> None:
        argv0 = sys.argv[0]
        head = [argv0] if os.access(argv0, os.X_OK) else [sys.executable, argv0]
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        for e in range(1, self.topology.engines):
            cmd = [*head, f"-ONLINE:{e}", f"-s{self.opts.name}", f"-M{self.opts.shm_dir}"]
            self.children.append(subprocess.Popen(cmd, env=env))

    def loop(self, workload: Workload) -> int:
        """The main loop: one tick every 20 ms. Returns 0 after a polite shutdown."""
        rate = self.opts.rate if self.opts.rate is not None else self.scenario.rate
        error_every = self.scenario.error_every
        last = time.monotonic()
        carry = 0.0
        while True:
            if self.stop_requested:
                self.shutdown(workload)
                return 0
            if self.crash_requested:
                self.crash(workload, None, None)
            now = self.st()
            while self.pending_events and self.pending_events[0].at <= now:
                self.apply(self.pending_events.pop(0))
            while self.pending_calls and self.pending_calls[0][1].at <= now:
                self.call(workload, *self.pending_calls.pop(0))
            tick = time.monotonic()
            dt, last = tick - last, tick
            carry = min(carry + rate * dt, rate + 1.0)  # no burst after a stall
            n = int(carry)
            carry -= n
            if n:
                workload.background(n)
            if error_every > 0 and self.rng.random() < dt / error_every:
                self.client_error(workload)
            for child in self.children:
                child.poll()  # reap an engine that exited
            time.sleep(TICK)

    # ------------------------------------------------------------------ timeline
    def apply(self, ev: TimelineEvent) -> None:
        """Apply one timeline event: config (errorlog line + .cfg), flag (flags.json) or deployment."""
        common: dict[str, Any] = {"event": ev.index, "at": ev.at, "by": ev.by}
        if ev.kind == "config":
            new = str(ev.value)
            sa = self.workload.admin if self.workload else None
            prefix = Prefix(self.topology.thread(sa.engine), 0, sa.spid) if sa else Prefix(2, 0, 12)
            old, when = self.host.change_config(ev.name, new, ev.by, prefix)
            self.truth.write("config", name=ev.name, old=old, new=new, log_time=stamp(when), **common)
        elif ev.kind == "flag":
            old_flag = self.state.set_flag(ev.name, ev.value)
            write_json(self.opts.flags, self.state.flags())
            self.truth.write("flag", name=ev.name, old=old_flag, new=ev.value, **common)
        else:
            self.state.deploy(ev.name, ev.by)
            # What a release pipeline leaves behind: a line in its deploy log (the format
            # collectors/deployments.py reads).
            line = {"time": time.time(), "name": ev.name, "by": ev.by, "server": self.opts.name}
            with self.opts.deploy_log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            self.truth.write("deployment", what=ev.name, **common)

    def call(self, workload: Workload, index: int, call: ScheduledCall) -> None:
        """A scheduled user call: crashes the server if the scenario's trigger holds."""
        trig = self.scenario.trigger
        if trig is not None and trig.holds(call.procedure, self.state.flags(), self.state.config()):
            self.crash(workload, index, call)
        proc = procedure_named(call.procedure)
        session = workload.user_session(call.login, call.program)
        if call.statements > 1 or call.before:
            first = [procedure_named(name) for name in call.before]
            workload.run_body(proc, session, workload.sql(proc), call.statements - 1, first)
        stmt = workload.run_call(proc, session)
        self.truth.write(
            "call",
            call=index,
            at=call.at,
            procedure=call.procedure,
            outcome="ok",
            spid=session.spid,
            kpid=session.kpid,
            login=session.login,
            program=session.program,
            statements=call.statements,
            sql=stmt.sql,
        )

    def client_error(self, workload: Workload) -> None:
        """A client that went away: the 1608 error pair, then the spid reconnects."""
        s = workload.user_session()
        lines: list[tuple[Component, str]] = []
        if self.rng.random() < 0.4:
            lines.append(("kernel", f"Cannot read, host process disconnected: {s.host} spid: {s.spid}"))
        lines += [("server", "Error: 1608, Severity: 18, State: 4"), ("server", bootlog.DISCONNECT_MESSAGE)]
        when = self.log.write_block(Prefix(self.topology.thread(s.engine), 0, s.spid), lines)
        workload.reconnect(s.spid)
        self.truth.write(
            "error",
            number=1608,
            severity=18,
            state=4,
            spid=s.spid,
            login=s.login,
            host=s.host,
            log_time=stamp(when),
        )

    def crash(self, workload: Workload, index: int | None, call: ScheduledCall | None) -> NoReturn:
        """Write the crash block and the dump, then die by SIGSEGV. Never returns."""
        self.crashing = True
        crash_and_die(self, workload, index, call)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, workload: Workload) -> None:
        """The polite shutdown sequence; engines stopped, .krg and pid file removed."""
        if self.tds is not None:
            self.tds.stop()  # shutdown ends every client connection first
        sa = workload.admin
        groups = bootlog.shutdown_lines(Prefix(self.topology.thread(sa.engine), 0, sa.spid))
        first = None
        for i, group in enumerate(groups):
            for prefix, comp, msg in group:
                when = self.log.write(prefix, comp, msg)
                first = first or when
            time.sleep(0.15 if i == 0 else 0.03)
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + 3.0
        for child in self.children:
            try:
                child.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=3.0)
        (self.opts.shm_dir / f"{self.opts.name}.krg").unlink(missing_ok=True)
        try:
            if self.opts.pidfile.read_text(encoding="utf-8").strip() == str(os.getpid()):
                self.opts.pidfile.unlink()
        except FileNotFoundError:
            pass
        self.truth.write("shutdown", by="sa", log_time=stamp(first) if first else None)


def main(argv: list[str]) -> int:
    """Entry point of ``bin/dataserver``. Returns the process exit code."""
    opts = parse_args(argv)
    if opts.online is not None:
        return engine_child()
    try:
        server = Dataserver(opts)
    except (AsewatchError, OSError, ValueError) as exc:
        print(f"dataserver: cannot start: {exc}", file=sys.stderr)
        return 1
    return server.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
