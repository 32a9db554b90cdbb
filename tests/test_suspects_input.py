"""Offline inputs of the ranking (monitor/suspects_input.py): files -> the contract's frames.

Statements as CSV and Parquet, with the export's columns and with ``monSysStatement``'s
(any case, extra columns, optional ones missing); changes with both headers and every
kind alias; crash blocks and uptime from errorlogs written in the real ASE format. Bad
input is one line naming the file and the column, row or value, and exit 2 at the CLI.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from monitor.errors import InputError
from monitor.suspects_cli import suspects_cmd
from monitor.suspects_input import crashes_from_errorlogs, load_changes, load_statements, offline_inputs

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 8, 0, 0)
CONTRACT = ["spid", "kpid", "family", "procedure", "login", "host", "application", "start_time", "end_time"]
EXPORT = ["server", "spid", "kpid", "family", "login", "host", "program", "db", "procedure", "line",
          "statement_number", "batch_id", "context_id", "start_time", "end_time", "elapsed_ms", "cpu_ms",
          "wait_ms", "logical_reads", "physical_reads", "rows_affected", "error", "sql"]  # fmt: skip


def rows(n: int = 12, seed: int = 3) -> pd.DataFrame:
    """``n`` statements in the contract's terms; a few names and ids missing."""
    rng = np.random.default_rng(seed)
    start = [T0 + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 3600, n))]
    procs = rng.choice(["p_a", "p_b", "p_brev_sok", "sp_who"], n).astype(object)
    procs[1] = None  # ad hoc SQL
    logins = rng.choice(["sekr_karin", "vardpersonal01"], n).astype(object)
    logins[2] = None
    return pd.DataFrame(
        {
            "spid": pd.array(rng.integers(10, 400, n), dtype="Int64"),
            "kpid": pd.array(rng.integers(10**6, 10**9, n), dtype="Int64"),
            "family": pd.array([0] * (n - 1) + [None], dtype="Int64"),
            "procedure": procs,
            "login": logins,
            "host": rng.choice(["ws-avd12-034", "app-imx-01"], n),
            "application": rng.choice(["IMX Klient", "IMX Batch"], n),
            "start_time": pd.to_datetime(start).astype("datetime64[ns]"),
            "end_time": pd.to_datetime([s + timedelta(milliseconds=40) for s in start]).astype(
                "datetime64[ns]"
            ),
        }
    )


def as_export(truth: pd.DataFrame) -> pd.DataFrame:
    out = truth.rename(columns={"application": "program"}).assign(
        server="CLINIC1", db="imx_prod", line=1, statement_number=1, batch_id=1, context_id=0, elapsed_ms=40,
        cpu_ms=1, wait_ms=0, logical_reads=12, physical_reads=0, rows_affected=1, error=0, sql="select 1",
    )  # fmt: skip
    return out[EXPORT]


MON = {"spid": "SPID", "kpid": "KPID", "procedure": "ProcName", "start_time": "StartTime", "end_time": "EndTime",
       "login": "Login", "host": "HostName", "application": "Application"}  # fmt: skip


def as_mon(truth: pd.DataFrame, case: str = "as is") -> pd.DataFrame:
    out = truth.drop(columns=["family"]).rename(columns=MON)
    out = out.assign(
        DBID=4, DBName="imx_prod", ProcedureID=1, LineNumber=1, CpuTime=0, LogicalReads=3, ErrorStatus=0
    )
    if case == "lower":
        out.columns = [c.lower() for c in out.columns]
    elif case == "upper":
        out.columns = [c.upper() for c in out.columns]
    return out


