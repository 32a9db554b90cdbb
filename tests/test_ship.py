"""Shipping, on real files and a real store: the package contract, the state machine, the
policy (metadata first, windows, release, backoff, the bandwidth cap) and the directory
target's resume and refusals. The network targets and ``kill -9`` are in the other
test_ship_* modules."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from monitor.config_ship import VendorConfig
from monitor.errors import InputError
from monitor.ship import ShipBusyError, ShippedPackage, Shipper, backoff
from monitor.ship_agent import start_shipping
from monitor.ship_cli import ship_cmd
from monitor.ship_package import finished_packages, read_package
from monitor.ship_state import Claim, rows
from monitor.ship_targets import TokenBucket, make_target
from monitor.store import Batch, Store
from tests.ship_fixtures import make_package, random_package, scrape, sha, ship_config, wait_for

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "state")
    yield s
    s.close()


def dir_target(path: Path, **kw: object) -> dict[str, object]:
    path.mkdir(parents=True, exist_ok=True)
    return {"name": "archive", "kind": "directory", "path": str(path), **kw}


def shipper(store: Store, spool: Path, targets: list[dict[str, object]], **kw: object) -> Shipper:
    """A shipper with quick retries; policy keywords go to [ship], the rest to the constructor."""
    policy = {"metadata_first", "release_after", "window"}
    cfg = ship_config(target=targets, **{k: v for k, v in kw.items() if k in policy})
    rest = {k: v for k, v in kw.items() if k not in policy}
    return Shipper(store, [make_target(t) for t in cfg.targets], cfg, spool_dir=spool, **rest)  # type: ignore[arg-type]


def states(store: Store) -> dict[tuple[str, str], str]:
    with store.reader() as r:
        return {(x.package_id, x.file): x.state for x in rows(r)}


# --------------------------------------------------------------------------- the package contract


def test_a_package_lists_its_files_metadata_first_with_manifest_and_sums(tmp_path: Path) -> None:
    p = make_package(tmp_path / "spool", "pkg-1", {
        "dumps/big.zst": (b"d" * 5000, "dump"), "dumps/small.zst": (b"s" * 10, "dump"),
        "crash.json": (b"{}", "metadata"),
    })  # fmt: skip
    (tmp_path / "spool" / ".pkg-2.partial").mkdir()  # being written: not finished
    (tmp_path / "spool" / "pkg-1.tar").write_bytes(b"archive beside it")
    assert [x.name for x in finished_packages(tmp_path / "spool")] == ["pkg-1"]
    pkg = read_package(p)
    assert [(f.name, f.kind) for f in pkg.files] == [
        ("SHA256SUMS", "metadata"), ("crash.json", "metadata"), ("manifest.json", "metadata"),
        ("dumps/small.zst", "dump"), ("dumps/big.zst", "dump"),
    ]  # fmt: skip
    assert next(f for f in pkg.files if f.name == "dumps/big.zst").sha256 == sha(b"d" * 5000)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("sums", "disagree"),
        ("size", "manifest says"),
        ("traversal", "leaves the package"),
        ("no_sums", "not a finished package"),
    ],
)
def test_a_damaged_package_is_refused_with_the_reason(tmp_path: Path, damage: str, message: str) -> None:
    p = make_package(tmp_path / "spool", "pkg", {"a.zst": (b"abc", "dump")})
    doc = json.loads((p / "manifest.json").read_text())
    if damage == "sums":
        (p / "SHA256SUMS").write_text(f"{'0' * 64}  a.zst\n")
    elif damage == "size":
        (p / "a.zst").write_bytes(b"abcd")
    elif damage == "traversal":
        doc["files"][0]["name"] = "../a.zst"
        (p / "manifest.json").write_text(json.dumps(doc))
    else:
        (p / "SHA256SUMS").unlink()
    with pytest.raises(InputError, match=message):
        read_package(p)


# --------------------------------------------------------------------------- the state machine


def test_every_file_goes_to_the_directory_target_once_verified_and_without_temp_names(
    tmp_path: Path, store: Store
) -> None:
    spool, target = tmp_path / "spool", tmp_path / "mnt"
    rng = random.Random(1)
    for i in range(3):
        random_package(spool, f"pkg-{i}", rng, dumps=2, dump_kib=(4, 40))
    shipped: list[ShippedPackage] = []
    s = shipper(store, spool, [dir_target(target)], on_shipped=shipped.append)
    result = s.run_once()
    assert result["archive"].verified == 3 * 6 and result["archive"].failed == 0
    assert set(states(store).values()) == {"verified"}
    for i in range(3):
        pkg = read_package(spool / f"pkg-{i}")
        for f in pkg.files:
            assert sha((target / pkg.package_id / f.name).read_bytes()) == f.sha256
    assert not [p for p in target.rglob("*") if "asewatch-part" in p.name or "probe" in p.name]
    # A second pass sends nothing; the owners of the dumps are told once per package.
    assert s.run_once()["archive"].verified == 0
    s.run_once()
    assert sorted(x.package_id for x in shipped) == ["pkg-0", "pkg-1", "pkg-2"]
    assert shipped[0].dump_sha256s == (sha(b"dumps/shm0.dmp.zst"), sha(b"dumps/shm1.dmp.zst"))


def test_a_verified_shipment_is_final_in_the_store(tmp_path: Path, store: Store) -> None:
    make_package(tmp_path / "spool", "pkg", {"a.zst": (b"abc", "dump")})
    shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")]).run_once()
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        store._conn.execute("UPDATE shipments SET state = 'queued'")  # type: ignore[union-attr]
    store.append(Batch(ops=(Claim("pkg", "a.zst", "archive"),)))  # a late claim changes nothing
    assert states(store)[("pkg", "a.zst")] == "verified"


def test_an_interrupted_upload_resumes_from_the_temp_file_size(tmp_path: Path, store: Store) -> None:
    data = random.Random(2).randbytes(300_000)
    make_package(tmp_path / "spool", "pkg", {"core.zst": (data, "dump")})
    target = tmp_path / "mnt"
    (target / "pkg").mkdir(parents=True)
    (target / "pkg" / ".core.zst.asewatch-part").write_bytes(data[:123_456])
    seen: list[tuple[str, str, str]] = []
    s = shipper(
        store, tmp_path / "spool", [dir_target(target)], on_phase=lambda p, j, d: seen.append((p, j.file, d))
    )
    s.run_once()
    assert ("resume", "core.zst", "123456") in seen
    assert (target / "pkg" / "core.zst").read_bytes() == data
    assert not (target / "pkg" / ".core.zst.asewatch-part").exists()


def test_a_package_file_changed_after_packaging_is_never_marked_shipped(tmp_path: Path, store: Store) -> None:
    p = make_package(tmp_path / "spool", "pkg", {"core.zst": (b"x" * 1000, "dump")})
    s = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")])
    s.scan()
    (p / "core.zst").write_bytes(b"y" * 1000)  # same size, other bytes (bit rot, a bad copy)
    s.run_once()
    with store.reader() as r:
        row = next(x for x in rows(r) if x.file == "core.zst")
    assert (
        row.state == "failed"
        and row.next_attempt_at is None
        and "not the file that was packaged" in (row.last_error or "")
    )
    assert not (tmp_path / "mnt" / "pkg" / "core.zst").exists()
    assert not list((tmp_path / "mnt").rglob("*asewatch-part"))


def test_a_different_file_at_the_final_name_is_never_overwritten(tmp_path: Path, store: Store) -> None:
    make_package(tmp_path / "spool", "pkg", {"core.zst": (b"ours", "dump")})
    (tmp_path / "mnt" / "pkg").mkdir(parents=True)
    (tmp_path / "mnt" / "pkg" / "core.zst").write_bytes(b"theirs")
    shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")]).run_once()
    assert (tmp_path / "mnt" / "pkg" / "core.zst").read_bytes() == b"theirs"
    with store.reader() as r:
        row = next(x for x in rows(r) if x.file == "core.zst")
    assert row.state == "failed" and "other content" in (row.last_error or "")


def test_a_missing_mount_fails_counts_and_recovers(tmp_path: Path, store: Store) -> None:
    make_package(tmp_path / "spool", "pkg", {"a.txt": (b"meta", "metadata")})
    mount = tmp_path / "mnt"
    s = shipper(store, tmp_path / "spool", [dir_target(mount)])
    mount.rmdir()
    assert s.run_once()["archive"].failed >= 1
    m = scrape(store)
    assert m[("asewatch_vendor_target_up", ("archive",))] == 0
    assert m[("asewatch_shipments_total", ("archive", "failed"))] >= 1
    mount.mkdir()
    s.run_once(force=True)
    m = scrape(store)
    assert m[("asewatch_vendor_target_up", ("archive",))] == 1
    assert m[("asewatch_ship_queue", ("archive", "verified"))] == 3  # the file, manifest.json, SHA256SUMS
    assert m[("asewatch_ship_oldest_pending_age_seconds", ("archive",))] == 0


# --------------------------------------------------------------------------- policy


def test_metadata_first_holds_dumps_until_released(tmp_path: Path, store: Store) -> None:
    make_package(
        tmp_path / "spool", "pkg", {"crash.json": (b"{}", "metadata"), "core.zst": (b"c" * 100, "dump")}
    )
    s = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")], metadata_first=True)
    s.run_once()
    st = states(store)
    assert st[("pkg", "crash.json")] == "verified" and st[("pkg", "core.zst")] == "queued"
    assert scrape(store)[("asewatch_ship_queue", ("archive", "held"))] == 1
    runner = CliRunner()
    out = runner.invoke(ship_cmd, ["--state-dir", str(store.path.parent), "--release", "nope"])
    assert out.exit_code == 2 and "no package 'nope'" in out.output
    out = runner.invoke(ship_cmd, ["--state-dir", str(store.path.parent), "--release", "pkg", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout.splitlines()[-1])
    assert doc["packages"][0]["released_by"].startswith("cli:")
    s.run_once()
    assert states(store)[("pkg", "core.zst")] == "verified"


def test_release_after_a_delay(tmp_path: Path, store: Store) -> None:
    make_package(tmp_path / "spool", "pkg", {"core.zst": (b"c" * 100, "dump")})
    now = [1_000_000.0]
    s = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")], metadata_first=True, release_after=3600.0,
                clock=lambda: now[0])  # fmt: skip
    s.run_once()
    assert states(store)[("pkg", "core.zst")] == "queued"
    now[0] += 3601
    s.run_once()
    assert states(store)[("pkg", "core.zst")] == "verified"


@pytest.mark.parametrize(("metadata_first", "expected_meta"), [(True, "verified"), (False, "queued")])
def test_outside_the_window_dumps_wait(
    tmp_path: Path, store: Store, metadata_first: bool, expected_meta: str
) -> None:
    make_package(
        tmp_path / "spool", "pkg", {"crash.json": (b"{}", "metadata"), "core.zst": (b"c" * 100, "dump")}
    )
    local = [datetime(2026, 3, 2, 14, 0)]
    s = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")], window="22:00-06:00",
                metadata_first=metadata_first, local_now=lambda: local[0])  # fmt: skip
    if metadata_first:
        s.scan()
        s.release("pkg", "test")  # the vendor asked: only the window holds the dump now
    s.run_once()
    st = states(store)
    assert st[("pkg", "crash.json")] == expected_meta and st[("pkg", "core.zst")] == "queued"
    local[0] = datetime(2026, 3, 2, 23, 0)
    s.run_once()
    assert set(states(store).values()) == {"verified"}


def test_ship_now_ignores_the_window_and_the_retry_time(tmp_path: Path, store: Store) -> None:
    make_package(tmp_path / "spool", "pkg", {"core.zst": (b"c" * 100, "dump")})
    s = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")], window="22:00-06:00",
                local_now=lambda: datetime(2026, 3, 2, 14, 0))  # fmt: skip
    s.run_once()
    assert states(store)[("pkg", "core.zst")] == "queued"
    s.run_once(force=True)
    assert states(store)[("pkg", "core.zst")] == "verified"


def test_a_second_shipper_on_the_same_store_is_refused(tmp_path: Path, store: Store) -> None:
    make_package(tmp_path / "spool", "pkg", {"a": (b"a", "dump")})
    first = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")])
    second = shipper(store, tmp_path / "spool", [dir_target(tmp_path / "mnt")])
    assert first._try_lock()
    try:
        with pytest.raises(ShipBusyError):
            second.run_once()
    finally:
        first._unlock()
    assert second.run_once()["archive"].verified == 3


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    waits = [backoff(n, 10.0, 300.0, 2.0) for n in range(1, 9)]
    assert 10 <= waits[0] <= 12 and 20 <= waits[1] <= 22 and 40 <= waits[2] <= 42
    assert all(w <= 300 for w in waits) and waits[-1] == 300


class _FakeTime(threading.Event):
    """A stop event whose waits advance a fake clock instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0.0
        return False


