"""The simulated dataserver's TDS 5.0 server, through the real pyodbc + unixODBC + FreeTDS stack.

What the MDA and settings collectors rely on: logins (and a refused one that does not leak
the password), the result types FreeTDS decodes, errors that leave the connection usable,
client timeouts answered by a cancel, dropped connections, pipe tables that each
connection reads once and that overflow when nobody reads them, sp_configure changes that
reach the run value, the errorlog and the .cfg (and stop the simulated crashes), a crash
that ends connections and a restart with a new StartDate, and procedure definitions and
feature flags that follow the scenario.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.sim.control import SimServer
from monitor.sim.layout import read_cfg

pyodbc = pytest.importorskip("pyodbc", reason="pyodbc is not installed (pip install pyodbc)")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        "FreeTDS" not in pyodbc.drivers(),
        reason="the FreeTDS ODBC driver is not registered in odbcinst.ini (apt-get install tdsodbc unixodbc)",
    ),
]

PASSWORD = "Sekret-42"
SCENARIO = """
[scenario]
name = "tds"
restart_delay = 0.3

[workload]
rate = 100
sessions = 12
error_every = 0

[flags]
brevutskrift_central_search = false
journal_snabbsok = true

[crash]
procedure = "p_brev_sok_central_utskrift"
flag = "brevutskrift_central_search"
config = "max parallel degree"
above = 1

[[events]]
at = 3.0
kind = "deployment"
what = "IMX 7.1.0"

[[events]]
at = 3.0
kind = "flag"
name = "brevutskrift_central_search"
value = true

[[events]]
at = 3.0
kind = "config"
name = "max parallel degree"
value = 4

