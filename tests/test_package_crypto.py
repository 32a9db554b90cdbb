"""Sealed packages: dumps (or the whole package) encrypted to the vendor's age key before they leave.

Decryption with the matching identity restores each dump byte for byte, with pyrage and
with the ``age`` command-line tool a vendor would use; another identity cannot open it;
only public keys are ever written.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyrage
import pytest
import zstandard

from monitor.config import ServerConfig
from monitor.config_package import EncryptionConfig, PackageConfig
from monitor.package import build_package
from monitor.package_manifest import validate_manifest
from tests.test_package_helpers import (
    Recorded,
    manifest_of,
    personal_numbers_in,
    record_crash,
    sha256sum_check,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_crash(tmp_path_factory.mktemp("crypto"), f"PC{os.getpid()}", dump_size=3 << 20)


@pytest.fixture(scope="module")
def identity() -> Any:
    return pyrage.x25519.Identity.generate()


def sealed_config(rec: Recorded, identity: Any, scope: str) -> SimpleNamespace:
    enc = EncryptionConfig.model_validate(
        {"recipients": [str(identity.to_public())], "scope": scope, "required": True}
    )
    server = ServerConfig(name=rec.server, errorlog=rec.errorlog, dump_dirs=(rec.dump_dir,))
    return SimpleNamespace(servers=(server,), package=PackageConfig(encryption=enc))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_encrypted_dumps_open_with_the_matching_identity_only(
    rec: Recorded, identity: Any, tmp_path: Path
) -> None:
    with rec.store() as store:
        result = build_package(store, rec.crash_id, tmp_path / "out", sealed_config(rec, identity, "dumps"))
    m = manifest_of(result.path)
    assert validate_manifest(m) == []
    (d,) = m["dumps"]
    assert d["encrypted"] and d["name"].endswith(".zst.age")
    assert m["encryption"] == {
        "scope": "dumps",
        "recipients": [str(identity.to_public())],
        "files": [d["name"]],
    }
    assert [p.name for p in (result.path / "dumps").iterdir()] == [
        Path(d["name"]).name
    ]  # no plain .zst, ever
    sealed = (result.path / d["name"]).read_bytes()
    assert sha256(sealed) == d["stored_sha256"] and sealed.startswith(b"age-encryption.org/v1\n")
    out = io.BytesIO()
    pyrage.decrypt_io(io.BytesIO(sealed), out, [identity])
    assert sha256(out.getvalue()) == d["compressed_sha256"]
    original = zstandard.ZstdDecompressor().decompressobj().decompress(out.getvalue())
    assert original == rec.dump.read_bytes() and sha256(original) == d["original_sha256"]
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [pyrage.x25519.Identity.generate()])
    # The metadata stays readable for triage (it is redacted), and no private key is anywhere.
    assert "infected with signal 11" in (result.path / "errorlog" / "excerpt.log").read_text()
    for path in result.path.rglob("*"):
        if path.is_file():
            assert b"AGE-SECRET-KEY" not in path.read_bytes(), path
    assert sha256sum_check(result.path).returncode == 0


def test_the_age_command_line_tool_opens_a_dump(rec: Recorded, identity: Any, tmp_path: Path) -> None:
    with rec.store() as store:
        result = build_package(store, rec.crash_id, tmp_path / "out", sealed_config(rec, identity, "dumps"))
    (d,) = manifest_of(result.path)["dumps"]
    key = tmp_path / "vendor.key"
    key.write_text(str(identity) + "\n", encoding="ascii")
    key.chmod(0o600)
    age = subprocess.run(["age", "-d", "-i", str(key), str(result.path / d["name"])],
                         capture_output=True, timeout=60, check=True)  # fmt: skip
    unz = subprocess.run(["zstd", "-d", "-c"], input=age.stdout, capture_output=True, timeout=60, check=True)
    assert sha256(unz.stdout) == d["original_sha256"] == sha256(rec.dump.read_bytes())


def test_a_package_sealed_whole_holds_one_archive_and_opens_into_the_full_package(
    rec: Recorded, identity: Any, tmp_path: Path
) -> None:
    with rec.store() as store:
        result = build_package(store, rec.crash_id, tmp_path / "out", sealed_config(rec, identity, "package"))
    outer = manifest_of(result.path)
    assert sorted(p.name for p in result.path.iterdir()) == ["SHA256SUMS", "manifest.json", "package.tar.age"]
    assert validate_manifest(outer) == [] and outer["sealed"] == "package.tar.age"
    assert outer["files"] == [{"name": "package.tar.age", "size": (result.path / "package.tar.age").stat().st_size,
                               "sha256": outer["files"][0]["sha256"], "kind": "dump"}]  # fmt: skip
    assert "crash" not in outer and "host" not in outer  # nothing readable before it is opened
    assert sha256sum_check(result.path).returncode == 0
    key = tmp_path / "vendor.key"
    key.write_text(str(identity) + "\n", encoding="ascii")
    plain = subprocess.run(["age", "-d", "-i", str(key), str(result.path / "package.tar.age")],
                           capture_output=True, timeout=60, check=True).stdout  # fmt: skip
    opened = tmp_path / "opened"
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        tar.extractall(opened, filter="data")
    inner = opened / result.package_id
    m = manifest_of(inner)
    assert validate_manifest(m) == [] and m["encryption"]["scope"] == "package"
    assert sha256sum_check(inner).returncode == 0
    (d,) = m["dumps"]
    assert not d["encrypted"] and d["name"].endswith(".zst")
    unz = subprocess.run(
        ["zstd", "-d", "-c", str(inner / d["name"])], capture_output=True, timeout=60, check=True
    )
    assert sha256(unz.stdout) == sha256(rec.dump.read_bytes())
    assert (
        personal_numbers_in(inner, rec.patients) == []
        and personal_numbers_in(result.path, rec.patients) == []
    )
