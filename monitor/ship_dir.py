"""The directory target: a local folder or a network mount, every change fsynced.

Uploads follow :func:`monitor.ship_targets.place_file`: a temporary name in the target
folder (resumed from its size), fsync of the file and of the folder, rename (never over
an existing file), then the final file read back and checked (size and SHA-256).
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from pathlib import Path

from monitor.config_ship import DirectoryTargetConfig
from monitor.ship_package import file_sha256
from monitor.ship_state import Job
from monitor.ship_targets import Outcome, Session, ShipError, Transfer, Writer, place_file, probe_files

__all__ = ["DirectoryTarget"]


class _FileWriter:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


class _DirFiles:
    """:class:`RemoteFiles` on a local folder or mount; every change is fsynced (file and folder)."""

    verify_before_rename = False

    def __init__(self, target: str) -> None:
        self.target = target

    def _fail(self, what: str, exc: OSError) -> ShipError:
        return ShipError(self.target, f"{what}: {exc.strerror or exc}")

    def makedirs(self, path: str) -> None:
        missing = []
        p = Path(path)
        while not p.is_dir():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o750, exist_ok=True)
                _fsync_dir(d.parent)
            except OSError as exc:
                raise self._fail(f"cannot create {d}", exc) from None

    def size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"cannot stat {path}", exc) from None

    def open_at(self, path: str, offset: int) -> Writer:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            raise self._fail(f"cannot write {path}", exc) from None
        return _GuardedWriter(_FileWriter(fd), self, path)

    def digest(self, path: str, stop: threading.Event) -> tuple[int, str]:
        try:
            return file_sha256(Path(path))
        except OSError as exc:
            raise self._fail(f"cannot read back {path}", exc) from None

    def rename(self, src: str, dst: str) -> None:
        if os.path.lexists(dst):
            raise ShipError(self.target, f"{dst} appeared meanwhile; not overwritten", retry=False)
        try:
            os.rename(src, dst)
            _fsync_dir(Path(dst).parent)
        except OSError as exc:
            raise self._fail(f"cannot rename {src}", exc) from None

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
            _fsync_dir(Path(path).parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail(f"cannot remove {path}", exc) from None


class _GuardedWriter:
    """Turns OSError from a writer into ShipError naming the target and file."""

    def __init__(self, inner: Writer, fs: _DirFiles, path: str) -> None:
        self._inner, self._fs, self._path = inner, fs, path

    def write(self, data: bytes) -> None:
        try:
            self._inner.write(data)
        except OSError as exc:
            raise self._fs._fail(f"cannot write {self._path}", exc) from None

    def close(self) -> None:
        try:
            self._inner.close()
        except OSError as exc:
            raise self._fs._fail(f"cannot flush {self._path}", exc) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # some network file systems cannot
            raise
    finally:
        os.close(fd)


class _DirSession:
    def __init__(self, target: str, root: Path) -> None:
        self._fs = _DirFiles(target)
        self._root = root

    def place(self, job: Job, local: Path, tr: Transfer) -> Outcome:
        return place_file(self._fs, str(self._root), job, local, tr)

    def probe(self) -> None:
        probe_files(self._fs, str(self._root / f".asewatch-probe-{secrets.token_hex(6)}"))

    def close(self) -> None:
        pass


class DirectoryTarget:
    """A folder (local disk or network mount). The folder itself must exist: an unmounted
    mount point must not fill the local disk."""

    def __init__(self, config: DirectoryTargetConfig) -> None:
        self.name = config.name
        self.bandwidth = config.bandwidth
        self.config = config
        self.root = config.path

    def connect(self, timeout: float) -> Session:
        """A session; raises ShipError(connect=True) if the folder is missing or not writable."""
        if not self.root.is_dir():
            raise ShipError(self.name, f"{self.root} is not a folder (not mounted?)", connect=True)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ShipError(self.name, f"{self.root} is not writable by uid {os.geteuid()}", refused=True)
        return _DirSession(self.name, self.root)
