"""The store's schema, as an ordered list of migrations, and the code that applies them.

A migration is a numbered list of SQL statements. At open, every migration newer than
the database's version is applied in its own transaction, which also records it in
``schema_migrations``; a crash mid-migration leaves the previous version intact.
A database that records a version this asewatch does not know was written by a newer
asewatch: it is refused rather than guessed at.

The SQL lives here rather than in ``.sql`` files: the order is the list's order, and
nothing has to be shipped as package data for an installed agent to open its store.
Add a migration by appending to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources

from monitor.errors import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` (1, 2, …), a short ``name`` and its statements."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event log, positions, state, crashes",
        (
            # AUTOINCREMENT: a seq is never reused, even if retention someday deletes
            # the newest rows, so a reader's since_seq cursor stays honest.
            """CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                key TEXT NOT NULL UNIQUE,
                server TEXT NOT NULL,
                kind TEXT NOT NULL,
                time TEXT,
                observed_at REAL NOT NULL,
                payload TEXT NOT NULL
            )""",
            "CREATE INDEX events_kind_server ON events (kind, server, seq)",
            "CREATE INDEX events_server ON events (server, seq)",
            """CREATE TRIGGER events_append_only BEFORE UPDATE ON events
               BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
            """CREATE TABLE positions (
                source TEXT PRIMARY KEY,
                value TEXT,
                updated_at REAL
            )""",
            """CREATE TABLE state (
                key TEXT PRIMARY KEY,
                value TEXT
            )""",
            """CREATE TABLE crashes (
                id INTEGER PRIMARY KEY,
                server TEXT NOT NULL,
                key TEXT NOT NULL UNIQUE,
                time TEXT,
                kind TEXT,
                signal INTEGER,
                signature TEXT,
                spid INTEGER,
                kpid INTEGER,
                family INTEGER,
                login TEXT,
                host TEXT,
                program TEXT,
                sql TEXT,
                procedure TEXT,
                server_terminated INTEGER,
                complete INTEGER,
                exit_pid INTEGER,
                exit_time REAL,
                errorlog_event_seq INTEGER,
                exit_event_seq INTEGER,
                state TEXT,
                payload TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE INDEX crashes_server_time ON crashes (server, time)",
            "CREATE INDEX crashes_signature ON crashes (signature)",
        ),
    ),
)


def _split(sql: str) -> tuple[str, ...]:
    """Statements of a migration file, split where SQLite says a statement is complete
    (so a trigger's ``BEGIN … END;`` stays whole). Comment-only chunks are dropped."""
    out: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            stmt = current.strip()
            body = "\n".join(ln for ln in stmt.splitlines() if not ln.lstrip().startswith("--")).strip()
            if body.rstrip(";").strip():
                out.append(stmt)
            current = ""
    if current.strip() and any(not ln.lstrip().startswith("--") for ln in current.strip().splitlines()):
        raise ValueError(f"an incomplete statement at the end: {current.strip()[:60]!r}")
    return tuple(out)


def _file_migrations() -> tuple[Migration, ...]:
    """``monitor/migrations/NNNN_name.sql``: one migration per file, applied in number order.

    Feature modules add their tables this way (one file each), so no two of them edit
    the same Python list. A file's number is its schema version; never edit a shipped one.
    """
    found = []
    folder = resources.files("monitor").joinpath("migrations")
    if not folder.is_dir():
        return ()
    for res in folder.iterdir():
        m = _FILE_RE.fullmatch(res.name)
        if m:
            found.append(
                Migration(int(m.group(1)), m.group(2).replace("_", " "), _split(res.read_text("utf-8")))
            )
    found.sort(key=lambda mig: mig.version)
    return tuple(found)


_FILE_RE = re.compile(r"(\d{4})_(\w+)\.sql")
MIGRATIONS = MIGRATIONS + _file_migrations()
_versions = [m.version for m in MIGRATIONS]
if _versions != list(range(1, len(_versions) + 1)):
    raise RuntimeError(f"schema migrations must be numbered 1, 2, 3, ... without gaps; found {_versions}")

#: The newest schema version this asewatch knows.
SCHEMA_VERSION = MIGRATIONS[-1].version

_CREATE_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration recorded in the database (0 for a new, empty one)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, path: str) -> list[int]:
    """Bring the database up to :data:`SCHEMA_VERSION`; return the versions applied now.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each migration runs
    in its own ``BEGIN IMMEDIATE`` transaction, which serialises two processes opening
    the same new store. Raises StoreError if the database was written by a newer
    asewatch, or if a migration fails (that migration is rolled back).
    """
    _refuse_newer(schema_version(conn), path)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= schema_version(conn):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CREATE_MIGRATIONS)
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = schema_version(conn)
            _refuse_newer(current, path)
            if migration.version > current:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    path, f"migration {migration.version} ({migration.name}) failed: {exc}"
                ) from exc
            raise
    return applied


def _refuse_newer(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            path,
            f"it was written by a newer asewatch (schema version {version}; this asewatch "
            f"knows up to {SCHEMA_VERSION}). Upgrade asewatch, or point --state-dir elsewhere",
        )