[[calls]]
at = 7.0
procedure = "p_brev_sok_central_utskrift"
login = "sekr_karin"
"""


def connect(sim: SimServer, user: str = "asewatch", timeout: int = 0) -> Any:
    """A connection as the collectors make it (autocommit, login timeout, optional query timeout)."""
    conn = pyodbc.connect(sim.connection_string(user), autocommit=True, timeout=5)
    conn.timeout = timeout  # applies to cursors created from now on
    return conn


def rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    return [tuple(r) for r in cur.fetchall()]


def reconnect(sim: SimServer, user: str = "asewatch", timeout: float = 15.0) -> Any:
    """Connect, retrying while the server is down (a crashed server comes back on the same port)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(sim, user)
        except pyodbc.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    """One steady simulated server for the protocol tests (stopped by PID at the end)."""
    server = SimServer(tmp_path_factory.mktemp("tds") / "sim", rate=200, tds_password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_connect_version_and_own_session(sim: SimServer) -> None:
    conn = connect(sim)
    (version,) = rows(conn, "select @@version")[0]
    boot = sim.truth("boot")[-1]
    assert version == boot["version"]
    assert version.startswith("Adaptive Server Enterprise/16.0 SP04")
    assert rows(conn, "select @@servername")[0][0] == "CLINIC1"
    assert rows(conn, "select @@kernelmode")[0][0] == "threaded"
    (spid,) = rows(conn, "select @@spid")[0]
    me = rows(
        conn, f"select Login, Application, DBName, FamilyID from master..monProcess where SPID = {spid}"
    )
    assert me == [("asewatch", "asewatch", "master", 0)]
    # The workload's user sessions are there too, with their applications.
    apps = {r[0] for r in rows(conn, "select Application from master..monProcess where Login is not null")}
    assert {"IMX Klient", "isql", "asewatch"} <= apps
    assert sim.tds_address()[1] == boot["tds_port"]
    conn.close()


def test_result_types_long_text_and_nulls(sim: SimServer) -> None:
    conn = connect(sim)
    row = rows(
        conn, "select 5000000000, 7, 1.5, getdate(), replicate('x', 5000), null, '', object_name(999, 4)"
    )[0]
    big, small, flt, now, long_text, null, empty, no_object = row
    assert (big, small, flt) == (5000000000, 7, 1.5)
    assert abs(now.timestamp() - time.time()) < 5  # server-local time, 1/300 s resolution
    assert long_text == "x" * 5000
    assert (null, empty, no_object) == (None, " ", None)  # '' is a single space, as in ASE
    # tinyint (InstanceID), smallint (EngineNumber), int, varchar, datetime and NULLs from a table.
    spid = rows(conn, "select @@spid")[0][0]
    instance, engine, kpid, login, client, start = rows(
        conn,
        "select InstanceID, EngineNumber, KPID, Login, ClientName, SecondsConnected "
        f"from master..monProcess where SPID = {spid}",
    )[0]
    assert (instance, login, client) == (0, "asewatch", None)
    assert isinstance(engine, int) and isinstance(kpid, int) and kpid > 0 and start >= 0
    names = rows(
        conn,
        "select ColumnName, TypeName, Length from master..monTableColumns where TableName = 'monSysStatement'",
    )
    assert ("StartTime", "datetime", 8) in names and ("DBName", "varchar", 30) in names
    assert ("QueryOptimizationTime", "int", 4) in names  # a 16.0 SP03+ column on this 16.0 SP04 server
    conn.close()


def test_failed_login_is_clear_and_does_not_leak_the_password(sim: SimServer) -> None:
    wrong = "Wr0ng-Pa55word"
    cs = sim.connection_string().replace(f"PWD={PASSWORD}", f"PWD={wrong}")
    with pytest.raises(pyodbc.Error) as err:
        pyodbc.connect(cs, autocommit=True, timeout=5)
    text = str(err.value)
    assert "Login failed" in text and "4002" in text
    assert wrong not in text and PASSWORD not in text
    with pytest.raises(pyodbc.Error, match="Login failed"):
        pyodbc.connect(sim.connection_string("nobody"), autocommit=True, timeout=5)


def test_errors_leave_the_connection_usable(sim: SimServer) -> None:
    conn = connect(sim)
    for sql, number in (
        ("selec bogus", "156"),  # ProgrammingError (42000) from FreeTDS's message-number mapping
        ("select * from master..monNoSuchTable", "208"),
        ("select NoSuchColumn from master..monState", "207"),
        ("exec sp_no_such_proc", "2812"),
        ("select * from nodb..sysobjects", "911"),
        ("select 'unclosed", "105"),
        ("select c.text from imx..syscomments c, imx..sysobjects o where c.id = o.id", "156"),  # no joins
    ):
        with pytest.raises(pyodbc.Error, match=number) as err:
            rows(conn, sql)
        if number in ("156", "208"):
            assert isinstance(err.value, pyodbc.ProgrammingError)
        assert rows(conn, "select 1") == [(1,)]
    # The monitoring login may read the configuration but not change it.
    with pytest.raises(pyodbc.Error, match="10353"):
        rows(conn, "sp_configure 'max parallel degree', 4")
    assert rows(conn, "sp_configure 'max parallel degree'")[0][4] == "1"
    conn.close()


def test_query_timeout_cancels_and_the_connection_stays_usable(sim: SimServer) -> None:
    conn = connect(sim, timeout=1)
    sim.tds_hang(10, table="monState")
    started = time.monotonic()
    with pytest.raises(pyodbc.OperationalError, match="HYT00"):
        rows(conn, "select StartDate from master..monState")
    assert time.monotonic() - started < 5, "the cancel must be acknowledged, not wait out the hang"
    assert len(rows(conn, "select StartDate from master..monState")) == 1  # the hook was one-shot
    with pytest.raises(pyodbc.OperationalError, match="HYT00"):
        rows(conn, "waitfor delay '00:00:05'")
    assert rows(conn, "select @@servername") == [("CLINIC1",)]
    conn.close()


def test_dropped_connection_then_reconnect(sim: SimServer) -> None:
    conn = connect(sim)
    sim.tds_drop_next(table="monProcess")
    with pytest.raises(pyodbc.Error) as err:
        rows(conn, "select * from master..monProcess")
    assert "20017" in str(err.value) or "08S01" in str(err.value)  # unexpected EOF / link failure
    with pytest.raises(pyodbc.Error):
        rows(conn, "select 1")
    again = connect(sim)
    assert len(rows(again, "select SPID from master..monProcess")) > 10
    again.close()


def test_prelogin_of_another_tds_version_is_logged_and_refused(sim: SimServer) -> None:
    _, port = sim.tds_address()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(bytes((0x12, 1, 0, 8, 0, 0, 0, 0)))  # a TDS 7 PRELOGIN packet, empty
        assert s.recv(100) == b""  # the server closes the connection
    deadline = time.monotonic() + 5
    while "Type '18' not allowed before login." not in sim.errorlog.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "no 1621 error in the errorlog"
        time.sleep(0.05)


def keys(result: list[Any]) -> list[tuple[int, int, int]]:
    return [(r[0], r[1], r[2]) for r in result]


def test_pipe_tables_each_connection_reads_every_row_once(sim: SimServer) -> None:
    sql = "select SPID, KPID, BatchID, ProcedureID, EndTime from master..monSysStatement"
    a, b = connect(sim), connect(sim)
    a1, b1 = keys(rows(a, sql)), keys(rows(b, sql))
    time.sleep(0.6)
    a2 = keys(rows(a, sql))
    b2 = keys(rows(b, sql))
    for first, second in ((a1, a2), (b1, b2)):
        assert len(first) > 50 and len(second) > 50
        assert len(set(first + second)) == len(first) + len(second), "a row was returned twice"
    # Read later, b saw everything a saw (nothing overflowed: 200 statements/s, 5000 slots).
    assert set(a1 + a2) <= set(b1 + b2)
    assert len(rows(a, "select SPID from master..monSysSQLText")) > 0
    a.close()
    b.close()


def test_pipe_overflows_when_not_read(tmp_path: Path) -> None:
    scenario = tmp_path / "small-pipe.toml"
    scenario.write_text(
        "[workload]\nrate = 600\nsessions = 10\nerror_every = 0\n\n"
        '[config]\n"statement pipe max messages" = 200\n"sql text pipe max messages" = 200\n',
        encoding="utf-8",
    )
    sim = SimServer(tmp_path / "sim", scenario=scenario)
    try:
        sim.start()
        reader, idle = connect(sim), connect(sim)
        sql = "select SPID, KPID, BatchID from master..monSysStatement"
        rows(reader, sql)
        rows(idle, sql)
        seen = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            time.sleep(0.1)
            seen += len(rows(reader, sql))
        late = rows(idle, sql)
        assert seen > 500, "the frequent reader keeps up with the workload"
        assert 150 <= len(late) <= 200, "the idle reader gets about the pipe size: older rows were lost"
        assert len(rows(idle, "select SPID from master..monSysSQLText")) <= 200
        limits = rows(reader, "select value from master..syscurconfigs where config = 143")
        assert limits == [(200,)]
    finally:
        sim.stop()


def test_crash_dump_is_visible_then_connections_drop_and_restart_has_new_start_date(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "sim", restart_delay=0.3, dump_size=256 * 1024, dump_seconds=1.5)
    try:
        first = sim.start()
        _, port = sim.tds_address()
        conn = connect(sim)
        (before,) = rows(conn, "select StartDate from master..monState")[0]
        sim.crash_now()
        # While the dump is written the server still answers: the dump in progress, and the
        # crashing search with its parallel workers (FamilyID = the parent's spid).
        deadline = time.monotonic() + 5
        while rows(conn, "select DiagnosticDumps from master..monState") != [(1,)]:
            assert time.monotonic() < deadline, "DiagnosticDumps never became 1"
            time.sleep(0.02)
        family = rows(
            conn, "select SPID, FamilyID, NumChildren, Login from master..monProcess where FamilyID != 0"
        )
        (crash,) = sim.truth("crash")
        assert {(r[0], r[1]) for r in family} >= {(crash["spid"], crash["family"])}
        parent = rows(
            conn, f"select NumChildren, Login from master..monProcess where SPID = {crash['family']}"
        )
        assert parent == [(len(family), crash["login"])] and len(family) >= 2
        texts = rows(conn, f"select SQLText from master..monProcessSQLText where SPID = {crash['family']}")
        assert "".join(t[0] for t in texts) == crash["sql"]
        procs = rows(
            conn, f"select ObjectName from master..monProcessProcedures where SPID = {crash['spid']}"
        )
        assert procs == [("p_brev_sok_central_utskrift",)]

        sim.wait_boot(after=first, timeout=15)
        with pytest.raises(pyodbc.Error):
            rows(conn, "select StartDate from master..monState")
        again = reconnect(sim)
        (after,) = rows(again, "select StartDate, DiagnosticDumps from master..monState")[0][:1]
        assert after > before
        assert sim.tds_address() == ("127.0.0.1", port), "a restarted server keeps its port"
        again.close()
    finally:
        sim.stop()


def test_scenario_deployment_flags_and_sp_configure_workaround(tmp_path: Path) -> None:
    path = tmp_path / "tds.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    sim = SimServer(tmp_path / "sim", scenario=path, restart_delay=0.3, dump_size=64 * 1024)
    try:
        sim.start()
        conn = connect(sim)
        procs = "select id, name, crdate from imx..sysobjects where type = 'P '"
        before = {r[0]: (r[1], r[2]) for r in rows(conn, procs)}
        brev = next(i for i, (name, _) in before.items() if name == "p_brev_sok_central_utskrift")
        text_sql = f"select colid, text from imx..syscomments where id = {brev} order by colid"
        old_text = "".join(r[1] for r in rows(conn, text_sql))
        assert old_text.startswith("create procedure dbo.p_brev_sok_central_utskrift")
        assert "parallel" not in old_text
        flags = "select name, value from imx..app_feature_flags"
        assert ("brevutskrift_central_search", "false") in rows(conn, flags)

        sim.wait_for(lambda: sim.truth("deployment") and sim.truth("flag"), timeout=10)
        after = {r[0]: (r[1], r[2]) for r in rows(conn, procs)}
        changed = {i for i in before if after[i][1] != before[i][1]}
        assert len(changed) == 37 and brev in changed
        new_text = "".join(r[1] for r in rows(conn, text_sql))
        assert "set parallel_degree 4" in new_text and "(parallel 4)" in new_text
        assert ("brevutskrift_central_search", "true") in rows(conn, flags)
        run_value = "select value from master..syscurconfigs where config = 172"
        sim.wait_for(lambda: rows(conn, run_value) == [(4,)], timeout=5)

        # The vendor's workaround, applied by the DBA before the next search.
        sa = connect(sim, "sa")
        result = rows(sa, "sp_configure 'max parallel degree', 1")
        assert result == [("max parallel degree", "1", 0, "1", "1", "number", "dynamic")]
        assert rows(conn, run_value) == [(1,)]
        assert rows(conn, "select value from master..sysconfigures where name = 'max parallel degree'") == [
            (1,)
        ]
        line = "The configuration option 'max parallel degree' has been changed by 'sa' from '4' to '1'."
        assert line in sim.errorlog.read_text(encoding="utf-8")
        assert read_cfg(sim.cfg)["max parallel degree"] == "1"
        call = sim.wait_for(lambda: sim.truth("call"), timeout=10)[0]
        assert (call["procedure"], call["outcome"]) == ("p_brev_sok_central_utskrift", "ok")
        assert sim.truth("crash") == [], "with max parallel degree 1 the search no longer crashes"
        sa.close()
        conn.close()
    finally:
        sim.stop()
