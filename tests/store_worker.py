"""A process that appends batches to a store until it is killed (for the kill -9 test).

    python tests/store_worker.py STATE_DIR RECORDS_PER_BATCH

Like the errorlog collector it resumes from its stored position: batch ``n`` holds
RECORDS_PER_BATCH records and sets the position ``worker`` to ``n`` in the same commit.
On start it first replays the last committed batch (as a collector re-reading from an
older offset would) and prints ``replay <new events>``; then, after each commit, it
prints ``<batch> <seq> <seq> …`` and flushes, so every line printed is a committed batch.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from monitor.events import ErrorlogError
from monitor.store import Batch, Store

SERVER = "WORKER"
SOURCE = "worker"


def batch(n: int, size: int) -> Batch:
    """Batch number ``n``: ``size`` errorlog records (spid = n, number = i) and position n."""
    base = datetime(2024, 1, 1) + timedelta(seconds=n)
    records = [
        (
            SERVER,
            ErrorlogError(
                time=base,
                thread=None,
                family=0,
                spid=n,
                number=i,
                severity=10,
                state=1,
                message=f"batch {n} record {i} " + "x" * 200,
                offset=n * size + i,
            ),
        )
        for i in range(size)
    ]
    return Batch(events=records, positions={SOURCE: str(n)})


def main(argv: list[str]) -> int:
    state_dir, size = Path(argv[1]), int(argv[2])
    with Store.open(state_dir) as store:
        last = store.position(SOURCE)
        if last is not None:
            replayed = store.append(batch(int(last), size))
            print(f"replay {len(replayed)}", flush=True)
        n = 0 if last is None else int(last) + 1
        while True:
            new = store.append(batch(n, size))
            print(n, *(e.seq for e in new), flush=True)
            n += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
