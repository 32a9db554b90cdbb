"""The ranking's inputs from the agent's store (monitor/suspects_store.py), and `asewatch suspects`
on a store: written with the store's own writer, the flight recorder's ops and real events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from collectors.mda.rows import StatementRow
from monitor.config_mda import MdaConfig
from monitor.errors import InputError
from monitor.events import ConfigChanged, Event, ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.events_changes import (
    Deployment,
    DumpConditions,
    FlagChanged,
    ProcedureChanged,
    ProcedureChangeSummary,
)
from monitor.flightrec_freeze import FreezeCrash
from monitor.store import Batch, Store
from monitor.store_types import CrashRow
from monitor.suspects_cli import suspects_cmd
from monitor.suspects_store import store_inputs
from tests import test_flightrec
from tests.test_flightrec import CRASH, T0, Clock, incident, record, sample, session, stmt

pytestmark = pytest.mark.unit

SERVER = "CLINIC1"
CULPRIT, FREQUENT = "p_brev_sok_central_utskrift", "p_patient_get"
WIDE = MdaConfig(raw_minutes=1440)
COLUMNS = ("spid", "kpid", "family", "procedure", "login", "host", "application", "start_time", "end_time")


def local(seconds: float) -> datetime:
    """POSIX seconds as the naive local time the frames hold."""
    return datetime.fromtimestamp(seconds)


def put(store: Store, *events: Event, server: str = SERVER) -> None:
    store.append(Batch(events=[(server, e) for e in events]))


def crash_row(
    key: str, t: float, spid: int, kpid: int, family: int = 0, signature: str = "sig-a"
) -> CrashRow:
    return CrashRow(server=SERVER, key=f"{SERVER}|{key}", time=local(t), signature=signature, spid=spid,
                    kpid=kpid, family=family, sql="select b.brev_id from brev b where b.avd_id = ?")  # fmt: skip


# The flight recorder tests' fixtures: a store on a settable clock.
clock = test_flightrec.clock
store = test_flightrec.store


@pytest.fixture
def frozen(store: Store, clock: Clock) -> Store:
    """The flight recorder's incident: worker 201 (family 20) crashes inside the culprit, whose
    name only the parent's running batch text and call stack hold; frozen at once."""
    incident(store, clock)
    store.upsert_crash(crash_row("crash:1", CRASH, 201, 7201, family=20))
    clock.t = CRASH + 1
    store.append(Batch(ops=[FreezeCrash(f"{SERVER}|crash:1", SERVER, CRASH, 201, 7201, 20)]))
    return store


def test_crashes_and_statements_have_the_contract_columns_and_local_times(frozen: Store) -> None:
    with frozen.reader() as r:
        inputs = store_inputs(r, SERVER)
        ring = r.query("SELECT spid, procedure, start_time, end_time FROM activity_statements WHERE server = ?",
                       (SERVER,))  # fmt: skip
        executions = r.query("SELECT sum(executions) FROM activity_minute WHERE server = ?", (SERVER,))[0][0]
    [crash] = inputs.crashes.to_dict("records")
    assert crash["key"] == f"{SERVER}|crash:1" and crash["signature"] == "sig-a"
    assert crash["time"] == pd.Timestamp(local(CRASH))
    assert (crash["spid"], crash["kpid"], crash["family"]) == (201, 7201, 20)
    assert inputs.crashes["spid"].dtype == "Int64" and inputs.crashes["time"].dtype == "datetime64[ns]"
    st = inputs.statements
    assert st is not None
    assert set(COLUMNS) <= set(st)
    assert st["start_time"].dtype == "datetime64[ns]" and st["spid"].dtype == "Int64"
    # Every ring row once, at its local time, though the frozen record holds most of them too.
    from_ring = st[st["procedure"] == FREQUENT]
    assert len(from_ring) == len(ring)
    assert sorted(from_ring["start_time"]) == sorted(pd.Timestamp(local(s)) for _, _, s, _ in ring)
    assert {"sekr_karin", "lakare_erik", "ssk_johan"} <= set(st["login"].astype(str))
    assert set(st["application"].astype(str)) >= {"IMX Klient"}
    minutes = inputs.minutes
    assert minutes is not None and int(minutes["executions"].sum()) == executions
    assert minutes["minute"].dtype == "datetime64[ns]"


def test_the_running_batch_and_the_call_stack_put_the_culprit_on_the_crashing_task(frozen: Store) -> None:
    """The worker's crash statement never finished: only the parent's running text
    (``exec p_brev_sok_central_utskrift …``) and its stack name the procedure."""
    with frozen.reader() as r:
        st = store_inputs(r, SERVER).statements
    assert st is not None
    culprit = st[st["procedure"] == CULPRIT]
    assert len(culprit) == 2, culprit  # the running batch and the stack frame
    assert set(culprit["spid"]) == {20} and set(culprit["kpid"]) == {7020}
    assert (culprit["end_time"] == pd.Timestamp(local(CRASH))).all()
    assert (culprit["start_time"] <= pd.Timestamp(local(CRASH))).all()
    assert set(culprit["login"].astype(str)) == {"sekr_karin"}


