"""Offline inputs of the ranking: errorlogs, a statements file and a changes file -> frames.

``asewatch suspects --errorlog FILE… [--statements FILE] [--changes FILE]`` runs with no
agent and no store. Statements come as CSV or Parquet with either the columns of
``asewatch export activity --what statements`` or those of ASE's ``monSysStatement``
(optionally with ``Login``, ``Application``, ``HostName``), matched case-insensitively;
changes as CSV with ``time, kind, name, old, new`` or the ``asewatch export changes``
columns. Times are server local time without a zone. Every problem is an
:class:`~monitor.errors.InputError` naming the file and the column, row or value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from collectors.errorlog.reader import parse_file
from monitor.errors import InputError
from monitor.eventkey import digest
from monitor.events import CrashBlock, ServerBooted, ServerShutdown
from monitor.suspects import SuspectInputs

# Contract column -> accepted source names (lower case), in order of preference.
_STATEMENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "spid": ("spid",),
    "kpid": ("kpid",),
    "family": ("family", "familyid"),
    "procedure": ("procedure", "procname"),
    "login": ("login",),
    "host": ("host", "hostname"),
    "application": ("program", "application"),
    "start_time": ("start_time", "starttime"),
    "end_time": ("end_time", "endtime"),
}
_REQUIRED = ("spid", "kpid", "procedure", "start_time")
_NAMES = ("procedure", "login", "host", "application")
_CHANGE_KINDS = {
    "deploy": "deployment", "deployment": "deployment", "config": "setting", "setting": "setting",
    "flag": "flag", "procedure": "procedure_change", "procedures": "procedure_change",
    "procedure_change": "procedure_change", "version": "version",
}  # fmt: skip


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PAR1"
    except OSError as e:
        raise InputError(str(path), f"cannot read: {e.strerror or e}") from e


def _pick(path: Path, available: Iterable[str]) -> dict[str, str]:
    """Contract column -> the file's column, case-insensitively; a missing required one raises."""
    by_lower = {c.strip().lower(): c for c in available}
    chosen: dict[str, str] = {}
    for want, names in _STATEMENT_COLUMNS.items():
        found = next((by_lower[n] for n in names if n in by_lower), None)
        if found is not None:
            chosen[want] = found
        elif want in _REQUIRED:
            alias = " or ".join(dict.fromkeys([names[-1], names[0]]))
            raise InputError(
                str(path), f"no {alias} column (the statements file needs SPID, KPID, ProcName, StartTime)"
            )
    return chosen


def load_statements(path: Path) -> pd.DataFrame:
    """The statements file as the contract's statements frame (names as categoricals, times
    ``datetime64[ns]``, ids ``Int64``). Raises InputError for a missing, empty or bad file."""
    if not path.is_file():
        raise InputError(str(path), "no such file")
    frame = _read_parquet(path) if _is_parquet(path) else _read_csv(path)
    if frame.empty:
        raise InputError(str(path), "no statement rows")
    for col in ("spid", "kpid", "family"):
        if col in frame:
            frame[col] = _ids(path, frame[col], col)
    for col in ("start_time", "end_time"):
        if col in frame:
            frame[col] = _times(path, frame[col], col)
    for col in _NAMES:
        if col in frame and not isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype("string").fillna("").astype("category")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq  # noqa: PLC0415 - only the Parquet path needs it

    try:
        names = pq.read_schema(path).names
        chosen = _pick(path, names)
        table = pq.read_table(
            path, columns=list(chosen.values()), read_dictionary=[chosen[c] for c in _NAMES if c in chosen]
        )
    except InputError:
        raise
    except (OSError, ValueError) as e:  # pyarrow's errors derive from these
        raise InputError(str(path), f"not a readable Parquet file: {e}") from e
    # Column by column, freeing each Arrow buffer as it is converted: the peak stays near one copy.
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    return frame.rename(columns={v: k for k, v in chosen.items()})


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError as e:
        raise InputError(str(path), "empty file (no header row)") from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"not a readable CSV file: {e}") from e
    chosen = _pick(path, header.columns)
    dtype = {chosen[c]: "category" for c in _NAMES if c in chosen}
    try:
        frame = pd.read_csv(path, usecols=list(chosen.values()), dtype=dtype)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"not a readable CSV file: {e}") from e
    return frame.rename(columns={v: k for k, v in chosen.items()})