def same(frame: pd.DataFrame, truth: pd.DataFrame) -> None:
    """``frame`` carries exactly ``truth``'s values in the contract's dtypes."""
    assert list(frame.columns) == [c for c in CONTRACT if c in truth]
    for col in ("spid", "kpid", "family"):
        if col in truth:
            assert frame[col].dtype == "Int64"
            assert frame[col].astype(object).tolist() == truth[col].astype(object).tolist(), col
    for col in ("start_time", "end_time"):
        if col in truth:
            assert frame[col].dtype == np.dtype("datetime64[ns]")
            assert (frame[col] == truth[col]).all(), col
    for col in ("procedure", "login", "host", "application"):
        if col in truth:
            assert isinstance(frame[col].dtype, pd.CategoricalDtype), col
            got = ["" if pd.isna(v) else str(v) for v in frame[col]]
            assert got == ["" if pd.isna(v) else str(v) for v in truth[col]], col


def test_export_columns_from_csv(tmp_path: Path) -> None:
    truth = rows()
    path = tmp_path / "statements.csv"
    as_export(truth).to_csv(path, index=False)
    same(load_statements(path), truth)


@pytest.mark.parametrize("case", ["as is", "lower", "upper"])
def test_mon_sys_statement_columns_from_parquet_in_any_case(tmp_path: Path, case: str) -> None:
    truth = rows(40)
    path = tmp_path / "mon.parquet"
    # Small row groups: each has its own dictionary of names, which must come out as one.
    pq.write_table(pa.Table.from_pandas(as_mon(truth, case), preserve_index=False), path, row_group_size=7)
    assert pq.ParquetFile(path).num_row_groups == 6
    same(load_statements(path), truth.drop(columns=["family"]))


def test_mon_sys_statement_csv_with_extra_and_without_optional_columns(tmp_path: Path) -> None:
    truth = rows()
    mon = as_mon(truth).drop(columns=["Login", "HostName", "Application", "EndTime"]).assign(Extra="x")
    path = tmp_path / "mon.csv"
    mon.to_csv(path, index=False)
    frame = load_statements(path)
    same(frame, truth[["spid", "kpid", "procedure", "start_time"]])


def test_parquet_is_known_by_its_magic_and_odd_types_are_converted(tmp_path: Path) -> None:
    truth = rows(9)
    table = pa.table(
        {
            "SPID": pa.array(truth["spid"].astype(object).tolist(), pa.int16()),
            "KPID": pa.array([str(v) for v in truth["kpid"]]),  # ids as text
            "ProcName": pa.array([None if pd.isna(v) else v for v in truth["procedure"]]).dictionary_encode(),
            # Zoned microseconds: the wall time in that zone is the server's local time.
            "StartTime": pa.array(truth["start_time"].dt.tz_localize("Europe/Stockholm")).cast(
                pa.timestamp("us", tz="Europe/Stockholm")
            ),
            "EndTime": pa.array([f"{t:%Y-%m-%d %H:%M:%S.%f}" for t in truth["end_time"]]),  # times as text
        }
    )
    path = tmp_path / "statements.dat"
    pq.write_table(table, path)
    same(load_statements(path), truth[["spid", "kpid", "procedure", "start_time", "end_time"]])


def test_times_in_other_forms_parse(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "SPID,KPID,ProcName,StartTime\n1,2,p,2026-11-26T08:15:02.5\n1,2,p,11/26/2026 08:16:00\n3,4,q,\n"
    )
    frame = load_statements(path)
    assert frame["start_time"].iloc[:2].tolist() == [
        pd.Timestamp("2026-11-26 08:15:02.5"),
        pd.Timestamp("2026-11-26 08:16"),
    ]
    assert pd.isna(frame["start_time"].iloc[2])


