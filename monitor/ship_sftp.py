"""The SFTP target (paramiko): key-based login, host key checked against a known_hosts file.

An unknown or changed host key is refused (``RejectPolicy``); asewatch never learns a
host key on the fly, because a dump holds patient data and must only go to the
vendor's real server. The private key must be mode 0600 (like ssh insists).
Uploads go to a temporary name, are resumed from its size after an interruption,
verified (read back and hashed, or ``sha256sum`` over an exec channel) and renamed;
see :func:`monitor.ship_targets.place_file`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import secrets
import shlex
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import paramiko

from monitor.config_ship import SftpTargetConfig
from monitor.ship_state import Job
from monitor.ship_targets import Outcome, ShipError, Stopped, Transfer, Writer, place_file, probe_files

__all__ = ["SftpTarget", "check_key_file"]

T = TypeVar("T")
_READ = 256 * 1024
# Everything paramiko and the socket layer raise for a failed remote operation.
_REMOTE_ERRORS = (OSError, EOFError, paramiko.SSHException, socket.timeout)


def check_key_file(path: Path) -> str | None:
    """Why the private key ``path`` must not be used, or None when it is fine: it must be a
    regular file, owned by this user, with no group or other permission bits."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot read the key file {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"the key file {path} is not a regular file"
    if st.st_uid != os.geteuid():
        return f"the key file {path} is owned by uid {st.st_uid}, not by this user ({os.geteuid()})"
    if st.st_mode & 0o077:
        return f"the key file {path} is mode {stat.S_IMODE(st.st_mode):04o}; run chmod 600 {path}"
    return None


