"""The agent's packager: a vendor package for every crash whose dumps are finished.

A crash is packaged once its attached dumps are all finished (complete, truncated or
unreadable — none ``writing``) and it is ``settle`` seconds old (a dump may still be
attached a little after the crash), or, with no dump at all, after ``no_dump_wait``
seconds (the package then carries the crash, the errorlog and the context without a
dump). What was packaged is remembered in the store (``package:<crash key>``), so a
restarted agent never packages a crash twice; a failure is retried later and counted.
The package lands in the spool, where the shipper picks it up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from monitor.dumps_read import dumps_of_crash
from monitor.errors import AsewatchError
from monitor.events import CollectorFailed, CollectorSucceeded
from monitor.health import Health
from monitor.package import build_package
from monitor.store import Store

log = logging.getLogger("asewatch.package")
SOURCE = "packager"
RETRY_S = 60.0


class AutoPackager:
    """Polls the crash records; builds the packages that are due. One thread."""

    def __init__(
        self,
        store: Store,
        config: object,
        health: Health,
        *,
        out_dir: Path | None = None,
        settle: float = 10.0,
        no_dump_wait: float = 120.0,
        interval: float = 2.0,
        on_built: Callable[[Path], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config = config
        self._health = health
        self._out_dir = out_dir
        self._settle = settle
        self._no_dump_wait = no_dump_wait
        self._interval = interval
        self._on_built = on_built
        self._clock = clock
        self._failed_at: dict[str, float] = {}
        health.register(SOURCE)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            self.run_once()

    def run_once(self) -> list[Path]:
        """Build every package that is due now; returns their folders."""
        built = []
        now = self._clock()
        for crash in self._store.crashes():
            key = f"package:{crash.key}"
            if crash.id is None or self._store.get_state(key) is not None:
                continue
            if now - self._failed_at.get(crash.key, -RETRY_S) < RETRY_S:
                continue
            if not self._due(crash.id, crash.exit_time or crash.updated_at or now, now):
                continue
            try:
                result = build_package(self._store, crash.id, self._out_dir, self._config, progress=False)
            except AsewatchError as e:
                self._failed_at[crash.key] = now
                self._health.record(CollectorFailed(SOURCE, f"crash {crash.id}: {e}", now))
                continue
            self._store.set_state(key, result.package_id)
            self._health.record(CollectorSucceeded(SOURCE, now))
            log.info("crash %s packaged: %s", crash.id, result.path)
            built.append(result.path)
            if self._on_built is not None:
                self._on_built(result.path)
        return built

    def _due(self, crash_id: int, crash_at: float, now: float) -> bool:
        with self._store.reader() as r:
            dumps = dumps_of_crash(r, crash_id)
        if any(d.state == "writing" for d in dumps):
            return False
        wait = self._settle if dumps else self._no_dump_wait
        return now - crash_at >= wait
