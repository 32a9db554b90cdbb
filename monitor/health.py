"""Collector health: errors and last success per collector, kept by the agent in memory.

Collectors report through ``CollectorFailed``/``CollectorSucceeded`` events; the agent
folds them here and the metrics read it at scrape time. A failure is logged once per
change of reason, never once per retry, so a missing errorlog does not flood the log.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from monitor.events import CollectorFailed, CollectorSucceeded

log = logging.getLogger("asewatch.health")


@dataclass(frozen=True, slots=True)
class CollectorHealth:
    collector: str
    errors: int
    last_success: float | None
    last_error: str | None
    up: bool


class Health:
    """Thread-safe fold of collector health events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}
        self._success: dict[str, float] = {}
        self._last_error: dict[str, str | None] = {}

    def register(self, collector: str) -> None:
        """Export the collector's series from the start (0 errors), before it reports anything."""
        with self._lock:
            self._errors.setdefault(collector, 0)
            self._last_error.setdefault(collector, None)

    def record(self, event: CollectorFailed | CollectorSucceeded) -> None:
        with self._lock:
            name = event.collector
            self._errors.setdefault(name, 0)
            if isinstance(event, CollectorFailed):
                self._errors[name] += 1
                if self._last_error.get(name) != event.reason:
                    log.warning("%s: %s (retrying)", name, event.reason)
                self._last_error[name] = event.reason
            else:
                if self._last_error.get(name):
                    log.info("%s: recovered", name)
                self._last_error[name] = None
                self._success[name] = max(event.time, self._success.get(name, 0.0))

    def snapshot(self) -> list[CollectorHealth]:
        with self._lock:
            return [
                CollectorHealth(
                    name,
                    n,
                    self._success.get(name),
                    self._last_error.get(name),
                    self._last_error.get(name) is None,
                )
                for name, n in sorted(self._errors.items())
            ]
