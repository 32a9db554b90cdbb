"""`asewatch suspects` offline: an errorlog, a statements file and a changes file, no agent.

The scenario is one morning: an innocent flag at 06:30, the culprit flag at 07:00,
``max parallel degree`` 1 -> 4 at 07:05, five crashes between 08:00 and 12:00 (each
block's SQL is a statement inside the procedure, never its ``exec``), the revert at
13:00. A procedure runs every second on every session all day; the culprit is called
five times, each on the crashing task a few seconds before its crash, and three times
after the revert without a crash.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from monitor.cli import cli

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 26, 6, 0, 0)
CRASHES = [DAY + timedelta(hours=h) for h in (2, 3, 4, 5, 6)]
CULPRIT, FREQUENT, BATCH = "p_brev_sok_central_utskrift", "p_patient_get", "p_brev_batch_natt"


def _p(t: datetime, spid: int, comp: str = "kernel", thread: int = 5) -> str:
    return f"00:{thread:04d}:00000:{spid:05d}:{t:%Y/%m/%d %H:%M:%S}.{t.microsecond // 10000:02d} {comp}  "


def _block(t: datetime, spid: int, kpid: int) -> str:
    p = _p(t, spid)
    body = [
        "Current process (0x72ff02a0) infected with signal 11 (SIGSEGV)",
        "Address 0x0x0000000001ded8cf (LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af), siginfo (code, address) = (1, 0x0x0)",
        "************************************",
        "SQL causing error : select b.brev_id from brev b, patient p where b.pnr = p.pnr and b.avd_id = @avd",
        "************************************",
        "curdb = 4 tempdb = 2 pstat = 0x10100 p2stat = 0x101000",
        "extended error information: hostname: ws-avd12-034 login: sekr_karin",
        "pc: 0x00000000012aee1c pcstkwalk+0x46e()",
        "pc: 0x00000000012ae9f3 ucstkgentrace+0x20f()",
        "pc: 0x0000000001ded8cf LeXchgOp::_LeOpNext(ExeCtxt&)+0x1af()",
        "pc: 0x0000000001c09621 exec_lava+0x506()",
        f"end of stack trace, spid {spid}, kpid {kpid}, suid 4",
    ]
    return "".join(p + line + "\n" for line in body)


def write_errorlog(path: Path) -> list[tuple[int, int]]:
    """The errorlog with a boot, routine lines and the five crash blocks; returns (spid, kpid)."""
    lines = [
        _p(DAY, 0, thread=0) + "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/SLES 12.5/ase160sp04pl03x/3541/64-bit/FBO\n",
        _p(DAY, 0, thread=0) + "Using config area from primary master device.\n",
    ]  # fmt: skip
    tasks = []
    for i, t in enumerate(CRASHES):
        spid, kpid = 100 + i, 2_000_000 + i
        tasks.append((spid, kpid))
        lines.append(
            _p(t - timedelta(minutes=30), 12, "server", 2) + "Checkpoint of database 'tempdb' complete.\n"
        )
        lines.append(_block(t, spid, kpid))
    lines.append(
        _p(DAY + timedelta(hours=12), 12, "server", 2) + "Checkpoint of database 'tempdb' complete.\n"
    )
    path.write_text("".join(lines))
    return tasks


def statements(tasks: list[tuple[int, int]]) -> pd.DataFrame:
    """The project's export columns: a frequent procedure, the culprit, a batch (near crashes 2, 3)."""
    rng = random.Random(7)
    rows = []
    t = DAY
    while t < DAY + timedelta(hours=12):
        spid = rng.randint(20, 60)
        rows.append(
            (
                spid,
                9_000 + spid,
                0,
                "vardpersonal01",
                "ws-1",
                "IMX Klient",
                FREQUENT,
                t,
                t + timedelta(milliseconds=5),
            )
        )
        t += timedelta(seconds=1)
    for (spid, kpid), c in zip(tasks, CRASHES, strict=True):
        for k in range(3):  # the culprit's statements on the crashing task, before the crash
            s = c - timedelta(seconds=4 - k)
            rows.append(
                (
                    spid,
                    kpid,
                    0,
                    "sekr_karin",
                    "ws-avd12-034",
                    "IMX Klient",
                    CULPRIT,
                    s,
                    s + timedelta(milliseconds=900),
                )
            )
    # The batch runs every two hours, and so happens to run near crashes 2 and 3.
    batch_runs = [c - timedelta(seconds=30) for c in CRASHES[1:3]]
    batch_runs += [DAY + timedelta(hours=h, minutes=20) for h in (0, 2, 5, 7, 9, 11)]
    rows += [
        (77, 7_777, 0, "imx_batch", "app-imx-01", "IMX Batch", BATCH, s, s + timedelta(seconds=25))
        for s in batch_runs
    ]
    for h in (14, 15, 16):  # after the revert: the same search succeeds
        s = DAY + timedelta(hours=h)
        rows.append(
            (
                300 + h,
                4_000 + h,
                0,
                "sekr_karin",
                "ws-avd12-034",
                "IMX Klient",
                CULPRIT,
                s,
                s + timedelta(seconds=2),
            )
        )
    cols = ["spid", "kpid", "family", "login", "host", "program", "procedure", "start_time", "end_time"]
    return pd.DataFrame(rows, columns=cols).sort_values("start_time")  # fmt: skip


