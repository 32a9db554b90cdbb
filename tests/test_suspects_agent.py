"""The agent's suspects: ranked after a crash, stored, and carried by /metrics, `show` and the package.

The store is the one a real crash of the simulated dataserver leaves (errorlog parser ->
store -> crash assembly, as the agent does; tests/test_package_helpers.py), so the
ranking runs on the records the agent writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.cli import cli
from monitor.health import Health
from monitor.metrics import AseCollector, make_registry
from monitor.package import build_package
from monitor.package_manifest import validate_manifest
from monitor.redact import personal_numbers
from monitor.store import Batch, Store, UpsertCrash
from monitor.suspects_agent import SuspectsRefresher, group_of, state_key, stored
from tests.test_package import config_for, copy_store
from tests.test_package_helpers import Recorded, manifest_of, record_crash

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_crash(tmp_path_factory.mktemp("suspects"), f"SU{os.getpid()}")


def _ranked(rec: Recorded, dest: Path) -> tuple[Store, SuspectsRefresher]:
    store = copy_store(rec, dest)
    refresher = SuspectsRefresher(store, [rec.server], Health(), min_gap=0.0)
    return store, refresher


def test_a_crash_is_ranked_once_and_again_when_its_records_change(rec: Recorded, tmp_path: Path) -> None:
    store, refresher = _ranked(rec, tmp_path / "s")
    with store:
        assert store.get_state(state_key(rec.server)) is None
        assert refresher.run_once() == [rec.server]
        with store.reader() as r:
            doc = stored(r, rec.server)
        [row] = [c for c in store.crashes(rec.server) if c.id == rec.crash_id]
        group = group_of(doc, row.signature)
        assert group is not None and group["crashes"] == 1
        assert group["suspects"], "the crash block names a procedure and the errorlog a config change"
        assert all(s["confidence"] == "weak" for s in group["suspects"]), "one crash is weak evidence"
        assert refresher.last_seconds is not None and refresher.last_seconds < 60
        # Nothing changed: not ranked again. A changed record (an exit joined, a frozen record
        # settled) is ranked again.
        assert refresher.run_once() == []
        store.append(Batch(ops=[UpsertCrash(dataclasses.replace(row, login="ssk_maria"))]))
        assert refresher.run_once() == [rec.server]


def test_metrics_carry_the_top_five_by_name_never_sql_or_personal_numbers(
    rec: Recorded, tmp_path: Path
) -> None:
    store, refresher = _ranked(rec, tmp_path / "s")
    with store:
        text = generate_latest(make_registry(AseCollector(store, Health(), (rec.server,)))).decode()
        assert "ase_crash_suspect_score{" not in text, "nothing is ranked on a scrape"
        refresher.run_once()
        text = generate_latest(make_registry(AseCollector(store, Health(), (rec.server,)))).decode()
        with store.reader() as r:
            doc = stored(r, rec.server)
    assert doc is not None
    [fam] = [f for f in text_string_to_metric_families(text) if f.name == "ase_crash_suspect_score"]
    samples = fam.samples
    assert samples
    want = {
        (g["signature"], s["kind"], s["name"]): s["score"] for g in doc["groups"] for s in g["suspects"][:5]
    }
    got = {(s.labels["signature"], s.labels["kind"], s.labels["name"]): s.value for s in samples}
    assert got == pytest.approx(want)
    assert all(s.labels["server"] == rec.server and 0.0 <= s.value <= 1.0 for s in samples)
    for s in samples:
        name = s.labels["name"]
        assert not re.search(r"\b(select|update|insert|delete|exec)\b", name, re.I), name
        assert personal_numbers(name)[0] == name, "a personal identity number in a label"
        assert not any(p in name for p in rec.patients)


def test_show_and_the_vendor_package_carry_the_crash_groups_suspects(rec: Recorded, tmp_path: Path) -> None:
    store, refresher = _ranked(rec, tmp_path / "s")
    with store:
        # Before the agent ranked it: the package says so, and `show` has none.
        early = build_package(store, rec.crash_id, tmp_path / "early", config_for(rec))
        assert "suspects" in manifest_of(early.path)["unavailable"]
        refresher.run_once()
        with store.reader() as r:
            doc = stored(r, rec.server)
        result = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec))
    m = manifest_of(result.path)
    assert validate_manifest(m) == []
    assert m["suspects"]["file"] == "suspects.json"
    assert "suspects.json" in {f["name"] for f in m["files"]}
    packaged = json.loads((result.path / "suspects.json").read_text())
    assert doc is not None
    group = packaged["group"]
    assert group["signature"] == m["crash"]["signature"]
    assert [(s["kind"], s["name"]) for s in group["suspects"]] == [
        (s["kind"], s["name"])
        for s in group_of(doc, group["signature"])["suspects"]  # type: ignore[index]
    ]
    shown = CliRunner().invoke(cli, ["show", str(rec.crash_id), "--json", "--state-dir", str(tmp_path / "s")])
    assert shown.exit_code == 0, shown.output
    assert [s["name"] for s in json.loads(shown.output)["suspects"]] == [s["name"] for s in group["suspects"]]
    table = CliRunner().invoke(cli, ["show", str(rec.crash_id), "--state-dir", str(tmp_path / "s")])
    assert table.exit_code == 0 and "Suspects of crash group" in table.output
