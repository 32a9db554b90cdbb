"""Where packages go: the target interface and the upload procedure the file targets share.

A target gives a session (:meth:`Target.connect`); a session puts one file at a time
(:meth:`Session.place`) and can prove the target takes uploads (:meth:`Session.probe`).
Directory and SFTP targets share :func:`place_file`, written over a few file
primitives (:class:`RemoteFiles`), so both resume and verify the same way:

1. The final name exists: a run killed after the rename put it there. It is checked
   (size and SHA-256) and counts as shipped; it is never written again. A final file
   with other content is someone else's: refused, never overwritten.
2. Else the temporary name ``.<file>.asewatch-part`` is resumed from its size (the
   local bytes before it are only hashed), the rest is sent through the bandwidth cap.
3. The local bytes must hash to the package's checksum, else the package changed and
   nothing is committed.
4. The upload is verified (size and SHA-256 read back from the target) and renamed to
   its final name; the directory target renames first and verifies the final file.
"""

from __future__ import annotations

import hashlib
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from monitor.config_ship import DirectoryTargetConfig, HttpsTargetConfig, SftpTargetConfig, TargetConfig
from monitor.errors import AsewatchError
from monitor.ship_state import Job

__all__ = [
    "Outcome",
    "RemoteFiles",
    "Session",
    "ShipError",
    "Stopped",
    "Target",
    "TokenBucket",
    "Transfer",
    "make_target",
    "place_file",
    "temp_name",
]

Outcome = Literal["uploaded", "present"]
Hook = Callable[[str, Job, str], None]
CHUNK = 256 * 1024


class ShipError(AsewatchError):
    """An upload did not succeed. ``connect``: the target could not be reached or refused us
    (the whole target backs off); ``refused``: it answered but said no (login, host key,
    token), so it is not retried at once; ``retry`` False: retrying cannot help until a
    person acts (the package changed, the target holds another file under the name)."""

    def __init__(
        self, target: str, reason: str, *, connect: bool = False, refused: bool = False, retry: bool = True
    ) -> None:
        super().__init__(f"target {target}: {reason}")
        self.target = target
        self.reason = reason
        self.connect = connect or refused
        self.refused = refused
        self.retry = retry


class Stopped(Exception):  # noqa: N818 - a stop request, not an error
    """The shipper is stopping; the upload is left to be resumed."""


