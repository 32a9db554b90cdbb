"""Follow a file and store each complete line with the position after it (kill -9 test helper).

Usage: tail_worker.py LOG DB. Each line and the TailPosition after it are written in one
SQLite transaction, so a SIGKILL at any moment leaves the table and the position
consistent; on start the worker resumes from the stored position. Exits 0 after a line
starting with ``END``.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from monitor.tail import Chunk, FileId, FileTailer, Switched, TailPosition


def _store(con: sqlite3.Connection, line: bytes, position: TailPosition) -> None:
    con.execute("begin immediate")
    con.execute("insert into lines(line) values (?)", (line.decode(),))
    con.execute("insert or replace into pos(id, json) values (1, ?)", (position.to_json(),))
    con.execute("commit")


def main(log: Path, db: Path) -> int:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("pragma journal_mode=wal")
    con.execute("create table if not exists lines(id integer primary key, line text not null)")
    con.execute("create table if not exists pos(id integer primary key check (id = 1), json text not null)")
    row = con.execute("select json from pos").fetchone()
    position = TailPosition.from_json(row[0]) if row else None
    buf, buf_start = b"", 0
    with FileTailer(log, position, poll_interval=0.05, chunk_size=4096) as tailer:
        while True:
            for item in tailer.read():
                if isinstance(item, Switched):
                    buf = b""  # lines never span files here; a leftover would be lost on purpose
                    continue
                if not isinstance(item, Chunk):
                    print(f"tail_worker: {item}", file=sys.stderr)
                    continue
                if not buf:
                    buf_start = item.start
                buf += item.data
                fid: FileId = item.file_id
                while (nl := buf.find(b"\n")) >= 0:
                    line, buf = buf[: nl + 1], buf[nl + 1 :]
                    buf_start += nl + 1
                    _store(con, line, tailer.position_at(fid, buf_start))
                    if line.startswith(b"END"):
                        return 0
            tailer.wait(1.0)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