class SftpTarget:
    """``[[ship.target]] kind = "sftp"``."""

    def __init__(self, config: SftpTargetConfig) -> None:
        self.name = config.name
        self.bandwidth = config.bandwidth
        self.config = config

    def connect(self, timeout: float) -> _SftpSession:
        """Log in and open SFTP. Raises ShipError(connect=True) naming what to fix."""
        c = self.config
        problem = check_key_file(c.key_file)
        if problem is not None:
            raise ShipError(self.name, problem, refused=True)
        client = paramiko.SSHClient()
        try:
            client.get_host_keys().load(str(c.known_hosts))
        except OSError as exc:
            raise ShipError(
                self.name, f"cannot read known_hosts {c.known_hosts}: {exc.strerror or exc}", refused=True
            ) from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        where = f"{c.user}@{c.host}:{c.port}"
        try:
            client.connect(
                c.host, c.port, username=c.user, key_filename=str(c.key_file), timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                allow_agent=False, look_for_keys=False,
            )  # fmt: skip
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(timeout)
            root = sftp.normalize(c.remote_dir)
        except paramiko.BadHostKeyException:
            client.close()
            changed = f"the host key of {c.host} changed (not the key in {c.known_hosts}); refusing to send"
            raise ShipError(self.name, changed, refused=True) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise ShipError(
                self.name, f"{where}: login refused ({exc}); check key_file and user", refused=True
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            unknown = "known_hosts" in text
            if unknown:
                text = f"the host key of {c.host} is not in {c.known_hosts} (add the vendor's published key)"
            raise ShipError(self.name, f"{where}: {text}", connect=True, refused=unknown) from None
        except (OSError, EOFError) as exc:
            client.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ShipError(self.name, f"{where}: cannot connect: {reason}", connect=True) from None
        return _SftpSession(self.name, client, sftp, root, c.verify)


class _SftpWriter:
    def __init__(self, f: paramiko.SFTPFile) -> None:
        self._f = f

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def close(self) -> None:
        self._f.close()  # waits for the pipelined writes' answers: errors surface here


class _SftpFiles:
    """:class:`monitor.ship_targets.RemoteFiles` over one SFTP session."""

    verify_before_rename = True

    def __init__(
        self, target: str, client: paramiko.SSHClient, sftp: paramiko.SFTPClient, verify: str
    ) -> None:
        self.target = target
        self._client = client
        self._sftp = sftp
        self._verify = verify

    def _do(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except _REMOTE_ERRORS as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ShipError(self.target, f"{what}: {reason}") from None

    def makedirs(self, path: str) -> None:
        missing: list[str] = []
        p = path
        while p not in ("", "/") and self.size_or_dir(p) is None:
            missing.append(p)
            p = posixpath.dirname(p)
        for d in reversed(missing):
            try:
                self._sftp.mkdir(d, 0o750)
            except _REMOTE_ERRORS as exc:
                if self.size_or_dir(d) is None:  # not made meanwhile by someone else: a real failure
                    raise ShipError(self.target, f"cannot create {d}: {exc}") from None

    def size_or_dir(self, path: str) -> int | None:
        try:
            st = self._sftp.stat(path)
        except FileNotFoundError:
            return None
        except _REMOTE_ERRORS as exc:
            raise ShipError(self.target, f"cannot stat {path}: {exc}") from None
        return int(st.st_size or 0)

    def size(self, path: str) -> int | None:
        return self.size_or_dir(path)

    def open_at(self, path: str, offset: int) -> Writer:
        def go() -> paramiko.SFTPFile:
            f = self._sftp.open(path, "wb" if offset == 0 else "r+b")
            if offset:
                f.seek(offset)
            f.set_pipelined(True)
            return f

        return _Guarded(_SftpWriter(self._do(f"cannot write {path}", go)), self, path)

    def digest(self, path: str, stop: threading.Event) -> tuple[int, str]:
        size = self._do(f"cannot stat {path}", lambda: int(self._sftp.stat(path).st_size or 0))
        if self._verify == "sha256sum":
            return size, self._do(f"sha256sum {path}", lambda: self._exec_sha256(path))

        def read_back() -> tuple[int, str]:
            h = hashlib.sha256()
            n = 0
            with self._sftp.open(path, "rb") as f:
                f.prefetch(size)
                while piece := f.read(_READ):
                    if stop.is_set():
                        raise Stopped
                    h.update(piece)
                    n += len(piece)
            return n, h.hexdigest()

        return self._do(f"cannot read back {path}", read_back)

    def _exec_sha256(self, path: str) -> str:
        absolute = self._sftp.normalize(path)
        _, out, err = self._client.exec_command(f"sha256sum -- {shlex.quote(absolute)}", timeout=60)
        text = out.read().decode("utf-8", "replace")
        status = out.channel.recv_exit_status()
        if status != 0 or not text[:64].isalnum():
            raise ShipError(
                self.target,
                f'sha256sum failed (exit {status}): {err.read()[:200]!r}; use verify = "readback"',
            )
        return str(text[:64]).lower()

    def rename(self, src: str, dst: str) -> None:
        if self.size(dst) is not None:
            raise ShipError(self.target, f"{dst} appeared meanwhile; not overwritten", retry=False)
        # SSH_FXP_RENAME never replaces an existing file (OpenSSH: link + unlink).
        self._do(f"cannot rename {src}", lambda: self._sftp.rename(src, dst))

    def remove(self, path: str) -> None:
        try:
            self._sftp.remove(path)
        except FileNotFoundError:
            pass
        except _REMOTE_ERRORS as exc:
            raise ShipError(self.target, f"cannot remove {path}: {exc}") from None


class _Guarded:
    def __init__(self, inner: _SftpWriter, fs: _SftpFiles, path: str) -> None:
        self._inner, self._fs, self._path = inner, fs, path

    def write(self, data: bytes) -> None:
        self._fs._do(f"cannot write {self._path}", lambda: self._inner.write(data))

    def close(self) -> None:
        self._fs._do(f"cannot finish {self._path}", self._inner.close)


class _SftpSession:
    def __init__(
        self, target: str, client: paramiko.SSHClient, sftp: paramiko.SFTPClient, root: str, verify: str
    ) -> None:
        self._client = client
        self._sftp = sftp
        self._root = root
        self._fs = _SftpFiles(target, client, sftp, verify)

    def place(self, job: Job, local: Path, tr: Transfer) -> Outcome:
        return place_file(self._fs, self._root, job, local, tr)

    def probe(self) -> None:
        """Write a small file in the target folder, check it, delete it."""
        probe_files(self._fs, posixpath.join(self._root, f".asewatch-probe-{secrets.token_hex(6)}"))

    def close(self) -> None:
        try:
            self._sftp.close()
        finally:
            self._client.close()