def _write(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _one_line(e: pytest.ExceptionInfo[InputError], *words: str) -> None:
    text = str(e.value)
    assert "\n" not in text
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("drop", ["SPID", "KPID", "ProcName", "StartTime"])
def test_a_missing_required_column_is_named(tmp_path: Path, suffix: str, drop: str) -> None:
    path = _write(tmp_path / f"s{suffix}", as_mon(rows()).drop(columns=[drop]))
    with pytest.raises(InputError) as e:
        load_statements(path)
    _one_line(e, str(path), drop.lower(), "column")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_unparsable_time_names_the_column_row_and_value(tmp_path: Path, suffix: str) -> None:
    mon = as_mon(rows(5))
    mon["EndTime"] = [f"{t:%Y-%m-%d %H:%M:%S}" for t in mon["EndTime"]]
    mon.loc[3, "EndTime"] = "kl. 08 i morse"
    path = _write(tmp_path / f"s{suffix}", mon)
    with pytest.raises(InputError) as e:
        load_statements(path)
    row = "row 5" if suffix == ".csv" else "row 4"  # CSV counts the header line
    _one_line(e, "end_time", row, "'kl. 08 i morse'", "is not a time")


def test_an_id_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("SPID,KPID,ProcName,StartTime\n1,2,p,2026-11-26 08:00:00\n1,x7,p,2026-11-26 08:00:01\n")
    with pytest.raises(InputError) as e:
        load_statements(path)
    _one_line(e, "kpid", "'x7'")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", ("empty file",)),
        (b"SPID,KPID,ProcName,StartTime\n", ("no statement rows",)),
        (b"PAR1garbage", ("Parquet",)),
    ],
)
def test_empty_and_broken_files(tmp_path: Path, content: bytes, words: tuple[str, ...]) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_statements(path)
    _one_line(e, str(path), *words)


def test_a_parquet_file_without_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.parquet", as_mon(rows()).iloc[:0])
    with pytest.raises(InputError) as e:
        load_statements(path)
    _one_line(e, "no statement rows")


# --------------------------------------------------------------------------- changes

CHANGES = """time,kind,name,old,new
2026-11-26 06:45:00,deploy,IMX 7.1.0,,
2026-11-26 06:46:00,Deployment,IMX 7.1.1,,
2026-11-26 07:00:00,flag,brevutskrift_central_search,false,true
2026-11-26 07:05:00,config,max parallel degree,1,4
2026-11-26 07:06:00,setting,number of worker processes,20,40
2026-11-26 07:10:00,procedure,imx..p_brev_sok,1a2b,3c4d
2026-11-26 07:11:00,PROCEDURES,imx..p_a,,5e6f
2026-11-26 07:12:00,version,ASE version,16.0 SP04 PL02,16.0 SP04 PL03
"""


def test_change_kinds_map_to_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(CHANGES)
    frame = load_changes(path)
    assert frame["kind"].tolist() == ["deployment", "deployment", "flag", "setting", "setting",
                                      "procedure_change", "procedure_change", "version"]  # fmt: skip
    assert frame["time"].dtype == np.dtype("datetime64[ns]") and frame["time"].iloc[0] == pd.Timestamp(
        "2026-11-26 06:45"
    )
    assert frame.loc[3, ["name", "old", "new"]].tolist() == ["max parallel degree", "1", "4"]
    assert pd.isna(frame.loc[0, "old"]) and pd.isna(frame.loc[6, "old"])


def test_export_changes_columns(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "time,server,kind,what,old,new,by,source\n"
        "2026-11-26 07:00:00,CLINIC1,flag,brevutskrift_central_search,false,true,,file\n"
        "2026-11-26 07:05:00.250000,CLINIC1,config,max parallel degree,1,4,sa,errorlog\n"
        "2026-11-26 07:10:00,CLINIC1,procedures,2 procedures changed in imx (2 changed),,,,syscomments\n"
        "2026-11-26 07:10:00,CLINIC1,procedure,imx..p_brev_sok (asks for parallel plans),1a2b,3c4d,,syscomments\n"
        "2026-11-26 07:20:00,CLINIC1,dump conditions,x,on,off,,sp_shmdumpconfig\n"
    )
    frame = load_changes(path)
    assert frame[["kind", "name"]].values.tolist() == [
        ["flag", "brevutskrift_central_search"], ["setting", "max parallel degree"], ["procedure_change", "imx..p_brev_sok"]
    ]  # fmt: skip
    assert frame["time"].iloc[1] == pd.Timestamp("2026-11-26 07:05:00.25")