CHANGES = """time,kind,name,old,new
2026-11-26 06:30:00,flag,lab_svar_push,false,true
2026-11-26 06:45:00,deploy,IMX 7.1.0,,
2026-11-26 07:00:00,flag,brevutskrift_central_search,false,true
2026-11-26 07:05:00,config,max parallel degree,1,4
2026-11-26 13:00:00,config,max parallel degree,4,1
"""


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["suspects", *args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    log = tmp_path / "CLINIC1.log"
    tasks = write_errorlog(log)
    frame = statements(tasks)
    csv = tmp_path / "statements.csv"
    frame.to_csv(csv, index=False)
    mon = frame.rename(columns={"spid": "SPID", "kpid": "KPID", "procedure": "ProcName", "start_time": "StartTime",
                                "end_time": "EndTime", "login": "Login", "host": "HostName", "program": "Application"})  # fmt: skip
    mon = mon.drop(columns=["family"]).assign(DBID=4, DBName="imx_prod", ProcedureID=1, LineNumber=1, CpuTime=0,
                                              LogicalReads=0, ErrorStatus=0)  # fmt: skip
    parquet = tmp_path / "monSysStatement.parquet"
    mon.to_parquet(parquet, index=False)
    mon.to_csv(tmp_path / "monSysStatement.csv", index=False)
    frame.to_parquet(tmp_path / "statements.parquet", index=False)
    changes = tmp_path / "changes.csv"
    changes.write_text(CHANGES)
    return {"log": log, "csv": csv, "parquet": parquet, "changes": changes, "mon_csv": tmp_path / "monSysStatement.csv",
            "export_parquet": tmp_path / "statements.parquet"}  # fmt: skip


def _ranked(doc: dict, kind: str | None = None) -> list[str]:
    [group] = doc["groups"]
    return [s["name"] for s in group["suspects"] if kind is None or s["kind"] == kind]


def test_the_rare_culprit_ranks_first_and_the_frequent_procedure_near_zero(files: dict[str, Path]) -> None:
    code, out, err = run("--errorlog", str(files["log"]), "--statements", str(files["csv"]),
                         "--changes", str(files["changes"]), "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    [group] = doc["groups"]
    assert group["crashes"] == 5 and group["first"] == "2026-11-26T08:00:00"
    assert _ranked(doc, "procedure")[0] == CULPRIT
    scores = {(s["kind"], s["name"]): s["score"] for s in group["suspects"]}
    assert scores.get(("procedure", FREQUENT), 0.0) < 0.1
    assert scores.get(("procedure", BATCH), 0.0) < scores[("procedure", CULPRIT)] / 2
    names = _ranked(doc)
    if "lab_svar_push" in names:  # the innocent flag, switched before the culprit's
        assert names.index("max parallel degree") < names.index("lab_svar_push")
    for s in group["suspects"]:
        assert set(s) >= {"rank", "kind", "name", "score", "confidence", "evidence"}
        assert s["confidence"] in ("strong", "moderate", "weak") and 0.0 <= s["score"] <= 1.0
        assert "select" not in s["evidence"].lower()
    assert [s["rank"] for s in group["suspects"]] == list(range(1, len(group["suspects"]) + 1))
    assert [s["score"] for s in group["suspects"]] == sorted(
        (s["score"] for s in group["suspects"]), reverse=True
    )


def test_parquet_with_mon_sys_statement_columns_ranks_the_same(files: dict[str, Path]) -> None:
    common = ("--errorlog", str(files["log"]), "--changes", str(files["changes"]), "--json")
    code_a, out_a, err_a = run("--statements", str(files["csv"]), *common)
    code_b, out_b, err_b = run("--statements", str(files["parquet"]), *common)
    assert code_a == code_b == 0, (err_a, err_b)
    a, b = json.loads(out_a), json.loads(out_b)
    assert _ranked(b, "procedure")[:2] == _ranked(a, "procedure")[:2]
    assert _ranked(b, "procedure")[0] == CULPRIT


@pytest.mark.parametrize("which", ["csv", "parquet", "mon_csv", "export_parquet"])
def test_every_format_and_column_set_gives_one_object_with_the_culprit_first(
    files: dict[str, Path], which: str
) -> None:
    code, out, err = run("--errorlog", str(files["log"]), "--statements", str(files[which]),
                         "--changes", str(files["changes"]), "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)  # exactly one object: json.loads rejects anything after it
    assert set(doc) == {"groups"} and _ranked(doc, "procedure")[0] == CULPRIT


def test_the_table_names_the_culprit(files: dict[str, Path]) -> None:
    code, out, err = run("--errorlog", str(files["log"]), "--statements", str(files["parquet"]),
                         "--changes", str(files["changes"]))  # fmt: skip
    assert code == 0, err
    assert CULPRIT in out and "max parallel degree" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_without_statements_the_ranking_says_so(files: dict[str, Path]) -> None:
    code, out, err = run("--errorlog", str(files["log"]), "--changes", str(files["changes"]), "--json")
    assert code == 0, err
    [group] = json.loads(out)["groups"]
    assert any("no statement rows" in n for n in group["notes"])
    assert "max parallel degree" in [s["name"] for s in group["suspects"]]


@pytest.mark.parametrize(
    ("what", "content", "message"),
    [
        ("statements", "SPID,KPID,StartTime\n1,2,2026-11-26 08:00:00\n", "no procname or procedure column"),
        ("statements", "SPID,KPID,ProcName,StartTime\n1,2,p,yesterday\n", "is not a time"),
        ("statements", "", "empty file"),
        ("statements", "SPID,KPID,ProcName,StartTime\n", "no statement rows"),
        ("changes", "time,kind,name\n2026-11-26 08:00:00,weather,sunny\n", "is not one of"),
        ("changes", "time,name\n2026-11-26 08:00:00,x\n", "no kind column"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    files: dict[str, Path], tmp_path: Path, what: str, content: str, message: str
) -> None:
    bad = tmp_path / f"bad-{what}.csv"
    bad.write_text(content)
    code, out, err = run("--errorlog", str(files["log"]), f"--{what}", str(bad))
    assert code == 2 and out == ""
    assert err.startswith("asewatch: error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_statements_without_an_errorlog_and_a_missing_errorlog_are_clear_errors(
    files: dict[str, Path],
) -> None:
    code, _, err = run("--statements", str(files["csv"]))
    assert code == 2 and "--errorlog" in err
    code, _, err = run("--errorlog", str(files["log"].with_name("nope.log")))
    assert code == 2 and "nope.log" in err and err.count("\n") == 1
