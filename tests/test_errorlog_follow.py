"""ErrorlogFollower on real files: every record exactly once, whatever happens to the file.

The stream is a realistic errorlog (boots, routine lines, error pairs, configuration
changes, crash blocks made from a real ASE SIGSEGV block with new spids, kpids and times),
appended in random pieces cut anywhere. The truth is the same parser run offline over
everything written, in order. Covered: appends, copytruncate, logrotate rename, delete and
recreate, a path unknown and then missing at start, a crash block arriving live, resuming
from every position emitted, files changed while stopped, and a worker
(tests/follow_worker.py) killed with SIGKILL at random moments.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.errorlog import ErrorlogParser
from collectors.errorlog.follow import ErrorlogFollower, decode_position
from monitor.events import (
    CollectorFailed,
    CollectorSucceeded,
    CrashBlock,
    ErrorlogRecord,
    Event,
    ServerShutdown,
)

pytestmark = pytest.mark.integration

WORKER = Path(__file__).resolve().parent / "follow_worker.py"
SOURCE = "errorlog:CLINIC1"
# Between the pieces of one record (a forced mid-record pause is 0.1 s): far below the
# follower's 0.5 s quiet period, after which it would emit a half-written record.
PAUSE = 0.03
HEALTH = (CollectorFailed, CollectorSucceeded)
_CORPUS_PREFIX = "00:0004:00000:00308:2018/05/04 19:37:01.48"
_ROUTINE = (
    "A client process exited abnormally, or a network error was encountered.",
    "1 task(s) are sleeping waiting for space to become available in the log segment for database 'imx_prod'.",
    "Cannot read, host process disconnected: vdi-0231 spid: 417",
)
_ERRORS = (
    "Error: 1105, Severity: 17, State: 4\nCan't allocate space for object 'syslogs' in database 'tempdb'.",
    "Error: 1621, Severity: 18, State: 1\nType '2' not allowed before login.",
    "Error: 3475, Severity: 21, State: 7\nThere is no space available in SYSLOGS for process 1 to log a record.",
)
_OPTIONS = ("max parallel degree", "number of worker processes", "number of user connections")
_BOOT = (
    "SySAM: Using licenses from: /opt/sap/SYSAM-2_0/licenses/licenseserver.lic",
    "SySAM: Checked out license for 1 ASE_CORE (2023.12310/permanent/4A1F 0C3D 77B2 E91A).",
    "Adaptive Server Enterprise (Enterprise Edition)",
    "Using config area from primary master device.",
    "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/SLES 12.4/ase160sp04pl03/0000/64-bit/FBO",
    "Network and device connection limit is 65519.",
)
_FATAL = (
    "FATAL UNHANDLED EXCEPTION: signal 11 hit while handling a previously hit signal. The server cannot continue.",
    "pc: 0x00000000012aee1c pcstkwalk+0x46e()",
    "end of stack trace, spid {spid}, kpid {kpid}, suid 1",
    "ueshutdown: exiting",
)


class Stream:
    """A realistic errorlog, one unit (a record and its lines) at a time. Time only moves
    forward and every crash gets its own spid and kpid, so record keys are unique."""

    def __init__(self, block: str, seed: int) -> None:
        self.rng, self.block, self.kpid, self.up = random.Random(seed), block, 732758348, False
        self.t = datetime(2026, 3, 2, 7, 58, 0)

    def _line(
        self, thread: int, spid: int, text: str, comp: str = "server", lo: float = 0.01, hi: float = 1.5
    ) -> str:
        t = self.t + timedelta(seconds=self.rng.uniform(lo, hi))
        self.t = t.replace(microsecond=t.microsecond // 10000 * 10000)
        stamp = f"{self.t:%Y/%m/%d %H:%M:%S}.{self.t.microsecond // 10000:02d}"
        return "".join(f"00:{thread:04d}:00000:{spid:05d}:{stamp} {comp}  {x}\n" for x in text.split("\n"))

    def routine(self) -> str:
        return self._line(3, self.rng.randint(10, 900), self.rng.choice(_ROUTINE))

    def error(self) -> str:
        return self._line(3, self.rng.randint(10, 900), self.rng.choice(_ERRORS))

    def config(self) -> str:
        v, option = self.rng.randint(1, 60), self.rng.choice(_OPTIONS)
        text = f"The configuration option '{option}' has been changed by 'sa' from '{v}' to '{v + 1}'."
        return self._line(3, self.rng.randint(10, 900), text)

    def crash(self, *, fatal: bool = False) -> str:
        spid, self.kpid = self.rng.randint(10, 900), self.kpid + self.rng.randint(1, 99999)
        prefix = self._line(4, spid, "", "kernel")[: len(_CORPUS_PREFIX)]
        text = self.block.replace(_CORPUS_PREFIX, prefix).replace(
            "spid 308, kpid 732758348", f"spid {spid}, kpid {self.kpid}"
        )
        if fatal:  # the server goes down with it
            self.up = False
            text += self._line(4, spid, "\n".join(_FATAL).format(spid=spid, kpid=self.kpid), "kernel", 0, 0)
            text += self._line(0, 0, "Main thread performing final shutdown.", "kernel")
        return text

    def shutdown(self) -> str:
        self.up = False
        out = self._line(6, 12, "Shutdown started by user 'sa'. SQL text: shutdown")
        out += self._line(6, 12, "ASE shutdown by request.") + self._line(
            6, 12, "ueshutdown: exiting", "kernel", 0, 0
        )
        return out + self._line(0, 0, "Main thread performing final shutdown.", "kernel")

    def boot(self) -> str:
        """A boot; an unclean restart if the server was up (no shutdown logged)."""
        self.up = True
        out = self._line(0, 0, _BOOT[0], "kernel", 20, 90)
        out += "".join(self._line(0, 0, msg, "kernel", 0.01, 0.8) for msg in _BOOT[1:])
        return out + self._line(
            2, 1, "Opening Master Database ...\nRecovering database 'master'.\nRecovery complete."
        )

    def mixed(self, n: int) -> list[str]:
        """n units: mostly routine, with errors, configuration changes and crash blocks; ends routine."""
        kinds = [self.routine] * 5 + [self.error, self.config, self.crash]
        return [self.rng.choice(kinds)() for _ in range(n - 1)] + [self.routine()]

    def life(self, n: int) -> list[str]:
        """(Shut down if up,) boot, work, a fatal crash, boot, work, shut down, boot: ends routine."""
        first = [self.shutdown()] if self.up else []
        return [*first, self.boot(), *self.mixed(n), self.crash(fatal=True), self.boot(), *self.mixed(n),
                self.shutdown(), self.boot(), *self.mixed(3)]  # fmt: skip


def pieces(units: Sequence[str], rng: random.Random) -> Iterator[tuple[bytes, float, str]]:
    """(bytes, pause after, tag) for each unit cut at random places, mid-line included. A crash
    block is always cut mid-line halfway through, a boot after its fourth line, with a 0.1 s
    pause so the follower reads the partial record; that piece is tagged "crash" / "boot"."""
    for unit in units:
        data = unit.encode()
        cuts = set(rng.sample(range(1, len(data)), min(rng.randint(0, 4), len(data) - 1)))
        tag, held = "", -1
        if "infected with" in unit:
            tag, held = "crash", len(data) // 2 + (2 if data[len(data) // 2 - 1] == ord("\n") else 0)
        elif "SySAM: Using" in unit:
            tag, held = "boot", len("".join(unit.splitlines(keepends=True)[:4]))
        for a, b in itertools.pairwise([0, *sorted(cuts | {held} - {-1}), len(data)]):
            yield data[a:b], *((0.1, tag) if b == held else (rng.uniform(0, PAUSE), ""))


def append(path: Path, units: Sequence[str], rng: random.Random) -> bytes:
    """Append units in random pieces with O_APPEND writes, as ASE does; returns the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for data, pause, _ in pieces(units, rng):
            os.write(fd, data)
            time.sleep(pause)
    finally:
        os.close(fd)
    return "".join(units).encode()