def test_a_changes_file_of_several_servers_needs_one_named(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "time,server,kind,what,old,new\n"
        "2026-11-26 07:00:00,CLINIC1,flag,f1,false,true\n"
        "2026-11-26 07:05:00,CLINIC2,config,max parallel degree,1,4\n"
        "2026-11-26 07:06:00,,deploy,IMX 7.1.0,,\n"
    )
    with pytest.raises(InputError) as e:
        load_changes(path)
    _one_line(e, "2 servers", "CLINIC1, CLINIC2", "--server")
    assert load_changes(path, server="CLINIC2")["name"].tolist() == ["max parallel degree", "IMX 7.1.0"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (CHANGES + "2026-11-26 08:00:00,weather,sunny,,\n", ("row 10", "'weather'", "deploy, config, flag")),
        ("time,name,old,new\n2026-11-26 08:00:00,x,,\n", ("no kind column",)),
        ("time,kind,old,new\n2026-11-26 08:00:00,flag,,\n", ("no name (or what) column",)),
        ("time,kind,name\nigår,flag,x\n", ("column time", "row 2", "'igår'")),
        ("", ("empty file",)),
        ("time,kind,name,old,new\n", ("no change rows",)),
    ],
)
def test_bad_changes(tmp_path: Path, content: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "c.csv"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        load_changes(path)
    _one_line(e, str(path), *words)


# --------------------------------------------------------------------------- errorlogs


def _line(
    t: datetime, text: str, *, spid: int = 0, family: int = 0, thread: int = 0, comp: str = "kernel"
) -> str:
    return f"00:{thread:04d}:{family:05d}:{spid:05d}:{t:%Y/%m/%d %H:%M:%S}.{t.microsecond // 10000:02d} {comp}  {text}\n"


def _boot(t: datetime) -> str:
    texts = ["SySAM: Using licenses from: /opt/sap/SYSAM-2_0/licenses/licenseserver.lic",
             "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/SLES 12.4/ase160sp04pl03/0000/64-bit/FBO",
             "Using config area from primary master device.", "Network and device connection limit is 65519."]  # fmt: skip
    return "".join(_line(t, x) for x in texts) + _line(
        t + timedelta(seconds=20), "Recovery complete.", spid=12, thread=2
    )


def _crash(t: datetime, spid: int, kpid: int, *, family: int = 0, fatal: bool = False) -> str:
    texts = [
        "Current process (0x72ff02a0) infected with signal 11 (SIGSEGV)",
        "Address 0x0x0000000001ded8cf (LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af), siginfo (code, address) = (1, 0x0x0)",
        "SQL causing error : select b.brev_id from brev b where b.avd_id = @avd",
        "curdb = 4 tempdb = 2 pstat = 0x10100 p2stat = 0x101000",
        "extended error information: hostname: ws-avd12-034 login: sekr_karin",
        "pc: 0x00000000012aee1c pcstkwalk+0x46e()",
        "pc: 0x0000000001ded8cf LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af()",
        "pc: 0x0000000001c09621 exec_lava+0x506()",
        f"end of stack trace, spid {spid}, kpid {kpid}, suid 4",
    ]
    if fatal:
        texts += ["FATAL UNHANDLED EXCEPTION: signal 11 hit while handling a previously hit signal. The server cannot continue.",
                  "pc: 0x00000000012aee1c pcstkwalk+0x46e()", f"end of stack trace, spid {spid}, kpid {kpid}, suid 4",
                  "ueshutdown: exiting"]  # fmt: skip
    out = "".join(_line(t, x, spid=spid, family=family, thread=5) for x in texts)
    return out + (_line(t + timedelta(seconds=1), "Main thread performing final shutdown.") if fatal else "")


def _shutdown(t: datetime) -> str:
    return _line(
        t, "Shutdown started by user 'sa'. SQL text: shutdown", spid=12, thread=6, comp="server"
    ) + _line(t, "ueshutdown: exiting", spid=12, thread=6)


def _routine(t: datetime) -> str:
    return _line(t, "Checkpoint of database 'tempdb' complete.", spid=12, thread=2, comp="server")


H = timedelta(hours=1)


def test_crashes_and_uptime_from_an_errorlog(tmp_path: Path) -> None:
    log = tmp_path / "CLINIC1.log"
    log.write_text(
        _routine(T0 - 2 * H)  # the log opens mid-run: the server was up
        + _crash(T0, 101, 2_000_001)
        + _crash(T0 + H, 333, 2_000_002, family=101, fatal=True)  # a worker; the server goes down
        + _boot(T0 + 2 * H)
        + _routine(T0 + 3 * H)
        + _shutdown(T0 + 4 * H)
        + _boot(T0 + 5 * H)
        + _crash(T0 + 6 * H, 120, 2_000_003)
        + _routine(T0 + 8 * H)  # the last line: still up
    )
    crashes, uptime = crashes_from_errorlogs([log])
    assert crashes["time"].tolist() == [pd.Timestamp(T0 + h * H) for h in (0, 1, 6)]
    assert crashes["spid"].tolist() == [101, 333, 120] and crashes["kpid"].dtype == "Int64"
    assert crashes["family"].tolist() == [0, 101, 0]
    assert set(crashes.loc[0, ["login", "host"]]) == {"sekr_karin", "ws-avd12-034"}
    assert crashes.loc[0, "sql"].startswith("select b.brev_id")
    assert crashes["key"].is_unique and crashes["signature"].nunique() == 1
    assert uptime is not None
    assert (
        uptime.values.tolist()
        == pd.DataFrame(
            {"start": [T0 - 2 * H, T0 + 2 * H, T0 + 5 * H], "end": [T0 + H, T0 + 4 * H, T0 + 8 * H]}
        )
        .astype("datetime64[ns]")
        .values.tolist()
    )
    # The same crash in two files (a copy, a gzipped rotation) counts once, with the same key.
    gz = tmp_path / "CLINIC1.log.1.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    again, _ = crashes_from_errorlogs([log, gz])
    assert again["key"].tolist() == crashes["key"].tolist()


def test_an_errorlog_that_says_nothing_of_uptime(tmp_path: Path) -> None:
    log = tmp_path / "excerpt.log"
    log.write_text(_crash(T0, 101, 2_000_001) + _routine(T0 + H))
    crashes, uptime = crashes_from_errorlogs([log])
    assert len(crashes) == 1 and uptime is None
    empty = tmp_path / "empty.log"
    empty.write_text(_routine(T0))
    crashes, uptime = crashes_from_errorlogs([empty])
    assert crashes.empty and list(crashes.columns)[:3] == ["key", "signature", "time"] and uptime is None


def test_offline_inputs_put_it_together(tmp_path: Path) -> None:
    log = tmp_path / "CLINIC1.log"
    log.write_text(_boot(T0 - H) + _crash(T0, 101, 2_000_001))
    statements = _write(tmp_path / "s.parquet", as_mon(rows()))
    changes = tmp_path / "c.csv"
    changes.write_text(CHANGES)
    inputs = offline_inputs([log], statements, changes)
    assert len(inputs.crashes) == 1 and inputs.minutes is None
    assert inputs.statements is not None and len(inputs.statements) == 12
    assert inputs.changes is not None and len(inputs.changes) == 8
    assert inputs.uptime is not None and len(inputs.uptime) == 1
    bare = offline_inputs([log])
    assert bare.statements is None and bare.changes is None


@pytest.mark.parametrize("drop", ["KPID", "StartTime"])
def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path: Path, drop: str) -> None:
    log = tmp_path / "CLINIC1.log"
    log.write_text(_boot(T0 - H) + _crash(T0, 101, 2_000_001))
    path = _write(tmp_path / "s.parquet", as_mon(rows()).drop(columns=[drop]))
    res = CliRunner().invoke(suspects_cmd, ["--errorlog", str(log), "--statements", str(path), "--json"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("asewatch: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert drop.lower() in res.stderr and "Traceback" not in res.stderr
