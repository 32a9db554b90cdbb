"""The agent: wires collectors -> store -> derived state, in a few named threads.

Threads: ``process-watch`` (all servers), one ``errorlog-<SERVER>`` per server,
``store-writer`` (the one writer), ``crash-tick`` (decides what waited long enough),
``suspects`` (ranks the suspects again after a crash)
and ``metrics-http``. Collectors emit into one bounded queue (the writer's); a full
queue drops, counts and logs once. Everything the agent knows is in the store, so a
restart — after ``stop()`` or after ``kill -9`` — resumes from it: errorlog
positions, the processes believed running, and the crash records (rebuilt
idempotently from the event log).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from collectors.errorlog.follow import ErrorlogFollower
from collectors.process import DataserverTarget, ProcessWatch, find_dataservers, parse_run_file
from monitor.agent_changes import start_change_collectors
from monitor.config import Config, ServerConfig
from monitor.crashes import CrashAssembler
from monitor.dumps import DumpKeeper, watched_folders
from monitor.dumps_agent import start_dumps
from monitor.errors import StoreError
from monitor.events import CollectorFailed, CollectorSucceeded, Event, ProcessExited, ProcessStarted
from monitor.flightrec_agent import crash_ops, interrupt_samplers, start_mda_samplers
from monitor.health import Health
from monitor.metrics import AseCollector, MetricsServer, make_registry
from monitor.package_auto import AutoPackager
from monitor.ship_agent import start_shipping
from monitor.store import Batch, DerivedOp, Store, StoredEvent, StoreWriter
from monitor.suspects_agent import SuspectsRefresher

if TYPE_CHECKING:
    from collectors.mda.sampler import MdaSampler

log = logging.getLogger("asewatch.agent")

_ASSEMBLER_KINDS = ("CrashBlock", "ProcessStarted", "ProcessExited", "ServerShutdown", "ServerBooted")
STOP_TIMEOUT_S = 5.0


class Agent:
    """One agent beside the configured dataservers. ``start()``, then ``stop()`` (or ``run()``)."""

    def __init__(self, config: Config, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.state_dir = state_dir
        self._clock = clock
        self.health = Health()
        self.store = Store.open(state_dir)
        self.dumps = DumpKeeper(self.store, config.dumps, clock=clock)
        self._assembler = CrashAssembler()
        self._assembler_lock = threading.Lock()
        self._writer = StoreWriter(
            self.store, queue_size=config.agent.queue_size, on_committed=self._committed
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._process_watch: ProcessWatch | None = None
        self._dropped = [0]
        self._drop_logged = False
        self.metrics: MetricsServer | None = None
        self._samplers: list[MdaSampler] = []
        self.metrics_url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Resume from the store and start every thread. Raises StoreError / OSError on a bad start."""
        self._rebuild_crashes()
        self.dumps.catch_up()  # dump events committed just before a kill -9
        self._writer.start()
        servers = self.config.servers
        known = self._believed_running()
        targets = [DataserverTarget(s.name, s.pid_file, s.run_file) for s in servers]
        self._process_watch = ProcessWatch(
            targets,
            poll_interval=self.config.process.poll_interval,
            sample_interval=self.config.process.sample_interval,
            known=known,
        )
        self.health.register("process")
        self.spawn("process-watch", self._run_process_watch)
        for s in servers:
            follower = ErrorlogFollower(
                s.name,
                self._locator(s),
                self.store.position(f"errorlog:{s.name}"),
                quiet_period=self.config.errorlog.quiet_period,
                poll_interval=self.config.errorlog.poll_interval,
                use_watchdog=self.config.errorlog.use_watchdog,
            )
            self.health.register(follower.source)
            self.spawn(f"errorlog-{s.name}", self._follow(follower))
        start_change_collectors(self, servers)
        self._samplers = start_mda_samplers(self, servers, self.config.mda)
        start_dumps(self, self.dumps, self.config.dumps)
        self.shipper = start_shipping(self)
        on_built = self.shipper.package_ready if self.shipper is not None else None
        packager = AutoPackager(self.store, self.config, self.health, on_built=on_built)
        self.spawn("packager", lambda: packager.run(self._stop))
        self.spawn("crash-tick", self._tick_loop)
        self.suspects = SuspectsRefresher(self.store, [s.name for s in servers], self.health)
        self.spawn("suspects", lambda: self.suspects.run(self._stop))
        if self.config.metrics.enabled:
            folders = watched_folders([(s.name, s.dump_dirs) for s in servers], self.config.dumps)
            collector = AseCollector(
                self.store,
                self.health,
                tuple(s.name for s in servers),
                self._dropped,
                dump_dirs=tuple(f.path for f in folders),
            )
            m = self.config.metrics
            self.metrics = MetricsServer(
                make_registry(collector), m.listen, m.port, m.tls_cert_file, m.tls_key_file
            )
            port = self.metrics.start()
            self.metrics_url = f"{self.metrics.scheme}://{m.listen}:{port}/metrics"
        log.info(
            "agent started: %d server(s), state in %s, metrics %s",
            len(servers),
            self.state_dir,
            self.metrics_url,
        )

    def stop(self) -> None:
        """Stop every thread (bounded), flush the write queue and close the store.

        Each step runs even when an earlier one failed: a stuck collector must not keep
        the writer, the HTTP server or the store open.
        """
        self._stop.set()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        steps: list[tuple[str, Callable[[], None]]] = [
            ("process watch", self._process_watch.stop if self._process_watch else lambda: None),
            ("mda samplers", lambda: interrupt_samplers(self._samplers)),
            ("collector threads", lambda: self._join(deadline)),
            ("metrics server", self.metrics.stop if self.metrics else lambda: None),
            ("store writer", lambda: self._writer.stop(timeout=max(0.5, deadline - time.monotonic()))),
            ("store", self.store.close),
        ]
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping the %s failed", what)

    def _join(self, deadline: float) -> None:
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                log.error("thread %s did not stop in time", t.name)

    @property
    def stopping(self) -> threading.Event:
        """Set when the agent stops; collector loops wait on it."""
        return self._stop

    def run(self) -> int:
        """Start, wait for SIGTERM/SIGINT, stop. Returns the exit code (0)."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self._stop.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    # ------------------------------------------------------------------ collectors -> store

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        """Run ``target`` in a named thread, restarted after an unexpected error until stop."""
        t = threading.Thread(target=self._guarded(name, target), name=name)
        self._threads.append(t)
        t.start()

    def _guarded(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    target()
                    return
                except Exception as e:  # a collector must never take the agent down
                    log.exception("%s failed; restarting it in 1 s", name)
                    self.health.record(CollectorFailed(name, f"internal error: {e}", self._clock()))
                    self._stop.wait(1.0)

        return run

    def _run_process_watch(self) -> None:
        assert self._process_watch is not None
        self._process_watch.run(lambda e: self.submit([e], {}, None), self._stop)

    def _follow(self, follower: ErrorlogFollower) -> Callable[[], None]:
        def run() -> None:
            follower.run(self.emitter(follower.server), self._stop)

        return run

    def emitter(self, server: str) -> Callable[[Sequence[Event], Mapping[str, str]], None]:
        def emit(events: Sequence[Event], positions: Mapping[str, str]) -> None:
            self.submit(events, positions, server)

        return emit

    def submit(
        self,
        events: Sequence[Event],
        positions: Mapping[str, str],
        server: str | None,
        ops: Sequence[DerivedOp] = (),
    ) -> None:
        """Queue facts (and source positions) for the store; health events go to the health fold."""
        facts: list[tuple[str, Event]] = []
        for e in events:
            if isinstance(e, CollectorFailed | CollectorSucceeded):
                self.health.record(e)
            else:
                who = server if server is not None else str(getattr(e, "server", ""))
                facts.append((who, e))
        if not facts and not positions and not ops:
            return
        try:
            self._writer.submit(Batch(events=facts, positions=positions, ops=ops), timeout=1.0)
        except StoreError as e:
            self._dropped[0] += len(facts)
            if not self._drop_logged:
                log.error("dropping events: %s (counted in asewatch_events_dropped_total)", e)
                self._drop_logged = True

    def _committed(self, new: list[StoredEvent]) -> None:
        """On the writer thread, after each commit: advance the crash records, then the dumps
        (after the crashes, so a dump finds the crash record committed just before)."""
        relevant = [se for se in new if se.kind in _ASSEMBLER_KINDS]
        if relevant:
            with self._assembler_lock:
                rows = self._assembler.feed(relevant)
            if rows:
                self.store.append(Batch(ops=crash_ops(rows, self.config.mda)))
        self.dumps.on_committed(new)

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.5):
            with self._assembler_lock:
                rows = self._assembler.tick(self._clock())
            if rows:
                try:
                    self._writer.submit(Batch(ops=crash_ops(rows, self.config.mda)), timeout=1.0)
                except StoreError as e:
                    log.error("crash records: %s", e)

    # ------------------------------------------------------------------ resume

    def _rebuild_crashes(self) -> None:
        """Replay the facts crash records are made of; upserts by key make this idempotent."""
        with self._assembler_lock:
            rows = self._assembler.feed(self.store.events(kinds=_ASSEMBLER_KINDS))
            rows += self._assembler.tick(self._clock())
        if rows:
            self.store.append(Batch(ops=crash_ops(rows, self.config.mda)))

    def _believed_running(self) -> list[tuple[str, int, float]]:
        running: dict[tuple[str, int, float], bool] = {}
        for se in self.store.events(kinds=("ProcessStarted", "ProcessExited")):
            e = se.event
            if isinstance(e, ProcessStarted | ProcessExited):
                running[(se.server, e.pid, round(e.create_time, 3))] = isinstance(e, ProcessStarted)
        return [k for k, up in running.items() if up]

    def _locator(self, server: ServerConfig) -> Callable[[], Path | None]:
        """The configured errorlog, else the ``-e`` of the running dataserver."""

        def locate() -> Path | None:
            if server.errorlog is not None:
                return server.errorlog
            for proc in find_dataservers(DataserverTarget(server.name, server.pid_file, server.run_file)):
                if proc.engine == 0 and proc.args.errorlog:
                    return Path(proc.args.errorlog)
            if server.run_file is not None and server.run_file.is_file():
                args = parse_run_file(server.run_file.read_text(errors="replace"), str(server.run_file))
                return Path(args.errorlog) if args.errorlog else None
            return None

        return locate