def test_the_bandwidth_cap_holds_the_average_rate() -> None:
    t = _FakeTime()
    bucket = TokenBucket(100_000, clock=lambda: t.now)
    for _ in range(200):
        bucket.take(bucket.chunk(), t)
    sent = 200 * bucket.chunk()
    assert t.now >= (sent - bucket.burst) / 100_000 * 0.99
    assert t.now <= sent / 100_000 * 1.05


def _toml(tmp_path: Path, state: Path, window: str) -> Path:
    (tmp_path / "mnt").mkdir(exist_ok=True)
    toml = tmp_path / "asewatch.toml"
    toml.write_text(f"""
[agent]
state_dir = "{state}"

[ship]
window = "{window}"
retry_initial = 0.2
retry_max = 1.0

[[ship.target]]
name = "archive"
kind = "directory"
path = "mnt"
""")
    return toml


def test_ship_now_from_the_cli_ships_past_the_window(tmp_path: Path, store: Store) -> None:
    closed = f"{(datetime.now().hour + 2) % 24:02d}:00-{(datetime.now().hour + 3) % 24:02d}:00"
    make_package(store.path.parent / "spool", "pkg", {"core.zst": (b"c" * 100, "dump")})
    toml = _toml(tmp_path, store.path.parent, closed)
    out = CliRunner().invoke(ship_cmd, ["-c", str(toml), "--now", "--json"])
    assert out.exit_code == 0, out.output
    assert "3 file(s) verified" in out.stderr
    doc = json.loads(out.stdout)
    assert {f["state"] for f in doc["files"]} == {"verified"}
    assert doc["targets"][0]["queue"]["verified"] == 3 and doc["targets"][0]["up"] is True
    assert (tmp_path / "mnt" / "pkg" / "core.zst").read_bytes() == b"c" * 100
    table = CliRunner().invoke(ship_cmd, ["-c", str(toml)])
    assert table.exit_code == 0 and "archive" in table.stdout and "Not shipped yet (0)" in table.stdout