class TokenBucket:
    """A bandwidth cap: ``rate`` bytes/s on average, bursts up to ``burst`` bytes (default a
    quarter second's worth). ``rate`` 0 means no cap. Thread-safe."""

    def __init__(
        self, rate: int, burst: int | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst if burst is not None else rate // 4)
        self._clock = clock
        self._tokens = float(self.burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, n: int, stop: threading.Event) -> None:
        """Wait until ``n`` bytes may be sent. Raises Stopped if ``stop`` is set while waiting."""
        if self.rate <= 0:
            return
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
                self._at = now
                # A piece bigger than the burst may go once the bucket is full (it then owes).
                if self._tokens >= min(n, self.burst):
                    self._tokens -= n
                    return
                wait = (min(n, self.burst) - self._tokens) / self.rate
            if stop.wait(min(wait, 0.5)):
                raise Stopped

    def chunk(self) -> int:
        """A piece size that keeps the cap smooth: at most CHUNK, about 1/8 s of traffic."""
        return CHUNK if self.rate <= 0 else max(4096, min(CHUNK, self.rate // 8))


@dataclass(frozen=True, slots=True)
class Transfer:
    """What an upload needs besides the file: the cap, the stop request and a progress hook
    (``hook(phase, job, detail)``, for tests and logs)."""

    bucket: TokenBucket
    stop: threading.Event
    hook: Hook | None = None

    def phase(self, name: str, job: Job, detail: str = "") -> None:
        if self.hook is not None:
            self.hook(name, job, detail)


class Session(Protocol):
    """A connection to a target, used by one thread."""

    def place(self, job: Job, local: Path, tr: Transfer) -> Outcome:
        """Put ``local`` on the target as ``job`` says and verify it. Raises ShipError, Stopped."""
        ...

    def probe(self) -> None:
        """Upload a small test file, check it, delete it. Raises ShipError."""
        ...

    def close(self) -> None: ...


class Target(Protocol):
    """A configured target. ``connect`` raises ShipError (``connect=True``) when unreachable."""

    name: str
    bandwidth: int

    @property
    def config(self) -> TargetConfig: ...

    def connect(self, timeout: float) -> Session: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Make the bytes durable (or at least delivered) and release the handle."""
        ...


class RemoteFiles(Protocol):
    """The file primitives :func:`place_file` needs. Paths are '/'-separated. Each raises
    ShipError for a target-side failure."""

    target: str
    verify_before_rename: bool

    def makedirs(self, path: str) -> None: ...

    def size(self, path: str) -> int | None:
        """The size of the file at ``path``, None when there is none."""
        ...

    def open_at(self, path: str, offset: int) -> Writer:
        """A writer at byte ``offset`` of ``path`` (created, or truncated to 0 when offset is 0)."""
        ...

    def digest(self, path: str, stop: threading.Event) -> tuple[int, str]:
        """``(size, sha256)`` of the file the target holds at ``path``."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Rename, never replacing an existing ``dst``."""
        ...

    def remove(self, path: str) -> None:
        """Delete ``path``; a missing file is fine."""
        ...


def temp_name(file: str) -> str:
    """The temporary name of ``file`` (same folder, hidden, fixed so a restart finds it).

    >>> temp_name("dumps/core.zst")
    'dumps/.core.zst.asewatch-part'
    """
    head, tail = posixpath.split(file)
    return posixpath.join(head, f".{tail}.asewatch-part")


def place_file(fs: RemoteFiles, root: str, job: Job, local: Path, tr: Transfer) -> Outcome:
    """The shared upload procedure (see the module docstring). ``root`` is the target folder;
    the file goes to ``<root>/<package_id>/<file>``. Raises ShipError, Stopped."""
    final = posixpath.join(root, job.package_id, job.file)
    tmp = posixpath.join(root, job.package_id, temp_name(job.file))
    fs.makedirs(posixpath.dirname(final))
    if fs.size(final) is not None:
        size, digest = fs.digest(final, tr.stop)
        if (size, digest) != (job.size, job.sha256):
            raise ShipError(
                fs.target, f"{final} exists with other content ({size} bytes); not overwritten", retry=False
            )
        fs.remove(tmp)  # a rename via link+unlink may have left it
        tr.phase("present", job, final)
        return "present"
    offset = fs.size(tmp) or 0
    if offset > job.size:
        fs.remove(tmp)
        offset = 0
    tr.phase("resume", job, str(offset))
    _send(fs, tmp, offset, job, local, tr)
    if fs.verify_before_rename:
        _verify(fs, tmp, job, tr)
        fs.rename(tmp, final)
        tr.phase("renamed", job, final)
    else:
        fs.rename(tmp, final)
        tr.phase("renamed", job, final)
        _verify(fs, final, job, tr)
    return "uploaded"


def _send(fs: RemoteFiles, tmp: str, offset: int, job: Job, local: Path, tr: Transfer) -> None:  # noqa: PLR0917
    h = hashlib.sha256()
    chunk = tr.bucket.chunk()
    try:
        f = local.open("rb")
    except OSError as exc:
        raise ShipError(fs.target, f"cannot read {local}: {exc.strerror or exc}", retry=False) from None
    with f:
        done = 0
        while done < offset:  # the part already on the target: hash only
            piece = f.read(min(1 << 20, offset - done))
            if not piece:
                break
            h.update(piece)
            done += len(piece)
        out = fs.open_at(tmp, offset)
        try:
            while piece := f.read(chunk):
                if tr.stop.is_set():
                    raise Stopped
                tr.bucket.take(len(piece), tr.stop)
                out.write(piece)
                h.update(piece)
                done += len(piece)
        finally:
            out.close()
    if done != job.size or h.hexdigest() != job.sha256:
        fs.remove(tmp)
        raise ShipError(
            fs.target,
            f"{local} is not the file that was packaged ({done} bytes, checksum differs); package it again",
            retry=False,
        )
    tr.phase("sent", job, str(done))


def _verify(fs: RemoteFiles, path: str, job: Job, tr: Transfer) -> None:
    size, digest = fs.digest(path, tr.stop)
    if (size, digest) != (job.size, job.sha256):
        fs.remove(path)
        raise ShipError(fs.target, f"{path}: the target holds {size} bytes with another checksum; sent again")


def make_target(config: TargetConfig) -> Target:
    """The target for one ``[[ship.target]]`` table."""
    if isinstance(config, DirectoryTargetConfig):
        from monitor.ship_dir import DirectoryTarget  # noqa: PLC0415 - it imports this module

        return DirectoryTarget(config)
    if isinstance(config, SftpTargetConfig):
        from monitor.ship_sftp import SftpTarget  # noqa: PLC0415 - paramiko only when used

        return SftpTarget(config)
    if isinstance(config, HttpsTargetConfig):
        from monitor.ship_https import HttpsTarget  # noqa: PLC0415

        return HttpsTarget(config)
    raise TypeError(f"unknown target config {type(config).__name__}")


def probe_files(fs: RemoteFiles, name: str) -> None:
    """Write a small file at ``name`` on the target, read it back, delete it. Raises ShipError
    (or the target's own errors) when any step fails: the path to the vendor is not usable."""
    data = b"asewatch probe\n"
    out = fs.open_at(name, 0)
    try:
        out.write(data)
    finally:
        out.close()
    try:
        if fs.digest(name, threading.Event()) != (len(data), hashlib.sha256(data).hexdigest()):
            raise ShipError(fs.target, f"{name}: the test file read back differs")
    finally:
        fs.remove(name)
