"""A real OpenSSH SFTP server on 127.0.0.1 for the shipping tests.

:class:`SshServer` generates a host key and a client key, writes an sshd_config of its
own (no chroot, ``internal-sftp``, key-only root login with
``AuthorizedKeysFile`` in the test folder) and runs ``/usr/sbin/sshd -D`` on a free port in
a session of its own, so :meth:`stop` ends it and every connection it forked, by PID.
The ``sshd`` fixture stops it in teardown whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    """A new ed25519 key pair at ``path`` (private, mode 0600) and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "asewatch-test", "-f", str(path)], check=True
    )
    return path


class SshServer:
    """sshd on 127.0.0.1:``port`` serving SFTP to root with ``client_key``; files under ``root``."""

    def __init__(self, base: Path) -> None:
        if not Path(SSHD).exists():
            pytest.skip("openssh-server is not installed")
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.root = base / "remote"
        self.root.mkdir()
        self.host_key = keygen(base / "host_key")
        self.client_key = keygen(base / "client_key")
        self.authorized = base / "authorized_keys"
        self.authorized.write_text((base / "client_key.pub").read_text())
        self.port = free_port()
        self.known_hosts = base / "known_hosts"
        host_pub = " ".join((base / "host_key.pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        self.log = base / "sshd.log"
        self.config = base / "sshd_config"
        self.config.write_text(
            "\n".join([
                f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}", "PidFile none",
                f"AuthorizedKeysFile {self.authorized}", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                "StrictModes no", "UsePAM no", "MaxStartups 100:30:200", "LogLevel VERBOSE",
                "Subsystem sftp internal-sftp", "",
            ])
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and wait until it answers with its banner. Raises RuntimeError."""
        # sshd insists on its privilege-separation folder (a package install makes it at boot).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer within {timeout} s")

    def stop(self) -> None:
        """Stop sshd and every session it forked (its process group), by PID. Idempotent."""
        if self.proc is None:
            return
        pid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=5.0)
                # The listener is gone; its forked sessions may still be ending.
                os.killpg(pid, signal.SIGKILL)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                pass
            break
        self.proc = None


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A running SFTP server; stopped (by PID) in teardown."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    server = SshServer(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()
