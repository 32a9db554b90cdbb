"""The vendor package's parts, one at a time: errorlog pieces, leftovers of a killed builder,
the manifest validator, the space estimate, the config section."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from monitor.config_package import PackageConfig, vendor_of
from monitor.package_errorlog import excerpt, locate, span
from monitor.package_fs import LOCK_NAME, PartialDir, clean_stale
from monitor.package_manifest import validate_manifest
from monitor.package_stream import estimate_ratio

pytestmark = pytest.mark.unit


def errorlog(path: Path, n: int) -> list[bytes]:
    lines = [
        f"00:0002:00000:{i % 50:05d}:2024/03/14 10:{i // 60 % 60:02d}:{i % 60:02d}.00 server  line {i}\n".encode()
        for i in range(n)
    ]
    path.write_bytes(b"".join(lines))
    return lines


def test_an_excerpt_is_whole_lines_around_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "SRV.log"
    lines = errorlog(log, 500)
    offset = sum(len(x) for x in lines[:300])
    piece = excerpt(log, offset, 10, 5)
    assert b"".join(piece.lines()) == b"".join(lines[290:305])
    assert excerpt(log, 0, 10, 3).ranges == ((0, sum(len(x) for x in lines[:3])),)  # nothing before the start
    assert b"".join(excerpt(log, offset, 1000, 1).lines()) == b"".join(lines[:301])


def test_a_long_log_keeps_its_head_and_tail_and_says_how_much_is_left_out(tmp_path: Path) -> None:
    log = tmp_path / "SRV.log"
    lines = errorlog(log, 2000)
    size = log.stat().st_size
    piece = span(log, 0, None, 20_000)
    out = list(piece.lines())
    marker = [x for x in out if x.startswith(b"[... asewatch:")]
    assert len(marker) == 1 and f"{piece.cut} bytes".encode() in marker[0]
    kept = [x for x in out if not x.startswith(b"[... asewatch:")]
    assert set(kept) <= set(lines) and kept[0] == lines[0] and kept[-1] == lines[-1]  # whole lines only
    assert piece.size + piece.cut == size and 19_000 < piece.size <= 20_000
    assert span(log, 100, 100, 10).ranges == ((100, 100),)


def test_locate_checks_the_offset_and_finds_a_moved_record(tmp_path: Path) -> None:
    log = tmp_path / "SRV.log"
    lines = errorlog(log, 200)
    at = sum(len(x) for x in lines[:125])
    t = datetime(2024, 3, 14, 10, 2, 5)  # line 125: minute 2, second 5, spid 25
    assert locate(log, at, t, 25) == at
    assert locate(log, 0, t, 25) == at  # the offset is stale (a rotated log): found by its stamp
    assert locate(log, at, t, 26) is None
    assert locate(log, at, datetime(2025, 1, 1), None) is None


def test_a_partial_folder_of_a_killed_builder_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = PartialDir(out, "SRV-crash1-20240314T101233Z")
    script = (
        "import sys; from pathlib import Path; from monitor.package_fs import PartialDir; "
        "p = PartialDir(Path(sys.argv[1]), 'SRV-crash2-x'); print('ok', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        assert clean_stale(out) == []  # both are being written
        holder.kill()
        holder.wait(timeout=10)
        assert clean_stale(out) == [out / ".SRV-crash2-x.partial"]  # its builder died: the lock is free
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        for stream in (holder.stdin, holder.stdout):
            if stream:
                stream.close()
    assert mine.path.is_dir() and (mine.path / LOCK_NAME).is_file()
    final = mine.finish()
    assert final == out / "SRV-crash1-20240314T101233Z" and not (final / LOCK_NAME).exists()
    assert [p.name for p in out.iterdir()] == [final.name]
    stale_tar = out / ".SRV-crash3-y.tar.partial"
    stale_tar.write_bytes(b"x")
    os.utime(stale_tar, (time.time() - 3600, time.time() - 3600))
    assert clean_stale(out) == [stale_tar] and not stale_tar.exists()


def test_the_validator_names_missing_and_mistyped_fields() -> None:
    problems = validate_manifest({"schema": "asewatch.package/1", "package_id": 7, "crash": {"spid": "x"},
                                  "dumps": [{"name": "d.zst"}]})  # fmt: skip
    assert "package_id: int, not string" in problems
    assert "crash.spid: str, not integer/null" in problems
    assert "crash.signal: missing" in problems and "dumps[0].original_sha256: missing" in problems
    assert "created: missing" in problems
    assert validate_manifest([]) == ["the manifest is not a JSON object"]


def test_the_space_estimate_is_pessimistic_for_mixed_content(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.dmp"
    with mixed.open("wb") as f:
        for i in range(64):
            f.write(os.urandom(1 << 20) if i % 4 == 0 else bytes(1 << 20))
    actual = 0.25  # a quarter random, the rest zero pages
    assert actual <= estimate_ratio(mixed) <= 1.01
    zeros = tmp_path / "zeros.dmp"
    zeros.write_bytes(bytes(8 << 20))
    assert estimate_ratio(zeros) < 0.01
    empty = tmp_path / "empty.dmp"
    empty.touch()
    assert estimate_ratio(empty) == 0.0


def test_the_package_section_validates_and_the_vendor_is_read_from_any_config() -> None:
    with pytest.raises(ValueError, match="matches the empty string"):
        PackageConfig.model_validate({"redact": {"patterns": {"x": "a*"}}})
    with pytest.raises(ValueError, match="not a regular expression"):
        PackageConfig.model_validate({"redact": {"patterns": {"x": "("}}})
    with pytest.raises(ValueError, match="extra"):
        PackageConfig.model_validate({"excerpt_lines": 3})

    class Vendor:
        name = "SAP"
        customer_number = " 0001234567 "
        contact_email = ""

    v = vendor_of(type("Cfg", (), {"vendor": Vendor()})(), case_number=None)
    assert (v.name, v.customer_number, v.contact_email, v.case_number) == ("SAP", "0001234567", None, None)
    assert v.missing() == ["contact"]
    assert vendor_of(None, "4711").missing() == ["name", "customer_number", "contact"]