def test_what_the_ring_forgot_the_frozen_record_still_gives(frozen: Store, clock: Clock) -> None:
    record(frozen, clock, sample(CRASH + 20))  # the record settles (complete) while the ring holds it
    later = CRASH + 7200
    record(frozen, clock, sample(later, statements=(stmt(23, 1, later - 2),)), MdaConfig(raw_minutes=1))
    with frozen.reader() as r:
        assert r.query("SELECT count(*) FROM activity_statements")[0][0] == 1
        st = store_inputs(r, SERVER).statements
    assert st is not None
    before = st[st["end_time"] <= pd.Timestamp(local(CRASH))]
    assert {20, 21, 22} <= set(before["spid"])
    assert (st["spid"] == 23).sum() == 1


def test_since_leaves_out_older_crashes_and_statements_but_not_the_changes(frozen: Store) -> None:
    put(frozen, FlagChanged(CRASH - 3600, "brevutskrift_central_search", "0", "1", "query"))
    with frozen.reader() as r:
        late = store_inputs(r, SERVER, since=CRASH + 5)
        by_datetime = store_inputs(r, SERVER, since=local(CRASH + 5))
    for inputs in (late, by_datetime):
        assert inputs.crashes.empty
        st = inputs.statements
        assert st is not None and set(st["spid"]) == {20}  # the next incarnation's row
        assert inputs.changes is not None and list(inputs.changes["name"]) == ["brevutskrift_central_search"]


def _none(value: object) -> object:
    return None if pd.isna(value) else value


def _hours(up: pd.DataFrame) -> list[tuple[int, int | None]]:
    return [(s.hour, None if pd.isna(e) else e.hour) for s, e in up[["start", "end"]].itertuples(index=False)]


def test_the_ledger_becomes_changes_in_the_rankings_words(store: Store) -> None:
    day = datetime(2026, 11, 26)
    at = lambda h: (day + timedelta(hours=h)).timestamp()  # noqa: E731 - a local shorthand
    put(
        store,
        ServerBooted(day, "Adaptive Server Enterprise/16.0 SP04 PL02", False, None, 0),
        Deployment(at(1), "IMX 7.1.0", "imx_deploy", "cli"),
        FlagChanged(at(2), "brevutskrift_central_search", "false", "true", "file"),
        ConfigChanged(day + timedelta(hours=3), 36, "max parallel degree", "sa", "1", "4", 100),
        ProcedureChangeSummary(at(4), "imx", 1, 0, 0, 1, (CULPRIT,)),
        ProcedureChanged(at(4), "imx", CULPRIT, "new", None, "ab" * 32, True),
        DumpConditions(at(5), True, ("signal",), ("11",), (2,), (0,), ("/dumps",), (None,), (None,), None),
        DumpConditions(at(5.5), False, (), (), (), (), (), (), (), None),  # a change, but not a state
        ServerBooted(day + timedelta(hours=6), "Adaptive Server Enterprise/16.0 SP04 PL03", False, None, 10),
    )
    with store.reader() as r:
        changes = store_inputs(r, SERVER).changes
    assert changes is not None
    got = [(t.hour, k, n, _none(o), _none(v)) for t, k, n, o, v in changes[["time", "kind", "name", "old", "new"]].itertuples(index=False)]  # fmt: skip
    assert got == [
        (1, "deployment", "IMX 7.1.0", None, None),
        (2, "flag", "brevutskrift_central_search", "false", "true"),
        (3, "setting", "max parallel degree", "1", "4"),
        (4, "procedure_change", f"imx..{CULPRIT}", None, "abababababab"),
        (6, "version", "ASE version", "Adaptive Server Enterprise/16.0 SP04 PL02",
         "Adaptive Server Enterprise/16.0 SP04 PL03"),
    ]  # fmt: skip
    assert changes["time"].dtype == "datetime64[ns]"


def test_uptime_is_the_process_lifetimes_and_before_them_the_errorlogs_boots(store: Store) -> None:
    day = datetime(2026, 11, 26)
    at = lambda h: (day + timedelta(hours=h)).timestamp()  # noqa: E731
    put(
        store,
        ServerBooted(day, None, False, None, 0),  # before the agent watched the process
        ServerShutdown(day + timedelta(hours=2), "requested", "sa", 5),
        ServerBooted(day + timedelta(hours=3), None, False, None, 9),
        ProcessStarted(SERVER, 100, at(3), 0, ("dataserver",), at(3.5)),
        ProcessStarted(SERVER, 101, at(3), 1, ("dataserver",), at(3.5)),  # engine 1: not the server's life
        ProcessExited(SERVER, 100, at(3), at(5), None, 9, at(5)),
        ServerBooted(day + timedelta(hours=6), None, False, None, 20),
        ProcessStarted(SERVER, 200, at(6), 0, ("dataserver",), at(6)),  # still running
    )
    with store.reader() as r:
        up = store_inputs(r, SERVER).uptime
    assert up is not None
    assert _hours(up) == [(0, 2), (3, 5), (6, None)]


