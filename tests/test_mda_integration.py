"""The MDA sampler through the real driver stack (pyodbc -> unixODBC -> FreeTDS, TDS 5.0) against
the simulated dataserver's TDS listener, into a real store: sampling, crash and restart, a
hanging query, a dropped connection, a bad login, pipe overflow, and the incident's frozen record."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pyodbc
import pytest

from collectors.mda.rows import MdaSample
from collectors.mda.sampler import MdaSampler
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_mda import ServerStartSeen
from monitor.flightrec import ops_for
from monitor.flightrec_export import activity_frame, write_export
from monitor.flightrec_freeze import FREEZE_SETTLE_S, FreezeCrash
from monitor.flightrec_read import frozen_activity
from monitor.redact import PNR_RE
from monitor.sim.control import SimServer
from monitor.store import Batch, Store

pytestmark = pytest.mark.integration
T = TypeVar("T")
PW_ENV = "ASEWATCH_IT_PW"


class Pipeline:
    """A sampler on its own thread writing into a real store, as the agent wires it."""

    def __init__(self, sim: SimServer, store: Store, mda: MdaConfig, *, query_timeout: float = 3.0) -> None:
        host, port = sim.tds_address()
        self.db = DatabaseConfig(host=host, port=port, password_env=PW_ENV, query_timeout=query_timeout,
                                 login_timeout=3.0)  # fmt: skip
        self.sampler = MdaSampler(sim.name, self.db, mda)
        self.server = sim.name
        self.store = store
        self.mda = mda
        self.events: list[Event] = []
        self.samples: list[MdaSample] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sampler.run, args=(self.emit, self.stop), name="mda-it")

    def __enter__(self) -> Pipeline:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sampler.interrupt()
        self.thread.join(10.0)
        assert not self.thread.is_alive()

    def emit(self, events: Sequence[Event], sample: MdaSample | None) -> None:
        facts = [(self.server, e) for e in events if not isinstance(e, CollectorFailed | CollectorSucceeded)]
        self.store.append(Batch(events=facts, ops=ops_for(self.server, sample, self.mda) if sample else ()))
        with self._lock:
            self.events.extend(events)
            if sample is not None:
                self.samples.append(sample)

    def wait(self, predicate: Callable[[], T], timeout: float = 20.0) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"not within {timeout} s; last events {self.events[-4:]}")

    def failures(self) -> list[CollectorFailed]:
        return [e for e in self.events if isinstance(e, CollectorFailed)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state" / "asewatch.db") as s:
        yield s


@pytest.fixture
def sim_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SimServer]]:
    started: list[SimServer] = []

    def make(**kwargs: Any) -> SimServer:
        sim = SimServer(tmp_path / f"sim{len(started)}", **kwargs)
        started.append(sim)
        sim.start()
        monkeypatch.setenv(PW_ENV, sim.tds_password)
        return sim

    yield make
    for sim in started:
        sim.stop()


def q(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with store.reader() as r:
        return r.query(sql, params)


def stored_text(store: Store) -> str:
    """Every text value of every flight-recorder table, for the personal-number check."""
    out = []
    for table in ("activity_statements", "activity_sql", "activity_sessions", "activity_stack",
                  "activity_minute", "crash_activity", "crash_activity_statements", "crash_activity_stack"):  # fmt: skip
        for row in q(store, f"SELECT * FROM {table}"):
            out.extend(str(v) for v in row if isinstance(v, str))
    return "\n".join(out)


def test_sampling_through_freetds_fills_the_ring_with_who_ran_what(
    sim_factory: Callable[..., SimServer], store: Store
) -> None:
    sim = sim_factory(rate=200.0)
    with Pipeline(sim, store, MdaConfig(sample_interval=0.5)) as p:
        p.wait(
            lambda: q(store, "SELECT count(*) FROM activity_statements WHERE login IS NOT NULL")[0][0] >= 300
        )
        own = p.samples[0].own_spid
    rows = q(store, "SELECT spid, login, host, program, procedure, db FROM activity_statements "
                    "WHERE login IS NOT NULL LIMIT 50")  # fmt: skip
    assert all(r[4] and r[4].startswith("p_") and r[5] in ("imx_prod", "imx_audit") for r in rows)
    assert {r[3] for r in rows} <= {"IMX Klient", "IMX Batch", "IMX Integration"}
    assert q(store, "SELECT count(*) FROM activity_statements WHERE spid = ?", (own,)) == [(0,)]
    texts = [t for (t,) in q(store, "SELECT text FROM activity_sql")]
    assert texts and all("?" in t for t in texts if "@" in t)
    assert not PNR_RE.search(stored_text(store))
    procs = q(
        store, "SELECT procedure, sum(executions), sum(logins) > 0 FROM activity_minute GROUP BY procedure"
    )
    assert {p for p, _, _ in procs} >= {"p_patient_get", "p_journal_read"}
    status = q(store, "SELECT up, connections, max_connections FROM mda_status")[0]
    assert status[0] == 1 and status[1] > 10 and status[2] > status[1]


def test_a_crash_and_restart_is_seen_by_start_date_and_sampling_resumes(
    sim_factory: Callable[..., SimServer], store: Store
) -> None:
    sim = sim_factory(rate=50.0, restart_delay=0.5)
    mda = MdaConfig(sample_interval=0.5, reconnect_initial=0.2, reconnect_backoff_max=1.0)
    with Pipeline(sim, store, mda) as p:
        first = p.wait(lambda: [e for e in p.events if isinstance(e, ServerStartSeen)])[0]
        p.wait(lambda: [s for s in p.samples if s.statements])
        pid = sim.crash_now()
        sim.wait_boot(after=pid, timeout=20)
        starts = p.wait(lambda: [e for e in p.events if isinstance(e, ServerStartSeen)][1:])
        assert starts[0].previous == first.start_date and starts[0].start_date > first.start_date
        assert p.failures(), "the lost connection was reported"
        t = time.time()
        p.wait(lambda: [s for s in p.samples if s.time > t and s.statements])
    assert q(store, "SELECT count(DISTINCT incarnation) FROM activity_statements") == [(2,)]
    assert store.count_events("ServerStartSeen") == 2


def test_a_hanging_query_times_out_and_sampling_recovers(
    sim_factory: Callable[..., SimServer], store: Store
) -> None:
    sim = sim_factory(rate=50.0)
    with Pipeline(sim, store, MdaConfig(sample_interval=0.5, reconnect_initial=0.2), query_timeout=1.0) as p:
        p.wait(lambda: len(p.samples) >= 2)
        sim.tds_hang(6.0, table="monSysStatement")
        t0 = time.monotonic()
        failed = p.wait(p.failures, timeout=10)
        assert time.monotonic() - t0 < 4.0, "the query timeout bounded the hang"
        assert "HYT00" in failed[0].reason and "monSysStatement" in failed[0].reason
        t = time.time()
        p.wait(lambda: [s for s in p.samples if s.time > t and s.up and s.statements])


def test_a_dropped_connection_reconnects_and_the_reread_ring_is_stored_once(
    sim_factory: Callable[..., SimServer], store: Store
) -> None:
    sim = sim_factory(rate=100.0)
    with Pipeline(sim, store, MdaConfig(sample_interval=0.5, reconnect_initial=0.2)) as p:
        p.wait(lambda: len([s for s in p.samples if s.statements]) >= 2)
        sim.tds_drop_next(table="monSysSQLText")
        failed = p.wait(p.failures)
        assert "Unexpected EOF" in failed[0].reason or "08S01" in failed[0].reason
        t = time.time()
        p.wait(lambda: [s for s in p.samples if s.time > t and s.statements])
    read = sum(len(s.statements) for s in p.samples)
    stored = q(store, "SELECT count(*) FROM activity_statements")[0][0]
    # The new connection re-read the whole ring: more rows read than there are statements.
    assert read > stored > 0
    assert q(store, "SELECT sum(statements) FROM activity_minute") == [(stored,)]


def test_a_failed_login_is_clear_and_never_shows_the_password(
    sim_factory: Callable[..., SimServer],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = sim_factory(rate=10.0)
    monkeypatch.setenv(PW_ENV, "Not-The-Secret-42")
    with Pipeline(sim, store, MdaConfig(reconnect_initial=0.2, reconnect_backoff_max=0.5)) as p:
        failed = p.wait(p.failures)
    reason = failed[0].reason
    assert "Login failed" in reason and f"asewatch@127.0.0.1:{sim.tds_address()[1]}" in reason
    assert "Not-The-Secret-42" not in reason + caplog.text + repr(p.sampler)
    assert q(store, "SELECT up, error FROM mda_status")[0][0] == 0


def test_pipe_overflow_is_counted(sim_factory: Callable[..., SimServer], store: Store) -> None:
    sim = sim_factory(rate=1000.0)
    with pyodbc.connect(sim.connection_string("sa"), autocommit=True, timeout=5) as admin:
        admin.execute("sp_configure 'statement pipe max messages', 200")
    with Pipeline(sim, store, MdaConfig(sample_interval=2.0)) as p:
        p.wait(lambda: q(store, "SELECT overflow_total FROM mda_counters WHERE table_name = 'monSysStatement' "
                                "AND overflow_total > 0"))  # fmt: skip
        assert p.samples[0].reads[0].overflow is False  # the first read is the whole ring by design


@pytest.mark.slow
def test_the_incident_crash_is_frozen_with_the_procedure_and_the_login(
    sim_factory: Callable[..., SimServer], store: Store, tmp_path: Path
) -> None:
    # dump_seconds: the server keeps answering while it writes its dump, as a stand-in for the
    # seconds a real parallel query runs before it faults; the sampler sees it running.
    sim = sim_factory(scenario="incident", dump_seconds=2.0, no_end=True)
    with Pipeline(
        sim, store, MdaConfig(sample_interval=0.5, reconnect_initial=0.2, reconnect_backoff_max=1.0)
    ) as p:
        crash = sim.wait_for(lambda: next(iter(sim.truth("crash")), None), timeout=40)
        when = datetime.strptime(crash["log_time"], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        key = f"{sim.name}|crash:test"
        store.append(
            Batch(ops=[FreezeCrash(key, sim.name, when, crash["spid"], crash["kpid"], crash["family"])])
        )
        # The next samples after the settle time complete the record.
        p.wait(lambda: q(store, "SELECT complete FROM crash_activity WHERE complete = 1"),
               timeout=FREEZE_SETTLE_S + 20)  # fmt: skip
    with store.reader() as r:
        f = frozen_activity(r, key)
        frame = activity_frame(r)
    assert f is not None and f.complete
    assert f.session_spid == crash["family"] and f.login == crash["login"]
    assert (f.host, f.program) == (crash["host"], crash["program"])
    assert "p_brev_sok_central_utskrift" in f.procedures()
    running = [s for s in f.statements if s.role == "running" and s.spid == crash["family"]]
    assert (
        running and running[0].sql and running[0].sql.startswith("exec p_brev_sok_central_utskrift @avd = ?")
    )
    assert [s for s in f.statements if s.role == "activity"], "other spids' minute before the crash"
    # No personal identity number reached the store or an export.
    assert not PNR_RE.search(stored_text(store))
    out = tmp_path / "a.csv"
    write_export(frame, "csv", out)
    assert len(frame) > 100 and not PNR_RE.search(out.read_text(encoding="utf-8"))
    assert os.path.getsize(out) > 0
