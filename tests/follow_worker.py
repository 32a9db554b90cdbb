"""Follow an errorlog and commit each emit to SQLite in one transaction (kill -9 test helper).

Usage: follow_worker.py LOG DB. Runs ErrorlogFollower("CLINIC1") on LOG from the position
stored in DB. Each emit -- its records' keys (idempotency keys), its collector failures and
its position -- is one transaction, as the agent's store does it, so a SIGKILL at any moment
leaves records and position consistent. Every delivery is a row (no unique constraint): a
record delivered twice shows as two rows. SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from collectors.errorlog.follow import ErrorlogFollower
from monitor.events import CollectorFailed, CollectorSucceeded, Event

SERVER = "CLINIC1"
SCHEMA = (
    "create table if not exists delivered(id integer primary key, key text not null, kind text not null)",
    "create table if not exists positions(source text primary key, json text not null)",
    "create table if not exists problems(id integer primary key, reason text not null)",
)


def main(log: Path, db: Path) -> int:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("pragma journal_mode=wal")
    for ddl in SCHEMA:
        con.execute(ddl)
    row = con.execute("select json from positions where source = ?", (f"errorlog:{SERVER}",)).fetchone()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signo, _frame: stop.set())

    def emit(events: Sequence[Event], positions: Mapping[str, str]) -> None:
        records = [e for e in events if not isinstance(e, CollectorFailed | CollectorSucceeded)]
        failed = [e.reason for e in events if isinstance(e, CollectorFailed)]
        if not (records or failed or positions):
            return
        con.execute("begin immediate")
        con.executemany(
            "insert into delivered(key, kind) values (?, ?)", [(e.key, type(e).__name__) for e in records]
        )
        con.executemany("insert into problems(reason) values (?)", [(r,) for r in failed])
        con.executemany(
            "insert into positions(source, json) values (?, ?) "
            "on conflict(source) do update set json = excluded.json",
            positions.items(),
        )
        con.execute("commit")

    follower = ErrorlogFollower(SERVER, lambda: log, row[0] if row else None, poll_interval=0.2)
    follower.run(emit, stop)
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
