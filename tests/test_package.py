"""The vendor package of a real (simulated) crash: what the vendor's engineer gets, and what never leaves.

One module-wide recording: the simulated dataserver (a real process) runs its workload,
is crashed (real crash block, real dump file, real SIGSEGV) and restarts; its errorlog is
stored the way the agent stores it. Each test builds packages from that store into its
own folder and checks them with the tools a vendor uses: ``sha256sum -c``, ``zstd -d``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.config import AgentConfig, ServerConfig
from monitor.config_package import PackageConfig
from monitor.crashes import local_epoch
from monitor.events_changes import (
    Deployment,
    DumpConditions,
    FlagChanged,
    SettingChanged,
    SettingsSnapshot,
    SettingValue,
)
from monitor.events_dumps import DumpSeen
from monitor.package import PackageError, build_package
from monitor.package_cli import package_cmd
from monitor.package_manifest import fields, validate_manifest
from monitor.redact import personal_numbers
from monitor.ship_package import finished_packages, read_package
from monitor.store import Batch, Store
from tests.test_package_helpers import (
    Recorded,
    manifest_of,
    modes,
    personal_numbers_in,
    record_crash,
    sha256sum_check,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_crash(tmp_path_factory.mktemp("pkg"), f"PK{os.getpid()}")


def config_for(rec: Recorded, package: PackageConfig | None = None, **extra: Any) -> SimpleNamespace:
    """A config as build_package reads it: servers, [package], [vendor] (duck-typed)."""
    server = ServerConfig(
        name=rec.server, errorlog=rec.errorlog, dump_dirs=(rec.dump_dir,), host="db01.region.example"
    )
    vendor = SimpleNamespace(name="SAP", customer_number="0001234567", contract_id="ES-4711", contract_end=None,
                             contact_name="DBA on call", contact_email="dba@region.example", contact_phone="",
                             support_url="https://support.sap.com")  # fmt: skip
    return SimpleNamespace(agent=AgentConfig(state_dir=rec.state), servers=(server,),
                           package=package or PackageConfig(), vendor=vendor, **extra)  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_store(rec: Recorded, dest: Path) -> Store:
    """A private copy of the recording's store (SQLite backup), for tests that add facts."""
    dest.mkdir(parents=True)
    with sqlite3.connect(rec.state / "asewatch.db") as src, sqlite3.connect(dest / "asewatch.db") as dst:
        src.backup(dst)
    return Store.open(dest)


