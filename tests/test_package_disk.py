"""A full disk: packaging fails cleanly, keeps the dump, and succeeds once there is room.

On a real, small file system: a tmpfs this test mounts (root only; skipped with the
reason when mounting is not permitted) and unmounts in its teardown. The dump is random
bytes, so it does not compress: what is written is about what is read.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from monitor.config_package import PackageConfig
from monitor.package import build_package
from monitor.package_fs import NoSpaceError
from tests.test_package_helpers import Recorded, record_crash, sha256sum_check

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs at ``tmp_path/fs``, unmounted afterwards."""
    where = tmp_path / "fs"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(where)],
                       capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_crash(tmp_path_factory.mktemp("disk"), f"PD{os.getpid()}", dump_size=1 << 20)


def random_dump(path: Path, size: int) -> str:
    with path.open("wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remount(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True, timeout=30)


def test_not_enough_space_up_front_names_the_folder_and_the_bytes(
    rec: Recorded, small_fs: Path, tmp_path: Path
) -> None:
    dump = tmp_path / "big.dmp"
    digest = random_dump(dump, 24 * MiB)
    out = small_fs / "packages"
    cfg = SimpleNamespace(servers=(), package=PackageConfig(space_margin_bytes=MiB))
    with rec.store() as store, pytest.raises(NoSpaceError) as caught:
        build_package(store, rec.crash_id, out, cfg, dumps=[dump])
    err = caught.value
    assert err.folder == out and err.needed > 24 * MiB > err.free
    assert str(out) in str(err) and f"({err.needed} bytes)" in str(err)
    assert list(out.iterdir()) == []  # nothing half-written
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == digest


def test_a_disk_that_fills_mid_way_leaves_nothing_and_a_retry_with_room_succeeds(
    rec: Recorded, small_fs: Path, tmp_path: Path
) -> None:
    dump = tmp_path / "big.dmp"
    digest = random_dump(dump, 24 * MiB)
    out = small_fs / "packages"
    # A wrong ratio estimate (as for a dump that compresses worse than its samples) gets past the
    # check up front; the disk then fills while the dump is written.
    cfg = SimpleNamespace(servers=(), package=PackageConfig(estimated_ratio=0.01, space_margin_bytes=0))
    with rec.store() as store, pytest.raises(NoSpaceError) as caught:
        build_package(store, rec.crash_id, out, cfg, dumps=[dump])
    err = caught.value
    assert f"while writing dumps/{dump.name}.zst" in str(err) and str(out) in str(err)
    assert err.needed > 24 * MiB  # after the fact it says what an incompressible dump needs
    assert list(out.iterdir()) == []
    st = os.statvfs(small_fs)
    assert st.f_bfree * st.f_frsize > 7 * MiB  # the partial output was really removed
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == digest
    remount(small_fs, "64m")
    with rec.store() as store:
        result = build_package(store, rec.crash_id, out, cfg, dumps=[dump])
    assert [p.name for p in out.iterdir()] == [result.package_id]
    assert sha256sum_check(result.path).returncode == 0
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == digest
