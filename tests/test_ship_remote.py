"""The network targets against real servers: OpenSSH's SFTP on 127.0.0.1 and an HTTPS upload
server with a self-signed certificate. Each is refused, down or slow for a while; the
shipper retries with backoff, says so in metrics and ``asewatch ship --json``, and ships
once the target is back."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.ship import Shipper
from monitor.ship_cli import ship_cmd
from monitor.ship_package import read_package
from monitor.ship_state import rows
from monitor.ship_targets import ShipError, make_target
from monitor.store import Store
from tests.ship_fixtures import UploadServer, https_server, random_package, scrape, sha, ship_config, wait_for
from tests.sshd_fixture import SshServer, keygen, sshd

pytestmark = pytest.mark.integration
__all__ = ["https_server", "sshd"]  # fixtures, imported for pytest


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "state")
    yield s
    s.close()


def sftp_target(server: SshServer, **kw: Any) -> dict[str, Any]:
    return {
        "name": "vendor", "kind": "sftp", "host": "127.0.0.1", "port": server.port, "user": "root",
        "key_file": str(server.client_key), "known_hosts": str(server.known_hosts),
        "remote_dir": str(server.root), "timeout": 5.0, **kw,
    }  # fmt: skip


def https_target(server: UploadServer, **kw: Any) -> dict[str, Any]:
    return {
        "name": "portal", "kind": "https", "url": server.url, "token_env": "ASEWATCH_TEST_TOKEN",
        "ca_file": str(server.cert), "timeout": 5.0, **kw,  # type: ignore[attr-defined]
    }  # fmt: skip


def make_shipper(store: Store, spool: Path, targets: list[dict[str, Any]], **kw: Any) -> Shipper:
    cfg = ship_config(target=targets)
    return Shipper(store, [make_target(t) for t in cfg.targets], cfg, spool_dir=spool, **kw)


def ship_json(store: Store) -> dict[str, Any]:
    out = CliRunner().invoke(ship_cmd, ["--state-dir", str(store.path.parent), "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def all_verified(store: Store) -> bool:
    with store.reader() as r:
        found = rows(r)
    return bool(found) and all(x.state == "verified" for x in found)


class Running:
    """``Shipper.run`` in a thread, stopped in ``__exit__``."""

    def __init__(self, shipper: Shipper) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=shipper.run, args=(self.stop,), name="shipper")

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive()


# --------------------------------------------------------------------------- SFTP


@pytest.mark.parametrize("verify", ["readback", "sha256sum"])
def test_sftp_ships_verifies_and_leaves_no_temp_names(
    tmp_path: Path, store: Store, sshd: SshServer, verify: str
) -> None:
    spool = tmp_path / "spool"
    pkg = read_package(random_package(spool, "pkg-1", random.Random(5), dumps=2))
    result = make_shipper(store, spool, [sftp_target(sshd, verify=verify)]).run_once()
    assert result["vendor"].verified == len(pkg.files) and result["vendor"].failed == 0
    for f in pkg.files:
        assert sha((sshd.root / "pkg-1" / f.name).read_bytes()) == f.sha256
    assert not [p for p in sshd.root.rglob("*") if p.name.startswith(".")]


def test_sftp_resumes_a_partial_upload_from_its_offset(tmp_path: Path, store: Store, sshd: SshServer) -> None:
    spool = tmp_path / "spool"
    pkg = read_package(random_package(spool, "pkg", random.Random(6), dumps=1, dump_kib=(300, 300)))
    dump = next(f for f in pkg.files if f.kind == "dump")
    data = (spool / "pkg" / dump.name).read_bytes()
    tmp = sshd.root / "pkg" / "dumps" / ".shm0.dmp.zst.asewatch-part"
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(data[:100_000])
    phases: list[tuple[str, str, str]] = []
    make_shipper(
        store, spool, [sftp_target(sshd)], on_phase=lambda p, j, d: phases.append((p, j.file, d))
    ).run_once()
    assert ("resume", dump.name, "100000") in phases
    assert (sshd.root / "pkg" / dump.name).read_bytes() == data and not tmp.exists()


def test_sftp_refuses_an_unknown_host_key_and_never_learns_it(
    tmp_path: Path, store: Store, sshd: SshServer
) -> None:
    other = keygen(tmp_path / "other_host")
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(
        f"[127.0.0.1]:{sshd.port} {' '.join((tmp_path / 'other_host.pub').read_text().split()[:2])}\n"
    )
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    for known, words in ((wrong, "changed"), (empty, "is not in")):
        target = make_target(ship_config(target=[sftp_target(sshd, known_hosts=str(known))]).targets[0])
        with pytest.raises(ShipError, match=words) as err:
            target.connect(5.0)
        assert err.value.connect
    assert empty.read_text() == "" and other.exists()
    assert not list(sshd.root.iterdir())


def test_sftp_refuses_a_key_file_others_can_read(tmp_path: Path, sshd: SshServer) -> None:
    os.chmod(sshd.client_key, 0o644)
    target = make_target(ship_config(target=[sftp_target(sshd)]).targets[0])
    with pytest.raises(ShipError, match="chmod 600"):
        target.connect(5.0)


def test_sftp_down_then_back_retries_reports_and_ships(tmp_path: Path, store: Store, sshd: SshServer) -> None:
    spool = tmp_path / "spool"
    random_package(spool, "pkg", random.Random(7), dumps=1, dump_kib=(20, 40))
    sshd.stop()
    with Running(make_shipper(store, spool, [sftp_target(sshd)])):
        wait_for(
            lambda: scrape(store).get(("asewatch_shipments_total", ("vendor", "failed")), 0) >= 3,
            20,
            "failed attempts",
        )
        m = scrape(store)
        assert m[("asewatch_vendor_target_up", ("vendor",))] == 0
        assert m[("asewatch_ship_queue", ("vendor", "verified"))] == 0
        doc = ship_json(store)
        target = doc["targets"][0]
        assert target["up"] is False and "cannot connect" in target["last_error"]
        failed = [f for f in doc["files"] if f["state"] == "failed"]
        assert failed and failed[0]["attempts"] >= 1 and failed[0]["next_attempt_at"]
        sshd.start()
        wait_for(lambda: all_verified(store), 30, "shipping after sshd came back")
    m = scrape(store)
    assert m[("asewatch_vendor_target_up", ("vendor",))] == 1
    assert m[("asewatch_ship_queue", ("vendor", "failed"))] == 0
    assert ship_json(store)["targets"][0]["up"] is True


def test_sftp_login_refused_until_the_key_is_authorised(
    tmp_path: Path, store: Store, sshd: SshServer
) -> None:
    spool = tmp_path / "spool"
    random_package(spool, "pkg", random.Random(8), dumps=1, dump_kib=(8, 8))
    good = sshd.authorized.read_text()
    sshd.authorized.write_text("")
    with Running(make_shipper(store, spool, [sftp_target(sshd)])):
        wait_for(
            lambda: scrape(store).get(("asewatch_shipments_total", ("vendor", "failed")), 0) >= 2,
            20,
            "refusals",
        )
        assert "login refused" in ship_json(store)["targets"][0]["last_error"]
        # One connection per attempt: a refusal is not retried at once (accounts get locked).
        # sshd logs each connection before its refusal can be counted: at most one more.
        failed = scrape(store)[("asewatch_shipments_total", ("vendor", "failed"))]
        connections = sshd.log.read_text().count("Connection from 127.0.0.1")
        assert failed <= connections <= failed + 1
        sshd.authorized.write_text(good)
        wait_for(lambda: all_verified(store), 30, "shipping once the key is authorised")


# --------------------------------------------------------------------------- HTTPS


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ASEWATCH_TEST_TOKEN", "t0ken-s3cret")
    return "t0ken-s3cret"


def test_https_ships_each_file_once_verified_by_the_servers_answer(
    tmp_path: Path, store: Store, https_server: UploadServer, token: str
) -> None:
    spool = tmp_path / "spool"
    pkg = read_package(random_package(spool, "pkg", random.Random(9), dumps=2))
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    s = make_shipper(store, spool, [https_target(https_server, token_env=None, token_file=str(token_file))])
    assert s.run_once()["portal"].verified == len(pkg.files)
    for f in pkg.files:
        assert sha((https_server.root / "pkg" / f.name).read_bytes()) == f.sha256
    assert https_server.requests["PUT"] == len(pkg.files)
    # A store that lost its record (a kill after the server stored it) finds it there: no second PUT.
    store._conn.execute("DROP TRIGGER shipments_verified_is_final")  # type: ignore[union-attr]
    store._conn.execute("UPDATE shipments SET state = 'uploading'")  # type: ignore[union-attr]
    s.run_once()
    assert https_server.requests["PUT"] == len(pkg.files) and all_verified(store)


def test_https_refused_then_slow_then_fine_and_the_token_never_shows(
    tmp_path: Path, store: Store, https_server: UploadServer, token: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    spool = tmp_path / "spool"
    random_package(spool, "pkg", random.Random(10), dumps=1, dump_kib=(16, 16))
    monkeypatch.setenv("ASEWATCH_TEST_TOKEN", "wrong-token")
    with Running(make_shipper(store, spool, [https_target(https_server, timeout=1.0)])):
        wait_for(
            lambda: scrape(store).get(("asewatch_shipments_total", ("portal", "failed")), 0) >= 2, 20, "401s"
        )
        assert "HTTP 401" in ship_json(store)["targets"][0]["last_error"]
        https_server.delay = 3.0  # slower than the 1 s timeout
        monkeypatch.setenv("ASEWATCH_TEST_TOKEN", token)
        before = scrape(store)[("asewatch_shipments_total", ("portal", "failed"))]
        wait_for(
            lambda: scrape(store)[("asewatch_shipments_total", ("portal", "failed"))] >= before + 2,
            30,
            "timeouts",
        )
        doc = ship_json(store)
        assert doc["targets"][0]["up"] is False and "timed out" in doc["targets"][0]["last_error"]
        https_server.delay = 0.0
        wait_for(lambda: all_verified(store), 30, "shipping once the server is quick again")
    assert ("asewatch_vendor_target_up", ("portal",)) in scrape(store)
    assert f"Bearer {token}" in https_server.auth_headers  # it was sent ...
    dumped = "\n".join(store._conn.iterdump())  # type: ignore[union-attr]
    for text in (caplog.text, json.dumps(ship_json(store)), dumped):  # ... and never written down
        assert token not in text and "wrong-token" not in text