def test_the_package_holds_what_a_vendor_asks_for(rec: Recorded, tmp_path: Path) -> None:
    with rec.store() as store:
        result = build_package(
            store, rec.crash_id, tmp_path / "out", config_for(rec), case_number="CS-2024-0815"
        )
    folder = result.path
    m = manifest_of(folder)
    assert validate_manifest(m) == []
    assert folder.name == result.package_id == m["package_id"] and folder.parent == tmp_path / "out"
    t = rec.truth_crash
    c = m["crash"]
    assert (c["id"], c["kind"], c["signal"], c["spid"], c["kpid"], c["family"], c["suid"]) == (
        rec.crash_id, "signal", 11, t["spid"], t["kpid"], t["family"], t["suid"],
    )  # fmt: skip
    assert (c["login"], c["host"], c["program"], c["procedure"]) == (
        t["login"],
        t["host"],
        t["program"],
        t["procedure"],
    )
    assert c["stack"] == "complete" and c["frames"][-3:] == t["frames"][-3:]
    assert c["sql"].startswith(f"exec {t['procedure']} @") and "?" in c["sql"]
    assert (
        m["ase"]["ebf"] and m["ase"]["ebf"] in m["ase"]["version"] and m["ase"]["kernel_mode"] == "threaded"
    )
    assert m["server"] == {"name": rec.server, "host": "db01.region.example"}
    assert m["host"]["cpu_count"] == os.cpu_count() and m["host"]["memory_bytes"] > 0
    assert m["vendor"]["case_number"] == "CS-2024-0815" and m["vendor"]["customer_number"] == "0001234567"
    # The errorlog: the crash block with lines before it, and the run that crashed from its boot.
    excerpt = (folder / m["errorlog"]["excerpt"]["file"]).read_text(encoding="utf-8")
    assert "infected with signal 11" in excerpt and f"end of stack trace, spid {t['spid']}" in excerpt
    assert excerpt.index("infected with signal 11") > 0 and "Recovery complete" in excerpt
    since = (folder / m["errorlog"]["since_boot"]["file"]).read_text(encoding="utf-8")
    assert since.count("Adaptive Server Enterprise/") == 1 and "infected with signal 11" in since
    # The dump: as it was on disk, compressed; the vendor's zstd restores it byte for byte.
    (d,) = m["dumps"]
    assert (d["source_path"], d["original_bytes"], d["original_sha256"]) == (
        str(rec.dump), rec.dump.stat().st_size, sha256(rec.dump),
    )  # fmt: skip
    assert d["compressed_bytes"] < d["original_bytes"] and not d["encrypted"] and not d["truncated"]
    restored = subprocess.run(
        ["zstd", "-d", "-c", str(folder / d["name"])], capture_output=True, timeout=60, check=True
    )
    assert hashlib.sha256(restored.stdout).hexdigest() == d["original_sha256"]
    # Every file but the manifest and SHA256SUMS is listed with its size, hash and kind.
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    listed = {f["name"]: f for f in m["files"]}
    assert on_disk == set(listed) | {"manifest.json", "SHA256SUMS"}
    for name, f in listed.items():
        assert (f["size"], f["sha256"]) == ((folder / name).stat().st_size, sha256(folder / name))
        assert f["kind"] == ("dump" if name.startswith("dumps/") else "metadata")
    readme = (folder / "README.txt").read_text(encoding="utf-8")
    assert (
        result.package_id in readme and "sha256sum -c SHA256SUMS" in readme and d["original_sha256"] in readme
    )
    assert set(m["unavailable"]) >= {"flight_recorder", "configuration.settings", "configuration.flags"}


def test_no_personal_number_of_the_workload_is_left_outside_the_dump(rec: Recorded, tmp_path: Path) -> None:
    assert personal_numbers_in(rec.root / "sim", rec.patients, skip_dumps=False), "the sim wrote none to find"
    errorlog = rec.errorlog.read_text(encoding="utf-8", errors="replace")
    assert any(p in errorlog for p in rec.patients), "the crash block should carry the patient's number"
    with rec.store() as store:
        result = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec))
    assert personal_numbers_in(result.path, rec.patients) == []
    for path in result.path.rglob("*"):
        if path.is_file() and path.parent.name != "dumps" and path.name != "SHA256SUMS":
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.name == "manifest.json":  # hashes are ours: a digit run in one is no number
                text = json.dumps({k: v for k, v in json.loads(text).items() if k not in ("dumps", "files")})
            assert personal_numbers(text)[1] == 0, path
    report = json.loads((result.path / "redaction.json").read_text(encoding="utf-8"))
    assert report["totals"]["personal_number"] >= 2 and report["totals"]["sql_string"] >= 2
    assert not any(p in json.dumps(report) for p in rec.patients)
    assert manifest_of(result.path)["redaction"]["totals"] == report["totals"]


def test_sha256sum_accepts_the_package_and_catches_a_changed_file(rec: Recorded, tmp_path: Path) -> None:
    with rec.store() as store:
        folder = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec)).path
    ok = sha256sum_check(folder)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(manifest_of(folder)["files"]) + 1  # + manifest.json
    perms = modes(folder)
    assert {v for k, v in perms.items() if (folder / k).is_dir()} == {0o700}
    assert {v for k, v in perms.items() if (folder / k).is_file()} == {0o600}
    assert modes(tmp_path / "out")["."] == 0o700
    with (folder / "errorlog" / "excerpt.log").open("ab") as f:
        f.write(b"tampered\n")
    bad = sha256sum_check(folder)
    assert bad.returncode != 0 and "errorlog/excerpt.log: FAILED" in bad.stdout


