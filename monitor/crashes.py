"""What counts as a crash: process exits and errorlog crash blocks joined into one record.

The signature rule lives in :mod:`monitor.signature` (re-exported here).

Rules (per server, over the event log in ``seq`` order):

- A crash block followed by an exit of the server's engine-0 process within
  ``exit_window`` seconds is one crash that took the server down (state ``crashed``).
- A crash block with no exit is a task crash: the server survived (state ``task``).
  If an exit follows later within the window, the same record becomes ``crashed``.
- An exit with no crash block within ``grace`` seconds after it and no requested
  shutdown before it is an unclean stop (kind ``unclean``, state ``crashed``); a block
  that arrives later still joins that record.
- An exit after ``Shutdown started`` / ``ASE shutdown by request`` is not a crash.

Identity: a record is keyed by whichever fact arrived first — the crash block
(``server|crash:…``) or the exit (``server|pexit:…``) — and every later fact updates
that record. Replaying the same events (an agent restarted after ``kill -9``) yields
the same records, so the store's upsert by key changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from monitor.codec import encode_event
from monitor.events import CrashBlock, ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.signature import SIGNATURE_VERSION, crash_signature
from monitor.store_types import CrashRow, StoredEvent

__all__ = ["SIGNATURE_VERSION", "CrashAssembler", "crash_signature", "local_epoch"]


def local_epoch(t: datetime) -> float:
    """POSIX seconds of a naive local errorlog time (the agent runs on the server's host)."""
    return time.mktime(t.timetuple()) + t.microsecond / 1e6


@dataclass
class _Server:
    engines: dict[int, int | None] = field(default_factory=dict)  # pid -> engine
    open_blocks: list[tuple[float, CrashRow]] = field(default_factory=list)  # block epoch, row
    pending_exits: list[tuple[ProcessExited, int]] = field(default_factory=list)  # exit, seq
    unclean_rows: list[tuple[float, CrashRow]] = field(default_factory=list)  # exit time, row
    shutdown_requested_at: float | None = None


class CrashAssembler:
    """Feed it stored events in order; it returns the crash rows to upsert."""

    def __init__(self, *, exit_window: float = 120.0, grace: float = 5.0) -> None:
        self.exit_window = exit_window
        self.grace = grace
        self._servers: dict[str, _Server] = {}

    def feed(self, events: Iterable[StoredEvent]) -> list[CrashRow]:
        """Advance over new events; returns created or changed rows (upsert them by key)."""
        out: list[CrashRow] = []
        for se in events:
            st = self._servers.setdefault(se.server, _Server())
            ev = se.event
            if isinstance(ev, CrashBlock):
                out.append(self._block(se, ev, st))
            elif isinstance(ev, ProcessStarted):
                st.engines[ev.pid] = ev.engine
                if ev.engine in (None, 0):
                    st.shutdown_requested_at = None
            elif isinstance(ev, ProcessExited):
                out += self._exit(se, ev, st)
            elif isinstance(ev, ServerShutdown) and ev.kind in ("requested", "nowait"):
                at = local_epoch(ev.time)
                st.shutdown_requested_at = at
                # An exit stored before its shutdown lines (the agent was down, or the errorlog
                # lagged) is the end of that shutdown, not an unclean stop.
                st.pending_exits = [
                    (x, q) for x, q in st.pending_exits if not at - 2.0 <= x.exit_time < at + 3600
                ]
            elif isinstance(ev, ServerBooted):
                st.shutdown_requested_at = None
        return out

    def tick(self, now: float) -> list[CrashRow]:
        """Decide what waited long enough: exits with no block become unclean stops."""
        out: list[CrashRow] = []
        for server, st in self._servers.items():
            keep = []
            for ex, seq in st.pending_exits:
                if now - ex.exit_time >= self.grace:
                    row = _unclean_row(server, ex, seq)
                    st.unclean_rows.append((ex.exit_time, row))
                    out.append(row)
                else:
                    keep.append((ex, seq))
            st.pending_exits = keep
            st.open_blocks = [(t, r) for t, r in st.open_blocks if now - t < self.exit_window * 2]
            st.unclean_rows = [(t, r) for t, r in st.unclean_rows if now - t < self.exit_window * 2]
        return out

    # ------------------------------------------------------------------

    def _block(self, se: StoredEvent, b: CrashBlock, st: _Server) -> CrashRow:
        t = local_epoch(b.time)
        # An unclean stop already recorded for an exit just after this block: that is this crash.
        for i, (exit_time, row) in enumerate(st.unclean_rows):
            if t - 2.0 <= exit_time <= t + self.exit_window:
                joined = _with_block(row, b, se.seq, "crashed")
                st.unclean_rows[i] = (exit_time, joined)
                return joined
        for i, (ex, seq) in enumerate(st.pending_exits):
            if t - 2.0 <= ex.exit_time <= t + self.exit_window:
                del st.pending_exits[i]
                joined = _with_exit(_block_row(se.server, b, se.seq), ex, seq)
                # The exit came first: it keys the record, as it would had the grace run out
                # (a replay without ticks in between must give the same key).
                return replace(joined, key=f"{se.server}|{ex.key}")
        row = _block_row(se.server, b, se.seq)
        st.open_blocks.append((t, row))
        return row

    def _exit(self, se: StoredEvent, ex: ProcessExited, st: _Server) -> list[CrashRow]:
        engine = st.engines.pop(ex.pid, None)
        if engine not in (None, 0):
            return []  # an engine process of a process-mode server: engine 0's exit speaks for it
        for i, (t, row) in enumerate(st.open_blocks):
            if t - 2.0 <= ex.exit_time <= t + self.exit_window:
                del st.open_blocks[i]
                return [_with_exit(row, ex, se.seq)]
        req = st.shutdown_requested_at
        if req is not None and ex.exit_time - req < 3600:
            st.shutdown_requested_at = None
            return []  # a requested shutdown is not a crash
        st.pending_exits.append((ex, se.seq))
        return []


def _block_row(server: str, b: CrashBlock, seq: int) -> CrashRow:
    return CrashRow(
        server=server,
        key=f"{server}|{b.key}",
        time=b.time,
        kind=b.kind,
        signal=b.signal,
        signature=b.signature,
        spid=b.spid,
        kpid=b.kpid,
        family=b.family,
        login=b.login,
        host=b.hostname,
        program=b.program,
        sql=b.sql or (b.sql_text[0] if b.sql_text else None),
        procedure=b.procedure,
        server_terminated=b.server_terminated,
        complete=b.complete,
        errorlog_event_seq=seq,
        state="crashed" if b.server_terminated else "task",
        payload=encode_event(b),
    )


def _with_exit(row: CrashRow, ex: ProcessExited, seq: int) -> CrashRow:
    return replace(
        row,
        exit_pid=ex.pid,
        exit_time=ex.exit_time,
        exit_event_seq=seq,
        server_terminated=True,
        state="crashed",
    )


def _with_block(row: CrashRow, b: CrashBlock, seq: int, state: str) -> CrashRow:
    joined = _block_row(row.server, b, seq)
    return replace(
        joined,
        key=row.key,
        exit_pid=row.exit_pid,
        exit_time=row.exit_time,
        exit_event_seq=row.exit_event_seq,
        server_terminated=True,
        state=state,
    )


def _unclean_row(server: str, ex: ProcessExited, seq: int) -> CrashRow:
    return CrashRow(
        server=server,
        key=f"{server}|{ex.key}",
        time=datetime.fromtimestamp(ex.exit_time),
        kind="unclean",
        signal=ex.signal,
        signature=None,
        server_terminated=True,
        complete=None,
        exit_pid=ex.pid,
        exit_time=ex.exit_time,
        exit_event_seq=seq,
        state="crashed",
        payload="{}",
    )
