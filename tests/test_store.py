"""The store: what a DBA relies on after a crash, a restart or a kill -9 of the agent.

Nothing is lost, nothing is stored twice, a batch lands whole or not at all, and a
store from a newer asewatch is refused rather than damaged.
"""

from __future__ import annotations

import math
import os
import random
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import events as ev
from monitor.codec import EVENT_TYPES, decode_event, encode_event
from monitor.errors import StoreError
from monitor.store import (
    DB_NAME,
    SCHEMA_VERSION,
    Batch,
    CrashRow,
    SetState,
    Store,
    StoredEvent,
    StoreWriter,
    UpsertCrash,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "store_worker.py"


def _event_strategy(cls: type) -> st.SearchStrategy[Any]:
    # NaN is carried (see test_nan_survives) but is never equal to itself.
    floats = st.floats(allow_nan=False)
    hints = get_type_hints(cls)
    return st.builds(cls, **{f.name: floats for f in fields(cls) if hints[f.name] is float})


EVENTS = st.one_of(*(_event_strategy(cls) for cls in EVENT_TYPES.values()))


def _error(n: int, message: str = "boom") -> ev.ErrorlogError:
    return ev.ErrorlogError(
        time=datetime(2024, 3, 1, 12, 0, n % 60),
        thread=None,
        family=0,
        spid=n,
        number=605,
        severity=21,
        state=1,
        message=message,
        offset=n,
    )


def _exit(pid: int) -> ev.ProcessExited:
    return ev.ProcessExited("SRV", pid, 1000.0 + pid, 2000.0, None, 11, 2000.5)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store.open(tmp_path / "state") as s:
        yield s


# --------------------------------------------------------------------------- files, WAL, migrations


def test_state_dir_is_0700_and_database_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Store.open(tmp_path / "new" / "state") as s:
            s.append(Batch(events=[("SRV", _error(1))]))
            state = tmp_path / "new" / "state"
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            files = sorted(p.name for p in state.iterdir())
            assert files == [DB_NAME, f"{DB_NAME}-shm", f"{DB_NAME}-wal"]
            for name in files:
                assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_wal_mode_is_on_and_commits_are_fully_synced(store: Store) -> None:
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn is not None
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migrations_apply_once_and_reopening_changes_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path) as s:
        s.append(Batch(events=[("SRV", _error(1))], positions={"errorlog:SRV": "100"}))
    for _ in range(2):
        with Store.open(tmp_path) as s:
            assert s.count_events(ev.ErrorlogError) == 1
            assert s.position("errorlog:SRV") == "100"
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_store_from_a_newer_asewatch_is_refused_and_left_alone(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match="newer asewatch") as info:
        Store.open(tmp_path)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(info.value)
    assert str(tmp_path / DB_NAME) in str(info.value)
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is an errorlog, not a database\n" * 200)
    with pytest.raises(StoreError, match="not a usable asewatch store"):
        Store.open(tmp_path)


def test_integrity_check_is_clean_on_a_healthy_store(store: Store) -> None:
    store.append(Batch(events=[("SRV", _error(n)) for n in range(10)]))
    assert store.integrity_check() == []


# --------------------------------------------------------------------------- codec


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
@settings(max_examples=60)
@given(data=st.data())
def test_every_event_type_round_trips_through_json_exactly(kind: str, data: st.DataObject) -> None:
    event = data.draw(_event_strategy(EVENT_TYPES[kind]))
    back = decode_event(kind, encode_event(event))
    assert back == event
    assert type(back) is type(event)
    for f in fields(event):  # tuples stay tuples, naive datetimes stay naive
        assert type(getattr(back, f.name)) is type(getattr(event, f.name)), f.name


def test_every_event_class_in_events_py_is_covered() -> None:
    assert set(EVENT_TYPES) == {cls.__name__ for cls in ev.Event.__args__}  # type: ignore[attr-defined]