def test_settings_flags_dump_conditions_and_changes_as_they_stood_at_the_crash(
    rec: Recorded, tmp_path: Path
) -> None:
    with rec.store() as store:
        crash = store.crash(rec.crash_id)
    assert crash is not None and crash.time is not None
    at = local_epoch(crash.time)
    mpd = SettingValue("max parallel degree", "Parallel Query", "4", "4", True)
    km = SettingValue("kernel mode", "Kernel", "threaded", "threaded", False)
    facts = [
        SettingsSnapshot.of(at - 600, "sysconfigures", {v.name: v for v in (mpd, km)}),
        SettingChanged(
            at + 60, "sysconfigures", "max parallel degree", "Parallel Query", True, "4", "1", "4", "1"
        ),
        FlagChanged(at - 300, "brevutskrift_central_search", None, "true", "query"),
        FlagChanged(at - 200, "testpatient", None, "19121212-1212", "query"),
        FlagChanged(at + 30, "brevutskrift_central_search", "true", "false", "query"),
        DumpConditions(
            at - 500,
            True,
            ("signal", "timeslice"),
            ("11", None),
            (2, 1),
            (0, 0),
            ("/sybdumps", "/sybdumps"),
            (None, None),
            ("default", "default"),
            None,
        ),
        Deployment(at - 3600, "IMX 7.1.0", "imx_deploy", "cli"),
        Deployment(at + 120, "workaround: max parallel degree 1", "sa", "cli"),
    ]
    with copy_store(rec, tmp_path / "state") as store:
        store.append(Batch(events=[(rec.server, e) for e in facts]))
        result = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec))
    m = manifest_of(result.path)
    assert validate_manifest(m) == []
    conf = m["configuration"]
    settings = json.loads((result.path / conf["settings"]).read_text())["sysconfigures"]["parameters"]
    assert settings["max parallel degree"]["run"] == "4"  # the change after the crash is not the crash's
    flags = json.loads((result.path / conf["flags"]).read_text())
    assert flags == {"brevutskrift_central_search": "true", "testpatient": "<pnr>"}
    assert (
        conf["dump_conditions"]
        == "dump on conditions on; signal 11 (max 2) -> /sybdumps; timeslice (max 1) -> /sybdumps"
    )
    changes = json.loads((result.path / conf["changes"]).read_text())
    by_what = {row["what"]: row["after_crash"] for row in changes}
    assert by_what["IMX 7.1.0"] is False and by_what["workaround: max parallel degree 1"] is True
    assert not {"configuration.settings", "configuration.flags", "configuration.changes"} & set(
        m["unavailable"]
    )


def test_the_flight_recorder_snapshot_goes_in_redacted(rec: Recorded, tmp_path: Path) -> None:
    with copy_store(rec, tmp_path / "state") as store:
        crash = store.crash(rec.crash_id)
        assert crash is not None and crash.time is not None
        at = local_epoch(crash.time)
        db = sqlite3.connect(store.path)
        with db:
            db.execute("INSERT INTO crash_activity VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (crash.key, rec.server, at, crash.spid, crash.kpid, crash.family, crash.family, 77,
                        crash.login, crash.host, crash.program, None, 60.0, at + 20, 1, 1, 0))  # fmt: skip
            db.execute(
                "INSERT INTO crash_activity_statements (crash_key, role, spid, kpid, batch_id, login, procedure, "
                "start_time, sql) VALUES (?, 'session', ?, 77, 3, ?, 'p_brev_sok_central_utskrift', ?, ?)",
                (crash.key, crash.family, crash.login, at - 1, "exec p_patient_get @pnr = '19121212-1212'"),
            )
        db.close()
        result = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec))
    m = manifest_of(result.path)
    assert m["flight_recorder"] == {
        "file": "flight-recorder.json",
        "complete": True,
        "truncated": False,
        "statements": 1,
    }
    frozen = json.loads((result.path / "flight-recorder.json").read_text(encoding="utf-8"))
    assert frozen["statements"][0]["sql"] == "exec p_patient_get @pnr = ?" and frozen["session_kpid"] == 77
    assert frozen["procedures"] == ["p_brev_sok_central_utskrift", "p_patient_get"]


