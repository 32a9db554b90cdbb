"""monitor.tail on real files: every byte of a followed errorlog exactly once, in order.

Covers appends in arbitrary pieces, copytruncate, logrotate (rename + new file, with late
bytes in the old one), delete + recreate, a path that appears later, resuming from a
saved position (same file, rotated while stopped, vanished, replaced), watchdog wake-up,
the polling fallback, and a worker killed with SIGKILL while the file rotates.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import SourceError
from monitor.tail import Chunk, FileId, FileTailer, Problem, Switched, TailItem, TailPosition

pytestmark = pytest.mark.integration

WORKER = Path(__file__).resolve().parent / "tail_worker.py"


def _id(path: Path) -> FileId:
    st = path.stat()
    return FileId(st.st_dev, st.st_ino)


def _collect(t: FileTailer, done: Callable[[list[TailItem]], bool], limit: float = 10.0) -> list[TailItem]:
    """read()/wait() until done(items) holds; fail after `limit` seconds."""
    items: list[TailItem] = []
    deadline = time.monotonic() + limit
    while True:
        items += t.read()
        if done(items) and not t.pending:
            return items
        assert time.monotonic() < deadline, f"timed out; got {items!r}"
        t.wait(0.05)


def _data(items: list[TailItem], fid: FileId | None = None) -> bytes:
    return b"".join(i.data for i in items if isinstance(i, Chunk) and fid in (None, i.file_id))


def _check_contiguous(items: list[TailItem]) -> None:
    """Within a file, each chunk starts where the previous ended; a Switched restarts at 0."""
    expect: dict[FileId, int] = {}
    for item in items:
        if isinstance(item, Switched):
            expect[item.new] = 0
        elif isinstance(item, Chunk):
            assert item.start == expect.get(item.file_id, item.start), item
            expect[item.file_id] = item.end


def _has_bytes(n: int) -> Callable[[list[TailItem]], bool]:
    return lambda items: len(_data(items)) >= n


@pytest.fixture
def tailers() -> Iterator[list[FileTailer]]:
    made: list[FileTailer] = []
    yield made
    for t in made:
        t.close()


def _tailer(
    made: list[FileTailer],
    path: Path,
    pos: TailPosition | None = None,
    *,
    poll_interval: float = 0.05,
    **kw: Any,
) -> FileTailer:
    t = FileTailer(path, pos, poll_interval=poll_interval, **kw)
    made.append(t)
    return t


def test_random_pieces_and_partial_lines_arrive_exactly(tmp_path: Path, tailers: list[FileTailer]) -> None:
    rng = random.Random(7)
    log = tmp_path / "errorlog"
    log.touch()
    t = _tailer(tailers, log, chunk_size=97, max_batch=1000)
    text = b"".join(
        b"00:0002:00000:00042:2026/11/26 10:00:%02d.00 server  line %d\n" % (i % 60, i) for i in range(800)
    )
    items: list[TailItem] = []
    with log.open("ab", buffering=0) as w:
        pos = 0
        while pos < len(text):
            n = rng.randint(1, 300)
            w.write(text[pos : pos + n])  # pieces cut anywhere, mid-line included
            pos += n
            if rng.random() < 0.5:
                batch = t.read()
                assert sum(len(i.data) for i in batch if isinstance(i, Chunk)) <= 1000
                items += batch
    items += _collect(t, _has_bytes(len(text) - len(_data(items))))
    assert all(len(i.data) <= 97 for i in items if isinstance(i, Chunk))
    assert [i for i in items if not isinstance(i, Chunk)] == []
    _check_contiguous(items)
    assert _data(items) == text


def test_backlog_is_read_in_bounded_batches(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(os.urandom(50_000))
    t = _tailer(tailers, log, chunk_size=4096, max_batch=10_000)
    first = t.read()
    assert len(_data(first)) == 10_000
    assert t.pending and t.wait(5.0)  # more is ready: wait() must not sleep
    rest = _collect(t, _has_bytes(40_000))
    assert _data(first + rest) == log.read_bytes()


def test_copytruncate_reports_truncated_and_new_content_once(
    tmp_path: Path, tailers: list[FileTailer]
) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"old line 1\nold line 2\n")
    t = _tailer(tailers, log)
    fid = _id(log)
    assert _data(_collect(t, _has_bytes(22))) == b"old line 1\nold line 2\n"
    os.truncate(log, 0)
    with log.open("ab") as w:
        w.write(b"new\n")
    items = _collect(t, _has_bytes(4))
    assert items[0] == Switched(fid, fid, "truncated")
    assert _data(items) == b"new\n"
    _check_contiguous(items)


def test_truncate_then_regrow_past_old_offset_is_seen_by_its_head(
    tmp_path: Path, tailers: list[FileTailer]
) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"A" * 100)
    t = _tailer(tailers, log)
    _collect(t, _has_bytes(100))
    with log.open("r+b") as w:  # truncate and rewrite, longer than before, before the tailer looks
        w.truncate(0)
        w.write(b"B" * 300)
    batch = t.read()
    assert batch == [Switched(_id(log), _id(log), "truncated")]
    # the old generation's position is still available until the next read()
    old_pos = t.position_at(_id(log), 100)
    items = _collect(t, _has_bytes(300))
    assert _data(items) == b"B" * 300
    # after a crash with the old generation's position persisted, the new content is not skipped
    t.close()
    t2 = _tailer(tailers, log, old_pos)
    items = _collect(t2, _has_bytes(300))
    assert [i.kind for i in items if isinstance(i, Problem)] == ["gap"]  # it cannot know what A had
    assert Switched(_id(log), _id(log), "replaced") in items
    assert _data(items) == b"B" * 300


def test_logrotate_reads_late_bytes_of_old_file_before_new(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log, old = tmp_path / "errorlog", tmp_path / "errorlog.1"
    w = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(w, b"line 1\n")
        t = _tailer(tailers, log)
        assert _data(_collect(t, _has_bytes(7))) == b"line 1\n"
        first = _id(log)
        os.write(w, b"line 2\n")
        os.rename(log, old)
        os.write(w, b"line 3 written by the server after the rename\n")
        log.write_bytes(b"new 1\n")
        os.write(w, b"line 4 still to the old file\n")
    finally:
        os.close(w)
    second = _id(log)
    items = _collect(t, lambda it: any(isinstance(i, Switched) for i in it) and b"new 1\n" in _data(it))
    switch = items.index(Switched(first, second, "rotated"))
    assert (
        _data(items[:switch])
        == b"line 2\nline 3 written by the server after the rename\nline 4 still to the old file\n"
    )
    assert _data(items[switch:]) == b"new 1\n"
    _check_contiguous(items)


def test_delete_and_recreate(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"before\n")
    t = _tailer(tailers, log)
    first = _id(log)
    _collect(t, _has_bytes(7))
    log.unlink()
    assert t.read() == []  # a moment without a file is normal in a rotation: no report yet
    log.write_bytes(b"after\n")
    items = _collect(t, _has_bytes(6))
    assert items[0] == Switched(first, _id(log), "deleted")
    assert _data(items) == b"after\n"


def test_missing_path_is_reported_once_then_followed(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "logs" / "CLINIC1.log"
    t = _tailer(tailers, log)
    assert not t.watching  # no directory to watch yet: polling
    first = t.read()
    assert len(first) == 1 and isinstance(first[0], Problem) and first[0].kind == "missing"
    assert "directory does not exist" in first[0].reason
    assert t.read() == [] and t.problem == first[0]  # reported once, still unresolved
    log.parent.mkdir()
    t.wait(0.1)
    assert t.watching  # the directory appeared: watched from now on
    log.write_bytes(b"00:0000:00000:00000:2026/11/26 08:00:00.00 kernel  SQL Server started\n")
    items = _collect(t, _has_bytes(10))
    assert items[0] == Switched(None, _id(log), "created")
    assert _data(items) == log.read_bytes()
    assert t.problem is None


def test_directory_vanishing_and_returning(tmp_path: Path, tailers: list[FileTailer]) -> None:
    d = tmp_path / "install"
    d.mkdir()
    log = d / "errorlog"
    log.write_bytes(b"one\n")
    t = _tailer(tailers, log, poll_interval=0.05)
    first = _id(log)
    _collect(t, _has_bytes(4))
    log.unlink()
    d.rmdir()
    for _ in range(5):
        assert not any(isinstance(i, Chunk) for i in t.read())
        t.wait(0.05)
    assert not t.watching
    d.mkdir()
    log.write_bytes(b"two\n")
    items = _collect(t, _has_bytes(4))
    assert Switched(first, _id(log), "deleted") in items and _data(items) == b"two\n"
    t.wait(0.05)
    assert t.watching


def test_not_a_regular_file_is_a_problem_until_fixed(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.mkdir()
    t = _tailer(tailers, log)
    items = t.read()
    assert [i.kind for i in items if isinstance(i, Problem)] == ["error"]
    assert isinstance(items[0], Problem)
    assert isinstance(items[0].as_error("errorlog"), SourceError)
    log.rmdir()
    log.write_bytes(b"ok\n")
    assert _data(_collect(t, _has_bytes(3))) == b"ok\n"


_UNPRIVILEGED = """
import json, os, sys
from pathlib import Path
from monitor.tail import Chunk, FileTailer, Problem
d = Path(sys.argv[1])
log = d / "errorlog"
log.write_bytes(b"secret\\n")
os.chmod(log, 0)
out = []
def step(t):
    items = t.read()
    out.append([[type(i).__name__, getattr(i, "kind", ""), getattr(i, "reason", "")] for i in items if isinstance(i, Problem)]
               + [[b"".join(i.data for i in items if isinstance(i, Chunk)).decode()]])
