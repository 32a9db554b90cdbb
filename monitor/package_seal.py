"""A package sealed whole: the plain package streamed as a tar through age into ``package.tar.age``.

The tar is written by one named thread into a pipe and encrypted from the other end on
the caller's thread, so neither a plain tar nor a second copy of the dumps is written.
If encryption fails (a full disk), the read end is closed, the tar thread's next write
fails and it ends; it is joined (bounded) before the error goes up. The plain folder is
removed once the archive is complete; the outer manifest names only what a shipper and
a vendor need before opening it (schema in :mod:`monitor.package_manifest`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.package_content import FileEntry
from monitor.package_fs import SUMS, add_tree, sums_text
from monitor.package_stream import encrypt_stream

log = logging.getLogger(__name__)

SEALED_NAME = "package.tar.age"
_JOIN_S = 30.0


@dataclass(frozen=True, slots=True)
class Writers:
    """How the caller writes a file into a folder (``put``) and a JSON document (``to_json``)."""

    put: Callable[[Path, str, bytes], FileEntry]
    to_json: Callable[[Any], bytes]


def seal_folder(
    folder: Path, content: Path, inner: dict[str, Any], recipients: list[Any], *, writer: Writers
) -> tuple[dict[str, Any], list[FileEntry]]:
    """Encrypt ``content`` (a finished plain package) into ``folder/package.tar.age``, remove it,
    and write the outer manifest and SHA256SUMS. Returns (outer manifest, files). Raises
    OSError (the full disk among them) after stopping the tar thread."""
    errors: list[Exception] = []
    fd = os.open(folder / SEALED_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        read_fd, write_fd = os.pipe()
        reader = os.fdopen(read_fd, "rb", buffering=0)
        pipe = os.fdopen(write_fd, "wb")

        def write_tar() -> None:
            try:
                with pipe, tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    add_tree(tar, content, inner["package_id"])
            except BrokenPipeError:
                pass  # the reader stopped; its error is the one that matters
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
                errors.append(exc)

        thread = threading.Thread(target=write_tar, name="package-tar")
        thread.start()
        try:
            with reader:
                size, digest = encrypt_stream(reader, fd, recipients, str(folder / SEALED_NAME))
        finally:
            reader.close()  # a failed encryption must stop the tar thread's writes
            thread.join(_JOIN_S)
            if thread.is_alive():  # pragma: no cover - local reads cannot block once the pipe is closed
                log.error("the package-tar thread did not stop within %.0f s", _JOIN_S)
        os.fsync(fd)
    finally:
        os.close(fd)
    if errors:
        raise errors[0]
    shutil.rmtree(content)
    entry = FileEntry(SEALED_NAME, size, digest, "dump")
    outer = {
        "schema": inner["schema"],
        "package_id": inner["package_id"],
        "created": inner["created"],
        "asewatch_version": inner["asewatch_version"],
        "sealed": SEALED_NAME,
        "server": inner["server"],
        "encryption": {
            "scope": "package",
            "recipients": inner["encryption"]["recipients"],
            "files": [SEALED_NAME],
        },
        "files": [entry.to_json()],
        "dumps": [
            {k: d[k] for k in ("original_bytes", "original_sha256", "recorded_sha256")}
            for d in inner["dumps"]
        ],
    }
    manifest = writer.put(folder, "manifest.json", writer.to_json(outer))
    sums = writer.put(folder, SUMS, sums_text([(entry.name, entry.sha256), (manifest.name, manifest.sha256)]))
    return outer, [entry, manifest, sums]
