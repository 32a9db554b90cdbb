"""The agent's suspects: ranked again after each crash, kept in the store for every reader.

One thread (``suspects``) looks every few seconds at a fingerprint of each server's crash
records (their number and newest update: a new crash, a frozen flight record settling,
an exit joined). When it changed, and no more often than ``min_gap`` seconds, it reads
the server's crashes, flight recorder and change ledger from one store snapshot, ranks
the suspects (monitor/suspects.py, the same code as ``asewatch suspects``) and stores
the result as JSON under ``suspects:<server>``. Scrapes, ``asewatch show`` and the
vendor package read that; nothing is computed on a scrape.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from monitor.errors import AsewatchError
from monitor.events import CollectorFailed, CollectorSucceeded
from monitor.health import Health
from monitor.store import Store
from monitor.store_reader import StoreReader

log = logging.getLogger("asewatch.suspects")
SOURCE = "suspects"
STATE_PREFIX = "suspects:"


def state_key(server: str) -> str:
    """The store state key holding ``server``'s ranked suspects (JSON)."""
    return STATE_PREFIX + server


def compute(r: StoreReader, server: str) -> dict[str, Any]:
    """Rank ``server``'s suspects from one store snapshot; the ``asewatch suspects --json``
    object plus ``server`` and ``computed_at`` (ISO local time)."""
    # Imported here: readers of stored suspects (metrics, show, the package) need no pandas/scipy.
    from monitor.suspects import rank_suspects, suspects_json  # noqa: PLC0415
    from monitor.suspects_store import store_inputs  # noqa: PLC0415

    doc = suspects_json(rank_suspects(store_inputs(r, server)))
    return {"server": server, "computed_at": datetime.now().isoformat(timespec="seconds"), **doc}


def stored(r: StoreReader, server: str) -> dict[str, Any] | None:
    """The suspects last stored for ``server``, or None (none computed yet, or unreadable)."""
    text = r.get_state(state_key(server))
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def group_of(doc: Mapping[str, Any] | None, signature: str | None) -> dict[str, Any] | None:
    """The group of ``signature`` in a stored suspects document, or None."""
    if doc is None or signature is None:
        return None
    for g in doc.get("groups", ()):
        if isinstance(g, dict) and g.get("signature") == signature:
            return g
    return None


def _fingerprint(r: StoreReader, server: str) -> tuple[object, ...]:
    [row] = r.query("SELECT count(*), max(updated_at) FROM crashes WHERE server = ?", (server,))
    return tuple(row)


class SuspectsRefresher:
    """Recomputes each server's suspects after its crash records change. One thread."""

    def __init__(
        self,
        store: Store,
        servers: Iterable[str],
        health: Health,
        *,
        interval: float = 2.0,
        min_gap: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._servers = tuple(servers)
        self._health = health
        self._interval = interval
        self._min_gap = min_gap
        self._clock = clock
        self._seen: dict[str, tuple[object, ...]] = {}
        self._last_run: dict[str, float] = {}
        self.last_seconds: float | None = None  # how long the last recomputation took
        health.register(SOURCE)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: refresh whatever is due. Never raises (failures go to health)."""
        while not stop.wait(self._interval):
            self.run_once()

    def run_once(self) -> list[str]:
        """Recompute every server whose crash records changed; returns those servers."""
        done = []
        for server in self._servers:
            now = self._clock()
            if now - self._last_run.get(server, -self._min_gap) < self._min_gap:
                continue
            try:
                with self._store.reader() as r:
                    fp = _fingerprint(r, server)
                    if fp == self._seen.get(server) or fp[0] == 0:
                        continue
                    started = time.perf_counter()
                    doc = compute(r, server)
                self._store.set_state(state_key(server), json.dumps(doc, ensure_ascii=False))
            except (AsewatchError, ValueError, KeyError) as e:
                self._health.record(CollectorFailed(SOURCE, f"{server}: {e}", time.time()))
                self._last_run[server] = now
                continue
            self.last_seconds = time.perf_counter() - started
            self._seen[server], self._last_run[server] = fp, now
            self._health.record(CollectorSucceeded(SOURCE, time.time()))
            log.info("suspects of %s ranked in %.2f s", server, self.last_seconds)
            done.append(server)
        return done
