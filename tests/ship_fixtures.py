"""Shared parts of the shipping tests: packages made like the packager makes them, a real
HTTPS upload server (self-signed certificate from openssl) and small helpers."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config_ship import ShipConfig
from monitor.metricdef import Family
from monitor.ship_metrics import METRICS_SHIP, add_ship_metrics
from monitor.store import Store


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_package(spool: Path, package_id: str, files: dict[str, tuple[bytes, str]]) -> Path:
    """A finished package ``<spool>/<package_id>/``: built in ``.<id>.partial`` and renamed,
    with manifest.json (files, and dumps[].original_sha256) and SHA256SUMS (every file and
    the manifest), as monitor/package.py writes them."""
    spool.mkdir(parents=True, exist_ok=True)
    partial = spool / f".{package_id}.partial"
    partial.mkdir()
    entries = []
    for name, (data, kind) in files.items():
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        (partial / name).write_bytes(data)
        entries.append({"name": name, "size": len(data), "sha256": sha(data), "kind": kind})
    manifest = {
        "schema": 1,
        "package_id": package_id,
        "files": entries,
        "dumps": [
            {"name": e["name"], "original_sha256": sha(e["name"].encode())}
            for e in entries
            if e["kind"] == "dump"
        ],
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
    sums = {e["name"]: e["sha256"] for e in entries}
    sums["manifest.json"] = sha((partial / "manifest.json").read_bytes())
    (partial / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    final = spool / package_id
    os.rename(partial, final)
    return final


def random_package(
    spool: Path, package_id: str, rng: random.Random, dumps: int = 2, dump_kib: tuple[int, int] = (64, 256)
) -> Path:
    """A package with two small metadata files and ``dumps`` dumps of random bytes."""
    files: dict[str, tuple[bytes, str]] = {
        "crash.json": (json.dumps({"id": package_id}).encode(), "metadata"),
        "errorlog_excerpt.txt": (rng.randbytes(rng.randint(200, 3000)), "metadata"),
    }
    for i in range(dumps):
        files[f"dumps/shm{i}.dmp.zst"] = (rng.randbytes(rng.randint(*dump_kib) * 1024), "dump")
    return make_package(spool, package_id, files)


def ship_config(**kw: Any) -> ShipConfig:
    """A validated [ship] section (``target`` as a list of tables), quick retries by default."""
    doc: dict[str, Any] = {"retry_initial": 0.2, "retry_max": 1.0, "retry_jitter": 0.1, "scan_interval": 0.2}
    doc.update(kw)
    return ShipConfig.model_validate(doc)


def scrape(store: Store, now: float | None = None) -> dict[tuple[str, tuple[str, ...]], float]:
    """The ship metrics as ``{(sample name, label values): value}``."""
    fams: dict[str, Family] = {m.name: m.family() for m in METRICS_SHIP}
    with store.reader() as r:
        add_ship_metrics(r, fams, now=now)
    out = {}
    for fam in fams.values():
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(s.labels.values()))] = s.value
    return out


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --------------------------------------------------------------------------- HTTPS server


def self_signed(folder: Path) -> tuple[Path, Path]:
    """``(cert, key)`` for 127.0.0.1, made by openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class UploadServer(http.server.ThreadingHTTPServer):
    """Stores PUT bodies under ``root`` (HEAD, PUT, DELETE), checks the bearer token and the
    checksum header, answers with the SHA-256 it computed. ``delay``: seconds to wait
    before reading a PUT (a throttled server); ``requests`` counts methods."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, root: Path, token: str, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.token = token
        self.delay = 0.0
        self.stopping = threading.Event()
        self.requests: dict[str, int] = {}
        self.auth_headers: list[str] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="https-upload"
        )

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/upload"

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: UploadServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _path(self) -> Path | None:
        rel = self.path.removeprefix("/upload/")
        if rel == self.path or ".." in rel.split("/"):
            return None
        return self.server.root / rel

    def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorised(self) -> bool:
        self.server.requests[self.command] = self.server.requests.get(self.command, 0) + 1
        got = self.headers.get("Authorization", "")
        self.server.auth_headers.append(got)
        if got != f"Bearer {self.server.token}":
            self._answer(401, body=b"bad token")
            return False
        return True

    def do_HEAD(self) -> None:
        if not self._authorised():
            return
        p = self._path()
        if p is None or not p.is_file():
            self._answer(404)
            return
        data = p.read_bytes()
        self._answer(200, {"X-Checksum-SHA256": sha(data), "X-Size": str(len(data))})

    def do_PUT(self) -> None:
        if not self._authorised():
            return
        if self.server.delay and self.server.stopping.wait(self.server.delay):
            return
        p = self._path()
        length = int(self.headers.get("Content-Length", "0"))
        data = b""
        while len(data) < length:
            piece = self.rfile.read(min(65536, length - len(data)))
            if not piece:
                return
            data += piece
        if p is None:
            self._answer(400, body=b"bad path")
            return
        if self.headers.get("X-Checksum-SHA256") != sha(data):
            self._answer(400, body=b"checksum mismatch")
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".srvtmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        self._answer(201, {"X-Checksum-SHA256": sha(data), "Content-Type": "application/json"},
                     json.dumps({"sha256": sha(data), "size": len(data)}).encode())  # fmt: skip

    def do_DELETE(self) -> None:
        if not self._authorised():
            return
        p = self._path()
        if p is not None and p.is_file():
            p.unlink()
            self._answer(204)
        else:
            self._answer(404)


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[UploadServer]:
    """A running HTTPS upload server on 127.0.0.1 with token ``t0ken-s3cret``; stopped in teardown."""
    folder = tmp_path / "https"
    folder.mkdir()
    cert, key = self_signed(folder)
    (folder / "root").mkdir()
    server = UploadServer(folder / "root", "t0ken-s3cret", cert, key)
    server.cert = cert  # type: ignore[attr-defined]
    server.thread.start()
    try:
        yield server
    finally:
        server.stop()