def _ids(path: Path, col: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_numeric(col, errors="raise").astype("Int64")
    except (ValueError, TypeError) as e:
        bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
        first = bad.iloc[0] if len(bad) else "?"
        raise InputError(str(path), f"column {name}: {first!r} is not a number") from e


def _times(path: Path, col: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_localize(None)
        return col.astype("datetime64[ns]")
    parsed = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = parsed.isna() & col.notna() & (col.astype("string").str.strip() != "")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            str(path),
            f"column {name}, row {row + 2}: {col.iloc[row]!r} is not a time (use 2026-11-26 08:15:02)",
        )
    return parsed.astype("datetime64[ns]")


def load_changes(path: Path) -> pd.DataFrame:
    """The changes CSV as the contract's changes frame. Raises InputError for a missing, empty
    or bad file, a missing column or an unknown kind."""
    if not path.is_file():
        raise InputError(str(path), "no such file")
    try:
        raw = pd.read_csv(path, dtype="string", keep_default_na=False)
    except pd.errors.EmptyDataError as e:
        raise InputError(str(path), "empty file (no header row)") from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"not a readable CSV file: {e}") from e
    cols = {c.strip().lower(): c for c in raw.columns}
    name_col = cols.get("name", cols.get("what"))
    for want, have in (("time", cols.get("time")), ("kind", cols.get("kind")), ("name (or what)", name_col)):
        if have is None:
            raise InputError(
                str(path), f"no {want} column (the changes file needs time, kind, name, old, new)"
            )
    if raw.empty:
        raise InputError(str(path), "no change rows")
    kinds = raw[cols["kind"]].str.strip().str.lower()
    unknown = ~kinds.isin(list(_CHANGE_KINDS))
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        kind = raw[cols["kind"]].iloc[row]
        known = "deploy, config, flag, procedure, version"
        raise InputError(str(path), f"row {row + 2}: kind {kind!r} is not one of {known}")
    empty = pd.Series([""] * len(raw), dtype="string")
    frame = pd.DataFrame(
        {
            "time": _times(path, raw[cols["time"]].replace("", pd.NA), "time"),
            "kind": kinds.map(_CHANGE_KINDS),
            "name": raw[name_col].str.strip(),
            "old": raw[cols["old"]] if "old" in cols else empty,
            "new": raw[cols["new"]] if "new" in cols else empty,
        }
    )
    for col in ("old", "new"):
        frame[col] = frame[col].replace("", pd.NA)
    return frame


def crashes_from_errorlogs(paths: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The crash blocks of the errorlogs as the contract's crashes frame, and the uptime the
    logs show (a boot opens an interval; a shutdown or a crash that took the server down
    closes it; the last line seen closes an open one). Raises InputError for a bad file."""
    rows: list[dict[str, object]] = []
    starts: list[datetime] = []
    ends: list[datetime | None] = []
    last: datetime | None = None
    for path in paths:
        for rec in parse_file(path):
            t = rec.time
            last = t if last is None or t > last else last
            if isinstance(rec, CrashBlock):
                rows.append(_crash_row(rec))
                if rec.server_terminated and ends and ends[-1] is None:
                    ends[-1] = t
            elif isinstance(rec, ServerBooted) and not rec.failed:
                if ends and ends[-1] is None:
                    ends[-1] = t  # booted again without a shutdown: an unclean stop
                starts.append(t)
                ends.append(None)
            elif isinstance(rec, ServerShutdown) and ends and ends[-1] is None:
                ends[-1] = t
    crashes = pd.DataFrame(rows, columns=list(_CRASH_COLUMNS))
    crashes["time"] = pd.to_datetime(crashes["time"]).astype("datetime64[ns]")
    for col in ("spid", "kpid", "family"):
        crashes[col] = crashes[col].astype("Int64")
    if not starts:
        return crashes, None
    ends = [e if e is not None else last for e in ends]
    uptime = pd.DataFrame({"start": pd.to_datetime(starts), "end": pd.to_datetime(ends)})
    return crashes, uptime.astype("datetime64[ns]")


_CRASH_COLUMNS = ("key", "signature", "time", "spid", "kpid", "family", "procedure", "sql", "login", "host",
                  "application")  # fmt: skip


def _crash_row(b: CrashBlock) -> dict[str, object]:
    return {
        "key": digest("crash", b.time.isoformat(), b.spid, b.kpid),
        "signature": b.signature,
        "time": b.time,
        "spid": b.spid,
        "kpid": b.kpid,
        "family": b.family,
        "procedure": b.procedure,
        "sql": b.sql,
        "login": b.login,
        "host": b.hostname,
        "application": b.program,
    }


def offline_inputs(
    errorlogs: Sequence[Path], statements: Path | None = None, changes: Path | None = None
) -> SuspectInputs:
    """Everything ``asewatch suspects --errorlog …`` ranks. Raises InputError for a bad file."""
    crashes, uptime = crashes_from_errorlogs(errorlogs)
    return SuspectInputs(
        crashes=crashes,
        statements=load_statements(statements) if statements is not None else None,
        minutes=None,
        changes=load_changes(changes) if changes is not None else None,
        uptime=uptime,
    )