def offline(data: bytes) -> list[ErrorlogRecord]:
    parser = ErrorlogParser()
    return parser.feed(data) + parser.close()


def norm(records: Sequence[Event]) -> list[Event]:
    """Offsets differ per file after a rotation; everything else must be identical."""
    return [dataclasses.replace(r, offset=0) for r in records]


class Followed:
    """A follower running on its own thread, with everything it emitted."""

    def __init__(
        self, path: Path, saved: str | None, locate: Callable[[], Path | None] | None, **kw: Any
    ) -> None:
        self.path, self.saved, self.errors = path, saved, list[BaseException]()
        self.follower = ErrorlogFollower("CLINIC1", locate or (lambda: path), saved, **kw)
        self.emits: list[tuple[list[Event], dict[str, str]]] = []
        self.stop, self._lock = threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self._run, name="test-follower")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.follower.run(self._emit, self.stop)
        except BaseException as e:  # run() must never raise: recorded, asserted on
            self.errors.append(e)

    def _emit(self, events: Sequence[Event], positions: Mapping[str, str]) -> None:
        with self._lock:
            self.emits.append((list(events), dict(positions)))

    def snapshot(self) -> list[tuple[list[Event], dict[str, str]]]:
        with self._lock:
            return list(self.emits)

    def records(self, upto: int | None = None) -> list[Event]:
        return [e for evs, _ in self.snapshot()[:upto] for e in evs if not isinstance(e, HEALTH)]

    def failures(self) -> list[CollectorFailed]:
        return [e for evs, _ in self.snapshot() for e in evs if isinstance(e, CollectorFailed)]

    def position(self) -> str | None:
        return next((p[SOURCE] for _, p in reversed(self.snapshot()) if SOURCE in p), self.saved)

    def caught_up(self) -> bool:
        """The last position is the end of the file now at the path: every record is out."""
        tail = decode_position(self.position())[0]
        if tail is None or not self.path.exists():
            return False
        st = self.path.stat()
        return (tail.inode, tail.offset) == (st.st_ino, st.st_size)

    def wait(self, cond: Callable[[], bool], what: str, limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while not cond():
            assert not self.errors, f"the follower raised: {self.errors!r}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {self.records()!r}"
            time.sleep(0.02)

    def finish(self, settle: float = 0.6) -> list[Event]:
        """Wait until caught up, then ``settle`` s longer (a duplicate would show), stop and join."""
        self.wait(self.caught_up, "the follower to reach the end of the file")
        time.sleep(settle)
        self.close()
        assert not self.errors, f"the follower raised: {self.errors!r}"
        return self.records()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the follower did not stop within 10 s"


@pytest.fixture
def block(corpus: Path) -> str:
    return (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text()


@pytest.fixture
def follow() -> Iterator[Callable[..., Followed]]:
    made: list[Followed] = []

    def start(
        path: Path, saved: str | None = None, locate: Callable[[], Path | None] | None = None, **kw: Any
    ) -> Followed:
        made.append(Followed(path, saved, locate, **{"poll_interval": 0.2, **kw}))
        return made[-1]

    yield start
    for f in made:
        f.close()


# --------------------------------------------------------------------------- live following


def test_random_pieces_each_record_once(tmp_path: Path, block: str, follow: Callable[..., Followed]) -> None:
    rng, s = random.Random(1), Stream(block, 1)
    log = tmp_path / "CLINIC1.log"
    backlog = "".join([s.boot(), *s.mixed(30)]).encode()
    log.write_bytes(backlog)  # written before the agent started
    f = follow(log)
    written = backlog + append(log, s.life(25), rng)
    truth = offline(written)
    assert sum(isinstance(r, CrashBlock) for r in truth) >= 5
    assert norm(f.finish()) == norm(truth)
    assert f.failures() == []


@pytest.mark.parametrize("how", ["copytruncate", "rename", "delete"])
def test_rotation_each_record_once(
    tmp_path: Path, block: str, follow: Callable[..., Followed], how: str
) -> None:
    """logrotate copytruncate; rename + new file (logrotate, or sp_errorlog 'change log' after
    a rename) with late lines to the old file; the file deleted and recreated."""
    rng, s = random.Random(2), Stream(block, 2)
    log, old = tmp_path / "CLINIC1.log", tmp_path / "CLINIC1.log.1"
    log.touch()  # the errorlog exists when following starts (a missing one is its own test below)
    f = follow(log)
    written = append(log, s.life(15), rng)
    if how == "copytruncate":
        f.wait(f.caught_up, "the follower to catch up")  # else the lines it has not read are only in the copy
        shutil.copyfile(log, old)
        os.truncate(log, 0)
    elif how == "rename":
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        os.rename(log, old)
        late = "".join([s.routine(), s.error(), s.crash(), s.routine()]).encode()
        os.write(fd, late)  # the server still writes to the renamed file for a moment
        os.close(fd)
        written += late
    else:
        log.unlink()
    time.sleep(0.3)
    written += append(log, [s.routine(), s.crash(), *s.life(10)], rng)
    assert norm(f.finish()) == norm(offline(written))
    assert f.failures() == []


def test_unknown_then_missing_path_reports_then_follows(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    """No dataserver yet (path unknown), then a path whose directory and file do not exist yet."""
    rng, s = random.Random(3), Stream(block, 3)
    log = tmp_path / "install" / "CLINIC1.log"
    answers = iter([None])
    f = follow(log, locate=lambda: next(answers, log))
    f.wait(lambda: any("does not exist" in e.reason for e in f.failures()), "a missing-file report")
    assert f.records() == []
    log.parent.mkdir()
    written = append(log, s.life(10), rng)
    assert norm(f.finish()) == norm(offline(written))
    events = [e for evs, _ in f.snapshot() for e in evs if not isinstance(e, CollectorSucceeded)]
    assert [type(e) for e in events[:2]] == [CollectorFailed, CollectorFailed]  # before any record
    assert "path unknown" in events[0].reason and "does not exist" in events[1].reason


def test_a_crash_block_written_at_once_is_emitted(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    s = Stream(block, 4)
    log = tmp_path / "CLINIC1.log"
    log.write_text("".join(s.mixed(5)))
    f = follow(log)
    f.wait(f.caught_up, "the follower to catch up")
    text = s.crash()
    with log.open("ab", buffering=0) as w:
        w.write(text.encode())  # one write, and nothing after it: the follower must not wait for more
    [want] = [r for r in offline(text.encode()) if isinstance(r, CrashBlock)]
    f.wait(lambda: any(r.key == want.key for r in f.records()), "the crash block", limit=10)
    [got] = [r for r in f.records() if r.key == want.key]
    assert norm([got]) == norm([want])
    assert isinstance(got, CrashBlock) and got.complete and got.procedure == "sp_showplan"
    assert "query_text" in got.frames


def test_an_unclean_restart_is_dated_by_the_last_line_before_the_boot(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    """A boot with no shutdown before it (the dataserver killed, the host lost power) is an
    unclean stop at the time of the last line written, however the bytes arrived."""
    rng, s = random.Random(10), Stream(block, 10)
    log = tmp_path / "CLINIC1.log"
    f = follow(log)
    written = append(log, [s.boot(), *s.mixed(12)], rng)
    last = s.t
    written += append(log, [s.boot(), *s.mixed(3)], rng)
    records = f.finish()
    assert [r.time for r in records if isinstance(r, ServerShutdown)] == [last]
    assert [r.time for r in offline(written) if isinstance(r, ServerShutdown)] == [last]


# --------------------------------------------------------------------------- resuming


def _resume_check(
    path: Path, f: Followed, follow: Callable[..., Followed], truth: Sequence[Event], at_least: int
) -> None:
    """Every position f emitted, fed to a new follower, gives exactly the rest of the records."""
    emits = f.snapshot()
    checked = [i for i, (_, positions) in enumerate(emits) if SOURCE in positions]
    for i in checked:
        g = follow(path, emits[i][1][SOURCE], use_watchdog=False, poll_interval=0.05, quiet_period=0.1)
        rest = g.finish(settle=0.2)
        assert g.failures() == [], f"resuming from emit {i}"
        assert norm(f.records(i + 1) + rest) == norm(truth), f"resuming from emit {i}: {emits[i][1][SOURCE]}"
    assert len(checked) >= at_least


def test_every_emitted_position_resumes_without_duplicates_or_gaps(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    """Positions emitted in the middle of a boot, a crash block or an error pair included."""
    rng, s = random.Random(5), Stream(block, 5)
    log = tmp_path / "CLINIC1.log"
    f = follow(log)
    written = append(log, s.life(4), rng)
    f.finish()
    _resume_check(log, f, follow, offline(written), at_least=10)


@pytest.mark.parametrize("where", ["renamed", "moved away"])
def test_resume_after_rotation_while_stopped(
    tmp_path: Path, block: str, follow: Callable[..., Followed], where: str
) -> None:
    """Renamed beside the path (logrotate), or moved to another directory (olddir) where it
    cannot be found: then a gap is reported and the new file is read from its start."""
    rng, s = random.Random(6), Stream(block, 6)
    log = tmp_path / "CLINIC1.log"
    f = follow(log)
    written = append(log, s.life(5), rng)
    first = f.finish()
    late = "".join([s.routine(), s.crash(), s.routine()]).encode()
    with log.open("ab") as w:
        w.write(late)  # after the agent stopped, before the rotation
    (tmp_path / "old").mkdir()
    log.rename(tmp_path / ("CLINIC1.log.1" if where == "renamed" else "old/CLINIC1.log.1"))
    new = append(log, s.life(5), rng)
    g = follow(log, f.position())
    if where == "renamed":
        assert norm(first + g.finish()) == norm(offline(written + late + new))
        assert g.failures() == []
    else:
        assert norm(first + g.finish()) == norm(offline(written + new))
        assert any("may have been missed" in e.reason for e in g.failures())


def test_resume_when_the_saved_file_was_rewritten_in_place(
    tmp_path: Path, block: str, follow: Callable[..., Followed]
) -> None:
    """Truncated by hand (`> errorlog`) while stopped and regrown past the saved offset: the new
    content is read from 0, and every position emitted after that is a correct resume point."""
    rng, s = random.Random(8), Stream(block, 8)
    log = tmp_path / "CLINIC1.log"
    f = follow(log)
    written = append(log, s.mixed(6), rng)
    first = f.finish()
    os.truncate(log, 0)
    new = append(log, s.mixed(30), rng)
    assert len(new) > len(written)
    g = follow(log, f.position())
    new += append(log, s.mixed(12), rng)  # more while it follows: more positions to check
    assert norm(first + g.finish()) == norm(offline(written + new))
    _resume_check(log, g, follow, offline(written + new)[len(first) :], at_least=5)


# --------------------------------------------------------------------------- kill -9


def _committed(db: Path) -> tuple[list[str], str | None, list[str]]:
    """(delivered keys, position, problems) as the worker committed them."""
    con = sqlite3.connect(db)
    try:
        keys = [r[0] for r in con.execute("select key from delivered order by id")]
        row = con.execute("select json from positions where source = ?", (SOURCE,)).fetchone()
        return keys, row[0] if row else None, [r[0] for r in con.execute("select reason from problems")]
    except sqlite3.OperationalError:  # tables not created yet
        return [], None, []
    finally:
        con.close()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        if p.stderr:
            p.stderr.close()


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, block: str, workers: list[subprocess.Popen[bytes]]
) -> None:
    rng, s = random.Random(20260302), Stream(block, 9)
    log, db = tmp_path / "CLINIC1.log", tmp_path / "worker.db"

    def start() -> None:
        workers.append(
            subprocess.Popen([sys.executable, str(WORKER), str(log), str(db)], stderr=subprocess.PIPE)
        )

    def kill() -> None:
        time.sleep(
            rng.uniform(0.0, 0.25)
        )  # let it get somewhere (or not); with PAUSE still below the quiet period
        os.kill(workers[-1].pid, signal.SIGKILL)
        p = workers[-1]
        assert p.wait(timeout=10) == -signal.SIGKILL, p.stderr.read() if p.stderr else b""

    def wait_committed(end: bool, limit: float = 60) -> None:
        """Until the committed position is in the file now at the path (and at its end if ``end``)."""
        deadline = time.monotonic() + limit
        while True:
            tail, st = decode_position(_committed(db)[1])[0], log.stat()
            if tail is not None and tail.inode == st.st_ino and (not end or tail.offset == st.st_size):
                return
            assert time.monotonic() < deadline, (
                f"the worker did not commit {'the end' if end else 'the new file'}"
            )
            time.sleep(0.05)

    def write(units: list[str], kills: int) -> bytes:
        """Append units; with ``kills``, kill -9 and restart the worker before that many random
        pieces and in the middle of the first boot and crash block."""
        cut = list(pieces(units, rng))
        tagged = {t: i + 1 for i, (_, _, t) in reversed(list(enumerate(cut))) if t}
        moments = {*tagged.values(), *rng.sample(range(len(cut)), kills)} if kills else set()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for i, (data, pause, _) in enumerate(cut):
            if i in moments:
                kill()
                start()
            os.write(fd, data)
            time.sleep(pause)
        os.close(fd)
        return "".join(units).encode()

    start()
    written = write(s.life(20), kills=3)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)  # logrotate: rename, late lines to the old file, new file
    log.rename(tmp_path / "CLINIC1.log.1")
    late = "".join([s.routine(), s.error(), s.routine()]).encode()
    os.write(fd, late)
    os.close(fd)
    written += late + write(s.life(20), kills=3)
    wait_committed(end=False)  # then killed, and logrotate copytruncate runs while it is down
    kill()
    (tmp_path / "CLINIC1.log.1").rename(tmp_path / "CLINIC1.log.2")
    shutil.copyfile(log, tmp_path / "CLINIC1.log.1")
    os.truncate(log, 0)
    written += write(s.mixed(20), kills=0)
    start()
    written += write(s.life(10), kills=2)
    wait_committed(end=True)
    workers[-1].send_signal(signal.SIGTERM)
    assert workers[-1].wait(timeout=10) == 0
    keys, _, problems = _committed(db)
    truth = offline(written)
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    assert ([r for r in truth if r.key not in set(keys)], set(keys) - {r.key for r in truth}) == ([], set())
    assert [p for p in problems if "missed" in p] == []
