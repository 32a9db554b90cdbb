"""The dump watcher on real files written by real processes: writing, complete, truncated,
refused, and what it finds at start.

Writers are child Python processes (or gdb's ``gcore``) that create, grow, hold and close
files; refusals use real symbolic links, FIFOs, sockets, device nodes and hard links.
"Never read" is proven with FIFOs whose writer blocks until someone opens them for reading.
Every wait is bounded; every child is stopped by PID in a ``finally``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from collectors.dumps import HASHING_SOURCE, DumpWatch, KnownDump, WatchedFolder
from monitor.events import CollectorFailed, Event
from monitor.events_dumps import DumpRefused, DumpRemoved, DumpSeen

pytestmark = pytest.mark.integration

SETTLE = 0.4
CHUNK = bytes(range(256)) * 256  # 64 KiB, the same every time: the SHA-256 is known in advance

WRITER = """
import os, sys, time
path, chunks, delay, ctl = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
data = bytes(range(256)) * 256
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
for _ in range(chunks):
    os.write(fd, data)
    time.sleep(delay)
open(ctl + ".written", "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(ctl + ".close") and time.monotonic() < deadline:
    time.sleep(0.02)
os.close(fd)
"""

# Opens a FIFO for writing: blocks until someone opens it for reading, then says so.
FIFO_WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
open(sys.argv[2], "w").close()
os.close(fd)
"""


class Sink:
    """Collects what the watcher emits (from its thread)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.positions: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, events: Sequence[Event], positions: Mapping[str, str]) -> None:
        with self._lock:
            self.events.extend(events)
            if positions:
                self.positions.append(dict(positions))

    def of(self, cls: type, **match: object) -> list:
        with self._lock:
            return [
                e
                for e in self.events
                if isinstance(e, cls) and all(getattr(e, k) == v for k, v in match.items())
            ]

    def wait(self, cls: type, timeout: float = 10.0, **match: object) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(cls, **match)
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {cls.__name__} {match} within {timeout} s; got {self.events}")


@contextmanager
def watching(watch: DumpWatch) -> Iterator[Sink]:
    """Run ``watch`` on a named thread; stop and join it (bounded) at the end."""
    sink = Sink()
    stop = threading.Event()
    t = threading.Thread(target=watch.run, args=(sink, stop), name="test-dumps")
    t.start()
    try:
        yield sink
    finally:
        stop.set()
        t.join(timeout=10)
        assert not t.is_alive()


@contextmanager
def child(code: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child Python process; killed by PID (and reaped) at the end if still running."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def watch_of(folder: Path, **kw: object) -> DumpWatch:
    opts: dict[str, object] = {"settle_seconds": SETTLE, "poll_interval": 0.1}
    opts.update(kw)
    spec = WatchedFolder(folder, "SRV", ("*",), (), opts.pop("expected", None))  # type: ignore[arg-type]
    return DumpWatch([spec], **opts)  # type: ignore[arg-type]


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "dumps"
    d.mkdir()
    return d


# --------------------------------------------------------------------------- writing -> finished


def test_a_dump_held_open_for_writing_is_writing_and_never_finished_until_closed(
    folder: Path, tmp_path: Path
) -> None:
    dump, ctl = folder / "SRV_1.dmp", str(tmp_path / "ctl")
    with watching(watch_of(folder)) as sink, child(WRITER, str(dump), "12", "0.03", ctl) as writer:
        seen = sink.wait(DumpSeen, state="writing")[0]
        assert seen.writer_pid == writer.pid and seen.path == str(dump) and seen.server == "SRV"
        wait_for(lambda: os.path.exists(ctl + ".written"), 10, "the writer wrote everything")
        # Idle but held open for writing: many settle times pass, and it is still not finished.
        time.sleep(SETTLE * 5)
        assert [e.state for e in sink.of(DumpSeen)] == ["writing"]
        Path(ctl + ".close").touch()
        done = sink.wait(DumpSeen, state="complete")[0]
        writer.wait(timeout=10)
    assert done.size == 12 * len(CHUNK) == dump.stat().st_size
    assert done.sha256 == hashlib.sha256(CHUNK * 12).hexdigest()
    assert done.reason is None
    # The hashing position was set before hashing and cleared after.
    assert sink.positions[-1] == {HASHING_SOURCE: ""}
    assert any(p.get(HASHING_SOURCE, "").startswith("{") for p in sink.positions)


def test_a_writer_killed_mid_dump_leaves_a_truncated_dump(folder: Path, tmp_path: Path) -> None:
    dump = folder / "SRV_2.dmp"
    with (
        watching(watch_of(folder)) as sink,
        child(WRITER, str(dump), "2000", "0.02", str(tmp_path / "c")) as w,
    ):
        sink.wait(DumpSeen, state="writing")
        wait_for(lambda: dump.stat().st_size >= 8 * len(CHUNK), 10, "the dump grows")
        os.kill(w.pid, signal.SIGKILL)
        w.wait(timeout=10)
        done = sink.wait(DumpSeen, state="truncated")[0]
    assert "exited while the file was still growing" in (done.reason or "")
    assert done.writer_pid == w.pid
    assert done.sha256 == sha_of(dump) and done.size == dump.stat().st_size
    assert not sink.of(DumpSeen, state="complete")


def test_a_dump_shorter_than_the_expected_size_is_truncated_and_one_as_big_is_complete(
    folder: Path, tmp_path: Path
) -> None:
    expected = 10 * len(CHUNK)
    short, full = folder / "SRV_short.dmp", folder / "SRV_full.dmp"
    with watching(watch_of(folder, expected=expected)) as sink:
        for path, chunks, ctl in ((short, "4", "a"), (full, "10", "b")):
            Path(tmp_path / f"{ctl}.close").touch()  # close as soon as written: a clean exit
            with child(WRITER, str(path), chunks, "0.01", str(tmp_path / ctl)) as w:
                w.wait(timeout=20)
        sink.wait(DumpSeen, path=str(full), state="complete")
        cut = sink.wait(DumpSeen, path=str(short), state="truncated")[0]
    assert cut.reason == f"{4 * len(CHUNK)} bytes of the {expected} expected"
    assert cut.expected_size == expected


def _gcore(target_dir: Path) -> Path:
    """A real ELF core of a sleeping child, written by gdb's gcore into ``target_dir``."""
    if shutil.which("gcore") is None:
        pytest.skip("gcore (gdb) is not installed")
    with child("import time; time.sleep(60)") as sleeper:
        time.sleep(0.2)
        out = subprocess.run(
            ["gcore", "-o", str(target_dir / "core"), str(sleeper.pid)],
            check=False,
            capture_output=True,
            timeout=60,
        )
    core = target_dir / f"core.{sleeper.pid}"
    if out.returncode != 0 or not core.exists():
        pytest.skip(f"gcore could not dump a process here: {out.stderr.decode(errors='replace')[-200:]}")
    return core


def test_an_elf_core_is_complete_and_a_cut_copy_is_truncated_by_its_own_headers(
    folder: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    core = _gcore(staging)
    data = core.read_bytes()
    whole, cut = folder / "core.1", folder / "core.2"
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) // 2])
    past = time.time() - 60
    for p in (whole, cut):
        os.utime(p, (past, past))
    with watching(watch_of(folder)) as sink:
        ok = sink.wait(DumpSeen, path=str(whole))[0]
        bad = sink.wait(DumpSeen, path=str(cut))[0]
    assert ok.state == "complete" and ok.sha256 == hashlib.sha256(data).hexdigest()
    assert ok.expected_size is not None and ok.expected_size <= len(data)
    assert bad.state == "truncated" and bad.expected_size == ok.expected_size
    assert bad.reason == f"{len(data) // 2} bytes of the {ok.expected_size} expected"


# --------------------------------------------------------------------------- refused, never read


@contextmanager
def blocked_fifo(path: Path, marker: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A FIFO at ``path`` with a writer blocked in open(); ``marker`` appears if anyone reads it."""
    os.mkfifo(path)
    with child(FIFO_WRITER, str(path), str(marker)) as proc:
        yield proc


def test_links_fifos_sockets_devices_and_hard_links_are_refused_logged_and_never_read(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"patient data")
    os.symlink("/etc/passwd", folder / "passwd.dmp")
    os.link(outside / "secret", folder / "hard.dmp")
    try:
        os.mknod(folder / "null.dmp", 0o600 | 0o020000, os.makedev(1, 3))  # a character device
        have_device = True
    except PermissionError:
        have_device = False
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.dmp"))
    caplog.set_level(logging.WARNING, logger="asewatch.dumps")
    read_fifo, read_link = tmp_path / "fifo-was-read", tmp_path / "link-target-was-read"
    try:
        with (
            blocked_fifo(folder / "pipe.dmp", read_fifo) as fifo_writer,
            blocked_fifo(outside / "target", read_link) as link_writer,
        ):
            os.symlink(outside / "target", folder / "link.dmp")
            with watching(watch_of(folder)) as sink:
                want = {"passwd.dmp": "symlink", "link.dmp": "symlink", "hard.dmp": "hardlink",
                        "pipe.dmp": "fifo", "sock.dmp": "socket"}  # fmt: skip
                if have_device:
                    want["null.dmp"] = "device"
                wait_for(lambda: len(sink.of(DumpRefused)) >= len(want), 10, "every refusal")
                time.sleep(SETTLE * 3)  # several passes: still nothing read, nothing reported again
                refused = {Path(e.path).name: e.kind for e in sink.of(DumpRefused)}
                assert refused == want
                assert len(sink.of(DumpRefused)) == len(want)
                assert sink.of(DumpSeen) == []
            assert fifo_writer.poll() is None and link_writer.poll() is None
            assert not read_fifo.exists() and not read_link.exists()
    finally:
        sock.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for name in want:
        assert f"refused {name}" in logged


def test_a_resumed_path_with_dotdot_is_refused_and_never_opened(folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    read = tmp_path / "was-read"
    with blocked_fifo(secret / "x.dmp", read) as writer:
        evil = f"{folder}/../secret/x.dmp"
        with watching(watch_of(folder, resume=[evil], hashing=f'{{"path": "{evil}"}}')) as sink:
            ref = sink.wait(DumpRefused, kind="outside")[0]
            time.sleep(SETTLE * 2)
        assert writer.poll() is None and not read.exists()
    assert ref.path == evil and "'..'" in ref.reason
    assert sink.of(DumpSeen) == []


# --------------------------------------------------------------------------- start-up


def test_the_startup_scan_finishes_dumps_written_while_down_and_skips_known_ones(
    folder: Path, tmp_path: Path
) -> None:
    old = time.time() - 3600
    new, known, gone = folder / "SRV_new.dmp", folder / "SRV_known.dmp", folder / "SRV_gone.dmp"
    new.write_bytes(CHUNK * 3)
    known.write_bytes(CHUNK)
    for p in (new, known):
        os.utime(p, (old, old))
    st = known.stat()
    memory = [
        KnownDump(str(known), "SRV", st.st_size, st.st_mtime_ns / 1e9, sha_of(known)),
        KnownDump(str(gone), "SRV", 10, old, "ab" * 32),
    ]
    lost = folder / "SRV_lost.dmp"  # reported writing by the last run, deleted while down
    with watching(watch_of(folder, known=memory, resume=[str(lost)])) as sink:
        done = sink.wait(DumpSeen, path=str(new))[0]
        removed = sink.wait(DumpRemoved)[0]
        vanished = sink.wait(DumpSeen, path=str(lost))[0]
        time.sleep(SETTLE * 2)
    assert done.state == "complete" and done.sha256 == hashlib.sha256(CHUNK * 3).hexdigest()
    assert not sink.of(DumpSeen, state="writing")  # old files are finished at once
    assert not sink.of(DumpSeen, path=str(known))  # not hashed again
    assert removed.path == str(gone) and removed.sha256 == "ab" * 32
    assert vanished.state == "unreadable" and vanished.reason == "vanished while the agent was down"


def test_a_file_overwritten_under_a_known_name_is_a_new_dump(folder: Path) -> None:
    path = folder / "SRV_fixed.dmp"
    path.write_bytes(CHUNK)
    old = time.time() - 600
    os.utime(path, (old, old))
    st = path.stat()
    memory = [KnownDump(str(path), "SRV", st.st_size, st.st_mtime_ns / 1e9, sha_of(path))]
    with watching(watch_of(folder, known=memory)) as sink:
        time.sleep(SETTLE)
        path.write_bytes(CHUNK * 2)  # ASE with a fixed dump_file name overwrites the last dump
        done = sink.wait(DumpSeen, state="complete")[0]
        removed = sink.wait(DumpRemoved)[0]
    assert done.sha256 == hashlib.sha256(CHUNK * 2).hexdigest()
    assert removed.sha256 == memory[0].sha256


def test_a_missing_folder_is_reported_and_watched_once_it_appears(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    with watching(watch_of(folder)) as sink:
        failed = sink.wait(CollectorFailed)[0]
        folder.mkdir()
        (folder / "SRV_x.dmp").write_bytes(CHUNK)
        done = sink.wait(DumpSeen, state="complete")[0]
    assert str(folder) in failed.reason
    assert done.sha256 == hashlib.sha256(CHUNK).hexdigest()
