"""``kill -9`` of the shipping process at 50 moments while packages go to SFTP and a directory.

A real OpenSSH server on 127.0.0.1 and a local folder are the targets; the shipper is
``tests/ship_worker.py``, a separate process with the bandwidth capped so uploads take
a while. The test SIGKILLs it again and again: at random moments (during start-up,
mid-upload, mid-verify) and aimed right after a phase it prints (claimed, resumed,
sent, renamed: the file is in place but not yet marked verified). New packages keep
arriving in the spool. Then one last run ships the rest.

Afterwards every file of every package is on both targets exactly once with the right
SHA-256, the store says verified for every (package, file, target), no temporary name
is left, and every package was reported shipped. "Exactly once" is watched from the
outside: inotify on both target trees counts each time a final name appears (the SFTP
server links the temporary file to it, the directory target renames it); every final
name appears once, never twice.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from monitor.ship_package import read_package
from monitor.ship_state import rows
from monitor.store import Store
from tests.ship_fixtures import random_package, sha
from tests.sshd_fixture import SshServer, sshd

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["sshd"]

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "ship_worker.py"
KILLS = 50
PACKAGES = 18
AIMED = ("claimed", "resume", "sent", "renamed")


class Appearances(FileSystemEventHandler):
    """Counts each time a final (non-temporary) file name appears in a watched tree."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _seen(self, path: str) -> None:
        if ".asewatch-part" not in path and ".asewatch-probe" not in path:
            with self.lock:
                self.counts[path] += 1

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._seen(str(event.src_path))

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._seen(str(event.dest_path))


class Worker:
    """One ship_worker process; its printed lines are collected with a deadline."""

    def __init__(self, spec: Path, log: list[list[str]]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.log = log

    def lines_until(self, deadline: float, want: set[str] | None = None) -> bool:
        """Collect lines until the deadline, or until a line whose phase is in ``want``."""
        assert self.proc.stdout is not None
        while (left := deadline - time.monotonic()) > 0:
            if not self.sel.select(min(left, 0.05)):
                if self.proc.poll() is not None:
                    return False
                continue
            chunk = self.proc.stdout.read()
            if not chunk:
                return False
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            for raw in done:
                fields = raw.decode().split("\t")
                self.log.append(fields)
                if want and fields[0] in want:
                    return True
        return False

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL, by PID
        self.proc.wait(10)
        self.lines_until(time.monotonic() + 0.05)  # what it printed before dying
        self.sel.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self.sel.close()
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def test_kill9_at_50_moments_ships_every_file_exactly_once(tmp_path: Path, sshd: SshServer) -> None:
    rng = random.Random(int(os.environ.get("ASEWATCH_KILL9_SEED", "20240315")))
    spool, archive, state = tmp_path / "spool", tmp_path / "archive", tmp_path / "state"
    archive.mkdir()
    ids = [f"crash-{i:02d}" for i in range(PACKAGES)]
    # The package folders on the targets exist before the watch starts, so inotify sees every
    # file that appears in them (a folder made later could fill before its watch is added).
    for root in (sshd.root, archive):
        for pid in ids:
            (root / pid / "dumps").mkdir(parents=True)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "state_dir": str(state), "spool": str(spool), "pause": {"renamed": 0.15, "sent": 0.05},
        "ship": {
            "scan_interval": 0.2, "retry_initial": 0.2, "retry_max": 1.0, "retry_jitter": 0.1,
            "target": [
                {"name": "vendor", "kind": "sftp", "host": "127.0.0.1", "port": sshd.port, "user": "root",
                 "key_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts),
                 "remote_dir": str(sshd.root), "bandwidth": 1_500_000, "timeout": 5.0},
                {"name": "archive", "kind": "directory", "path": str(archive), "bandwidth": 1_500_000},
            ],
        },
    }))  # fmt: skip
    seen = Appearances()
    observer = Observer()
    observer.name = "kill9-inotify"
    for root in (sshd.root, archive):
        observer.schedule(seen, str(root), recursive=True)
    observer.start()
    log: list[list[str]] = []
    added = 0
    aimed_kills = 0
    try:
        for _ in range(6):
            random_package(spool, ids[added], rng)
            added += 1
        for k in range(KILLS):
            if k % 4 == 3 and added < PACKAGES:
                random_package(spool, ids[added], rng)
                added += 1
            w = Worker(spec, log)
            if rng.random() < 0.45:
                aimed_kills += w.lines_until(time.monotonic() + 4.0, {rng.choice(AIMED)})
                time.sleep(rng.uniform(0, 0.02))
            else:
                w.lines_until(time.monotonic() + rng.uniform(0.05, 1.0))
            w.kill()
        while added < PACKAGES:
            random_package(spool, ids[added], rng)
            added += 1
        # The last run: no kill; it must finish everything.
        w = Worker(spec, log)
        deadline = time.monotonic() + 90
        with Store.open(state) as store:
            while time.monotonic() < deadline:
                w.lines_until(time.monotonic() + 0.5)
                with store.reader() as r:
                    left = [x for x in rows(r) if x.state != "verified"]
                    done = r.query("SELECT COUNT(*) FROM ship_packages WHERE done_at IS NOT NULL")[0][0]
                if not left and done == PACKAGES:
                    break
            w.stop()
            with store.reader() as r:
                final = rows(r)
                assert r.integrity_check() == []
        time.sleep(0.3)  # let inotify deliver the last events
    finally:
        observer.stop()
        observer.join(10)

    packages = [read_package(spool / pid) for pid in ids]
    expected = {(p.package_id, f.name, t) for p in packages for f in p.files for t in ("vendor", "archive")}
    assert {(x.package_id, x.file, x.target) for x in final} == expected
    assert [x for x in final if x.state != "verified"] == []
    for p in packages:
        for f in p.files:
            for root in (sshd.root, archive):
                target_file = root / p.package_id / f.name
                assert sha(target_file.read_bytes()) == f.sha256, target_file
                assert seen.counts[str(target_file)] == 1, (target_file, seen.counts[str(target_file)])
    assert sum(seen.counts.values()) == len(expected)
    leftovers = [q for root in (sshd.root, archive) for q in root.rglob("*") if q.name.startswith(".")]
    assert leftovers == []
    renamed = Counter((f[1], f[2], f[3]) for f in log if f[0] == "renamed")
    assert max(renamed.values()) == 1
    assert {f[1] for f in log if f[0] == "shipped"} == set(ids)
    # The kills did land mid-work: files were resumed from an offset, and some were found
    # already in place after a kill between the rename and the store's verified mark.
    assert aimed_kills >= 10
    assert any(f[0] == "resume" and f[4] != "0" for f in log)
    assert any(f[0] == "present" for f in log)
