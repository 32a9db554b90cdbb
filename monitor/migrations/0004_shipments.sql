-- Shipping (issue 5): the vendor packages in the spool, and each file's way to each target.
-- Written by monitor/ship_state.py (store ops), read by monitor/ship_state.py, ship_metrics.py
-- and doctor. Times are POSIX seconds.

-- A finished package found in the spool (or handed over by package_ready).
-- Its dumps are held while release_at is in the future or NULL and released_at is NULL
-- (metadata-first); `asewatch ship --release` or the delay sets released_at.
-- done_at: every file verified on every target, and the dumps' owners told.
CREATE TABLE ship_packages (
    package_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    found_at REAL NOT NULL,
    release_at REAL,
    released_at REAL,
    released_by TEXT,
    done_at REAL
);

-- One row per (package, file, target): the state machine
--   queued -> uploading -> verified, and failed (retried at next_attempt_at; NULL: given up).
-- `held` rows (dumps waiting for release) stay queued until released.
CREATE TABLE shipments (
    package_id TEXT NOT NULL,
    file TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('metadata', 'dump')),
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'uploading', 'verified', 'failed')),
    held INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    queued_at REAL NOT NULL,
    started_at REAL,
    updated_at REAL NOT NULL,
    verified_at REAL,
    next_attempt_at REAL,
    PRIMARY KEY (package_id, file, target)
) WITHOUT ROWID;
CREATE INDEX shipments_target_state ON shipments (target, state);

-- Verified is final: nothing may take a file's shipped mark away or re-send it.
CREATE TRIGGER shipments_verified_is_final BEFORE UPDATE OF state ON shipments
    WHEN OLD.state = 'verified' AND NEW.state <> 'verified'
BEGIN
    SELECT RAISE(ABORT, 'a verified shipment is final');
END;

-- Attempt outcomes per target (result: verified, failed), for asewatch_shipments_total.
CREATE TABLE ship_counters (
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (target, result)
) WITHOUT ROWID;

-- The last word from each target: reachable or not, and why not.
CREATE TABLE ship_targets (
    target TEXT PRIMARY KEY,
    up INTEGER NOT NULL,
    checked_at REAL NOT NULL,
    last_ok REAL,
    last_error TEXT
);

-- Doctor's latest verdicts (one row per check; server '' for host-wide checks).
CREATE TABLE doctor_checks (
    server TEXT NOT NULL,
    name TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('ok', 'warn', 'fail')),
    detail TEXT NOT NULL,
    fix TEXT NOT NULL,
    checked_at REAL NOT NULL,
    PRIMARY KEY (server, name)
);