def test_a_truncated_dump_is_packaged_and_marked_truncated(tmp_path: Path) -> None:
    rec = record_crash(tmp_path / "rec", f"PT{os.getpid()}", dump_size=2 << 20, truncate=0.4)
    assert not rec.dump_complete and rec.dump.stat().st_size < 2 << 20
    dump_seen = DumpSeen(time.time(), rec.server, str(rec.dump), rec.dump.stat().st_size, rec.dump.stat().st_mtime,
                         "truncated", sha256(rec.dump), 2 << 20, None, "smaller than expected")  # fmt: skip
    with rec.store() as store:
        store.append(Batch(events=[(rec.server, dump_seen)]))
        result = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec))
    (d,) = manifest_of(result.path)["dumps"]
    assert (d["state"], d["truncated"], d["found_by"]) == ("truncated", True, "store events")
    assert d["original_bytes"] == rec.dump.stat().st_size and d["recorded_sha256"] == d["original_sha256"]
    assert "TRUNCATED" in (result.path / "README.txt").read_text(encoding="utf-8")
    assert sha256sum_check(result.path).returncode == 0


_KILL_SCRIPT = """
import sys
from pathlib import Path
from types import SimpleNamespace
from monitor.config_package import PackageConfig
from monitor.package import build_package
from monitor.store import Store
state, crash, out, dump = sys.argv[1:5]
cfg = SimpleNamespace(servers=(), package=PackageConfig(compression_level=19, threads=0, block_bytes=1 << 20))
with Store.open(Path(state)) as store:
    build_package(store, int(crash), Path(out), cfg, dumps=[Path(dump)])
"""


