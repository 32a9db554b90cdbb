-- The flight recorder (issue 4): what each server ran, kept outside the server.
-- Written by monitor/flightrec.py (store ops inside the writer's transactions), read by
-- monitor/flightrec_read.py. SQL text is stored only as its redacted shape.
-- Times are POSIX seconds. `incarnation` is the server's monState.StartDate (POSIX
-- seconds) at the sample that read the row: rows of a server that crashed and restarted
-- are told apart by it.

-- Raw ring: finished statements (monSysStatement), pruned by age and by a row cap.
CREATE TABLE activity_statements (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    incarnation REAL,
    spid INTEGER NOT NULL,
    kpid INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    context_id INTEGER NOT NULL,
    statement_number INTEGER NOT NULL,
    line INTEGER NOT NULL,
    proc_nest INTEGER,
    family INTEGER,
    login TEXT,
    host TEXT,
    program TEXT,
    dbid INTEGER,
    db TEXT,
    procedure_id INTEGER,
    procedure TEXT,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    cpu_ms INTEGER,
    wait_ms INTEGER,
    logical_reads INTEGER,
    physical_reads INTEGER,
    rows_affected INTEGER,
    error INTEGER,
    -- A row re-read after a reconnect (the pipe returns its whole ring again) is the same row.
    UNIQUE (server, spid, kpid, batch_id, context_id, statement_number, line, start_time)
);
CREATE INDEX activity_statements_end ON activity_statements (server, end_time);

-- Raw ring: SQL text per batch (monSysSQLText, or monProcessSQLText for what was running).
CREATE TABLE activity_sql (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    incarnation REAL,
    spid INTEGER NOT NULL,
    kpid INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    seen_at REAL NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (server, spid, kpid, batch_id)
);
CREATE INDEX activity_sql_seen ON activity_sql (server, seen_at);

-- Raw ring: sessions as monProcess showed them (who a spid/kpid was).
CREATE TABLE activity_sessions (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    incarnation REAL,
    spid INTEGER NOT NULL,
    kpid INTEGER NOT NULL,
    family INTEGER NOT NULL,
    login TEXT,
    host TEXT,
    program TEXT,
    db TEXT,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    UNIQUE (server, spid, kpid)
);
CREATE INDEX activity_sessions_seen ON activity_sessions (server, last_seen);

-- Raw ring: procedure call stacks (monProcessProcedures) at each sample.
CREATE TABLE activity_stack (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    incarnation REAL,
    sampled_at REAL NOT NULL,
    spid INTEGER NOT NULL,
    kpid INTEGER NOT NULL,
    level INTEGER NOT NULL,
    context_id INTEGER NOT NULL,
    db TEXT,
    owner TEXT,
    name TEXT,
    object_type TEXT,
    line INTEGER,
    statement_number INTEGER
);
CREATE INDEX activity_stack_spid ON activity_stack (server, spid, sampled_at);
CREATE INDEX activity_stack_time ON activity_stack (server, sampled_at);

-- Per-minute aggregates per procedure (procedure '' = ad hoc SQL), kept for weeks.
CREATE TABLE activity_minute (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    minute INTEGER NOT NULL,
    db TEXT NOT NULL,
    procedure TEXT NOT NULL,
    executions INTEGER NOT NULL,
    statements INTEGER NOT NULL,
    cpu_ms INTEGER NOT NULL,
    logical_reads INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    elapsed_ms INTEGER NOT NULL,
    logins INTEGER NOT NULL,
    UNIQUE (server, minute, db, procedure)
);
CREATE INDEX activity_minute_minute ON activity_minute (minute);

-- The logins of recent minutes, to count distinct logins per minute (kept one hour).
CREATE TABLE activity_minute_logins (
    server TEXT NOT NULL,
    minute INTEGER NOT NULL,
    db TEXT NOT NULL,
    procedure TEXT NOT NULL,
    login TEXT NOT NULL,
    PRIMARY KEY (server, minute, db, procedure, login)
) WITHOUT ROWID;

-- The sampler's state per server, for metrics (one row per server, replaced each sample).
CREATE TABLE mda_status (
    server TEXT PRIMARY KEY,
    sampled_at REAL NOT NULL,
    up INTEGER NOT NULL,
    duration REAL,
    error TEXT,
    connections INTEGER,
    max_connections INTEGER,
    start_date TEXT,
    incarnation REAL,
    own_spid INTEGER,
    last_success REAL,
    watermark REAL
);

-- Cumulative counters per server and MDA table (rows read, probable pipe overflows).
CREATE TABLE mda_counters (
    server TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows_total INTEGER NOT NULL,
    overflow_total INTEGER NOT NULL,
    PRIMARY KEY (server, table_name)
) WITHOUT ROWID;

-- A crash's frozen activity: one header per crash record (crashes.key) ...
CREATE TABLE crash_activity (
    crash_key TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    crash_time REAL NOT NULL,
    spid INTEGER,
    kpid INTEGER,
    family INTEGER,
    session_spid INTEGER,
    session_kpid INTEGER,
    login TEXT,
    host TEXT,
    program TEXT,
    incarnation REAL,
    window_s REAL NOT NULL,
    frozen_at REAL NOT NULL,
    complete INTEGER NOT NULL,
    statements INTEGER NOT NULL,
    truncated INTEGER NOT NULL
);

-- ... its statements (role: crashing, session, running, activity) with their SQL shape ...
CREATE TABLE crash_activity_statements (
    id INTEGER PRIMARY KEY,
    crash_key TEXT NOT NULL,
    role TEXT NOT NULL,
    spid INTEGER NOT NULL,
    kpid INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    context_id INTEGER,
    statement_number INTEGER,
    line INTEGER,
    family INTEGER,
    login TEXT,
    host TEXT,
    program TEXT,
    db TEXT,
    procedure TEXT,
    start_time REAL,
    end_time REAL,
    cpu_ms INTEGER,
    logical_reads INTEGER,
    error INTEGER,
    sql TEXT
);
CREATE INDEX crash_activity_statements_key ON crash_activity_statements (crash_key, role);

-- ... and the procedure call stacks of the crashing spid and its session.
CREATE TABLE crash_activity_stack (
    id INTEGER PRIMARY KEY,
    crash_key TEXT NOT NULL,
    sampled_at REAL NOT NULL,
    spid INTEGER NOT NULL,
    kpid INTEGER NOT NULL,
    level INTEGER NOT NULL,
    db TEXT,
    owner TEXT,
    name TEXT,
    line INTEGER,
    statement_number INTEGER
);
CREATE INDEX crash_activity_stack_key ON crash_activity_stack (crash_key);
