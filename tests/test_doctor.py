"""``asewatch doctor``: each check's verdict and fix, on real files, real processes (their
/proc limits and user) and real targets (a folder, OpenSSH's SFTP, an HTTPS server)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pyrage
import pytest
from click.testing import CliRunner

from monitor.config_ship import VendorConfig
from monitor.doctor import DoctorInputs, SaveChecks, ServerFacts, run_doctor
from monitor.doctor_facts import process_facts
from monitor.events_changes import DumpConditions
from monitor.ship_cli import doctor_cmd
from monitor.ship_targets import make_target
from monitor.store import Batch, Store
from tests.ship_fixtures import UploadServer, https_server, scrape, ship_config
from tests.sshd_fixture import SshServer, sshd

pytestmark = pytest.mark.integration
__all__ = ["https_server", "sshd"]

NOBODY = 65534
GOOD = DumpConditions.from_display(
    0.0, True, ["Type", "Value", "Max Dumps", "Dump Directory"],
    [("signal", 11, 1, None), ("timeslice", None, 1, None)],
)  # fmt: skip
VENDOR = VendorConfig(
    name="SAP", contact_email="support@example.com", customer_number="123", contract_id="C-1",
    contract_end=date.today() + timedelta(days=400),
)  # fmt: skip


def _dataserver(core_limit: int) -> subprocess.Popen[bytes]:
    """A real process standing in for the dataserver: runs as ``nobody`` with the soft core
    file limit set the way a RUN_ file would (``ulimit -c``; -1: unlimited)."""
    limit = "unlimited" if core_limit < 0 else str(core_limit)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"ulimit -S -c {limit} && exec sleep 60"],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )
    # The limit is in place once the shell has exec'd sleep.
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"sleep"):
        assert time.monotonic() < deadline, "the stand-in dataserver did not start"
        time.sleep(0.01)
    return proc


@pytest.fixture
def dataserver() -> Iterator[subprocess.Popen[bytes]]:
    proc = _dataserver(0)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def _inputs(tmp_path: Path, **kw: object) -> DoctorInputs:
    log = tmp_path / "SRV.log"
    log.write_text("00:0002:00000:00000:2026/01/01 00:00:00.00 kernel  booted\n")
    dumps = tmp_path / "dumps"
    dumps.mkdir(exist_ok=True)
    base: dict[str, object] = {
        "servers": (ServerFacts("SRV", log, (dumps,)),),
        "dump_conditions": lambda s: GOOD,
        "shared_memory": lambda s: 1 << 20,
        "vendor": VENDOR,
        "recipients": (str(pyrage.x25519.Identity.generate().to_public()),),
    }
    base.update(kw)
    return DoctorInputs(**base)  # type: ignore[arg-type]


def _by_name(report: object) -> dict[str, tuple[str, str, str]]:
    return {c.name: (c.verdict, c.detail, c.fix) for c in report.checks}  # type: ignore[attr-defined]


def test_a_ready_host_is_all_ok(tmp_path: Path) -> None:
    proc = _dataserver(-1)
    try:
        facts = process_facts(proc.pid)
        assert facts is not None and facts.uid == NOBODY
        target = ship_config(target=[{"name": "mnt", "kind": "directory", "path": str(tmp_path)}]).targets[0]
        inputs = _inputs(tmp_path, process=lambda s: facts, targets=[make_target(target)])
        os.chown(tmp_path / "dumps", NOBODY, NOBODY)
        report = run_doctor(inputs)
    finally:
        proc.kill()
        proc.wait(5)
    assert [(c.name, c.verdict) for c in report.checks if c.verdict != "ok"] == []
    assert report.exit_code == 0 and report.ready("SRV")
    assert not list(tmp_path.glob(".asewatch-probe*"))


def test_core_files_off_and_an_unwritable_dump_folder_fail_with_fixes(
    tmp_path: Path, dataserver: subprocess.Popen[bytes]
) -> None:
    facts = process_facts(dataserver.pid)
    inputs = _inputs(tmp_path, process=lambda s: facts)
    os.chmod(tmp_path / "dumps", 0o755)  # root's folder; the server runs as nobody
    checks = _by_name(run_doctor(inputs, probe_targets=False))
    verdict, detail, fix = checks["core file limit"]
    assert verdict == "fail" and f"pid {dataserver.pid}" in detail and "ulimit -c unlimited" in fix
    verdict, detail, fix = checks[f"dump folder {tmp_path / 'dumps'}"]
    assert verdict == "fail" and f"uid {NOBODY}" in detail and f"chown {NOBODY}" in fix
    os.chmod(tmp_path / "dumps", 0o777)
    assert _by_name(run_doctor(inputs, probe_targets=False))[f"dump folder {tmp_path / 'dumps'}"][0] == "ok"


def test_a_dump_folder_without_room_for_one_dump_fails(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    inputs = _inputs(tmp_path, shared_memory=lambda s: free * 2, process=lambda s: None)
    verdict, detail, _ = _by_name(run_doctor(inputs, probe_targets=False))[
        f"dump folder {tmp_path / 'dumps'}"
    ]
    assert verdict == "fail" and "one dump needs" in detail
    unknown = _by_name(run_doctor(_inputs(tmp_path, shared_memory=lambda s: None), probe_targets=False))
    assert unknown[f"dump folder {tmp_path / 'dumps'}"][0] == "warn"


@pytest.mark.parametrize(
    ("conditions", "verdict", "words"),
    [
        (None, "warn", "unknown"),
        (
            DumpConditions.from_display(0.0, False, ["Type", "Value"], [("signal", 11), ("timeslice", None)]),
            "fail",
            "off",
        ),
        (DumpConditions.from_display(0.0, True, ["Type", "Value"], [("signal", 11)]), "fail", "no timeslice"),
        (
            DumpConditions.from_display(0.0, True, ["Type", "Value"], [("signal", 6), ("timeslice", None)]),
            "fail",
            "signal 11",
        ),
        (GOOD, "ok", "signal 11"),
    ],
)
def test_dump_conditions(tmp_path: Path, conditions: DumpConditions | None, verdict: str, words: str) -> None:
    got = _by_name(run_doctor(_inputs(tmp_path, dump_conditions=lambda s: conditions), probe_targets=False))
    assert got["dump conditions"][0] == verdict and words in got["dump conditions"][1]


def test_an_unreadable_errorlog_and_a_missing_dump_folder_fail(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, servers=(ServerFacts("SRV", tmp_path / "nope.log", (tmp_path / "gone",)),))
    got = _by_name(run_doctor(inputs, probe_targets=False))
    assert got["errorlog readable"][0] == "fail" and "No such file" in got["errorlog readable"][1]
    assert (
        got[f"dump folder {tmp_path / 'gone'}"][0] == "fail"
        and "mkdir" in got[f"dump folder {tmp_path / 'gone'}"][2]
    )


@pytest.mark.parametrize(
    ("vendor", "check", "verdict"),
    [
        (None, "vendor contact", "warn"),
        (VendorConfig(name="SAP"), "vendor contact", "warn"),
        (
            VENDOR.model_copy(update={"contract_end": date.today() - timedelta(days=1)}),
            "vendor contract",
            "fail",
        ),
        (
            VENDOR.model_copy(update={"contract_end": date.today() + timedelta(days=10)}),
            "vendor contract",
            "warn",
        ),
        (VENDOR, "vendor contract", "ok"),
    ],
)
def test_vendor_contact_and_contract(
    tmp_path: Path, vendor: VendorConfig | None, check: str, verdict: str
) -> None:
    assert _by_name(run_doctor(_inputs(tmp_path, vendor=vendor), probe_targets=False))[check][0] == verdict


def test_age_recipients_must_parse(tmp_path: Path) -> None:
    got = _by_name(run_doctor(_inputs(tmp_path, recipients=("age1notakey",)), probe_targets=False))
    assert got["encryption recipients"][0] == "fail"
    assert (
        _by_name(run_doctor(_inputs(tmp_path, recipients=()), probe_targets=False))["encryption recipients"][
            0
        ]
        == "warn"
    )


def test_targets_take_a_test_upload_and_it_is_deleted(
    tmp_path: Path, sshd: SshServer, https_server: UploadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "t0ken-s3cret")
    cfg = ship_config(target=[
        {"name": "sftp", "kind": "sftp", "host": "127.0.0.1", "port": sshd.port, "user": "root",
         "key_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts), "remote_dir": str(sshd.root)},
        {"name": "https", "kind": "https", "url": https_server.url, "token_env": "TOKEN",
         "ca_file": str(https_server.cert)},  # type: ignore[attr-defined]
    ])  # fmt: skip
    targets = [make_target(t) for t in cfg.targets]
    got = _by_name(run_doctor(_inputs(tmp_path, targets=targets)))
    assert got["target sftp"][0] == "ok" and got["target https"][0] == "ok"
    assert list(sshd.root.iterdir()) == []
    assert [p for p in https_server.root.rglob("*") if p.is_file()] == []
    assert https_server.requests == {"PUT": 1, "DELETE": 1}
    monkeypatch.setenv("TOKEN", "wrong")
    sshd.stop()
    got = _by_name(run_doctor(_inputs(tmp_path, targets=targets)))
    assert got["target sftp"][0] == "fail" and "cannot connect" in got["target sftp"][1]
    assert got["target https"][0] == "fail" and "credentials" in got["target https"][2]
    report = run_doctor(_inputs(tmp_path, targets=targets))
    assert report.exit_code == 1 and report.ready("SRV")  # the capture is fine; the path to the vendor is not


def test_doctor_cli_json_exit_code_and_the_capture_metric(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Store.open(state).close()
    (tmp_path / "dumps").mkdir()
    (tmp_path / "SRV.log").write_text("x\n")
    toml = tmp_path / "asewatch.toml"
    toml.write_text(f"""