def test_uptime_without_process_events_is_boot_to_stop(store: Store) -> None:
    day = datetime(2026, 11, 26)
    put(
        store,
        ServerBooted(day, None, False, None, 0),
        # A failed boot starts nothing.
        ServerBooted(day + timedelta(hours=1), None, True, "shared memory", 3),
        ServerShutdown(day + timedelta(hours=2), "fatal", None, 5),
        ServerBooted(day + timedelta(hours=3), None, False, None, 9),
    )
    with store.reader() as r:
        up = store_inputs(r, SERVER).uptime
        assert store_inputs(r, "OTHER").uptime is None
    assert up is not None
    assert _hours(up) == [(0, 2), (3, None)]


def test_the_server_may_be_left_out_only_when_the_store_has_one(frozen: Store) -> None:
    with frozen.reader() as r:
        assert len(store_inputs(r, None).crashes) == 1
    put(frozen, FlagChanged(T0, "x", None, "1", "file"), server="RO1")
    with frozen.reader() as r, pytest.raises(InputError, match=r"CLINIC1, RO1.*--server"):
        store_inputs(r, None)


# --------------------------------------------------------------------------- ranking from the store


def traffic(store: Store, clock: Clock, crashes: list[float]) -> None:
    """Two and a half hours: the frequent procedure every 5 s on spids 21-25, the culprit on the
    crashing task 3 s before each crash (and once, harmlessly, later); each crash frozen at once."""
    start, end = T0, crashes[-1] + 1800
    tasks = {c: (40 + i, 9040 + i) for i, c in enumerate(crashes)}
    rows: list[StatementRow] = []
    for i, t in enumerate(range(int(start), int(end), 5)):
        rows.append(stmt(21 + i % 5, i + 1, float(t), proc=FREQUENT, ms=50))
    for c, (spid, kpid) in tasks.items():
        rows += [
            stmt(spid, 1, c - 3 + k * 0.5, kpid=kpid, number=k + 1, proc=CULPRIT, ms=400) for k in range(3)
        ]
    rows.append(stmt(60, 1, end - 600, kpid=9060, proc=CULPRIT, ms=400))
    rows.sort(key=lambda s: s.end)
    sessions = tuple(session(s) for s in range(21, 26))
    t = start
    pending = sorted(crashes)
    while t < end:
        t += 300
        chunk = tuple(s for s in rows if t - 300 <= s.end < t)
        record(store, clock, sample(t, statements=chunk, sessions=sessions), WIDE)
        while pending and pending[0] < t:
            c = pending.pop(0)
            spid, kpid = tasks[c]
            row = store.upsert_crash(crash_row(f"crash:{c:.0f}", c, spid, kpid))
            store.append(Batch(ops=[FreezeCrash(row.key, SERVER, c, spid, kpid, 0)]))


def test_asewatch_suspects_on_a_store_ranks_the_rare_culprit_first(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    crashes = [T0 + 1800 + k * 1500 + 37 for k in range(4)]
    traffic(store, clock, crashes)
    put(store, FlagChanged(T0 + 600, "brevutskrift_central_search", "false", "true", "file"))
    store.close()
    runner = CliRunner()
    res = runner.invoke(suspects_cmd, ["--state-dir", str(tmp_path / "state"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [group] = doc["groups"]
    assert group["crashes"] == 4 and group["first"] == local(crashes[0]).isoformat(timespec="seconds")
    procs = [s for s in group["suspects"] if s["kind"] == "procedure"]
    assert procs[0]["name"] == CULPRIT
    frequent = [s["score"] for s in procs if s["name"] == FREQUENT]
    assert not frequent or frequent[0] < procs[0]["score"] / 2
    table = runner.invoke(suspects_cmd, ["--state-dir", str(tmp_path / "state"), "--signature", "sig-a"])
    assert table.exit_code == 0, table.output
    assert CULPRIT in table.stdout and "Suspects of crash group sig-a" in table.stdout
    missing = runner.invoke(suspects_cmd, ["--state-dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no asewatch store" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.fixture
def stockholm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not Path("/usr/share/zoneinfo/Europe/Stockholm").exists():
        pytest.skip("no tz database here (/usr/share/zoneinfo)")
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_statements_across_a_summer_time_change_keep_their_wall_clock_times(
    stockholm: None, store: Store, clock: Clock
) -> None:
    """Crash times are the errorlog's wall clock; statements recorded before the clocks moved
    must keep theirs (one fixed offset for all would shift them an hour off their crash)."""
    first = datetime(2026, 3, 29, 1, 0).timestamp()  # 02:00 -> 03:00 local comes an hour later
    rows = tuple(stmt(20 + k, 1, first + k * 900 + 0.123456) for k in range(8))
    record(store, clock, sample(first + 8 * 900, statements=rows), WIDE)
    with store.reader() as r:
        st = store_inputs(r, SERVER).statements
    assert st is not None
    want = sorted(pd.Timestamp(local(first + k * 900 + 0.123456)) for k in range(8))
    assert sorted(st["start_time"]) == want
    assert (want[0].hour, want[-1].hour, want[-1].minute) == (1, 3, 45), "02:00 became 03:00"
