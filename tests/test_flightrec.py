"""The flight recorder in the store: ring, dedupe, aggregates, retention, freeze at crash, reads."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.mda.rows import MdaSample, SessionRow, SqlTextRow, StackFrameRow, StatementRow, TableRead
from monitor.config_mda import MdaConfig
from monitor.flightrec import ops_for
from monitor.flightrec_freeze import FREEZE_SETTLE_S, FreezeCrash, freeze_ops
from monitor.flightrec_metrics import METRICS_MDA, add_mda_metrics
from monitor.flightrec_read import frozen_activity, last_start_date, recent_activity
from monitor.store import Batch, Store
from monitor.store_types import CrashRow

pytestmark = pytest.mark.unit

T0 = 1_710_400_000.0  # a fixed "now" for the store's clock
BOOT = datetime(2024, 3, 14, 6, 0, 0)
DEFAULT = MdaConfig()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Store:
    s = Store(tmp_path / "state" / "asewatch.db", clock=clock)
    yield s
    s.close()


def stmt(spid: int, batch: int, start: float, *, kpid: int = 0, ctx: int = 1, number: int = 1, login: str | None = "lakare_anna",
         proc: str | None = "p_patient_get", cpu: int = 2, reads: int = 10, error: int = 0, family: int = 0, ms: float = 5) -> StatementRow:  # fmt: skip
    return StatementRow(
        spid=spid, kpid=kpid or 7000 + spid, batch_id=batch, context_id=ctx, statement_number=number, line=10 * number,
        proc_nest=1, family=family, login=login, host="ws-1", program="IMX Klient", dbid=4, db="imx_prod",
        procedure_id=11 if proc else 0, procedure=proc, start=start, end=start + ms / 1000, cpu_ms=cpu, wait_ms=0,
        logical_reads=reads, physical_reads=0, rows_affected=1, error=error,
    )  # fmt: skip


def sample(t: float, *, statements: tuple[StatementRow, ...] = (), texts: tuple[SqlTextRow, ...] = (),
           sessions: tuple[SessionRow, ...] = (), stack: tuple[StackFrameRow, ...] = (), boot: datetime = BOOT,
           up: bool = True, reads: tuple[TableRead, ...] = ()) -> MdaSample:  # fmt: skip
    return MdaSample(time=t, duration=0.01, up=up, error=None if up else "down", own_spid=400, start_date=boot if up else None,
                     connections=len(sessions), max_connections=100, statements=statements, texts=texts,
                     sessions=sessions, stack=stack, reads=reads)  # fmt: skip


def session(spid: int, *, family: int = 0, login: str = "lakare_anna", kpid: int = 0) -> SessionRow:
    return SessionRow(
        spid, kpid or 7000 + spid, family, login, "ws-1", "IMX Klient", "imx_prod", "SELECT", 1, 1
    )


def text(spid: int, batch: int, sql: str, t: float, *, source: str = "pipe", kpid: int = 0) -> SqlTextRow:
    return SqlTextRow(spid, kpid or 7000 + spid, batch, sql, source, t)  # type: ignore[arg-type]


def record(
    store: Store, clock: Clock, s: MdaSample, mda: MdaConfig = DEFAULT, server: str = "CLINIC1"
) -> None:
    clock.t = max(clock.t, s.time)
    store.append(Batch(ops=ops_for(server, s, mda)))


def q(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with store.reader() as r:
        return r.query(sql, params)


# --------------------------------------------------------------------------- ring and aggregates


def test_a_sample_read_twice_is_stored_once_and_counted_once(store: Store, clock: Clock) -> None:
    rows = (
        stmt(20, 1, T0 - 30),
        stmt(21, 1, T0 - 20, login="ssk_maria", error=1),
        stmt(20, 2, T0 - 10, proc=None),
    )
    s = sample(T0, statements=rows, texts=(text(20, 1, "exec p_patient_get @pnr = ?", T0),))
    record(store, clock, s)
    record(store, clock, replace(s, time=T0 + 5))  # a reconnect re-reads the whole ring
    assert q(store, "SELECT count(*) FROM activity_statements") == [(3,)]
    minute = int((T0 - 30) // 60 * 60)
    agg = q(store, "SELECT minute, procedure, executions, statements, cpu_ms, logical_reads, errors, logins "
                   "FROM activity_minute ORDER BY procedure")  # fmt: skip
    assert sorted(agg) == sorted([
        (minute, "", 1, 1, 2, 10, 0, 1),
        (minute, "p_patient_get", 2, 2, 4, 20, 1, 2),
    ])  # fmt: skip


def test_a_procedure_execution_spread_over_two_samples_counts_once(store: Store, clock: Clock) -> None:
    record(store, clock, sample(T0, statements=(stmt(20, 1, T0 - 3, number=1),)))
    record(
        store, clock, sample(T0 + 5, statements=(stmt(20, 1, T0 - 1, number=2), stmt(20, 2, T0, number=1)))
    )
    assert q(store, "SELECT sum(executions), sum(statements) FROM activity_minute") == [(2, 3)]


def test_the_ring_keeps_only_its_minutes_and_its_row_cap(store: Store, clock: Clock) -> None:
    mda = MdaConfig(raw_minutes=1, max_raw_rows=1000)
    old = tuple(stmt(20, b, T0 - 300 + b * 0.01) for b in range(10))
    clock.t = T0 - 290
    record(store, clock, sample(T0 - 290, statements=old), mda)
    assert q(store, "SELECT count(*) FROM activity_statements") == [(10,)]
    many = tuple(stmt(30 + b % 50, b, T0 + b * 0.001) for b in range(1500))
    record(store, clock, sample(T0 + 2, statements=many, sessions=(session(20),)), mda)
    # The old rows aged out; of the new ones only the newest 1000 stay.
    assert q(store, "SELECT count(*), min(batch_id) FROM activity_statements") == [(1000, 500)]
    # The aggregates keep counting what the ring dropped.
    assert q(store, "SELECT sum(statements) FROM activity_minute") == [(1510,)]
    clock.t += 120
    record(store, clock, sample(clock.t), mda)
    assert q(store, "SELECT count(*) FROM activity_sessions") == [(0,)]


def test_aggregates_age_out_after_their_days(store: Store, clock: Clock) -> None:
    mda = MdaConfig(aggregate_days=1)
    record(store, clock, sample(T0, statements=(stmt(20, 1, T0),)), mda)
    clock.t = T0 + 86400 + 120
    record(store, clock, sample(clock.t, statements=(stmt(20, 2, clock.t - 1),)), mda)
    assert q(store, "SELECT count(*) FROM activity_minute") == [(1,)]


def test_a_reread_ring_older_than_the_raw_window_is_not_counted_again(store: Store, clock: Clock) -> None:
    mda = MdaConfig(raw_minutes=1)
    ring = tuple(stmt(20, b, T0 + b) for b in range(5))
    record(store, clock, sample(T0 + 10, statements=ring), mda)
    clock.t = T0 + 600  # ten minutes on, quiet server; then a reconnect returns the same ring
    record(store, clock, sample(clock.t, statements=ring), mda)
    assert q(store, "SELECT sum(statements) FROM activity_minute") == [(5,)]
    # Rows of an agent outage (older than the window, newer than anything recorded) still count.
    outage = tuple(stmt(21, b, T0 + 100 + b) for b in range(3))
    record(store, clock, sample(clock.t + 1, statements=outage), mda)
    assert q(store, "SELECT sum(statements) FROM activity_minute") == [(8,)]


def test_the_sql_of_a_batch_prefers_the_pipe_and_the_longest_text(store: Store, clock: Clock) -> None:
    record(store, clock, sample(T0, texts=(text(20, 1, "exec p_brev", T0, source="process"),)))
    record(store, clock, sample(T0 + 1, texts=(text(20, 1, "exec p_brev_sok @a = ?", T0, source="process"),)))
    record(store, clock, sample(T0 + 2, texts=(text(20, 1, "exec p_brev_sok @a = ?, @b = ?", T0),)))
    record(
        store,
        clock,
        sample(T0 + 3, texts=(text(20, 1, "exec p_brev_sok @a = ?, @b = ?, @c = ?", T0, source="process"),)),
    )
    assert q(store, "SELECT source, text FROM activity_sql") == [("pipe", "exec p_brev_sok @a = ?, @b = ?")]


def test_status_counters_and_metrics(store: Store, clock: Clock) -> None:
    reads = (TableRead("monSysStatement", 4800, True), TableRead("monSysSQLText", 10, False))
    record(store, clock, sample(T0, sessions=(session(20), session(21)), reads=reads))
    record(store, clock, sample(T0 + 5, reads=reads))
    fams: dict[str, Any] = {m.name: _Fam() for m in METRICS_MDA}
    with store.reader() as r:
        add_mda_metrics(r, fams, now=T0 + 6)
        assert last_start_date(r, "CLINIC1") == BOOT
    assert fams["ase_mda_up"].values == [(["CLINIC1"], 1)]
    assert fams["ase_user_connections_max"].values == [(["CLINIC1"], 100)]
    assert (["CLINIC1", "monSysStatement"], 9600) in fams["ase_mda_rows_total"].values
    assert (["CLINIC1", "monSysStatement"], 2) in fams["ase_mda_pipe_overflow_total"].values
    record(store, clock, sample(T0 + 10, up=False))
    fams = {m.name: _Fam() for m in METRICS_MDA}
    with store.reader() as r:
        add_mda_metrics(r, fams, now=T0 + 11)
    assert fams["ase_mda_up"].values == [(["CLINIC1"], 0)]
    assert fams["ase_user_connections"].values == []  # unknown while the sampler is down
    assert fams["ase_mda_last_sample_timestamp_seconds"].values == [(["CLINIC1"], T0 + 5)]
    fams = {m.name: _Fam() for m in METRICS_MDA}
    record(store, clock, sample(T0 + 15))
    with store.reader() as r:
        add_mda_metrics(r, fams, now=T0 + 500)  # a sampler stuck for minutes is not "up"
    assert fams["ase_mda_up"].values == [(["CLINIC1"], 0)]


class _Fam:
    def __init__(self) -> None:
        self.values: list[tuple[list[str], float]] = []

    def add_metric(self, labels: list[str], value: float) -> None:
        self.values.append((labels, value))


def test_a_failing_op_rolls_back_the_whole_batch(store: Store, clock: Clock) -> None:
    class Boom:
        def apply(self, conn: sqlite3.Connection, now: float) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(Exception, match="disk I/O"):
        store.append(
            Batch(ops=[*ops_for("CLINIC1", sample(T0, statements=(stmt(20, 1, T0),)), MdaConfig()), Boom()])
        )
    assert q(store, "SELECT count(*) FROM activity_statements") == [(0,)]


# --------------------------------------------------------------------------- freeze at crash

CRASH = T0 + 100.0


def incident(store: Store, clock: Clock) -> None:
    """sekr_karin (spid 20) runs the central letter search; worker 201 (family 20) crashes.

    Before: ordinary traffic on spids 20, 21, 22. During: the parent's batch text and stack
    are sampled while it runs. After: the server restarts and spid 20 is someone else."""
    sess = (session(20, login="sekr_karin"), session(21, login="lakare_erik"), session(22, login="ssk_johan"))
    before = tuple(stmt(s, b, CRASH - 50 + b + s / 100, login=x.login) for b in range(1, 20) for s, x in zip((20, 21, 22), sess, strict=True))  # fmt: skip
    record(store, clock, sample(CRASH - 20, statements=before, sessions=sess,
                                texts=tuple(text(20, b, "exec p_patient_get @pnr = ?, @avd = ?", CRASH - 30) for b in range(1, 20))))  # fmt: skip
    running = text(20, 99, "exec p_brev_sok_central_utskrift @avd = ?, @fran_datum = ?, @utskriftstyp = ?, @pnr = ?", CRASH - 1, source="process")  # fmt: skip
    worker = session(201, family=20, login="sekr_karin")
    stack = (StackFrameRow(20, 7020, 0, 1, "imx_prod", "dbo", "p_brev_sok_central_utskrift", "P", 233, 14),)
    record(store, clock, sample(CRASH - 1, texts=(running,), sessions=(*sess, worker), stack=stack))
    record(
        store, clock, sample(CRASH + 0.2, sessions=(*sess, worker), stack=stack)
    )  # answering while dumping
    reboot = datetime(2024, 3, 14, 6, 2, 0)
    record(store, clock, sample(CRASH + 8, boot=reboot, sessions=(session(20, login="usk_lena", kpid=9020),),
                                statements=(stmt(20, 1, CRASH + 7, kpid=9020, login="usk_lena"),)))  # fmt: skip


def test_a_parallel_worker_crash_is_frozen_with_its_parent_session(store: Store, clock: Clock) -> None:
    incident(store, clock)
    clock.t = CRASH + 1
    store.append(Batch(ops=[FreezeCrash("CLINIC1|crash:1", "CLINIC1", CRASH, 201, 7201, 20)]))
    with store.reader() as r:
        f = frozen_activity(r, "CLINIC1|crash:1")
    assert f is not None
    assert (f.session_spid, f.login, f.host, f.program) == (20, "sekr_karin", "ws-1", "IMX Klient")
    assert "p_brev_sok_central_utskrift" in f.procedures()
    assert [(s.spid, s.name, s.line) for s in f.stack] == [(20, "p_brev_sok_central_utskrift", 233)]
    running = [s for s in f.statements if s.role == "running"]
    assert [(s.spid, s.login, s.sql) for s in running] == [
        (
            20,
            "sekr_karin",
            "exec p_brev_sok_central_utskrift @avd = ?, @fran_datum = ?, @utskriftstyp = ?, @pnr = ?",
        )
    ]
    session_rows = [s for s in f.statements if s.role == "session"]
    assert len(session_rows) == 19 and {s.login for s in session_rows} == {"sekr_karin"}
    assert session_rows[-1].sql == "exec p_patient_get @pnr = ?, @avd = ?"
    others = [s for s in f.statements if s.role == "activity"]
    assert {s.spid for s in others} == {21, 22} and not f.truncated
    # Nothing of the next incarnation (spid 20 is usk_lena there) slipped in.
    assert all(s.login != "usk_lena" for s in f.statements)
    assert not f.complete


def test_the_frozen_record_completes_after_settling_and_then_never_changes(
    store: Store, clock: Clock
) -> None:
    incident(store, clock)
    clock.t = CRASH + 0.5
    store.append(Batch(ops=freeze_ops([CrashRow(server="CLINIC1", key="CLINIC1|crash:1", time=datetime.fromtimestamp(CRASH),
                                                spid=201, kpid=7201, family=20)])))  # fmt: skip
    clock.t = CRASH + FREEZE_SETTLE_S + 1
    record(store, clock, sample(clock.t, boot=datetime(2024, 3, 14, 6, 2, 0)))  # the next sample completes it
    with store.reader() as r:
        f = frozen_activity(r, "CLINIC1|crash:1")
    assert f is not None and f.complete
    n = len(f.statements)
    # Much later the ring has moved on; replaying the crash (agent restart) changes nothing.
    clock.t = CRASH + 7200
    record(store, clock, sample(clock.t))
    assert q(store, "SELECT count(*) FROM activity_statements") == [(0,)]
    store.append(Batch(ops=[FreezeCrash("CLINIC1|crash:1", "CLINIC1", CRASH, 201, 7201, 20)]))
    with store.reader() as r:
        again = frozen_activity(r, "CLINIC1|crash:1")
        only_21 = frozen_activity(r, "CLINIC1|crash:1", spid=21)
    assert again is not None and len(again.statements) == n and again.login == "sekr_karin"
    assert only_21 is not None and {s.spid for s in only_21.statements} == {21}


def test_frozen_activity_is_kept_as_long_as_the_aggregates(store: Store, clock: Clock) -> None:
    incident(store, clock)
    clock.t = CRASH + 1
    store.append(Batch(ops=[FreezeCrash("k", "CLINIC1", CRASH, 201, 7201, 20)]))
    clock.t = CRASH + 86400 * 2
    record(store, clock, sample(clock.t), MdaConfig(aggregate_days=3))
    assert q(store, "SELECT count(*) FROM crash_activity") == [(1,)]
    clock.t = CRASH + 86400 * 3 + 1
    record(store, clock, sample(clock.t), MdaConfig(aggregate_days=3))
    assert q(store, "SELECT count(*) FROM crash_activity") == [(0,)]
    assert q(store, "SELECT count(*) FROM crash_activity_statements") == [(0,)]


def test_the_window_is_bounded(store: Store, clock: Clock) -> None:
    incident(store, clock)
    clock.t = CRASH + 1
    store.append(Batch(ops=[FreezeCrash("k", "CLINIC1", CRASH, 201, 7201, 20, window=60.0, max_rows=5)]))
    with store.reader() as r:
        f = frozen_activity(r, "k")
    assert f is not None and f.truncated
    others = [s for s in f.statements if s.role == "activity"]
    assert len(others) == 5
    newest = max(s.end or 0 for s in others)
    assert newest == max(
        st[0]
        for st in q(
            store,
            "SELECT end_time FROM activity_statements WHERE spid IN (21, 22) AND end_time < ?",
            (CRASH,),
        )
    )


def test_a_crash_older_than_the_ring_replayed_later_is_not_frozen_empty(store: Store, clock: Clock) -> None:
    incident(store, clock)
    clock.t = CRASH + 3600  # an agent restarted an hour later replays its crash records
    old = CrashRow(
        server="CLINIC1", key="CLINIC1|crash:old", time=datetime.fromtimestamp(CRASH), spid=201, family=20
    )
    store.append(Batch(ops=freeze_ops([old], MdaConfig(raw_minutes=30))))
    with store.reader() as r:
        assert frozen_activity(r, "CLINIC1|crash:old") is None


def test_an_unsampled_server_gets_no_frozen_record(store: Store, clock: Clock) -> None:
    store.append(Batch(ops=[FreezeCrash("OTHER|crash:1", "OTHER", CRASH, 20, 1, 0)]))
    with store.reader() as r:
        assert frozen_activity(r, "OTHER|crash:1") is None


def test_recent_activity_joins_the_sql_shape(store: Store, clock: Clock) -> None:
    incident(store, clock)
    with store.reader() as r:
        rows = recent_activity(r, server="CLINIC1", spid=21, limit=3)
    assert [x.spid for x in rows] == [21, 21, 21]
    assert rows[0].end is not None and rows[0].end <= rows[-1].end  # type: ignore[operator]
    with store.reader() as r:
        mine = recent_activity(r, spid=20, since=CRASH - 100, until=CRASH)
    assert mine[-1].sql == "exec p_patient_get @pnr = ?, @avd = ?"