[agent]
state_dir = "{state}"

[[server]]
name = "SRV"
errorlog = "SRV.log"
dump_dirs = ["dumps", "missing"]

[[ship.target]]
name = "archive"
kind = "directory"
path = "dumps"

[vendor]
name = "SAP"
contact_email = "support@example.com"
customer_number = "1"
contract_id = "C"
contract_end = {date.today() + timedelta(days=365)}
""")
    out = CliRunner().invoke(doctor_cmd, ["-c", str(toml), "--json"])
    doc = json.loads(out.stdout)
    assert out.exit_code == 1 and doc["verdict"] == "fail"
    failed = [c for c in doc["checks"] if c["verdict"] == "fail"]
    assert [c["name"] for c in failed] == [f"dump folder {tmp_path / 'missing'}"]
    assert all(c["fix"] for c in doc["checks"] if c["verdict"] != "ok")
    with Store.open(state) as store:
        assert scrape(store)[("ase_dump_capture_ready", ("SRV",))] == 0
        fixed = run_doctor(_inputs(tmp_path), probe_targets=False)
        store.append(Batch(ops=(SaveChecks(fixed),)))
        assert scrape(store)[("ase_dump_capture_ready", ("SRV",))] == 1
    text = CliRunner().invoke(doctor_cmd, ["-c", str(toml), "--no-probe"])
    assert "[FAIL] SRV: dump folder" in text.stdout and "fix: mkdir -p" in text.stdout
