"""Crash assembly: block + exit join, task crashes, unclean stops, requested shutdowns, replay."""

from __future__ import annotations

from datetime import datetime
from itertools import count

import pytest

from monitor.crashes import CrashAssembler, local_epoch
from monitor.events import CrashBlock, Event, ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.store_types import StoredEvent

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 9, 0, 0)
E0 = local_epoch(T0)


def block(t: datetime = T0, spid: int = 1279, kpid: int = 55, terminated: bool = False) -> CrashBlock:
    return CrashBlock(
        time=t, kind="signal", signal=11, thread=5, engine=None, family=312, spid=spid, kpid=kpid, suid=1,
        address_function="LeXchgOp::_LeOpNext", sql="exec p_brev_sok_central_utskrift @pnr = '19121212-1212'",
        statement_number=1, line_number=1, sql_text=(), curdb=4, lasterror=0, transtate=1, curcmd=197,
        program="IMX Klient", hostname="ws-avd12-034", login="lakare_anna",
        frames=("pcstkwalk", "kisignal", "LeXchgOp::_LeOpNext"), handlers=(), complete=True,
        server_terminated=terminated, procedure="p_brev_sok_central_utskrift", signature="abc", offset=0, lines=20,
    )  # fmt: skip


def started(pid: int, at: float, engine: int | None = None) -> ProcessStarted:
    return ProcessStarted("SRV", pid, at, engine, ("dataserver", "-sSRV"), at)


def exited(pid: int, created: float, at: float) -> ProcessExited:
    return ProcessExited("SRV", pid, created, at, None, None, at)


class Log:
    def __init__(self) -> None:
        self.seq = count(1)

    def __call__(self, *events: Event) -> list[StoredEvent]:
        return [StoredEvent(next(self.seq), "SRV", type(e).__name__, 0.0, e) for e in events]


def test_block_then_exit_is_one_crash_that_took_the_server_down() -> None:
    a, log = CrashAssembler(), Log()
    rows = a.feed(log(started(100, E0 - 60), block()))
    assert [r.state for r in rows] == ["task"]
    rows2 = a.feed(log(exited(100, E0 - 60, E0 + 0.3)))
    assert len(rows2) == 1
    r = rows2[0]
    assert r.key == rows[0].key
    assert (r.state, r.server_terminated, r.exit_pid, r.kind, r.signal) == (
        "crashed",
        True,
        100,
        "signal",
        11,
    )
    assert (r.login, r.procedure, r.family, r.spid) == (
        "lakare_anna",
        "p_brev_sok_central_utskrift",
        312,
        1279,
    )
    assert a.tick(E0 + 100) == []


def test_exit_first_then_block_within_grace_is_still_one_crash() -> None:
    a, log = CrashAssembler(grace=5.0), Log()
    assert a.feed(log(started(100, E0 - 60), exited(100, E0 - 60, E0 + 0.1))) == []
    rows = a.feed(log(block()))
    assert len(rows) == 1
    assert (rows[0].state, rows[0].exit_pid) == ("crashed", 100)
    assert a.tick(E0 + 60) == []  # no unclean stop on top of it


def test_exit_without_block_is_an_unclean_stop_and_a_late_block_joins_it() -> None:
    a, log = CrashAssembler(grace=5.0), Log()
    a.feed(log(started(100, E0 - 60), exited(100, E0 - 60, E0 + 0.1)))
    assert a.tick(E0 + 2) == []  # still within grace
    [unclean] = a.tick(E0 + 6)
    assert (unclean.kind, unclean.state, unclean.signature, unclean.exit_pid) == (
        "unclean",
        "crashed",
        None,
        100,
    )
    [joined] = a.feed(log(block()))
    assert joined.key == unclean.key  # the same record, now with the block's facts
    assert (joined.kind, joined.signature, joined.login) == ("signal", "abc", "lakare_anna")


def test_requested_shutdown_is_not_a_crash() -> None:
    a, log = CrashAssembler(grace=1.0), Log()
    sd = ServerShutdown(T0, "requested", "sa", 0)
    assert a.feed(log(started(100, E0 - 60), sd, exited(100, E0 - 60, E0 + 2))) == []
    assert a.tick(E0 + 60) == []
    # ... but after the next boot and start, an exit without a shutdown is unclean again
    a.feed(log(ServerBooted(T0, None, False, None, 0), started(101, E0 + 10), exited(101, E0 + 10, E0 + 20)))
    [r] = a.tick(E0 + 30)
    assert r.kind == "unclean"


def test_task_crash_stays_a_task_crash_when_the_server_survives() -> None:
    a, log = CrashAssembler(exit_window=120), Log()
    [r] = a.feed(log(started(100, E0 - 60), block()))
    assert (r.state, r.server_terminated) == ("task", False)
    assert a.tick(E0 + 600) == []
    # an exit long after the window is not this crash
    assert a.feed(log(exited(100, E0 - 60, E0 + 600))) == []
    [unclean] = a.tick(E0 + 700)
    assert unclean.kind == "unclean"


def test_engine_processes_do_not_count_as_server_exits() -> None:
    a, log = CrashAssembler(grace=1.0), Log()
    a.feed(log(started(100, E0 - 60, engine=0), started(101, E0 - 60, engine=1)))
    assert a.feed(log(exited(101, E0 - 60, E0))) == []
    assert a.tick(E0 + 10) == []


def test_replaying_the_same_events_gives_the_same_rows() -> None:
    events = Log()(
        started(100, E0 - 60), block(), exited(100, E0 - 60, E0 + 0.2),
        started(200, E0 + 5), exited(200, E0 + 5, E0 + 30),
        block(datetime(2026, 11, 26, 9, 1, 0), spid=44, kpid=9),
    )  # fmt: skip

    def run() -> dict[str, object]:
        a = CrashAssembler(grace=5.0)
        rows = a.feed(events) + a.tick(E0 + 3600)
        return {r.key: r for r in rows}

    first, second = run(), run()
    assert first == second
    assert len(first) == 3  # the joined crash, the unclean stop, the task crash
