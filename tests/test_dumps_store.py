"""Dumps in the store: attached to crashes by time, flood control per signature and day,
retention quotas, holds, shipping, and replays after a restart.

Real store files, real dump files (deleted by retention for real), real processes for
stale holds. Dump events go through the same path as in the agent: committed by the
store, then handed to ``DumpKeeper.on_committed``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config_dumps import DumpsConfig
from monitor.dumps import (
    DumpKeeper,
    DumpRow,
    dumps_of_crash,
    enforce,
    free_bytes,
    get_dump,
    has_room,
    list_dumps,
    make_room,
    mark_busy,
    mark_shipped,
    plan_retention,
    release,
    suppressed_counts,
)
from monitor.dumps_apply import WATERMARK
from monitor.dumps_metrics import METRICS_DUMPS, add_dump_metrics
from monitor.events_dumps import DumpEvicted, DumpSeen
from monitor.store import Batch, CrashRow, Store

pytestmark = pytest.mark.unit

DAY = datetime.now().replace(hour=9, minute=0, second=0, microsecond=0).timestamp()
NO_QUOTA = {"max_age_days": 0.0, "max_count": 0, "max_bytes": 0, "min_free_bytes": 0}


class World:
    """A store, a keeper and a dump folder, with helpers that add crashes and dumps."""

    def __init__(self, tmp: Path, **config: object) -> None:
        self.folder = tmp / "dumps"
        self.folder.mkdir()
        self.store = Store.open(tmp / "state")
        self.config = DumpsConfig.model_validate({**NO_QUOTA, **config})
        self.keeper = DumpKeeper(self.store, self.config)
        self._n = 0

    def crash(
        self, t: float, server: str = "SRV", signature: str | None = "sigA", kind: str = "signal"
    ) -> int:
        self._n += 1
        row = CrashRow(
            server=server, key=f"{server}|crash:{self._n}", time=datetime.fromtimestamp(t), kind=kind,
            signature=signature, state="crashed",
        )  # fmt: skip
        stored = self.store.upsert_crash(row)
        self.keeper.reconcile()  # what the agent's periodic tick does for crash rows that arrive late
        assert stored.id is not None
        return stored.id

    def dump(self, t: float, *, server: str = "SRV", size: int = 1024, name: str | None = None) -> DumpRow:
        self._n += 1
        path = self.folder / (name or f"{server}_{self._n}.dmp")
        data = hashlib.sha256(str(self._n).encode()).digest() * (size // 32) + b"x" * (size % 32)
        path.write_bytes(data)
        os.utime(path, (t, t))
        mtime = path.stat().st_mtime_ns / 1e9
        ev = DumpSeen(
            t, server, str(path), size, mtime, "complete", hashlib.sha256(data).hexdigest(), None, None, None
        )
        self.keeper.on_committed(self.store.append(Batch(events=[(server, ev)])))
        return self.row(str(path))

    def row(self, path: str) -> DumpRow:
        with self.store.reader() as r:
            return [d for d in list_dumps(r) if d.path == path][-1]

    def rows(self) -> list[DumpRow]:
        with self.store.reader() as r:
            return list_dumps(r)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    w.close()


# --------------------------------------------------------------------------- attaching


def test_a_dump_in_the_window_belongs_to_the_crash_and_one_outside_does_not(world: World) -> None:
    crash = world.crash(DAY)
    inside = [world.dump(DAY - 30), world.dump(DAY + 5), world.dump(DAY + 590)]
    outside = [world.dump(DAY - 90), world.dump(DAY + 700), world.dump(DAY + 10, server="OTHER")]
    assert [world.row(d.path).crash_id for d in inside] == [crash] * 3
    assert [world.row(d.path).crash_id for d in outside] == [None] * 3
    with world.store.reader() as r:
        assert [d.path for d in dumps_of_crash(r, crash)] == [d.path for d in inside]
        assert get_dump(r, inside[0].sha256 or "") == world.row(inside[0].path)


def test_a_crash_recorded_after_its_dump_still_gets_it(world: World) -> None:
    early = world.dump(DAY + 3)
    assert early.crash_id is None
    crash = world.crash(DAY)
    assert world.row(early.path).crash_id == crash


def test_in_a_crash_loop_each_dump_goes_to_its_own_crash(world: World) -> None:
    crashes = [world.crash(DAY + i * 120) for i in range(3)]
    dumps = [world.dump(DAY + i * 120 + 5) for i in range(3)]
    assert [world.row(d.path).crash_id for d in dumps] == crashes


# --------------------------------------------------------------------------- flood control


def test_flood_control_keeps_first_and_last_k_per_signature_and_day_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, keep_first=2, keep_last=2)
    try:
        dumps = []
        for i in range(10):
            world.crash(DAY + i * 900)
            dumps.append(world.dump(DAY + i * 900 + 5))
        world.crash(DAY + 600, signature="sigB")  # another bug the same day: its own bucket
        other = world.dump(DAY + 605)
        world.crash(DAY + 86400)  # the same bug the next day: a new bucket
        tomorrow = world.dump(DAY + 86400 + 5)
        lonely = [world.dump(DAY + 20000 + i * 10) for i in range(6)]  # dbcc memdump: no crash
        rows = {d.path: world.row(d.path) for d in [*dumps, other, tomorrow, *lonely]}
        suppressed = [i for i, d in enumerate(dumps) if rows[d.path].suppressed]
        assert suppressed == [2, 3, 4, 5, 6, 7]
        assert not rows[other.path].suppressed and not rows[tomorrow.path].suppressed
        assert not any(rows[d.path].suppressed or rows[d.path].crash_id for d in lonely)
        with world.store.reader() as r:
            assert [(c.server, c.signature, c.count) for c in suppressed_counts(r)] == [("SRV", "sigA", 6)]
        # Files of suppressed dumps go (not shipped, not waiting for it); every record stays.
        report = enforce(world.store, world.config)
        assert sorted(e.dump.path for e in report.evicted) == sorted(dumps[i].path for i in suppressed)
        for i, d in enumerate(dumps):
            row = world.row(d.path)
            assert Path(d.path).exists() is (i not in suppressed)
            assert row.retention == ("evicted" if i in suppressed else "kept")
        assert len(world.rows()) == 18
        assert world.store.count_events(DumpEvicted) == 6
        fams = {m.name: m.family() for m in METRICS_DUMPS}
        with world.store.reader() as r:
            add_dump_metrics(r, fams)
        got = [
            (s.labels, s.value)
            for s in fams["ase_dumps_suppressed_total"].samples
            if s.name.endswith("_total")
        ]
        assert got == [({"server": "SRV", "signature": "sigA"}, 6.0)]
    finally:
        world.close()


# --------------------------------------------------------------------------- retention


def test_the_bytes_quota_evicts_the_biggest_files_first_and_keeps_every_record(tmp_path: Path) -> None:
    world = World(tmp_path, max_bytes=10 * 1024)
    try:
        sizes = [1, 5, 3, 8, 2]
        dumps = [world.dump(DAY - 3600 + i, size=s * 1024) for i, s in enumerate(sizes)]
        for d in dumps:
            mark_shipped(world.store, d.id)
        report = enforce(world.store, world.config)
        assert [e.dump.size // 1024 for e in report.evicted] == [8, 5]
        assert {e.rule for e in report.evicted} == {"bytes"}
        rows = [world.row(d.path) for d in dumps]
        assert [r.retention for r in rows] == ["kept", "evicted", "kept", "evicted", "kept"]
        assert [Path(d.path).exists() for d in dumps] == [True, False, True, False, True]
        assert all(r.sha256 and r.size for r in rows)  # the records keep what the files were
    finally:
        world.close()


def test_count_and_age_quotas_evict_the_oldest_but_never_the_newest(tmp_path: Path) -> None:
    world = World(tmp_path, max_count=2, max_age_days=1.0)
    try:
        old = world.dump(DAY - 3 * 86400, size=100)
        mid = [world.dump(DAY - 3600 + i, size=100) for i in range(3)]
        for d in [old, *mid]:
            mark_shipped(world.store, d.id)
        report = enforce(world.store, world.config)
        assert [(e.dump.path, e.rule) for e in report.evicted] == [(old.path, "age"), (mid[0].path, "count")]
        world2 = DumpsConfig.model_validate({**NO_QUOTA, "max_count": 0, "max_bytes": 1})
        again = enforce(world.store, world2)
        assert [e.dump.path for e in again.evicted] == [mid[1].path]
        assert [b.why for b in again.blocked] == ["the newest dump of its server is always kept"]
        assert Path(mid[2].path).exists()
    finally:
        world.close()


def test_an_unshipped_dump_is_evicted_only_with_force(tmp_path: Path) -> None:
    world = World(tmp_path, max_age_days=1.0)
    try:
        old = world.dump(DAY - 5 * 86400)
        world.dump(DAY)
        report = enforce(world.store, world.config)
        assert report.evicted == ()
        assert [(b.dump.path, b.rule) for b in report.blocked] == [(old.path, "age")]
        assert "not shipped yet" in report.blocked[0].why and Path(old.path).exists()
        forced = enforce(world.store, world.config, force=True, by="cli")
        assert [e.dump.path for e in forced.evicted] == [old.path] and not Path(old.path).exists()
        row = world.row(old.path)
        assert row.retention == "evicted" and row.forced and row.evict_reason == "age"
        ev = next(se.event for se in world.store.events(kinds=[DumpEvicted]))
        assert isinstance(ev, DumpEvicted) and ev.forced and ev.by == "cli"
    finally:
        world.close()


def test_a_dump_in_use_is_never_evicted_and_a_dead_holders_hold_does_not_count(tmp_path: Path) -> None:
    world = World(tmp_path, max_age_days=1.0)
    try:
        old = world.dump(DAY - 5 * 86400)
        world.dump(DAY)
        assert mark_busy(world.store, old.id, "package")
        report = enforce(world.store, world.config, force=True)
        assert report.evicted == () and Path(old.path).exists()
        assert report.blocked[0].why == "in use by package"
        assert world.row(old.path).holders == ("package",)
        release(world.store, old.id, "package")
        # A shipper process takes a hold and dies without releasing it: the hold is stale.
        code = (
            "import sys; from pathlib import Path; from monitor.store import Store; "
            "from monitor.dumps import mark_busy; "
            "print(mark_busy(Store.open(Path(sys.argv[1])), int(sys.argv[2]), 'ship'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "state"), str(old.id)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "True"
        assert world.row(old.path).holders == ()
        evicted = enforce(world.store, world.config, force=True)
        assert [e.dump.path for e in evicted.evicted] == [old.path]
        assert not mark_busy(world.store, old.id, "package")  # its file is gone
    finally:
        world.close()


def test_a_file_replaced_under_the_same_name_is_not_deleted_by_retention(tmp_path: Path) -> None:
    world = World(tmp_path, max_age_days=1.0)
    try:
        old = world.dump(DAY - 5 * 86400, name="SRV_fixed.dmp")
        mark_shipped(world.store, old.id)
        world.dump(DAY)
        Path(old.path).write_bytes(b"a newer dump with the same name")
        report = enforce(world.store, world.config)
        assert [e.dump.path for e in report.evicted] == [old.path]
        assert Path(old.path).read_bytes() == b"a newer dump with the same name"
    finally:
        world.close()


def test_free_space_guard_and_make_room(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        free = free_bytes(world.folder)
        assert has_room(world.folder, 1024) and not has_room(world.folder, free + (1 << 40))
        dumps = [world.dump(DAY - 3600 + i, size=s) for i, s in enumerate([3000, 9000, 5000, 1000])]
        for d in dumps[:3]:
            mark_shipped(world.store, d.id)
        # Asking for more than the disk has evicts every dump retention allows, largest first.
        assert not make_room(world.store, world.config, world.folder, free + (1 << 40))
        evicted = [se.event.path for se in world.store.events(kinds=[DumpEvicted])]
        assert [Path(p).name for p in evicted] == [Path(dumps[i].path).name for i in (1, 2, 0)]
        assert Path(dumps[3].path).exists()  # newest and unshipped
    finally:
        world.close()


def test_replaying_the_dump_events_changes_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, keep_first=1, keep_last=1)
    try:
        for i in range(4):
            world.crash(DAY + i * 900)
            world.dump(DAY + i * 900 + 5)
        enforce(world.store, world.config)
        before = world.rows()
        world.store.set_state(WATERMARK, "0")
        world.keeper.catch_up()
        assert world.rows() == before
    finally:
        world.close()


# --------------------------------------------------------------------------- the planner, for any input


def _row(i: int, server: str, size: int, age: float, shipped: bool, held: bool, retention: str) -> DumpRow:
    return DumpRow(
        id=i, server=server, path=f"/d/{i}", sha256="00", size=size, mtime=DAY - age, state="complete",
        reason=None, expected_size=None, writer_pid=None, first_seen=DAY - age, finished_at=DAY - age,
        crash_id=None, flood_key=None, flood_day=None, suppressed=retention == "suppressed",
        retention=retention, evict_reason=None, evicted_at=None, forced=False,
        shipped_at=DAY if shipped else None, holders=("ship",) if held else (),
    )  # fmt: skip


rows_st = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.integers(1, 10_000),
        st.floats(0, 90 * 86400),
        st.booleans(),
        st.booleans(),
        st.sampled_from(["kept", "kept", "suppressed", "evicted"]),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, max_count=st.integers(0, 10), max_bytes=st.integers(0, 50_000), force=st.booleans())
def test_the_planner_never_evicts_what_it_must_keep(
    rows: list[tuple[str, int, float, bool, bool, str]], max_count: int, max_bytes: int, force: bool
) -> None:
    dumps = [_row(i + 1, *r) for i, r in enumerate(rows)]
    config = DumpsConfig(max_age_days=30.0, max_count=max_count, max_bytes=max_bytes, min_free_bytes=0)
    plan = plan_retention(dumps, config, DAY, force=force, free={1: 0}, device={d.id: 1 for d in dumps})
    gone = {e.dump.id for e in plan.evict}
    present = [d for d in dumps if d.present]
    newest = {
        s: max((d for d in present if d.server == s), key=lambda d: (d.time, d.id))
        for s in {d.server for d in present}
    }
    for d in dumps:
        if d.id not in gone:
            continue
        assert d.present and not d.holders
        if d.retention == "kept":
            assert d.shipped_at is not None or force
            rule = next(e.rule for e in plan.evict if e.dump.id == d.id)
            assert rule == "age" or newest[d.server] is not d
    # With nothing protected, the count quota holds afterwards.
    left = [d for d in present if d.id not in gone]
    if max_count and all(not d.holders and (d.shipped_at or force) for d in present):
        assert len(left) <= max(max_count, len(newest))


def test_a_plan_is_the_same_for_the_same_rows() -> None:
    d = _row(1, "A", 10, 40 * 86400, True, False, "kept")
    config = DumpsConfig(max_age_days=30.0)
    assert plan_retention([d], config, DAY) == plan_retention([replace(d)], config, DAY)
    assert [e.rule for e in plan_retention([d], config, DAY).evict] == ["age"]
