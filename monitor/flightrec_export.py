"""Export the flight recorder as CSV or Parquet (pandas + pyarrow), for offline analysis.

``asewatch export activity --what statements`` (the raw ring) writes one row per statement:

==================  ===========================================================================
column              meaning
==================  ===========================================================================
server              the ASE server name (``-s``)
spid, kpid          the session's spid and kernel process id (monSysStatement.SPID/KPID)
family              parent spid of a parallel worker (monProcess.FamilyID); 0 = not a worker
login, host,        who ran it: monProcess.Login, HostName, Application at the time
program
db                  database name (monSysStatement.DBName)
procedure           procedure name (object_name(ProcedureID, DBID)); empty for ad hoc SQL
line                line in the procedure or batch (LineNumber)
statement_number    statement number in the batch (StatementNumber)
batch_id,           BatchID and ContextID (one procedure execution within the batch)
context_id
start_time,         start and end, server local time (ISO 8601, no zone)
end_time
elapsed_ms          end - start, milliseconds
cpu_ms, wait_ms     CpuTime and WaitTime, milliseconds
logical_reads,      LogicalReads, PhysicalReads, RowsAffected
physical_reads,
rows_affected
error               ErrorStatus (0 = none)
sql                 the batch's SQL shape: literals replaced by ``?``, personal identity
                    numbers removed (the raw text is never stored)
==================  ===========================================================================

``--what minutes`` writes the per-minute aggregates: ``server, minute`` (start of the
minute, local time), ``db, procedure`` (empty = ad hoc SQL), ``executions`` (procedure
executions, or ad hoc statements), ``statements``, ``cpu_ms``, ``logical_reads``,
``errors`` (statements with ErrorStatus != 0), ``elapsed_ms``, ``logins`` (distinct).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from monitor.redact import personal_numbers
from monitor.store_reader import StoreReader

ExportWhat = Literal["statements", "minutes"]
ExportFormat = Literal["csv", "parquet"]

STATEMENT_COLUMNS = (
    "server", "spid", "kpid", "family", "login", "host", "program", "db", "procedure", "line",
    "statement_number", "batch_id", "context_id", "start_time", "end_time", "elapsed_ms", "cpu_ms",
    "wait_ms", "logical_reads", "physical_reads", "rows_affected", "error", "sql",
)  # fmt: skip
MINUTE_COLUMNS = (
    "server", "minute", "db", "procedure", "executions", "statements", "cpu_ms", "logical_reads",
    "errors", "elapsed_ms", "logins",
)  # fmt: skip

_STATEMENTS = """SELECT s.server, s.spid, s.kpid, s.family, s.login, s.host, s.program, s.db, s.procedure,
        s.line, s.statement_number, s.batch_id, s.context_id, s.start_time, s.end_time,
        CAST(round((s.end_time - s.start_time) * 1000) AS INTEGER), s.cpu_ms, s.wait_ms, s.logical_reads,
        s.physical_reads, s.rows_affected, s.error, q.text
    FROM activity_statements s LEFT JOIN activity_sql q ON q.server = s.server AND q.spid = s.spid
        AND q.kpid = s.kpid AND q.batch_id = s.batch_id
    WHERE (? IS NULL OR s.server = ?) AND s.end_time >= ? AND s.end_time <= ?
    ORDER BY s.server, s.end_time, s.id"""
_MINUTES = """SELECT server, minute, db, procedure, executions, statements, cpu_ms, logical_reads, errors,
        elapsed_ms, logins FROM activity_minute
    WHERE (? IS NULL OR server = ?) AND minute >= ? AND minute <= ? ORDER BY server, minute, db, procedure"""


def _local(seconds: pd.Series) -> pd.Series:
    # POSIX seconds -> naive server-local timestamps (the agent runs on the server's host).
    return pd.to_datetime(seconds, unit="s", utc=True).dt.tz_convert(_zone()).dt.tz_localize(None)


def _zone() -> Any:
    from datetime import datetime  # noqa: PLC0415 - only the export needs the local zone

    return datetime.now().astimezone().tzinfo


def _clean(text: object) -> object:
    # Defense in depth: the sampler already redacted; a store written by an older or patched
    # agent must still not export a personal identity number.
    return personal_numbers(text)[0] if isinstance(text, str) else text


def activity_frame(
    r: StoreReader,
    what: ExportWhat = "statements",
    *,
    server: str | None = None,
    since: float = 0.0,
    until: float = float("inf"),
) -> pd.DataFrame:
    """The export as a DataFrame with the documented columns (see module doc), oldest first."""
    hi = min(until, 1e18)
    if what == "statements":
        frame = pd.DataFrame(
            r.query(_STATEMENTS, (server, server, since, hi)), columns=list(STATEMENT_COLUMNS)
        )
        for col in ("start_time", "end_time"):
            frame[col] = _local(frame[col].astype("float64"))
        for col in ("login", "host", "program", "sql"):
            frame[col] = frame[col].map(_clean)
        for col in ("family", "line", "statement_number", "cpu_ms", "wait_ms", "logical_reads",
                    "physical_reads", "rows_affected", "error", "elapsed_ms"):  # fmt: skip
            frame[col] = frame[col].astype("Int64")
        return frame
    frame = pd.DataFrame(r.query(_MINUTES, (server, server, since, hi)), columns=list(MINUTE_COLUMNS))
    frame["minute"] = _local(frame["minute"].astype("float64"))
    return frame


def write_export(frame: pd.DataFrame, fmt: ExportFormat, out: Path | None) -> bytes | None:
    """Write ``frame`` as CSV (UTF-8, header row) or Parquet (pyarrow) to ``out``; with ``out``
    None return the bytes instead (CSV to stdout). Raises OSError if ``out`` cannot be written."""
    if fmt == "csv":
        text = str(frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f"))
        if out is None:
            return text.encode("utf-8")
        out.write_text(text, encoding="utf-8")
        return None
    if out is None:
        return bytes(frame.to_parquet(index=False, engine="pyarrow"))
    frame.to_parquet(out, index=False, engine="pyarrow")
    return None
