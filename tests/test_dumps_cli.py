"""``asewatch dumps`` and ``asewatch dumps prune``, and the dump metrics, on a real store with
real dump files: what a DBA reads and what retention really deletes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from monitor.config_dumps import DumpsConfig
from monitor.dumps import DumpKeeper, mark_shipped
from monitor.dumps_cli import dumps_group
from monitor.dumps_metrics import METRICS_DUMPS, add_dump_metrics
from monitor.events_dumps import DumpRefused, DumpSeen
from monitor.metricdef import Family
from monitor.store import Batch, CrashRow, Store

pytestmark = pytest.mark.unit

NOW = time.time()
OLD = NOW - 40 * 86400  # older than the default 30 days


def _dump(
    store: Store, keeper: DumpKeeper, folder: Path, name: str, t: float, state: str = "complete"
) -> int:
    path = folder / name
    data = name.encode() * 100
    path.write_bytes(data)
    os.utime(path, (t, t))
    mtime = path.stat().st_mtime_ns / 1e9
    sha = hashlib.sha256(data).hexdigest()
    reason = "12 bytes of the 99 expected" if state == "truncated" else None
    ev = DumpSeen(t, "SRV", str(path), len(data), mtime, state, sha, None, None, reason)  # type: ignore[arg-type]
    keeper.on_committed(store.append(Batch(events=[("SRV", ev)])))
    with store.reader() as r:
        return int(r.query("SELECT id FROM dumps WHERE path = ?", (str(path),))[0][0])


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "dumps"
    folder.mkdir()
    with Store.open(tmp_path / "state") as store:
        keeper = DumpKeeper(store, DumpsConfig())
        crash = store.upsert_crash(
            CrashRow(server="SRV", key="SRV|crash:1", time=datetime.fromtimestamp(OLD - 5), kind="signal",
                     signature="abc123", state="crashed")
        )  # fmt: skip
        assert crash.id == 1
        shipped = _dump(store, keeper, folder, "SRV_old_shipped.dmp", OLD)
        _dump(store, keeper, folder, "SRV_old.dmp", OLD + 3600, state="truncated")
        _dump(store, keeper, folder, "SRV_new.dmp", NOW - 60)
        mark_shipped(store, shipped)
        refused = DumpRefused(NOW, "SRV", str(folder / "evil.dmp"), "symlink", "a link", NOW)
        keeper.on_committed(store.append(Batch(events=[("SRV", refused)])))
    return tmp_path


def run(state: Path, *args: str) -> str:
    result = CliRunner().invoke(dumps_group, [*args, "--state-dir", str(state / "state")])
    assert result.exit_code == 0, result.output
    return result.output


def listing(state: Path) -> dict[str, dict[str, object]]:
    return {Path(str(d["path"])).name: d for d in json.loads(run(state, "--json"))}


def test_dumps_lists_path_server_size_sha_state_crash_and_keep(state: Path) -> None:
    docs = listing(state)
    assert set(docs) == {"SRV_old_shipped.dmp", "SRV_old.dmp", "SRV_new.dmp"}
    old = docs["SRV_old_shipped.dmp"]
    assert old["server"] == "SRV" and old["state"] == "complete" and old["crash_id"] == 1
    assert old["sha256"] == hashlib.sha256(b"SRV_old_shipped.dmp" * 100).hexdigest()
    assert old["size"] == len(b"SRV_old_shipped.dmp") * 100 and old["keep"] == "kept" and old["shipped_at"]
    assert docs["SRV_old.dmp"]["state"] == "truncated" and docs["SRV_old.dmp"]["reason"]
    assert docs["SRV_new.dmp"]["crash_id"] is None
    text = run(state)
    assert "SRV_old_shipped.dmp" in text and "truncated" in text and "kept" in text


def test_prune_dry_run_deletes_nothing_and_says_what_is_protected(state: Path) -> None:
    out = run(state, "prune", "--dry-run")
    assert "would evict dump 1 (age" in out
    assert "kept dump 2 (age limit): not shipped yet" in out
    assert all((state / "dumps" / n).exists() for n in ("SRV_old_shipped.dmp", "SRV_old.dmp", "SRV_new.dmp"))


def test_prune_evicts_shipped_dumps_and_only_force_evicts_unshipped_ones(state: Path) -> None:
    folder = state / "dumps"
    doc = json.loads(run(state, "prune", "--json"))
    assert [e["id"] for e in doc["evicted"]] == [1] and [b["id"] for b in doc["blocked"]] == [2]
    assert not (folder / "SRV_old_shipped.dmp").exists() and (folder / "SRV_old.dmp").exists()
    run(state, "prune", "--force")
    docs = listing(state)
    assert not (folder / "SRV_old.dmp").exists() and (folder / "SRV_new.dmp").exists()
    assert docs["SRV_old.dmp"]["keep"] == "evicted (age)" and docs["SRV_old.dmp"]["forced"] is True
    assert docs["SRV_old_shipped.dmp"]["keep"] == "evicted (age)" and docs["SRV_old_shipped.dmp"]["sha256"]
    assert docs["SRV_new.dmp"]["keep"] == "kept"


class _DumpCollector(Collector):
    def __init__(self, store: Store, dirs: list[Path]) -> None:
        self._store, self._dirs = store, dirs

    def collect(self):  # type: ignore[no-untyped-def]
        fams: dict[str, Family] = {m.name: m.family() for m in METRICS_DUMPS}
        with self._store.reader() as r:
            add_dump_metrics(r, fams, dirs=self._dirs, servers=("SRV", "IDLE"))
        yield from fams.values()


def test_dump_metrics_count_states_bytes_refusals_and_free_space(state: Path) -> None:
    run(state, "prune")  # evicts the shipped old dump: found bytes stay, stored bytes drop
    registry = CollectorRegistry(auto_describe=False)
    with Store.open(state / "state") as store:
        registry.register(_DumpCollector(store, [state / "dumps", state / "missing"]))
        text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    one = len(b"SRV_old_shipped.dmp") * 100
    sizes = one + len(b"SRV_old.dmp") * 100 + len(b"SRV_new.dmp") * 100
    assert samples[("ase_dumps_total", (("server", "SRV"), ("state", "complete")))] == 2
    assert samples[("ase_dumps_total", (("server", "SRV"), ("state", "truncated")))] == 1
    assert samples[("ase_dumps_total", (("server", "SRV"), ("state", "refused")))] == 1
    assert samples[("ase_dumps_total", (("server", "IDLE"), ("state", "complete")))] == 0
    assert samples[("ase_dump_bytes_total", (("server", "SRV"),))] == sizes
    assert samples[("ase_dump_stored_bytes", (("server", "SRV"),))] == sizes - one
    assert samples[("ase_dumps_writing", (("server", "SRV"),))] == 0
    free = [v for (n, labels), v in samples.items() if n == "ase_dump_dir_free_bytes"]
    assert len(free) == 1 and free[0] > 0  # the missing folder is left out, not an error
    assert {m.name for m in METRICS_DUMPS} >= {
        "ase_dumps_total", "ase_dump_bytes_total", "ase_dumps_suppressed_total", "ase_dump_dir_free_bytes",
    }  # fmt: skip