def test_nan_and_undecodable_errorlog_bytes_survive() -> None:
    sample = ev.ProcessSample("SRV", 1, 1.0, 2.0, 3, math.nan, 4, None)
    back = decode_event("ProcessSample", encode_event(sample))
    assert isinstance(back, ev.ProcessSample)
    assert math.isnan(back.cpu_seconds)
    raw = b"login \xe5sa failed".decode("utf-8", "surrogateescape")
    error = _error(1, raw)
    assert decode_event("ErrorlogError", encode_event(error)) == error


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ('{"time":"2024-01-01T00:00:00","kind":"halted","by":null,"offset":1}', "kind"),
        ('{"time":"2024-01-01T00:00:00","kind":"nowait","by":null}', "missing"),
        ('{"time":"2024-01-01T00:00:00","kind":"nowait","by":null,"offset":true}', "offset"),
        ('{"time":17,"kind":"nowait","by":null,"offset":1}', "time"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_decoding_refuses_a_payload_that_does_not_fit_the_class(payload: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_event("ServerShutdown", payload)


@settings(max_examples=25, deadline=None)
@given(st.lists(EVENTS, min_size=1, max_size=6))
def test_events_read_back_from_the_database_equal_what_was_stored(batch: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp)) as s:
        new = s.append(Batch(events=[("SRV", e) for e in batch]))
        assert list(s.events()) == new
        first: dict[str, Any] = {}
        for e in batch:  # a key seen again in the same batch is a duplicate too
            first.setdefault(e.key, e)
        assert [stored.event for stored in new] == list(first.values())


# --------------------------------------------------------------------------- the event log


def test_an_event_seen_twice_is_stored_once_and_reported_as_a_duplicate(store: Store) -> None:
    batch = Batch(events=[("SRV", _error(1)), ("SRV", _exit(7))], positions={"errorlog:SRV": "10"})
    first = store.append(batch)
    assert [s.kind for s in first] == ["ErrorlogError", "ProcessExited"]
    again = store.append(batch)  # a source replayed after a restart
    assert again == []
    assert list(store.events()) == first
    # The same fact on another server is a different fact.
    other = store.append(Batch(events=[("SRV2", _error(1))]))
    assert [s.server for s in other] == ["SRV2"]


def test_event_rows_keep_server_key_kind_time_and_observed_at(store: Store) -> None:
    store.append(Batch(events=[("SRV", _error(5)), ("SRV", _exit(7))]))
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT key, server, kind, time, observed_at FROM events ORDER BY seq").fetchall()
    assert rows[0][:4] == (f"SRV|{_error(5).key}", "SRV", "ErrorlogError", "2024-03-01T12:00:05")
    assert rows[1] == (f"SRV|{_exit(7).key}", "SRV", "ProcessExited", "2000.0", 2000.5)


def test_the_event_log_cannot_be_rewritten(store: Store) -> None:
    store.append(Batch(events=[("SRV", _error(1))]))
    with sqlite3.connect(store.path) as db, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE events SET payload = '{}'")


def test_reading_filters_by_kind_server_seq_and_limit(store: Store) -> None:
    store.append(Batch(events=[("A", _error(1)), ("B", _error(2)), ("A", _exit(3)), ("A", _error(4))]))
    assert [s.seq for s in store.events(kinds=[ev.ErrorlogError], server="A")] == [1, 4]
    assert [s.seq for s in store.events(kinds=["ProcessExited", "ErrorlogError"], since_seq=2)] == [3, 4]
    assert [s.seq for s in store.events(limit=2)] == [1, 2]
    assert store.count_events("ErrorlogError") == 3
    assert store.count_events(ev.ErrorlogError, server="B") == 1
    with pytest.raises(ValueError, match="CrashBlocks"):
        store.events(kinds=["CrashBlocks"])


def test_a_batch_lands_whole_or_not_at_all(store: Store) -> None:
    store.append(Batch(events=[("SRV", _error(0))], positions={"errorlog:SRV": "100"}))
    # A real SQLite failure after the events are written (as a full disk would cause).
    with sqlite3.connect(store.path) as db:
        db.execute(
            "CREATE TRIGGER fail_positions BEFORE UPDATE ON positions "
            "BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
        )
    with pytest.raises(StoreError, match="disk full"):
        store.append(
            Batch(events=[("SRV", _error(1)), ("SRV", _error(2))], positions={"errorlog:SRV": "300"})
        )
    assert store.count_events(ev.ErrorlogError) == 1
    assert store.position("errorlog:SRV") == "100"
    # An event that cannot be stored, after good ones, takes the whole batch with it.
    bad: Any = object()
    with pytest.raises(StoreError, match="cannot store object"):
        store.append(Batch(events=[("SRV", _error(3)), ("SRV", bad)], positions={"other": "1"}))
    assert store.count_events(ev.ErrorlogError) == 1
    assert store.position("other") is None
    # The store is still usable afterwards.
    assert len(store.append(Batch(events=[("SRV", _error(4))], positions={"other": "2"}))) == 1


def test_several_batches_commit_together_or_not_at_all(store: Store) -> None:
    good = Batch(events=[("SRV", _error(1))], positions={"a": "1"})
    bad = Batch(ops=[UpsertCrash(CrashRow(server="SRV", key="k", payload=None))])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="NOT NULL"):
        store.append_many([good, bad])
    assert store.count_events("ErrorlogError") == 0
    assert store.position("a") is None


