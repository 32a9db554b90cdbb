"""Metrics: read at scrape time from the store, valid for promtool, served on loopback (and TLS)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.crashes import CrashAssembler
from monitor.events import (
    CollectorFailed,
    CollectorSucceeded,
    ConfigChanged,
    CrashBlock,
    ErrorlogError,
    ProcessExited,
    ProcessSample,
    ProcessStarted,
    ServerBooted,
)  # fmt: skip
from monitor.health import Health
from monitor.metrics import METRICS, AseCollector, MetricsServer, make_registry
from monitor.store import Batch, Store, UpsertCrash

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 26, 9, 0, 0)


def crash(t: datetime, spid: int) -> CrashBlock:
    return CrashBlock(
        time=t, kind="signal", signal=11, thread=5, engine=None, family=312, spid=spid, kpid=spid * 7, suid=1,
        address_function="f", sql="exec p_brev_sok_central_utskrift @pnr = '19121212-1212'", statement_number=1,
        line_number=1, sql_text=(), curdb=4, lasterror=0, transtate=1, curcmd=197, program="IMX Klient",
        hostname="ws1", login="lakare_anna", frames=("f",), handlers=(), complete=True, server_terminated=False,
        procedure="p_brev_sok_central_utskrift", signature="0123456789abcdef", offset=0, lines=3,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "state")
    events = [
        ProcessStarted("CLINIC1", 4242, 1764147600.0, None, ("dataserver", "-sCLINIC1"), 1764147600.5),
        ProcessSample("CLINIC1", 4242, 1764147600.0, 1764147700.0, 512 * 2**20, 12.5, 37, 210),
        ServerBooted(T, "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64", False, None, 0),
        ErrorlogError(T, 2, 0, 44, 1608, 18, 4, "A client process exited abnormally", 10),
        ErrorlogError(T, 2, 0, 45, 1608, 18, 4, "A client process exited abnormally.", 20),
        ErrorlogError(T, 2, 0, 46, 3475, 21, 7, "There is no space available in SYSLOGS", 30),
        ConfigChanged(T, 36, "max parallel degree", "sa", "1", "4", 40),
        crash(datetime(2026, 11, 26, 9, 5), 1279),
        crash(datetime(2026, 11, 26, 9, 9), 1301),
        ProcessStarted("RO1", 5151, 1764147000.0, None, ("dataserver", "-sRO1"), 1764147000.5),
        ProcessExited("RO1", 5151, 1764147000.0, 1764147900.0, None, None, 1764147900.1),
    ]
    new = s.append(Batch(events=[(getattr(e, "server", "CLINIC1"), e) for e in events]))
    rows = CrashAssembler().feed(new)
    s.append(Batch(ops=[UpsertCrash(r) for r in rows]))
    yield s
    s.close()


def scrape(store: Store, health: Health | None = None) -> str:
    return generate_latest(make_registry(AseCollector(store, health, ("CLINIC1", "RO1")))).decode()


def value(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_values_come_from_the_store(store: Store) -> None:
    h = Health()
    h.register("errorlog:CLINIC1")
    h.record(CollectorFailed("errorlog:CLINIC1", "no such file", 1764147800.0))
    h.record(CollectorSucceeded("process", 1764147801.0))
    text = scrape(store, h)
    assert value(text, "ase_up", server="CLINIC1") == 1
    assert value(text, "ase_up", server="RO1") == 0
    assert value(text, "ase_server_start_time_seconds", server="CLINIC1") == 1764147600.0
    assert value(text, "ase_server_start_time_seconds", server="RO1") is None  # not running: no start time
    assert value(text, "ase_process_resident_memory_bytes", server="CLINIC1") == 512 * 2**20
    assert value(text, "ase_process_cpu_seconds_total", server="CLINIC1") == 12.5
    assert value(text, "ase_process_threads", server="CLINIC1") == 37
    assert (
        value(text, "ase_crashes_total", server="CLINIC1", kind="signal", signature="0123456789abcdef") == 2
    )
    assert value(text, "ase_errorlog_errors_total", server="CLINIC1", severity="18") == 2
    assert value(text, "ase_errorlog_errors_total", server="CLINIC1", severity="21") == 1
    assert value(text, "ase_config_changes_total", server="CLINIC1") == 1
    assert value(text, "ase_config_changes_total", server="RO1") == 0  # exported ahead of time
    assert value(text, "ase_crash_last_timestamp_seconds", server="CLINIC1") > 0
    assert value(text, "asewatch_collector_errors_total", collector="errorlog:CLINIC1") == 1
    assert value(text, "asewatch_collector_up", collector="errorlog:CLINIC1") == 0
    assert (
        value(text, "asewatch_collector_last_success_timestamp_seconds", collector="process") == 1764147801.0
    )
    assert value(text, "asewatch_build_info", signature_version="1") == 1


def test_no_sql_or_personal_numbers_in_metrics(store: Store) -> None:
    text = scrape(store)
    assert "19121212" not in text
    assert "exec " not in text
    assert "lakare_anna" not in text


def test_every_metric_in_the_table_is_exported_with_its_type_and_help(store: Store) -> None:
    fams = {f.name: f for f in text_string_to_metric_families(scrape(store))}
    for m in METRICS:
        fam = fams[m.name.removesuffix("_total")]
        assert fam.type == m.type, m.name
        assert fam.documentation == m.help, m.name
    assert set(fams) == {m.name.removesuffix("_total") for m in METRICS}


def test_readme_metrics_table_matches_the_code() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`ase") and cells[0].endswith("`"):
            labels = tuple(x.strip("` ") for x in cells[2].split(",") if x.strip("` "))
            rows[cells[0].strip("`")] = (cells[1], labels, cells[3])
    assert rows == {m.name: (m.type, m.labels, m.help) for m in METRICS}


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (make system installs it)"
)
def test_promtool_check_metrics_passes(store: Store) -> None:
    r = subprocess.run(
        ["promtool", "check", "metrics"],
        check=False,
        input=scrape(store),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_broken_store_yields_health_metrics_not_an_error(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "state")
    s.close()  # reads now fail
    (tmp_path / "state" / "asewatch.db").unlink()
    text = generate_latest(make_registry(AseCollector(s, Health(), ("X",)))).decode()
    assert value(text, "asewatch_build_info", version=__import__("monitor").__version__) == 1
    assert value(text, "ase_up", server="X") is None


def test_served_on_loopback_and_over_tls(store: Store, tmp_path: Path) -> None:
    plain = MetricsServer(make_registry(AseCollector(store)), "127.0.0.1", 0)
    port = plain.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b"ase_up" in resp.read()
    finally:
        plain.stop()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = MetricsServer(make_registry(AseCollector(store)), "127.0.0.1", 0, cert, key)
    port = tls.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", timeout=10, context=ctx) as resp:
            assert b"ase_crashes_total" in resp.read()
        with pytest.raises(Exception):  # noqa: B017 - plain HTTP to a TLS port must fail, however it fails
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        tls.stop()
