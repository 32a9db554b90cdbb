"""The shipper: finished packages from the spool to every configured target, exactly once.

:class:`Shipper` finds packages (a scan of the spool every ``scan_interval``, or
:meth:`Shipper.package_ready`), queues each file for each target in the store, and
runs one named thread per target (``ship-<target>``) that works the queue: claim,
upload (resumed where a previous run stopped), verify, mark verified. All state is in
the store (see :mod:`monitor.ship_state`), so a ``kill -9`` at any moment resumes on
the next start; a lock file next to the store keeps a second shipper (the agent and
``asewatch ship --now``) from working the same queue at the same time.

Policy: a failed attempt is retried after an exponential backoff with jitter
(tenacity); a target that cannot be reached backs off as a whole. Metadata goes
first. Outside a target's time window dumps wait (and metadata too, unless
metadata-first). With metadata-first, dumps are held until ``asewatch ship --release
PACKAGE`` or ``release_after`` seconds.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from monitor.config_ship import ShipConfig
from monitor.errors import InputError, StoreError
from monitor.ship_loop import PassResult, TargetLoop, backoff
from monitor.ship_package import MANIFEST, Package, dump_sources, finished_packages, read_package
from monitor.ship_state import (
    CONTRACT_STATE_KEY,
    EnqueuePackage,
    MarkDone,
    Release,
    packages_due_for_release,
    packages_shipped,
)
from monitor.ship_targets import Hook, Target, make_target
from monitor.store import Batch, SetState, Store

__all__ = [
    "CONTRACT_STATE_KEY",
    "FORCE_STATE_KEY",
    "LOCK_NAME",
    "PassResult",
    "ShipBusyError",
    "ShippedPackage",
    "Shipper",
    "backoff",
]

log = logging.getLogger("asewatch.ship")

LOCK_NAME = "ship.lock"
FORCE_STATE_KEY = "ship.force_requested_at"


class ShipBusyError(Exception):
    """Another shipper holds the lock of this store."""


@dataclass(frozen=True, slots=True)
class ShippedPackage:
    """A package every target holds, verified: its id, folder and the SHA-256s of the
    original dumps it was made from (for retention: they are shipped now)."""

    package_id: str
    path: Path
    dump_sha256s: tuple[str, ...]


class Shipper:
    """Ships the spool's packages to ``targets``. ``run(stop)`` in a thread of its own."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[Target],
        config: ShipConfig,
        *,
        spool_dir: Path,
        clock: Callable[[], float] = time.time,
        local_now: Callable[[], datetime] = datetime.now,
        on_phase: Hook | None = None,
        on_shipped: Callable[[ShippedPackage], None] | None = None,
        contract_end: date | None = None,
    ) -> None:
        self.store = store
        self.targets = tuple(targets)
        self.config = config
        self.spool_dir = Path(spool_dir)
        # Read by the target loops (monitor/ship_loop.py):
        self.clock = clock
        self.local_now = local_now
        self.hook = on_phase
        self._on_shipped = on_shipped
        self._contract_end = contract_end
        self._known: set[str] = set()
        self._bad: dict[str, float] = {}
        self.wakes = {t.name: threading.Event() for t in self.targets}
        self.force_gen = 0
        self._force_seen: str | None = None
        self._lock_fd: int | None = None

    @classmethod
    def from_config(
        cls, store: Store, config: ShipConfig, state_dir: Path, *, spool_dir: Path | None = None, **kw: Any
    ) -> Shipper:
        """A shipper for the enabled ``[[ship.target]]`` tables. The spool is ``spool_dir``, else
        ``[ship] spool_dir``, else ``<state_dir>/spool``. Other keywords go to the constructor."""
        targets = [make_target(t) for t in config.targets if t.enabled]
        spool = spool_dir or config.spool_dir or Path(state_dir) / "spool"
        return cls(store, targets, config, spool_dir=spool, **kw)

    # ------------------------------------------------------------------ intake

    def package_ready(self, path: Path) -> Package:
        """Queue the finished package in folder ``path`` now (idempotent) and wake the
        target threads. Raises InputError if it is not a valid package, StoreError."""
        package = read_package(Path(path))
        self._enqueue(package)
        for wake in self.wakes.values():
            wake.set()
        return package

    def _enqueue(self, package: Package) -> None:
        c = self.config
        release_at = self.clock() + c.release_after if c.metadata_first and c.release_after else None
        names = tuple(t.name for t in self.targets)
        self.store.append(Batch(ops=(EnqueuePackage(package, names, c.metadata_first, release_at),)))
        self._known.add(package.package_id)

    def scan(self) -> int:
        """Queue the spool's finished packages not queued by this shipper yet; return how many."""
        found = 0
        for path in finished_packages(self.spool_dir):
            if path.name in self._known:
                continue
            try:
                package = read_package(path)
            except InputError as exc:
                mtime = _mtime(path)
                if self._bad.get(path.name) != mtime:  # once per change of the folder
                    log.error("spool: skipping %s", exc)
                    self._bad[path.name] = mtime
                continue
            self._enqueue(package)
            found += 1
        if found:
            for wake in self.wakes.values():
                wake.set()
        return found

    def release(self, package_id: str, by: str) -> None:
        """Let the held dumps of ``package_id`` go (they ship at the next window)."""
        self.store.append(Batch(ops=(Release(package_id, by),)))
        for wake in self.wakes.values():
            wake.set()

    def _housekeeping(self) -> None:
        with self.store.reader() as r:
            due = packages_due_for_release(r, self.clock())
            force = r.get_state(FORCE_STATE_KEY)
            shipped = packages_shipped(r)
        for package_id, path in shipped:
            self._tell_shipped(package_id, Path(path))
        for package_id in due:
            log.info("package %s: dumps released after the configured delay", package_id)
            self.release(package_id, "release_after")
        if force is not None and force != self._force_seen:
            if self._force_seen is not None or self.clock() - float(force) < 3600:
                self.force_gen += 1
                for wake in self.wakes.values():
                    wake.set()
            self._force_seen = force

    def _tell_shipped(self, package_id: str, path: Path) -> None:
        """Tell the dumps' owner (``on_shipped``; it must be idempotent: a kill -9 between
        the call and the mark repeats it), then mark the package done."""
        try:
            doc = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            sources = dump_sources(doc) if isinstance(doc, dict) else ()
        except (OSError, ValueError):
            sources = ()  # the spool copy may be cleaned up already
        if self._on_shipped is not None:
            try:
                self._on_shipped(ShippedPackage(package_id, path, sources))
            except Exception:
                log.exception("package %s: on_shipped failed (retried at the next scan)", package_id)
                return
        log.info("package %s: every file verified on every target", package_id)
        self.store.append(Batch(ops=(MarkDone(package_id),)))

    # ------------------------------------------------------------------ running

    def run(self, stop: threading.Event) -> None:
        """Ship until ``stop`` is set: take the lock (waiting while another shipper holds
        it), queue the spool, start the target threads, rescan every ``scan_interval``.
        Returns after the target threads stopped (each within its timeout)."""
        if not self._wait_lock(stop):
            return
        threads: list[threading.Thread] = []
        try:
            self._record_contract()
            self._scan_logged()
            for target in self.targets:
                worker = TargetLoop(self, target, stop)
                t = threading.Thread(target=worker.run, name=f"ship-{target.name}", daemon=False)
                threads.append(t)
                t.start()
            while not stop.wait(self.config.scan_interval):
                self._scan_logged()
        finally:
            for wake in self.wakes.values():
                wake.set()
            for t, target in zip(threads, self.targets, strict=False):
                t.join(timeout=target.config.timeout + 5.0)
                if t.is_alive():
                    log.error("thread %s did not stop in time", t.name)
            self._unlock()

    def run_once(self, *, force: bool = False, stop: threading.Event | None = None) -> dict[str, PassResult]:
        """One pass in this thread over every target (``asewatch ship --now``): queue the spool,
        ship what is due (with ``force``: ignore windows and retry times). Raises
        ShipBusyError when another shipper holds the lock."""
        if not self._try_lock():
            raise ShipBusyError(str(self._lock_path()))
        try:
            self._record_contract()
            self.scan()
            self._housekeeping()
            stop = stop or threading.Event()
            results = {}
            for t in self.targets:
                worker = TargetLoop(self, t, stop)
                try:
                    results[t.name] = worker.one_pass(force=force, limit=100_000)
                finally:
                    worker.close()
            return results
        finally:
            self._unlock()

    def _scan_logged(self) -> None:
        try:
            self.scan()
            self._housekeeping()
        except (StoreError, OSError) as exc:
            log.error("spool scan failed (retried): %s", exc)

    def _record_contract(self) -> None:
        if self._contract_end is not None:
            end = datetime.combine(self._contract_end, datetime.min.time()).timestamp()
            self.store.append(Batch(ops=(SetState(CONTRACT_STATE_KEY, repr(end)),)))

    # ------------------------------------------------------------------ the lock

    def _lock_path(self) -> Path:
        return self.store.path.parent / LOCK_NAME

    def _try_lock(self) -> bool:
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def _wait_lock(self, stop: threading.Event) -> bool:
        logged = False
        while not self._try_lock():
            if not logged:
                log.warning("another asewatch is shipping from this store (%s); waiting", self._lock_path())
                logged = True
            if stop.wait(1.0):
                return False
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
