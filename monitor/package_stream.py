"""Dumps into a package: read once, hash, compress (zstd, multi-threaded), optionally seal with age.

A multi-GB dump goes through in constant memory: it is read in ``block_bytes`` blocks
into one reused buffer; each block is hashed (SHA-256 of the original) and fed to a
streaming zstd compressor whose output is hashed again (SHA-256 of the ``.zst``) and
written, or, with recipients, streamed through age (pyrage) before it touches the disk,
so no unencrypted copy of the compressed dump is ever written. zstd works in its own
threads (``threads=-1``: one per CPU) on jobs of :data:`JOB_BYTES`, which bounds its memory.
Hashing stays on the caller's thread: zstd's workers already use every CPU, and a hash
thread beside them measured slower (more CPU for the same work) on a 2-CPU host.

The vendor checks a file with ``sha256sum`` (the stored file), ``age -d | sha256sum``
(the compressed stream) and ``age -d | zstd -d | sha256sum`` (the original dump).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

JOB_BYTES = 4 * 1024 * 1024
_SAMPLES = 64
_SAMPLE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class PackedFile:
    """One dump as packaged. Sizes are bytes; hashes SHA-256 hex.

    ``compressed_*`` describe the zstd stream; ``stored_*`` the file in the package
    (the same as the compressed stream unless ``encrypted``).
    """

    source: str
    name: str
    original_bytes: int
    original_sha256: str
    compressed_bytes: int
    compressed_sha256: str
    stored_bytes: int
    stored_sha256: str
    encrypted: bool
    seconds: float


class _Writer(io.RawIOBase):
    """A write-only file over ``fd`` that hashes and counts what passes; keeps the first OSError
    (pyrage turns a Python exception in its writer into its own error type)."""

    def __init__(self, fd: int, path: str | None = None, *, hashing: bool = True) -> None:
        super().__init__()
        self.fd = fd
        self.path = path
        self.hashing = hashing
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.hashing:
            self.sha.update(view)
        total = len(view)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            named = OSError(exc.errno, exc.strerror, self.path) if self.path and not exc.filename else exc
            self.error = self.error or named
            raise named from exc
        self.bytes += total
        return total


class _Reader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (what pyrage's ``encrypt_io`` pulls from);
    keeps the first exception the iterator raised."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buf = memoryview(b"")
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except BaseException as exc:
                self.error = self.error or exc
                raise
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def compressor(level: int = 3, threads: int = -1) -> zstandard.ZstdCompressor:
    """The zstd compressor packages use (content checksum on, jobs of :data:`JOB_BYTES`)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=JOB_BYTES if threads else 0, write_checksum=1
    )
    return zstandard.ZstdCompressor(compression_params=params)


def pack_file(
    src: Path,
    dest: Path,
    *,
    level: int = 3,
    threads: int = -1,
    block_bytes: int = 4 * 1024 * 1024,
    recipients: Sequence[Any] = (),
    progress: Callable[[int], None] | None = None,
) -> PackedFile:
    """Compress ``src`` into ``dest`` (created, mode 0600; must not exist), sealed to
    ``recipients`` (pyrage recipient objects) when any, and hash both sides.

    Memory stays at about ``block_bytes`` plus zstd's jobs, whatever the file's size.
    ``progress`` is called with the bytes of each block read. Raises OSError (ENOSPC and
    friends, with ``dest`` left for the caller to remove) and pyrage errors; never
    changes ``src``.
    """
    t0 = time.monotonic()
    cctx = compressor(level, threads)
    original = hashlib.sha256()
    zsha = hashlib.sha256()
    counted = [0]
    zbytes = [0]

    def compressed() -> Iterator[bytes]:
        buf = bytearray(block_bytes)
        view = memoryview(buf)
        with open(src, "rb", buffering=0) as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            cobj = cctx.compressobj(size=os.fstat(f.fileno()).st_size)
            while n := f.readinto(buf):
                block = view[:n]
                original.update(block)
                counted[0] += n
                out = cobj.compress(block)
                if progress is not None:
                    progress(n)
                if out:
                    zsha.update(out)
                    zbytes[0] += len(out)
                    yield out
            tail = cobj.flush()
            zsha.update(tail)
            zbytes[0] += len(tail)
            yield tail

    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        # Plain: the stored file is the compressed stream, already hashed once above.
        out = _Writer(fd, str(dest), hashing=bool(recipients))
        if recipients:
            _encrypt(compressed(), out, recipients)
        else:
            for chunk in compressed():
                out.write(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return PackedFile(
        source=str(src),
        name=dest.name,
        original_bytes=counted[0],
        original_sha256=original.hexdigest(),
        compressed_bytes=zbytes[0],
        compressed_sha256=zsha.hexdigest(),
        stored_bytes=out.bytes,
        stored_sha256=out.sha.hexdigest() if recipients else zsha.hexdigest(),
        encrypted=bool(recipients),
        seconds=time.monotonic() - t0,
    )


def _encrypt(chunks: Iterator[bytes], out: _Writer, recipients: Sequence[Any]) -> None:
    """Stream ``chunks`` through age into ``out``; re-raise our own errors, not pyrage's wrappers."""
    import pyrage  # noqa: PLC0415 - only sealed packages need it

    reader = _Reader(chunks)
    try:
        pyrage.encrypt_io(reader, out, list(recipients))
    except Exception:
        if out.error is not None:
            raise out.error from None
        if reader.error is not None:
            raise reader.error from None
        raise


def encrypt_stream(
    reader: io.RawIOBase, fd: int, recipients: Sequence[Any], path: str | None = None
) -> tuple[int, str]:
    """Seal everything ``reader`` yields to ``recipients`` into the open file ``fd`` (named ``path``
    in errors); returns (bytes written, their SHA-256). Raises OSError from the write side."""
    import pyrage  # noqa: PLC0415

    out = _Writer(fd, path)
    try:
        pyrage.encrypt_io(reader, out, list(recipients))
    except Exception:
        if out.error is not None:
            raise out.error from None
        raise
    return out.bytes, out.sha.hexdigest()


def estimate_ratio(path: Path, level: int = 3) -> float:
    """A pessimistic compressed/original size ratio of ``path``, from 64 samples of 256 KiB
    spread over the file: their mean plus three standard errors, at most 1.01.

    Reads about 16 MiB. Raises OSError if the file cannot be read.
    """
    size = path.stat().st_size
    if size == 0:
        return 0.0
    cctx = zstandard.ZstdCompressor(level=level)
    n = min(_SAMPLES, max(1, size // _SAMPLE_BYTES))
    step = max(0, size - _SAMPLE_BYTES) / max(1, n - 1)
    ratios: list[float] = []
    with open(path, "rb", buffering=0) as f:
        for i in range(n):
            f.seek(int(i * step))
            data = f.read(_SAMPLE_BYTES)
            if data:
                ratios.append(len(cctx.compress(data)) / len(data))
    if not ratios:
        return 1.01
    mean = sum(ratios) / len(ratios)
    var = sum((r - mean) ** 2 for r in ratios) / max(1, len(ratios) - 1)
    return min(1.01, mean + 3 * math.sqrt(var / len(ratios)) + 0.001)
