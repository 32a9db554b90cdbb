"""`asewatch activity` and `asewatch export activity`: what a DBA sees and what leaves the host."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from collectors.mda.rows import SqlTextRow
from monitor.activity_cli import activity_cmd
from monitor.config_mda import MdaConfig
from monitor.export_cli import export_group
from monitor.flightrec import ops_for
from monitor.flightrec_export import MINUTE_COLUMNS, STATEMENT_COLUMNS
from monitor.flightrec_freeze import FreezeCrash
from monitor.redact import PNR_RE
from monitor.store import Batch, Store
from monitor.store_types import CrashRow
from tests.test_flightrec import CRASH, Clock, incident, sample

pytestmark = pytest.mark.unit


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A store with the incident's activity, one crash record and its frozen activity."""
    clock = Clock()
    with Store(tmp_path / "asewatch.db", clock=clock) as store:
        incident(store, clock)
        row = store.upsert_crash(CrashRow(server="CLINIC1", key="CLINIC1|crash:1", time=datetime.fromtimestamp(CRASH),
                                          spid=201, kpid=7201, family=20, login="sekr_karin"))  # fmt: skip
        clock.t = CRASH + 1
        store.append(Batch(ops=[FreezeCrash(row.key, "CLINIC1", CRASH, 201, 7201, 20)]))
        # A text that (against the rules) still holds a personal identity number: exports must not.
        leak = SqlTextRow(22, 7022, 5, "exec p_x @pnr = 19121212-1212", "pipe", CRASH - 40)
        store.append(
            Batch(ops=ops_for("CLINIC1", sample(CRASH - 40, texts=(leak,)), MdaConfig(raw_minutes=1440)))
        )
    return tmp_path


def test_activity_before_a_crash_names_the_procedure_and_the_login(state: Path) -> None:
    result = CliRunner().invoke(activity_cmd, ["--state-dir", str(state), "--before", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["session"]["login"] == "sekr_karin" and doc["session"]["spid"] == 20
    assert doc["crash"]["family"] == 20 and doc["crash"]["spid"] == 201
    assert "p_brev_sok_central_utskrift" in doc["procedures"]
    assert doc["errorlog"]["login"] == "sekr_karin"  # what the crash block said, side by side
    assert {s["role"] for s in doc["statements"]} == {"running", "session", "activity"}
    text = CliRunner().invoke(activity_cmd, ["--state-dir", str(state), "--before", "1"]).output
    assert "sekr_karin on ws-1 (IMX Klient)" in text and "p_brev_sok_central_utskrift" in text


def test_activity_without_a_crash_and_unknown_crashes(state: Path) -> None:
    result = CliRunner().invoke(
        activity_cmd, ["--state-dir", str(state), "--spid", "21", "--minutes", "1e9", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["statements"]
    assert rows and {r["spid"] for r in rows} == {21}
    assert datetime.fromisoformat(rows[0]["end"]) >= datetime.fromisoformat(rows[0]["start"])
    missing = CliRunner().invoke(activity_cmd, ["--state-dir", str(state), "--before", "99"])
    assert missing.exit_code == 2 and "no crash '99'" in missing.output


@pytest.mark.parametrize("what", ["statements", "minutes"])
def test_export_csv_and_parquet_have_the_documented_columns_and_no_personal_number(
    state: Path, tmp_path: Path, what: str
) -> None:
    out_csv, out_pq = tmp_path / "a.csv", tmp_path / "a.parquet"
    for fmt, out in (("csv", out_csv), ("parquet", out_pq)):
        args = ["activity", "--state-dir", str(state), "--format", fmt, "--what", what, "-o", str(out)]
        result = CliRunner().invoke(export_group, args)
        assert result.exit_code == 0, result.output
    csv = pd.read_csv(out_csv)
    pq = pd.read_parquet(out_pq)
    columns = list(STATEMENT_COLUMNS if what == "statements" else MINUTE_COLUMNS)
    assert list(csv.columns) == columns and list(pq.columns) == columns
    assert len(csv) == len(pq) > 0
    assert not PNR_RE.search(out_csv.read_text(encoding="utf-8"))
    assert not any(PNR_RE.search(str(v)) for v in pq.astype(str).to_numpy().ravel())
    if what == "statements":
        assert "exec p_x @pnr = <pnr>" in set(csv["sql"].dropna())  # cleaned on the way out
        assert set(csv["login"]) >= {"sekr_karin", "lakare_erik"}
        assert str(pq["start_time"].dtype).startswith("datetime64")


def test_export_csv_goes_to_stdout(state: Path) -> None:
    result = CliRunner().invoke(export_group, ["activity", "--state-dir", str(state), "--what", "minutes"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == ",".join(MINUTE_COLUMNS)
