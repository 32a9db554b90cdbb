"""When the server ran, from errorlog records: the one rule offline and store inputs share."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta

import pytest

from monitor.events import CrashBlock, ServerBooted, ServerShutdown
from monitor.suspects_uptime import logged_runs

pytestmark = pytest.mark.unit
T = datetime(2026, 11, 26, 6, 0)


def at(h: float) -> datetime:
    return T + timedelta(hours=h)


def boot(h: float, failed: bool = False) -> ServerBooted:
    return ServerBooted(
        at(h), "Adaptive Server Enterprise/16.0 SP04", failed, "no memory" if failed else None, 0
    )


def stop(h: float) -> ServerShutdown:
    return ServerShutdown(at(h), "requested", "sa", 0)


def crash(h: float, terminated: bool) -> CrashBlock:
    kw: dict[str, object] = {f.name: None for f in fields(CrashBlock)}
    kw.update(time=at(h), kind="signal", frames=(), handlers=(), sql_text=(), server_terminated=terminated)
    return CrashBlock(**kw)  # type: ignore[arg-type]


def test_boot_to_stop_a_fatal_crash_ends_a_run_and_a_survived_one_does_not() -> None:
    records = [boot(0), crash(1, False), crash(2, True), boot(2.1), stop(5)]
    assert logged_runs(records) == [(at(0), at(2)), (at(2.1), at(5))]


def test_a_failed_boot_never_ran_and_a_boot_while_up_ends_the_run_before() -> None:
    assert logged_runs([boot(0), boot(1, failed=True), boot(3)], last=at(4)) == [
        (at(0), at(3)),
        (at(3), at(4)),
    ]


def test_a_log_opened_mid_run_runs_from_its_first_line_and_an_open_run_keeps_no_end() -> None:
    assert logged_runs([stop(2), boot(3)], up_at=at(0)) == [(at(0), at(2)), (at(3), None)]


def test_records_out_of_order_are_taken_in_time_order() -> None:
    # A crash block is emitted when it is complete, after lines logged later.
    assert logged_runs([boot(2.1), crash(2, True), boot(0)]) == [(at(0), at(2)), (at(2.1), None)]
