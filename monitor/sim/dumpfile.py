"""The shared-memory dump file a crashing server writes (a CSMD stand-in).

Real configurable shared memory dumps are mostly zero pages with server structures,
cached data pages and procedure-cache text in between; that includes SQL text with
personal data, which is why the vendor package must treat a dump as sensitive. The
file is written in pieces over ``seconds`` (a watcher sees it grow), fsynced at the
end, and can be cut short to leave a truncated dump behind.
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

CHUNK = 64 * 1024
PIECES = 16


@dataclass(frozen=True, slots=True)
class DumpResult:
    """A written dump: where, how many bytes, and whether it reached its planned size."""

    path: Path
    size: int
    complete: bool


def dump_path(directory: Path, server: str, when: datetime) -> Path:
    """``<dir>/<SERVER>_<YYYYMMDD>_<HHMMSS>.dmp``, with ``_N`` added if that name is taken."""
    base = f"{server}_{when:%Y%m%d_%H%M%S}"
    path = directory / f"{base}.dmp"
    n = 1
    while path.exists():
        path = directory / f"{base}_{n}.dmp"
        n += 1
    return path


def _header(server: str, version: str, size: int, when: datetime) -> bytes:
    text = f"server={server}\nversion={version}\ntime={when.isoformat()}\nsize={size}\npagesize=4096\n"
    head = b"\x7fCSMD" + struct.pack("<HHQ", 1, 4096, size) + text.encode("ascii", "replace")
    return head.ljust(4096, b"\0")


def _chunk(rng: random.Random, texts: Sequence[str]) -> bytes:
    roll = rng.random()
    if roll < 0.65:
        return bytes(CHUNK)
    if roll < 0.80:
        return rng.randbytes(CHUNK)
    if roll < 0.90:
        # A pointer table: heap addresses, little-endian, as kernel structures hold.
        return b"".join(
            struct.pack("<Q", 0x00002AAA00000000 + rng.randrange(0, 1 << 32, 8)) for _ in range(CHUNK // 8)
        )
    # A data / procedure-cache page run with row text in it.
    page = bytearray(CHUNK)
    pos = 96
    while texts and pos < CHUNK - 512:
        row = rng.choice(texts).encode("ascii", "replace")[:400]
        page[pos : pos + len(row)] = row
        pos += len(row) + rng.randrange(16, 256)
    return bytes(page)


def write_dump(
    path: Path,
    *,
    server: str,
    version: str,
    size: int,
    texts: Sequence[str],
    rng: random.Random,
    seconds: float = 0.2,
    stop_at: int | None = None,
) -> DumpResult:
    """Write a dump of ``size`` bytes to ``path`` (created exclusively), fsynced.

    ``texts`` are strings that show up inside cache pages. The write is spread over
    ``seconds`` in about 16 pieces. With ``stop_at`` the file ends after that many bytes
    (a server that died mid-dump). Raises ``OSError`` if the file cannot be written.
    """
    limit = size if stop_at is None else max(0, min(size, stop_at))
    piece = max(CHUNK, -(-size // PIECES))
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        buf = bytearray(_header(server, version, size, datetime.now()))
        while written < limit:
            while len(buf) < piece:
                buf += _chunk(rng, texts)
            data = bytes(buf[: min(piece, limit - written)])
            del buf[: len(data)]
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            written += len(data)
            if seconds > 0 and written < limit:
                time.sleep(seconds / PIECES)
        os.fsync(fd)
    finally:
        os.close(fd)
    return DumpResult(path, written, written == size)
