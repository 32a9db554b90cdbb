"""Read-side views over the store: what the metrics, `status` and `crashes` show.

Queries live in ``monitor/sql/*.sql``, one per file; each names the table it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.codec import decode_event
from monitor.crashes import local_epoch
from monitor.events import ProcessExited, ProcessSample, ProcessStarted
from monitor.sqlfiles import load_sql
from monitor.store_reader import StoreReader


def sql(name: str) -> str:
    """The query in ``monitor/sql/<name>.sql`` without its comment lines."""
    return load_sql("monitor", "sql", name)


@dataclass(frozen=True, slots=True)
class ServerView:
    """The newest known state of one server's engine-0 process. Times are POSIX seconds."""

    server: str
    up: bool
    pid: int | None
    start_time: float | None
    exit_time: float | None
    rss_bytes: int | None
    cpu_seconds: float | None
    threads: int | None
    open_files: int | None


@dataclass(frozen=True, slots=True)
class CrashCount:
    server: str
    kind: str
    signature: str
    count: int
    last_timestamp: float


def _latest(r: StoreReader, kind: str, server: str, limit: int) -> list[object]:
    rows = r.query(sql("latest_events"), (kind, server, limit))
    return [decode_event(kind, payload) for _, payload in rows]


def servers(r: StoreReader, configured: tuple[str, ...] = ()) -> list[str]:
    """Configured servers first, then any other server the log knows."""
    known = sorted(row[0] for row in r.query(sql("servers")))
    return [*configured, *(s for s in known if s not in configured)]


def server_view(r: StoreReader, server: str) -> ServerView:
    """Up/down, start time and the newest resource sample of the server's engine-0 process."""
    start = next(
        (
            e
            for e in _latest(r, "ProcessStarted", server, 20)
            if isinstance(e, ProcessStarted) and e.engine in (None, 0)
        ),
        None,
    )
    if start is None:
        return ServerView(server, False, None, None, None, None, None, None, None)
    exits = [e for e in _latest(r, "ProcessExited", server, 20) if isinstance(e, ProcessExited)]
    gone = next(
        (e for e in exits if (e.pid, round(e.create_time, 3)) == (start.pid, round(start.create_time, 3))),
        None,
    )
    sample = next(
        (
            e
            for e in _latest(r, "ProcessSample", server, 10)
            if isinstance(e, ProcessSample) and e.pid == start.pid
        ),
        None,
    )
    last_exit = exits[0].exit_time if exits else None
    if sample is None or gone is not None:
        return ServerView(
            server, gone is None, start.pid, start.create_time, last_exit, None, None, None, None
        )
    return ServerView(
        server, True, start.pid, start.create_time, last_exit,
        sample.rss_bytes, sample.cpu_seconds, sample.threads, sample.open_files,
    )  # fmt: skip


def crash_counts(r: StoreReader) -> list[CrashCount]:
    """Crashes per server, kind and signature, with the newest crash's time."""
    out = []
    for server, kind, signature, count, last_exit, last_time in r.query(sql("crash_counts")):
        t = max(float(last_exit or 0), local_epoch(datetime.fromisoformat(last_time)) if last_time else 0.0)
        out.append(CrashCount(server, kind, signature, int(count), t))
    return out


def errors_by_severity(r: StoreReader) -> list[tuple[str, int, int]]:
    """(server, severity, count) for every errorlog error."""
    return [(s, int(sev), int(n)) for s, sev, n in r.query(sql("errors_by_severity"))]


def count_by_server(r: StoreReader, kind: str) -> dict[str, int]:
    """How many events of ``kind`` each server has."""
    return {s: int(n) for s, n in r.query(sql("count_by_server"), (kind,))}