def test_ship_now_asks_the_running_agent_when_it_holds_the_lock(tmp_path: Path, store: Store) -> None:
    spool = store.path.parent / "spool"
    make_package(spool, "pkg", {"core.zst": (b"c" * 100, "dump")})
    toml = _toml(tmp_path, store.path.parent, "22:00-06:00")
    agent = shipper(store, spool, [dir_target(tmp_path / "mnt")], window="22:00-06:00",
                    local_now=lambda: datetime(2026, 3, 2, 14, 0))  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name="shipper")
    thread.start()
    try:
        wait_for(lambda: bool(states(store)), 10, "the package queued")
        assert states(store)[("pkg", "core.zst")] == "queued"  # outside the window
        out = CliRunner().invoke(ship_cmd, ["-c", str(toml), "--now"])
        assert out.exit_code == 0 and "asked it to ship now" in out.output
        wait_for(lambda: set(states(store).values()) == {"verified"}, 10, "the agent shipping at once")
    finally:
        stop.set()
        thread.join(10)


class _AgentStandIn:
    """What start_shipping uses of monitor.agent.Agent: config, store, state_dir, spawn, stopping."""

    def __init__(self, store: Store, config: object) -> None:
        self.store, self.config, self.state_dir = store, config, store.path.parent
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name)
        self.threads.append(t)
        t.start()


