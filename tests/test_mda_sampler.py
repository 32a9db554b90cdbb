"""The MDA sampler against a faithful fake of pyodbc (tests/mda_fake.py): what it reads, how it
survives a restart, a dropped connection, a hang and a bad login, and what it reports."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest

from collectors.mda.rows import MdaSample
from collectors.mda.sampler import MdaSampler
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_mda import ServerStartSeen
from monitor.redact import PNR_RE
from tests.mda_fake import FakeAse

pytestmark = pytest.mark.unit
T = TypeVar("T")
PASSWORD = "sim-secret"


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> DatabaseConfig:
    monkeypatch.setenv("ASEWATCH_TEST_PW", PASSWORD)
    return DatabaseConfig(host="127.0.0.1", port=5000, password_env="ASEWATCH_TEST_PW", query_timeout=2)


FAST = MdaConfig(sample_interval=0.05, reconnect_initial=0.02, reconnect_backoff_max=0.1)


class Running:
    """A sampler on its own thread, with everything it emitted."""

    def __init__(self, sampler: MdaSampler) -> None:
        self.sampler = sampler
        self.events: list[Event] = []
        self.samples: list[MdaSample] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=sampler.run, args=(self.emit, self.stop), name="mda-test")
        self.thread.start()

    def emit(self, events: Sequence[Event], sample: MdaSample | None) -> None:
        with self._lock:
            self.events.extend(events)
            if sample is not None:
                self.samples.append(sample)

    def wait(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.01)
        raise AssertionError(f"condition not met within {timeout} s; events: {self.events[-5:]}")

    def statements(self) -> list[Any]:
        return [st for s in self.samples for st in s.statements]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)
        assert not self.thread.is_alive()


@pytest.fixture
def run() -> Iterator[Callable[[MdaSampler], Running]]:
    started: list[Running] = []

    def start(sampler: MdaSampler) -> Running:
        r = Running(sampler)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def busy(
    ase: FakeAse, n: int, *, spid: int = 20, kpid: int = 7001, first_batch: int = 1, login: str = "sekr_karin"
) -> None:
    """``n`` finished calls of p_patient_get on one session, each with its SQL text."""
    ase.names[(1104003934, 4)] = "p_patient_get"
    if not any(s["SPID"] == spid for s in ase.sessions):
        ase.sessions.append({"SPID": spid, "KPID": kpid, "FamilyID": 0, "Login": login, "HostName": "ws-avd01-001",
                             "Application": "IMX Klient", "DBName": "imx_prod", "Command": "AWAITING COMMAND"})  # fmt: skip
    t0 = datetime(2024, 3, 14, 9, 0, 0)
    for i in range(n):
        batch = first_batch + i
        start = t0 + timedelta(seconds=batch)
        ase.sql_text(SPID=spid, KPID=kpid, BatchID=batch, SequenceInBatch=1,
                     SQLText=f"exec p_patient_get @pnr = '19121212-1212', @avd = {batch}")  # fmt: skip
        ase.statement(SPID=spid, KPID=kpid, BatchID=batch, ContextID=1, StatementNumber=1, LineNumber=12,
                      ProcNestLevel=1, DBID=4, DBName="imx_prod", ProcedureID=1104003934, StartTime=start,
                      EndTime=start + timedelta(milliseconds=3), CpuTime=1, WaitTime=0, LogicalReads=12,
                      PhysicalReads=0, RowsAffected=1, ErrorStatus=0)  # fmt: skip


def test_a_sample_reads_the_pipes_whole_with_who_ran_what_and_no_personal_number(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    busy(ase, 30)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    rows = r.wait(lambda: len(r.statements()) >= 30 and r.statements())
    first = rows[0]
    assert (first.spid, first.kpid, first.login, first.host, first.program) == (
        20,
        7001,
        "sekr_karin",
        "ws-avd01-001",
        "IMX Klient",
    )
    assert first.procedure == "p_patient_get" and first.db == "imx_prod" and first.line == 12
    assert first.end is not None and first.end - first.start == pytest.approx(0.003, abs=1e-4)
    texts = r.wait(lambda: [t for s in r.samples for t in s.texts])
    assert texts[0].text == "exec p_patient_get @pnr = ?, @avd = ?"
    assert not any(PNR_RE.search(t.text) for t in texts)
    # The pipes are read whole (no where clause; it would consume the ring anyway) ...
    pipe_queries = [q for q in ase.queries if "from master..monSys" in q]
    assert pipe_queries and not any(" where " in q.lower() for q in pipe_queries)
    # ... the name was asked once and cached, and the sampler's own spid is left out.
    assert sum("object_name" in q for q in ase.queries) == 1
    own = r.wait(lambda: r.samples and r.samples[0].own_spid)
    assert all(s.spid != own for smp in r.samples for s in smp.sessions)
    assert isinstance(r.events[-1], CollectorSucceeded | CollectorFailed)
    assert r.samples[0].max_connections == 100 and r.samples[0].connections == 2


def test_a_statement_is_read_once_per_connection(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    busy(ase, 5)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    r.wait(lambda: len(r.samples) >= 3)
    busy(ase, 4, first_batch=100)
    r.wait(lambda: len(r.statements()) >= 9)
    time.sleep(0.2)
    assert sorted(s.batch_id for s in r.statements()) == [1, 2, 3, 4, 5, 100, 101, 102, 103]


def test_columns_this_version_lacks_are_not_asked_for(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse(
        missing={"monProcess": {"HostName"}, "monSysStatement": {"StatementNumber", "ProcNestLevel"}}
    )
    busy(ase, 3)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    rows = r.wait(lambda: len(r.statements()) >= 3 and r.statements())
    assert rows[0].host is None and rows[0].statement_number == 0 and rows[0].login == "sekr_karin"
    assert not any("HostName" in q for q in ase.queries if "..monProcess" in q)
    assert not any("StatementNumber" in q for q in ase.queries if "..monSysStatement" in q)
    assert not [e for e in r.events if isinstance(e, CollectorFailed)]


def test_a_snapshot_table_the_login_may_not_read_is_logged_and_recording_goes_on(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running], caplog: pytest.LogCaptureFixture
) -> None:
    ase = FakeAse(refuse={"monProcessProcedures"})
    busy(ase, 3)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    r.wait(lambda: len(r.statements()) >= 3 and len(r.samples) >= 3)
    assert not [e for e in r.events if isinstance(e, CollectorFailed)]
    assert r.samples[0].problems and "monProcessProcedures" in r.samples[0].problems[0]
    assert caplog.text.count("monProcessProcedures not found") == 1  # said once, not every sample


def test_a_pipe_table_the_login_may_not_read_marks_the_source_failed(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse(refuse={"monSysSQLText"})
    busy(ase, 3)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    failed = r.wait(lambda: [e for e in r.events if isinstance(e, CollectorFailed)])
    assert "monSysSQLText" in failed[0].reason and "208" in failed[0].reason
    r.wait(lambda: len(r.statements()) >= 3)  # what it can read, it still records


def test_a_restart_is_seen_by_start_date_and_sampling_resumes(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    before = ase.start_date
    busy(ase, 2)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect, known_start=before - timedelta(days=1)))
    seen = r.wait(lambda: [e for e in r.events if isinstance(e, ServerStartSeen)])
    assert seen[0].start_date == before and seen[0].previous == before - timedelta(days=1)
    ase.restart()
    busy(ase, 2, spid=21, kpid=9001, first_batch=50)
    starts = r.wait(lambda: len([e for e in r.events if isinstance(e, ServerStartSeen)]) >= 2 and
                    [e for e in r.events if isinstance(e, ServerStartSeen)])  # fmt: skip
    assert (starts[1].previous, starts[1].start_date) == (before, ase.start_date)
    # The broken connection was reported (mda down) before the new one sampled again.
    downs = [s for s in r.samples if not s.up]
    assert downs and "08S01" in (downs[0].error or "")
    r.wait(lambda: any(st.spid == 21 for st in r.statements()))


def test_a_dropped_connection_reconnects_and_the_ring_is_read_again(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    busy(ase, 3)
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    r.wait(lambda: len(r.statements()) >= 3)
    ase.drop_next = True
    failed = r.wait(lambda: [e for e in r.events if isinstance(e, CollectorFailed)])
    assert "Unexpected EOF" in failed[0].reason
    # A new connection has its own read position: the whole ring again (the store dedupes).
    r.wait(lambda: len(r.statements()) >= 6)
    assert sorted(s.batch_id for s in r.statements()) == [1, 1, 2, 2, 3, 3]
    # That first read returns the whole ring by design: not an overflow.
    assert not any(rd.overflow for s in r.samples for rd in s.reads)


def test_a_hanging_server_times_out_is_reported_and_recovers(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    r.wait(lambda: r.samples and r.samples[-1].up)
    ase.hang = True
    r.wait(lambda: any("HYT00" in (s.error or "") for s in r.samples))
    ase.hang = False
    busy(ase, 2)
    r.wait(lambda: len(r.statements()) >= 2)
    assert r.samples[-1].up


def test_a_failed_login_says_so_without_the_password_and_backs_off(
    db: DatabaseConfig,
    run: Callable[[MdaSampler], Running],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASEWATCH_TEST_PW", "Wr0ng;pa}ss")
    ase = FakeAse()
    caplog.set_level(logging.DEBUG)
    sampler = MdaSampler("CLINIC1", db, MdaConfig(sample_interval=0.05, reconnect_initial=0.02,
                                                  reconnect_backoff_max=0.3), connect=ase.connect)  # fmt: skip
    r = run(sampler)
    failed = r.wait(lambda: [e for e in r.events if isinstance(e, CollectorFailed)])
    time.sleep(0.5)
    reason = failed[0].reason
    assert "Login failed" in reason and "asewatch@127.0.0.1:5000" in reason
    everything = " ".join(
        [caplog.text, repr(sampler), *(repr(e) for e in r.events), *(repr(s) for s in r.samples)]
    )
    assert "Wr0ng" not in everything and "pa}ss" not in everything
    assert ase.logins[0].endswith(
        "PWD={Wr0ng;pa}}ss};APP=asewatch;ClientCharset=UTF-8"
    )  # braced, as ODBC wants
    # A wrong password is not hammered at the server (ASE may lock the login): at most a
    # first try and retries at the maximum back-off (0.3 s) within 0.5 s.
    assert len(ase.logins) <= 3


def test_pipe_overflow_is_counted_when_a_read_comes_back_full(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse(pipe_size=100)
    busy(ase, 10)
    r = run(MdaSampler("CLINIC1", db, MdaConfig(sample_interval=0.3), connect=ase.connect))
    r.wait(lambda: len(r.samples) >= 1)
    busy(ase, 150, first_batch=1000)  # more than the ring holds between two reads: 50 are lost
    reads = r.wait(
        lambda: [rd for s in r.samples for rd in s.reads if rd.table == "monSysStatement" and rd.overflow]
    )
    assert reads[0].rows == 100


def test_sql_text_split_across_rows_is_joined_before_redaction(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    text = "exec p_journal_read @fran_datum = '2024-01-01', @pnr = '19121212-1212'"
    cut = text.index("1212-1212")  # the number straddles the 255-character row boundary
    ase.sql_text(SPID=20, KPID=7001, BatchID=9, SequenceInBatch=2, SQLText=text[cut:])
    ase.sql_text(SPID=20, KPID=7001, BatchID=9, SequenceInBatch=1, SQLText=text[:cut])
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    texts = r.wait(lambda: [t for s in r.samples for t in s.texts])
    assert texts[0].text == "exec p_journal_read @fran_datum = ?, @pnr = ?"


def test_the_running_batch_and_the_call_stack_are_snapshotted(
    db: DatabaseConfig, run: Callable[[MdaSampler], Running]
) -> None:
    ase = FakeAse()
    ase.sessions.append({"SPID": 20, "KPID": 7001, "FamilyID": 0, "Login": "sekr_karin", "BatchID": 4})
    ase.sessions.append({"SPID": 201, "KPID": 7002, "FamilyID": 20, "Login": "sekr_karin", "BatchID": 4})
    ase.procedures += [
        {"SPID": 20, "KPID": 7001, "ContextID": 2, "DBName": "imx_prod", "OwnerName": "dbo", "ObjectName": "p_inner", "LineNumber": 7},
        {"SPID": 20, "KPID": 7001, "ContextID": 1, "DBName": "imx_prod", "OwnerName": "dbo", "ObjectName": "p_brev_sok_central_utskrift", "LineNumber": 233},
    ]  # fmt: skip
    ase.process_text += [
        {"SPID": 20, "KPID": 7001, "BatchID": 4, "LineNumber": 2, "SequenceInLine": 1, "SQLText": "@typ = 'CENTRAL'"},
        {"SPID": 20, "KPID": 7001, "BatchID": 4, "LineNumber": 1, "SequenceInLine": 1, "SQLText": "exec p_brev_sok_central_utskrift @pnr = '19121212-1212',"},
    ]  # fmt: skip
    r = run(MdaSampler("CLINIC1", db, FAST, connect=ase.connect))
    sample = r.wait(lambda: next((s for s in r.samples if s.stack), None))
    assert [(f.level, f.name, f.line) for f in sample.stack] == [
        (0, "p_brev_sok_central_utskrift", 233),
        (1, "p_inner", 7),
    ]
    assert [t.text for t in sample.texts] == ["exec p_brev_sok_central_utskrift @pnr = ?,\n@typ = ?"]
    assert [t.source for t in sample.texts] == ["process"]
    assert {(s.spid, s.family) for s in sample.sessions} == {(20, 0), (201, 20)}
    r.wait(lambda: len(r.samples) >= 3)
    assert all(not s.texts for s in r.samples[1:]), "an unchanged running batch is not sent again"


def test_stop_is_honoured_promptly_while_the_server_is_down(db: DatabaseConfig) -> None:
    ase = FakeAse(down=True)
    r = Running(MdaSampler("CLINIC1", db, MdaConfig(reconnect_backoff_max=30.0), connect=ase.connect))
    r.wait(lambda: r.events)
    t0 = time.monotonic()
    r.close()
    assert time.monotonic() - t0 < 2.0


def test_a_pipe_filling_up_is_read_sooner(db: DatabaseConfig, run: Callable[[MdaSampler], Running]) -> None:
    ase = FakeAse(pipe_size=100)
    r = run(MdaSampler("CLINIC1", db, MdaConfig(sample_interval=2.0), connect=ase.connect))
    r.wait(lambda: len(r.samples) >= 1)
    busy(ase, 60)  # 60 % of the ring between two reads
    r.wait(lambda: len(r.samples) >= 3, timeout=6.0)
    quiet, full, after = r.samples[:3]
    assert len(full.statements) == 60
    assert full.time - quiet.time > 1.5  # the configured interval while the pipe was quiet ...
    assert after.time - full.time < 1.0  # ... a quarter of it after a read more than half full