def test_kill_9_mid_way_leaves_no_package_and_the_next_build_cleans_up(rec: Recorded, tmp_path: Path) -> None:
    big = tmp_path / "big.dmp"
    with big.open("wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    before = sha256(big)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(rec.state), str(rec.crash_id), str(out), str(big)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in out.glob(".*.partial") if any((p / "dumps").glob("*.zst"))]
            if partial and any(f.stat().st_size > 1 << 20 for f in (partial[0] / "dumps").glob("*.zst")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the build ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    assert list(finished_packages(out)) == []
    assert [p.name.startswith(".") for p in out.iterdir()] == [True]
    with rec.store() as store:
        result = build_package(store, rec.crash_id, out, config_for(rec), dumps=[big])
    assert result.removed_stale == tuple(partial)
    assert [p.name for p in out.iterdir()] == [result.package_id]
    assert sha256(big) == before and sha256sum_check(result.path).returncode == 0


def test_the_archive_and_the_shipper_read_the_same_package(rec: Recorded, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    cfg = config_for(rec, PackageConfig(archive=True), ship=SimpleNamespace(spool_dir=spool))
    with rec.store() as store:
        result = build_package(store, rec.crash_id, None, cfg)
    assert result.path.parent == spool and result.archive == spool / f"{result.package_id}.tar"
    with tarfile.open(result.archive) as tar:
        names = sorted(tar.getnames())
    assert names == sorted(
        f"{result.package_id}/{p.relative_to(result.path)}" for p in result.path.rglob("*") if p.is_file()
    )
    shipped = read_package(result.path)
    kinds = {f.name: f.kind for f in shipped.files}
    assert kinds[manifest_of(result.path)["dumps"][0]["name"]] == "dump"
    assert kinds["manifest.json"] == kinds["errorlog/excerpt.log"] == "metadata"


def test_clear_errors_for_an_unknown_crash_and_a_missing_vendor_key(rec: Recorded, tmp_path: Path) -> None:
    with rec.store() as store:
        with pytest.raises(PackageError, match="no crash 9999"):
            build_package(store, 9999, tmp_path / "out", config_for(rec))
        with pytest.raises(ValueError, match="required = true but no recipients"):
            PackageConfig.model_validate({"encryption": {"required": True}})
        with pytest.raises(ValueError, match="not an age public key"):
            PackageConfig.model_validate({"encryption": {"recipients": ["AGE-SECRET-KEY-1XYZ"]}})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_command_builds_the_package_from_one_config_file(rec: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "packages"
    toml = tmp_path / "asewatch.toml"
    toml.write_text(
        f'[agent]\nstate_dir = "{rec.state}"\n\n[[server]]\nname = "{rec.server}"\nerrorlog = "{rec.errorlog}"\n'
        f'dump_dirs = ["{rec.dump_dir}"]\n\n[package]\nout_dir = "{out}"\nexcerpt_lines_before = 5\n\n'
        '[vendor]\nname = "SAP"\ncustomer_number = "0001234567"\n',
        encoding="utf-8",
    )
    r = CliRunner().invoke(package_cmd, [str(rec.crash_id), "-c", str(toml), "--case", "4711", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    m = manifest_of(Path(doc["path"]))
    assert Path(doc["path"]).parent == out and m["errorlog"]["excerpt"]["lines_before"] == 5
    assert (m["vendor"]["customer_number"], m["vendor"]["case_number"]) == ("0001234567", "4711")
    bad = CliRunner().invoke(package_cmd, ["424242", "-c", str(toml)])
    assert bad.exit_code == 2 and "no crash '424242'" in bad.output
    toml.write_text(toml.read_text() + "\n[package.encryption]\nrecipients = ['nope']\n", encoding="utf-8")
    bad = CliRunner().invoke(package_cmd, [str(rec.crash_id), "-c", str(toml)])
    assert bad.exit_code == 2 and "package.encryption.recipients" in bad.output


def test_the_manifest_schema_table_documents_every_field_written(rec: Recorded, tmp_path: Path) -> None:
    with rec.store() as store:
        m = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec)).manifest
    documented = fields()
    free_form = {"host.uname", "host.distribution", "redaction.totals", "unavailable"}

    def paths(value: Any, prefix: str = "") -> set[str]:
        out: set[str] = set()
        if isinstance(value, dict) and prefix not in free_form:
            for k, v in value.items():
                p = f"{prefix}.{k}" if prefix else k
                out |= {p} | paths(v, p)
        elif isinstance(value, list):
            for item in value:
                out |= paths(item, f"{prefix}[]")
        return out

    written = paths(m)
    assert written - set(documented) == set()
    assert {
        "crash.sql",
        "dumps[].original_sha256",
        "files[].kind",
        "errorlog.excerpt.start_offset",
    } <= written


def test_dumps_come_from_the_dump_records_and_are_held_while_packaged(rec: Recorded, tmp_path: Path) -> None:
    dumps = pytest.importorskip("monitor.dumps", reason="the dump records (issue 5, parts 1-3) are not here")
    from monitor.config_dumps import DumpsConfig  # noqa: PLC0415 - with monitor.dumps
    from monitor.package_dumps import find_dumps, pinned  # noqa: PLC0415

    st = rec.dump.stat()
    seen = DumpSeen(time.time(), rec.server, str(rec.dump), st.st_size, st.st_mtime, "complete", sha256(rec.dump),
                    None, None, None)  # fmt: skip
    with copy_store(rec, tmp_path / "state") as store:
        new = store.append(Batch(events=[(rec.server, seen)]))
        dumps.DumpKeeper(store, DumpsConfig()).on_committed(new)
        crash = store.crash(rec.crash_id)
        assert crash is not None and crash.time is not None
        refs, _ = find_dumps(store, crash, local_epoch(crash.time), (), None)
        assert [(r.path, r.found_by, r.sha256) for r in refs] == [
            (rec.dump, "dump records", sha256(rec.dump))
        ]
        with pinned(store, refs) as (usable, held):
            assert usable == refs and held == ["1 dump(s) held against retention while packaged"]
            with store.reader() as r:
                assert [d.holders for d in dumps.list_dumps(r, rec.server)] == [("package",)]
        with store.reader() as r:
            assert [d.holders for d in dumps.list_dumps(r, rec.server)] == [()]  # released
        result = build_package(store, rec.crash_id, tmp_path / "out", config_for(rec))
    m = manifest_of(result.path)
    (d,) = m["dumps"]
    assert (d["found_by"], d["state"], d["recorded_sha256"]) == (
        "dump records",
        "complete",
        d["original_sha256"],
    )
    assert "1 dump(s) held against retention while packaged" in m["dump_notes"]
