-- Dump and core files (issue 5). Written by monitor/dumps.py (store ops inside the writer's
-- transactions, from DumpSeen / DumpRemoved / DumpEvicted events), read by monitor/dumps_read.py.
-- Times are POSIX seconds. A row is one dump file: a path and, once finished, its SHA-256.
-- Rows are never deleted: evicting a dump deletes its file and keeps the row.

CREATE TABLE dumps (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,             -- '' when it could not be told
    path TEXT NOT NULL,
    sha256 TEXT,                      -- NULL while writing, and when unreadable
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    state TEXT NOT NULL,              -- writing | complete | truncated | unreadable
    reason TEXT,                      -- why truncated / unreadable
    expected_size INTEGER,
    writer_pid INTEGER,
    first_seen REAL NOT NULL,         -- when the agent first saw the file
    finished_at REAL,                 -- when it was judged finished
    crash_id INTEGER,                 -- crashes.id it belongs to (attach window); NULL: no crash
    flood_key TEXT,                   -- the crash's signature (or its kind) while attached
    flood_day TEXT,                   -- local date (YYYY-MM-DD) of the dump, the flood-control bucket
    suppressed INTEGER NOT NULL DEFAULT 0,  -- 1: not among the first/last K of its signature that day
    retention TEXT NOT NULL DEFAULT 'kept', -- kept | suppressed | evicting | evicted | removed
    evict_reason TEXT,                -- flood | age | count | bytes | free
    evicted_at REAL,
    forced INTEGER NOT NULL DEFAULT 0,      -- evicted though not shipped, on the operator's word
    shipped_at REAL,
    last_seq INTEGER NOT NULL DEFAULT 0,    -- the newest event applied to the row (replays skip older)
    updated_at REAL NOT NULL,
    UNIQUE (path, sha256)
);
CREATE INDEX dumps_path ON dumps (path, id);
CREATE INDEX dumps_crash ON dumps (crash_id);
CREATE INDEX dumps_sha ON dumps (sha256);
CREATE INDEX dumps_flood ON dumps (server, flood_key, flood_day);

-- Who is using a dump right now (packaging, shipping): such a dump is never evicted. A hold
-- names its process (pid + start time); a hold whose process is gone is stale and ignored.
CREATE TABLE dump_holds (
    dump_id INTEGER NOT NULL,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start REAL NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (dump_id, holder)
);
