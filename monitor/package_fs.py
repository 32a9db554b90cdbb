"""Files of a package on disk: private, complete or absent, and a clear error when the disk is full.

A package is built in ``<out_dir>/.<package_id>.partial/`` (hidden: the shipper and a
DBA's ``ls`` pass it by) and renamed to ``<out_dir>/<package_id>/`` when every file is
written and fsynced, so a folder with a plain name is always whole. The builder holds an
``flock`` on ``.lock`` inside the partial folder; a folder whose lock nobody holds is left
over from a builder that died (``kill -9``, power loss) and is removed by the next build.
Files are 0600 and folders 0700 whatever the umask.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

from monitor.errors import AsewatchError

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".lock"
SUMS = "SHA256SUMS"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_STALE_UNLOCKED_S = 60.0


class PackageError(AsewatchError):
    """A package could not be built: names the crash or folder and the reason."""


class NoSpaceError(PackageError):
    """Not enough free space in ``folder``: ``needed`` bytes, ``free`` bytes available."""

    def __init__(self, folder: Path, needed: int, free: int, *, during: str | None = None) -> None:
        when = f" while writing {during}" if during else ""
        super().__init__(
            f"not enough free space in {folder}{when}: the package needs about {_size(needed)} "
            f"({needed} bytes), {_size(free)} ({free} bytes) free",
            hint="free some space or set [package] out_dir to a larger file system, then run it again; "
            "the partial package was removed and the dumps are untouched",
        )
        self.folder = folder
        self.needed = needed
        self.free = free


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def _size(n: int) -> str:
    """Bytes for humans.

    >>> _size(1536), _size(3 * 1024**3)
    ('1.5 KiB', '3.0 GiB')
    """
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "bytes" else f"{n} bytes"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use in ``folder``'s file system."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 folders; an existing one is left as it is."""
    if not path.is_dir():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def write_private(path: Path, data: bytes) -> str:
    """Write ``data`` to the new file ``path`` (0600, fsynced); returns its SHA-256. Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        os.close(fd)
    return hashlib.sha256(data).hexdigest()


def write_private_stream(path: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write ``chunks`` to the new file ``path`` (0600, fsynced) as they come; returns (size,
    SHA-256). Raises OSError naming ``path``."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        os.close(fd)
    return size, digest.hexdigest()


def sums_text(entries: Iterable[tuple[str, str]]) -> bytes:
    """``sha256sum`` output (text mode, two spaces) for ``(name, sha256)`` pairs, sorted by name.

    >>> sums_text([("b.txt", "0" * 64), ("a/x.zst", "f" * 64)]).decode().splitlines()[0][-9:]
    '  a/x.zst'
    """
    lines = []
    for name, digest in sorted(entries):
        if "\n" in name or "\\" in name:
            raise ValueError(f"{name!r}: not a name sha256sum -c can read")
        lines.append(f"{digest}  {name}\n")
    return "".join(lines).encode("utf-8")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartialDir:
    """``<out_dir>/.<package_id>.partial/`` with its lock held; ``finish()`` renames it into place,
    ``discard()`` removes it. Raises OSError when the folder cannot be created."""

    def __init__(self, out_dir: Path, package_id: str) -> None:
        self.out_dir = out_dir
        self.final = out_dir / package_id
        self.path = out_dir / f".{package_id}{PARTIAL_SUFFIX}"
        self.path.mkdir(mode=0o700)
        self.path.chmod(0o700)
        self._lock_fd: int | None = os.open(
            self.path / LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._lock_fd, f"{os.getpid()}\n".encode("ascii"))

    def finish(self) -> Path:
        """Drop the lock file, fsync, and rename the folder to its final name (atomic)."""
        (self.path / LOCK_NAME).unlink()
        fsync_dir(self.path)
        os.rename(self.path, self.final)
        fsync_dir(self.out_dir)
        self._unlock()
        return self.final

    def discard(self) -> None:
        """Remove the partial folder and everything in it (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def clean_stale(out_dir: Path, *, now: float | None = None) -> list[Path]:
    """Remove partial packages and archives nobody is writing (left by a killed builder);
    returns what was removed. A partial folder whose lock another process holds is kept."""
    removed: list[Path] = []
    try:
        entries = list(out_dir.iterdir())
    except FileNotFoundError:
        return removed
    now = time.time() if now is None else now
    for entry in entries:
        if not entry.name.endswith(PARTIAL_SUFFIX):
            continue
        if entry.is_dir() and entry.name.startswith(".") and _abandoned(entry, now):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.is_file() and _older(entry, now):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _abandoned(folder: Path, now: float) -> bool:
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return _older(folder, now)  # died between mkdir and the lock: give a live builder a minute
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _older(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > _STALE_UNLOCKED_S
    except OSError:
        return False


def add_tree(tar: tarfile.TarFile, folder: Path, arcroot: str) -> None:
    """Add every file under ``folder`` to ``tar`` as ``arcroot/...`` (sorted, owner 0, mode 0600)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME):
        info = tar.gettarinfo(str(path), f"{arcroot}/{path.relative_to(folder).as_posix()}")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o600
        with path.open("rb") as f:
            tar.addfile(info, f)