with FileTailer(log, use_watchdog=False) as t:
    step(t)
    step(t)  # the same problem is not reported twice
    os.chmod(log, 0o644)
    step(t)
    with log.open("ab") as w:
        w.write(b"more\\n")
    os.chmod(d, 0)  # the directory becomes unsearchable while the file is held open
    step(t)
    os.chmod(d, 0o755)
    step(t)
print(json.dumps(out))
"""


def test_permission_errors_are_problems_not_exceptions(tmp_path: Path) -> None:
    """Run as root without the capabilities that bypass file permissions."""
    d = tmp_path / "install"
    d.mkdir()
    try:
        done = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                sys.executable,
                "-c",
                _UNPRIVILEGED,
                str(d),
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
    except FileNotFoundError:
        pytest.skip("setpriv (util-linux) is not installed")
    steps = json.loads(done.stdout)
    assert steps[0][0][:2] == ["Problem", "error"] and "Permission denied" in steps[0][0][2]
    assert steps[0][-1] == [""]
    assert steps[1] == [[""]]  # reported once
    assert steps[2] == [["secret\n"]]  # recovered: nothing lost
    assert steps[3][0][:2] == ["Problem", "error"] and "cannot stat" in steps[3][0][2]
    assert steps[3][-1] == ["more\n"]  # the held fd still reads though the path cannot be checked
    assert steps[4] == [[""]]


def test_resume_on_same_file_has_no_duplicates(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"a\nb\nc\n")
    t = _tailer(tailers, log)
    items = _collect(t, _has_bytes(6))
    pos = TailPosition.from_json(t.position_at(items[0].file_id, 4).to_json())  # type: ignore[union-attr]
    assert pos.head_len == 6 and pos.offset == 4
    t.close()
    with log.open("ab") as w:
        w.write(b"d\n")
    t2 = _tailer(tailers, log, pos)
    items = _collect(t2, _has_bytes(4))
    assert _data(items) == b"c\nd\n" and items[0] == Chunk(_id(log), 4, b"c\nd\n")


def test_resume_after_rotation_while_stopped(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log, old = tmp_path / "CLINIC1.log", tmp_path / "CLINIC1.log.20261126"
    log.write_bytes(b"x" * 2000 + b"\n")
    first = _id(log)
    t = _tailer(tailers, log)
    _collect(t, _has_bytes(2001))
    pos = t.position_at(first, 1500)
    assert pos.head_len == 1024
    t.close()
    with log.open("ab") as w:
        w.write(b"tail before rotation\n")
    log.rename(old)
    with old.open("ab") as w:
        w.write(b"tail after rotation\n")
    log.write_bytes(b"fresh\n")
    t2 = _tailer(tailers, log, pos)
    items = _collect(t2, lambda it: b"fresh" in _data(it))
    switch = items.index(Switched(first, _id(log), "rotated"))
    assert _data(items[:switch]) == b"x" * 500 + b"\ntail before rotation\ntail after rotation\n"
    assert _data(items[switch:]) == b"fresh\n"


def test_resume_when_old_file_is_gone_reports_a_gap(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"old content\n")
    t = _tailer(tailers, log)
    _collect(t, _has_bytes(12))
    pos = t.position_at(_id(log), 12)
    t.close()
    archive = tmp_path / "archive"  # moved out of the directory: cannot be found any more
    archive.mkdir()
    log.rename(archive / "errorlog")
    log.write_bytes(b"new content\n")
    items = _collect(_tailer(tailers, log, pos), _has_bytes(12))
    assert [i.kind for i in items if isinstance(i, Problem)] == ["gap"]
    assert Switched(pos.file_id, _id(log), "deleted") in items
    assert _data(items) == b"new content\n"


def test_resume_truncated_or_replaced_starts_at_zero(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"h" * 1100 + b"\n" + b"t" * 900)
    t = _tailer(tailers, log)
    _collect(t, _has_bytes(2001))
    pos = t.position_at(_id(log), 2001)
    t.close()
    os.truncate(log, 1200)  # same head, shorter than the saved offset
    items = _collect(_tailer(tailers, log, pos), _has_bytes(1200))
    assert isinstance(items[0], Problem) and items[0].kind == "gap"
    assert items[1] == Switched(pos.file_id, pos.file_id, "truncated") and len(_data(items)) == 1200
    with log.open("r+b") as w:  # same inode, other content
        w.write(b"different head\n")
    items = _collect(_tailer(tailers, log, pos), _has_bytes(1200))
    assert isinstance(items[0], Problem) and items[0].kind == "gap"
    assert items[1] == Switched(pos.file_id, pos.file_id, "replaced") and _data(items) == log.read_bytes()


def test_resume_after_copytruncate_reads_the_rest_from_the_copy(
    tmp_path: Path, tailers: list[FileTailer]
) -> None:
    log = tmp_path / "CLINIC1.log"
    log.write_bytes(b"00:0000:00000:00000:2026/11/26 08:00:00.00 kernel  started\nline 2\n")
    t = _tailer(tailers, log)
    _collect(t, _has_bytes(10))
    pos = t.position_at(_id(log), log.stat().st_size)
    t.close()
    with log.open("ab") as w:
        w.write(b"line 3 written while the agent was down\n")
    copy = tmp_path / "CLINIC1.log.1"  # logrotate copytruncate: copy, then truncate in place
    copy.write_bytes(log.read_bytes())
    os.truncate(log, 0)
    with log.open("ab") as w:
        w.write(b"00:0000:00000:00000:2026/11/27 00:00:01.00 server  after rotation\n")
    items = _collect(_tailer(tailers, log, pos), lambda it: b"after rotation" in _data(it))
    assert not any(isinstance(i, Problem) for i in items)
    switch = items.index(Switched(_id(copy), _id(log), "rotated"))
    assert _data(items[:switch]) == b"line 3 written while the agent was down\n"
    assert _data(items[switch:]) == log.read_bytes()


def test_position_json_round_trip_and_bad_input(tmp_path: Path) -> None:
    pos = TailPosition(str(tmp_path / "errorlog"), 2049, 131, 4096, "ab" * 32, 1024)
    assert TailPosition.from_json(pos.to_json()) == pos
    for bad in (
        "",
        "[]",
        '{"path": "x"}',
        pos.to_json().replace("4096", '"4096"'),
        pos.to_json()[:-1] + ', "x": 1}',
    ):
        with pytest.raises(SourceError):
            TailPosition.from_json(bad)


def test_watchdog_wakes_wait_for_a_new_line(tmp_path: Path, tailers: list[FileTailer]) -> None:
    log = tmp_path / "errorlog"
    log.write_bytes(b"start\n")
    t = _tailer(tailers, log, poll_interval=30.0)  # the poll cannot explain a quick wake-up
    assert t.watching
    _collect(t, _has_bytes(6))
    while t.wait(0.2):  # swallow notifications of what was already read
        t.read()

    def append() -> None:
        with log.open("ab") as w:
            w.write(b"crash line\n")

    writer = threading.Timer(0.3, append)
    writer.start()
    try:
        for _attempt in range(5):  # bounded: a notification for our line arrives well within this
            woke = t.wait(10.0)
            got = _data(t.read())
            if got:
                break
    finally:
        writer.cancel()
        writer.join()
    assert woke and got == b"crash line\n"


def test_polling_fallback_without_watchdog(tmp_path: Path, tailers: list[FileTailer]) -> None:
    before = set(threading.enumerate())
    log = tmp_path / "errorlog"
    t = _tailer(tailers, log, use_watchdog=False, poll_interval=0.05)
    assert not t.watching and set(threading.enumerate()) == before
    log.write_bytes(b"line\n")
    assert t.wait(5.0) is False  # no notifications: returns after the poll interval
    assert _data(_collect(t, _has_bytes(5))) == b"line\n"


def test_close_stops_the_observer_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    t = FileTailer(tmp_path / "errorlog")
    assert t.watching and set(threading.enumerate()) - before
    t.close()
    t.close()
    assert {th for th in threading.enumerate() if th.is_alive()} - before == set()
    assert t.read() == [] and t.wait(1.0) is False


# ---------------------------------------------------------------------------- kill -9


def _start_worker(log: Path, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), str(log), str(db)], stderr=subprocess.PIPE)


def _stored(db: Path) -> list[str]:
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("select line from lines order by id")]
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def test_kill_9_while_rotating_loses_and_repeats_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    log, db = tmp_path / "errorlog", tmp_path / "worker.db"
    n, rotate_at = 3000, 1500
    lines = [
        f"{i:06d} 00:0002:00000:00042:2026/11/26 10:00:00.00 server  {'x' * rng.randint(0, 200)}\n"
        for i in range(n)
    ]
    lines.append("END\n")
    kills = sorted(
        rng.sample(range(100, rotate_at - 100), 2) + rng.sample(range(rotate_at + 100, n - 100), 1)
    )
    stopped_over_rotation = (rotate_at - 20, rotate_at + 40)  # stopped before, restarted after the rotation
    procs: list[subprocess.Popen[bytes]] = []

    def kill_worker() -> None:
        time.sleep(rng.uniform(0.0, 0.3))  # let the worker get somewhere (or not) first
        os.kill(procs[-1].pid, signal.SIGKILL)
        procs[-1].wait(timeout=10)
        assert procs[-1].returncode == -signal.SIGKILL

    w = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        procs.append(_start_worker(log, db))
        for i, line in enumerate(lines):
            if i == stopped_over_rotation[1]:
                procs.append(_start_worker(log, db))
            if i == rotate_at:  # logrotate: rename, late lines to the old fd, then a new file
                os.rename(log, log.with_name("errorlog.1"))
                for late in lines[i : i + 10]:
                    os.write(w, late.encode())
                os.close(w)
                w = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            if rotate_at <= i < rotate_at + 10:
                continue
            data = line.encode()
            cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 4), len(data) - 1)))
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                os.write(w, data[a:b])
                if a == 0 and (i in kills or i == stopped_over_rotation[0]):
                    kill_worker()  # the file may end in a partial line now
                    if i in kills:
                        procs.append(_start_worker(log, db))
            if rng.random() < 0.02:
                time.sleep(0.005)
        procs[-1].wait(timeout=60)
        assert procs[-1].returncode == 0, procs[-1].stderr.read() if procs[-1].stderr else b""
        stored = _stored(db)
        first_wrong = next((j for j, (a, b) in enumerate(zip(stored, lines, strict=False)) if a != b), None)
        assert (len(stored), first_wrong) == (len(lines), None)
    finally:
        os.close(w)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            if p.stderr:
                p.stderr.close()