def test_the_agent_wiring_ships_runs_doctor_and_marks_the_dumps_shipped(tmp_path: Path, store: Store) -> None:
    make_package(store.path.parent / "spool", "pkg", {"core.zst": (b"c" * 100, "dump")})
    # The dump record the package was made from (make_package's original_sha256 is sha(name)).
    store._conn.execute(  # type: ignore[union-attr]
        "INSERT INTO dumps (server, path, sha256, size, mtime, state, first_seen, updated_at)"
        " VALUES ('SRV', '/dumps/core', ?, 100, 0, 'complete', 0, 0)",
        (sha(b"core.zst"),),
    )
    ship = ship_config(target=[dir_target(tmp_path / "mnt")], doctor_interval=0.3)
    vendor = VendorConfig(name="SAP", contract_end=date(2030, 1, 31))
    agent = _AgentStandIn(store, SimpleNamespace(servers=(), ship=ship, vendor=vendor))
    try:
        assert start_shipping(agent) is not None  # type: ignore[arg-type]
        assert sorted(t.name for t in agent.threads) == ["doctor", "shipper"]
        wait_for(lambda: _shipped_at(store) is not None, 10, "the dump marked shipped")
        wait_for(lambda: _doctor_ran(store), 10, "the doctor's verdicts stored")
    finally:
        agent.stopping.set()
        for t in agent.threads:
            t.join(10)
    expiry = scrape(store)[("asewatch_vendor_contract_expiry_timestamp_seconds", ())]
    assert expiry == datetime(2030, 1, 31).timestamp()
    assert (tmp_path / "mnt" / "pkg" / "core.zst").read_bytes() == b"c" * 100
    with store.reader() as r:
        assert r.query("SELECT done_at IS NOT NULL FROM ship_packages") == [(1,)]


def _shipped_at(store: Store) -> float | None:
    with store.reader() as r:
        return r.query("SELECT shipped_at FROM dumps")[0][0]


def _doctor_ran(store: Store) -> bool:
    with store.reader() as r:
        return bool(r.query("SELECT 1 FROM doctor_checks WHERE name = 'target archive' AND verdict = 'ok'"))