# --------------------------------------------------------------------------- derived state


def test_crash_rows_are_upserted_by_key_and_keep_their_id(store: Store) -> None:
    when = datetime(2024, 3, 1, 12, 0, 5)
    first = store.upsert_crash(CrashRow(server="SRV", key="crash:1", time=when, spid=17, complete=False))
    store.upsert_crash(CrashRow(server="OTHER", key="crash:2"))
    second = store.upsert_crash(
        CrashRow(server="SRV", key="crash:1", time=when, spid=17, complete=True, exit_pid=4242, exit_time=9.5)
    )
    assert first.id == second.id == 1
    assert second.complete is True
    assert second.exit_pid == 4242
    assert second.time == when
    assert second.updated_at is not None
    assert store.crash(1) == store.crash("crash:1") == second
    assert store.crash("nope") is None
    assert [c.key for c in store.crashes()] == ["crash:1", "crash:2"]
    assert [c.key for c in store.crashes(server="OTHER")] == ["crash:2"]


def test_state_values_are_set_deleted_and_committed_with_their_batch(store: Store) -> None:
    store.set_state("crashes.seq", "10")
    assert store.get_state("crashes.seq") == "10"
    store.append(Batch(events=[("SRV", _error(1))], ops=[SetState("crashes.seq", "11")]))
    assert store.get_state("crashes.seq") == "11"
    store.set_state("crashes.seq", None)
    assert store.get_state("crashes.seq") is None


# --------------------------------------------------------------------------- the writer thread


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_writer_commits_and_reports_only_new_events(store: Store) -> None:
    seen: list[StoredEvent] = []
    writer = StoreWriter(store, on_committed=seen.extend)
    writer.start()
    try:
        assert any(t.name == "store-writer" for t in threading.enumerate())
        writer.submit(Batch(events=[("SRV", _error(1)), ("SRV", _error(2))], positions={"p": "2"}))
        assert _wait_for(lambda: len(seen) == 2)
        writer.submit(Batch(events=[("SRV", _error(2)), ("SRV", _error(3))], positions={"p": "3"}))
        assert _wait_for(lambda: store.position("p") == "3")
    finally:
        started = time.monotonic()
        writer.stop(timeout=5.0)
        assert time.monotonic() - started < 5.0
    assert [s.event.spid for s in seen] == [1, 2, 3]  # type: ignore[union-attr]
    assert not writer.alive
    assert not any(t.name == "store-writer" for t in threading.enumerate())
    stats = writer.stats()
    assert (stats.committed_batches, stats.inserted_events, stats.duplicate_events) == (2, 3, 1)


def test_on_committed_can_write_derived_state_on_the_writer_thread(store: Store) -> None:
    def derive(new: list[StoredEvent]) -> None:
        rows = [CrashRow(server=s.server, key=f"exit:{s.seq}", exit_event_seq=s.seq) for s in new]
        store.append(Batch(ops=[UpsertCrash(r) for r in rows], positions={"derived": str(new[-1].seq)}))

    writer = StoreWriter(store, on_committed=derive)
    writer.start()
    try:
        for pid in range(5):
            writer.submit(Batch(events=[("SRV", _exit(pid))]))
    finally:
        writer.stop()
    assert [c.exit_event_seq for c in store.crashes()] == [1, 2, 3, 4, 5]
    assert store.position("derived") == "5"


def test_stop_commits_everything_queued(store: Store) -> None:
    writer = StoreWriter(store, queue_size=1000)
    for n in range(300):  # queued before the thread runs: stop() must drain them
        writer.submit(Batch(events=[("SRV", _error(n))], positions={"p": str(n)}))
    writer.start()
    writer.stop(timeout=5.0)
    assert store.count_events("ErrorlogError") == 300
    assert store.position("p") == "299"
    assert writer.stats().abandoned_batches == 0
    with pytest.raises(StoreError, match="stopped"):
        writer.submit(Batch())


