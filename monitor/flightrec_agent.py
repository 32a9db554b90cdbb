"""Wiring of the flight recorder into the agent (issue 4): one MDA sampler per server, its
samples into the store, and the crash freeze.

``start_mda_samplers(agent, servers, mda)`` spawns a ``mda-<SERVER>`` thread per server that has
a ``[server.database]`` when ``[mda] enabled``; each sample goes to the store as one
batch (its events plus a :class:`~monitor.flightrec.RecordSample` op). A sampler resumes
from the ``StartDate`` the store saw last, so a restart during agent downtime is still
reported. ``crash_ops(rows, mda)`` are the writes for crash rows being made: the upserts,
then the freezes (same transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from monitor.config import ServerConfig
from monitor.config_mda import MdaConfig
from monitor.flightrec import ops_for
from monitor.flightrec_freeze import freeze_ops
from monitor.flightrec_read import last_start_date
from monitor.health import Health
from monitor.store import Store
from monitor.store_types import CrashRow, DerivedOp, UpsertCrash

if TYPE_CHECKING:
    from collectors.mda.rows import MdaSample
    from collectors.mda.sampler import MdaSampler
    from monitor.events import Event


class SamplerHost(Protocol):
    """What the samplers need of the agent (monitor.agent.Agent)."""

    store: Store
    health: Health

    @property
    def stopping(self) -> threading.Event: ...

    def spawn(self, name: str, target: Callable[[], None]) -> None: ...

    def submit(
        self,
        events: Sequence[Event],
        positions: Mapping[str, str],
        server: str | None,
        ops: Sequence[DerivedOp] = (),
    ) -> None: ...


def start_mda_samplers(
    agent: SamplerHost, servers: Sequence[ServerConfig], mda: MdaConfig
) -> list[MdaSampler]:
    """Spawn one sampler thread per server with a database connection configured; returns them
    (call :func:`interrupt_samplers` at stop, before joining, so a query in flight is
    cancelled rather than waited for). Nothing with ``mda.enabled`` off."""
    if not mda.enabled:
        return []
    from collectors.mda.sampler import MdaSampler  # noqa: PLC0415 - loads the ODBC driver manager

    samplers = []
    for s in servers:
        db = s.database
        if db is None:
            continue
        with agent.store.reader() as r:
            known = last_start_date(r, s.name)
        sampler = MdaSampler(s.name, db, mda, known_start=known)
        agent.health.register(sampler.source)
        agent.spawn(f"mda-{s.name}", _runner(agent, sampler, s.name, mda))
        samplers.append(sampler)
    return samplers


def _runner(agent: SamplerHost, sampler: MdaSampler, server: str, mda: MdaConfig) -> Callable[[], None]:
    def emit(events: Sequence[Event], sample: MdaSample | None) -> None:
        agent.submit(events, {}, server, ops=ops_for(server, sample, mda) if sample is not None else ())

    def run() -> None:
        sampler.run(emit, agent.stopping)

    return run


def crash_ops(rows: Sequence[CrashRow], mda: MdaConfig) -> list[DerivedOp]:
    """The upserts of ``rows`` followed by their freezes (a no-op for a server never sampled)."""
    return [*(UpsertCrash(r) for r in rows), *freeze_ops(rows, mda)]


def interrupt_samplers(samplers: Sequence[MdaSampler]) -> None:
    """Cancel every sampler's query in flight (at agent stop, before joining the threads)."""
    for s in samplers:
        s.interrupt()
