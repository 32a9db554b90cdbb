"""When the server ran, as its errorlog tells it: one rule for the offline inputs
(monitor/suspects_input.py) and the store's errorlog events (monitor/suspects_store.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from monitor.events import CrashBlock, ErrorlogRecord, ServerBooted, ServerShutdown

Run = tuple[datetime, datetime | None]  # an interval the server ran; None: still running


def logged_runs(
    records: Iterable[ErrorlogRecord], *, up_at: datetime | None = None, last: datetime | None = None
) -> list[Run]:
    """The intervals the server ran: from ``up_at`` (the log opened on a running server) or
    a boot (a failed one never ran) until a shutdown, a crash that took it down, or a boot
    while it was up (the stop left no lines). One still open ends at ``last`` (None: open).
    Records are taken in time order (a held crash block is emitted late); other kinds are
    ignored. Empty intervals are dropped.
    """
    runs: list[Run] = []
    up = up_at
    for r in sorted(records, key=lambda r: r.time):
        down = isinstance(r, ServerShutdown) or (isinstance(r, CrashBlock) and r.server_terminated)
        booted = isinstance(r, ServerBooted) and not r.failed
        if up is not None and (down or booted):
            runs.append((up, r.time))
            up = None
        if booted:
            up = r.time
    if up is not None:
        runs.append((up, last))
    return [(s, e) for s, e in runs if e is None or e > s]