def test_a_full_queue_makes_submit_give_up_after_its_timeout(store: Store) -> None:
    writer = StoreWriter(store, queue_size=2)
    writer.submit(Batch(events=[("SRV", _error(1))]))
    writer.submit(Batch(events=[("SRV", _error(2))]))
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"queue full \(2 batches\)"):
        writer.submit(Batch(events=[("SRV", _error(3))]), timeout=0.2)
    assert time.monotonic() - started >= 0.2  # it waited for room before giving up
    writer.start()
    writer.stop()
    assert store.count_events("ErrorlogError") == 2


def test_one_bad_batch_does_not_take_its_neighbours_or_the_writer_down(store: Store) -> None:
    bad: Any = object()
    writer = StoreWriter(store)
    writer.submit(Batch(events=[("SRV", _error(1))]))
    writer.submit(Batch(events=[("SRV", bad)]))
    writer.submit(Batch(events=[("SRV", _error(3))]))
    writer.start()  # all three go into one group commit, which fails and is retried one by one
    try:
        assert _wait_for(lambda: writer.stats().failed_batches == 1)
        writer.submit(Batch(events=[("SRV", _error(4))]))
        assert _wait_for(lambda: store.count_events("ErrorlogError") == 3)
    finally:
        writer.stop()
    assert writer.stats().committed_batches == 3


def test_readers_in_other_threads_see_whole_batches_while_the_writer_writes(store: Store) -> None:
    batches = 200
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        last = 0
        while not done.is_set():
            with store.reader() as r:  # one snapshot: events and position agree
                count = r.count_events("ErrorlogError")
                position = r.position("p")
            if count % 2 or (count and position != str(count // 2 - 1)) or count < last:
                problems.append(f"count {count} with position {position} after {last}")
            last = count
        if last != 2 * batches:
            problems.append(f"reader ended at {last}")

    writer = StoreWriter(store)
    readers = [threading.Thread(target=read, name=f"test-reader-{i}") for i in range(2)]
    writer.start()
    for t in readers:
        t.start()
    try:
        for n in range(batches):
            writer.submit(
                Batch(events=[("SRV", _error(2 * n)), ("SRV", _error(2 * n + 1))], positions={"p": str(n)})
            )
        assert _wait_for(lambda: store.position("p") == str(batches - 1), timeout=30)
    finally:
        writer.stop()
        done.set()
        for t in readers:
            t.join(10)
    assert problems == []


# --------------------------------------------------------------------------- kill -9


def _read_lines(proc: subprocess.Popen[bytes], buffer: bytearray, want: int, timeout: float) -> list[str]:
    """Complete lines from the worker's stdout until ``want`` arrived or ``timeout`` passed."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer.extend(chunk)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            lines.append(line.decode())
    return lines


@pytest.mark.integration
def test_kill_9_mid_append_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    size = 20
    reported: dict[int, list[int]] = {}
    rng = random.Random(9)
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(tmp_path), str(size)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        buffer = bytearray()
        try:
            lines = _read_lines(proc, buffer, want=25, timeout=30)
            assert len(lines) >= 25, f"worker wrote only {lines} (exit {proc.poll()})"
            time.sleep(rng.uniform(0, 0.02))  # land the kill at a different point each round
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        lines += _read_lines(proc, buffer, want=10**9, timeout=5)  # whatever it printed before dying
        assert proc.stdout is not None
        proc.stdout.close()
        if round_ > 0:
            assert lines[0] == "replay 0"  # re-reading the last batch added nothing
        for line in lines:
            if not line.startswith("replay"):
                n, *seqs = map(int, line.split())
                assert len(seqs) == size
                reported[n] = seqs

        with Store.open(tmp_path) as s:
            assert s.integrity_check() == []
            stored: dict[int, list[int]] = {}
            for e in s.events(kinds=["ErrorlogError"]):
                stored.setdefault(e.event.spid, []).append(e.seq)  # type: ignore[union-attr]
            last = int(s.position("worker") or -1)
        # Every batch the worker reported is there, whole, with the seqs it reported.
        assert all(stored.get(n) == seqs for n, seqs in reported.items())
        # Nothing half-written: batches 0..last are complete, and nothing beyond the position.
        assert sorted(stored) == list(range(last + 1))
        assert all(len(seqs) == size for seqs in stored.values())
        assert last >= max(reported)
