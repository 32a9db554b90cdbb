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

import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from collectors.errorlog.lines import decode, parse_line
from collectors.errorlog.parser import ErrorlogParser
from collectors.errorlog.reader import open_errorlog, parse_file
from monitor.errors import InputError
from monitor.eventkey import digest
from monitor.events import CrashBlock, ErrorlogRecord, ServerBooted, ServerShutdown
from monitor.suspects import SuspectInputs
from monitor.suspects_uptime import logged_runs

if TYPE_CHECKING:
    import pyarrow as pa

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
_Span = tuple[datetime, datetime]  # an interval the server ran
_NOT_CAUSES = ("dump conditions",)  # ``asewatch export changes`` rows that change no behaviour


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
            hint = "the statements file needs SPID, KPID, ProcName, StartTime"
            raise InputError(str(path), f"no {alias} column", hint=hint)
    return chosen


def load_statements(path: Path) -> pd.DataFrame:
    """The statements file as the contract's statements frame: names categorical, times
    ``datetime64[ns]``, ids ``Int64``; only the columns the ranking reads (about 36 bytes a
    row). Raises InputError for a missing, empty or bad file, naming the column and value."""
    if not path.is_file():
        raise InputError(str(path), "no such file")
    frame = _read_parquet(path) if _is_parquet(path) else _read_csv(path)
    if frame.empty:
        raise InputError(str(path), "no statement rows")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    """Row group by row group into arrays allocated once: the peak stays near the result's
    size (a whole-table read and ``to_pandas`` touch three times as much memory, and on a
    fresh process the page faults cost more than the decoding)."""
    import pyarrow.parquet as pq  # noqa: PLC0415 - only the Parquet path needs it

    try:
        pf = pq.ParquetFile(path, pre_buffer=False)
        chosen = _pick(path, pf.schema_arrow.names)
        n = pf.metadata.num_rows
        out = {c: _Column(c, n) for c in chosen}
        row = 0
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i, columns=list(chosen.values()))
            for c, col in out.items():
                col.fill(path, row, table.column(chosen[c]))
            row += table.num_rows
            del table
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as e:  # pyarrow's errors derive from these
        raise InputError(str(path), f"not a readable Parquet file: {e}") from e
    return pd.DataFrame({c: col.result() for c, col in out.items()}, copy=False)


class _Column:
    """One contract column being filled from Parquet row groups (``kind`` id, time or name)."""

    def __init__(self, name: str, n: int) -> None:
        self.name = name
        self.kind = "name" if name in _NAMES else "time" if name.endswith("_time") else "id"
        self.values = np.empty(
            n, np.dtype({"name": "int32", "time": "datetime64[ns]", "id": "int64"}[self.kind])
        )
        self.mask = np.empty(n if self.kind == "id" else 0, np.bool_)  # Int64's missing values
        self.index: dict[object, int] = {}  # name -> category code, across row groups

    def fill(self, path: Path, row: int, chunk: pa.ChunkedArray) -> None:
        """Write rows ``row…`` from one row group. Raises InputError for a value that is not
        an id or a time."""
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.compute as pc  # noqa: PLC0415

        end = row + len(chunk)
        arr = chunk.combine_chunks() if chunk.num_chunks != 1 else chunk.chunk(0)
        t = arr.type
        if self.kind == "name":
            if not pa.types.is_dictionary(t):
                arr = arr if pa.types.is_string(t) or pa.types.is_large_string(t) else arr.cast(pa.string())
                arr = arr.dictionary_encode()
            remap = np.array(
                [-1 if v is None or v == "" else self.index.setdefault(v, len(self.index))
                 for v in arr.dictionary.to_pylist()] or [-1], dtype=np.int32,
            )  # fmt: skip
            codes = remap[arr.indices.fill_null(0).to_numpy()]
            if arr.null_count:
                codes[arr.is_null().to_numpy(zero_copy_only=False)] = -1
            self.values[row:end] = codes
        elif self.kind == "time" and (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            if pa.types.is_timestamp(t) and t.tz is not None:
                arr = pc.local_timestamp(arr)  # the wall time where it was written
            self.values[row:end] = arr.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False)
        elif self.kind == "id" and pa.types.is_integer(t):
            self.values[row:end] = arr.fill_null(0).to_numpy()
            self.mask[row:end] = arr.is_null().to_numpy(zero_copy_only=False)
        else:  # text or floats where ids or times belong: the slow, checking path
            series = pd.Series(arr.to_pandas(), index=pd.RangeIndex(row, end))
            if self.kind == "time":
                self.values[row:end] = _times(path, series, self.name, first_row=row + 1).to_numpy()
            else:
                ids = _ids(path, series, self.name).array
                self.values[row:end] = ids.fillna(0).to_numpy(np.int64)
                self.mask[row:end] = ids.isna()

    def result(self) -> pd.api.extensions.ExtensionArray | np.ndarray:
        """The filled column as the contract's dtype, without a copy where pandas allows."""
        if self.kind == "name":
            return pd.Categorical.from_codes(self.values, categories=list(self.index), validate=False)
        return pd.arrays.IntegerArray(self.values, self.mask) if self.kind == "id" else self.values


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
    frame = frame.rename(columns={v: k for k, v in chosen.items()})[list(chosen)]  # the contract's order
    for col in ("spid", "kpid", "family"):
        if col in frame:
            frame[col] = _ids(path, frame[col], col)
    for col in ("start_time", "end_time"):
        if col in frame:
            frame[col] = _times(path, frame[col], col, first_row=2)
    for col in _NAMES:
        if col in frame and not isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype("string").fillna("").astype("category")
    return frame


def _ids(path: Path, col: pd.Series, name: str) -> pd.Series:
    """An id column as ``Int64``; raises InputError naming the first value not a whole number."""
    num = pd.to_numeric(col, errors="coerce")
    given = col.notna().to_numpy() & (col.astype("string").str.strip() != "").fillna(False).to_numpy(
        dtype=bool
    )
    bad = (num.isna().to_numpy() & given) | ((num % 1).fillna(0).to_numpy(dtype=float) != 0)
    if bad.any():
        first = col.iloc[int(bad.nonzero()[0][0])]
        raise InputError(
            str(path), f"column {name}: {first!r} is not a whole number", hint="an id such as 112"
        )
    return num.astype("Int64")


def _times(path: Path, col: pd.Series, name: str, *, first_row: int) -> pd.Series:
    """A time column as naive ``datetime64[ns]`` (a zone, if any, dropped: wall time kept).
    ISO 8601 is parsed vectorised; other forms value by value. Raises InputError naming the
    row (``first_row`` is the row number of the first value) and the first bad value."""
    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_localize(None)
        return col.astype("datetime64[ns]")
    text = col.astype("string").str.strip()
    given = col.notna().to_numpy() & (text != "").fillna(False).to_numpy(dtype=bool)
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    retry = parsed.isna().to_numpy() & given
    if retry.any():  # other forms ("26.11.2026 08:15", "Nov 26 2026 8:15AM"): slower, value by value
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed")
    bad = parsed.isna().to_numpy() & given
    if bad.any():
        pos = int(bad.nonzero()[0][0])
        raise InputError(
            str(path),
            f"column {name}, row {first_row + pos}: {col.iloc[pos]!r} is not a time",
            hint="use server local time such as 2026-11-26 08:15:02",
        )
    return parsed.astype("datetime64[ns]")


def load_changes(path: Path, *, server: str | None = None) -> pd.DataFrame:
    """The changes CSV as the contract's changes frame. Rows of ``asewatch export changes``
    that change no behaviour are left out, as from the store: ``dump conditions`` and the
    ``N procedures changed in db`` summaries (each procedure has its own row). A ``server``
    column is filtered to ``server``. Raises InputError for a missing, empty or bad file, a
    missing column, an unknown kind, or several servers in the file and ``server`` None."""
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
    hint = "the changes file needs time, kind, name, old, new"
    for want, have in (("time", cols.get("time")), ("kind", cols.get("kind")), ("name (or what)", name_col)):
        if have is None:
            raise InputError(str(path), f"no {want} column", hint=hint)
    if raw.empty:
        raise InputError(str(path), "no change rows")
    kinds = raw[cols["kind"]].str.strip().str.lower()
    unknown = ~kinds.isin([*_CHANGE_KINDS, *_NOT_CAUSES])
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        known = "deploy, config, flag, procedure, version"
        raise InputError(
            str(path), f"row {row + 2}: kind {raw[cols['kind']].iloc[row]!r} is not one of {known}"
        )
    names = raw[name_col].str.strip()
    keep = ~kinds.isin(list(_NOT_CAUSES)) & ~(
        (kinds == "procedures") & names.str.match(r"\d+ procedures? changed in ")
    )
    if "server" in cols:
        keep &= _one_server(path, raw[cols["server"]].str.strip(), server)
    empty = pd.Series([""] * len(raw), dtype="string")
    mapped = kinds.map(_CHANGE_KINDS)
    frame = pd.DataFrame(
        {
            "time": _times(path, raw[cols["time"]], "time", first_row=2),
            "kind": mapped,
            # ``db..p (asks for parallel plans)`` in the export: the definition's name is ``db..p``.
            "name": names.where(mapped != "procedure_change", names.str.split(" (", n=1, regex=False).str[0]),
            "old": raw[cols["old"]] if "old" in cols else empty,
            "new": raw[cols["new"]] if "new" in cols else empty,
        }
    )
    frame = frame[keep.to_numpy(dtype=bool)].reset_index(drop=True)
    for col in ("old", "new"):
        frame[col] = frame[col].replace("", pd.NA)
    return frame


def _one_server(path: Path, servers: pd.Series, wanted: str | None) -> pd.Series:
    """Rows of ``wanted`` (a row naming no server belongs to every one)."""
    named = sorted(set(servers) - {""})
    if wanted is None and len(named) > 1:
        hint = "name one with --server"
        raise InputError(str(path), f"holds changes of {len(named)} servers ({', '.join(named)})", hint=hint)
    return (servers == "") | (servers == wanted) if wanted is not None else servers.notna()


def crashes_from_errorlogs(paths: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The crash blocks of the errorlogs as the contract's crashes frame (a block seen in two
    files counts once), and the uptime the logs show: the server runs from a log's first
    line (or a boot) until a shutdown, a crash that took it down, or the log's last line.
    A log with no boot, shutdown or fatal crash says nothing about uptime: ``None`` then,
    unless another log says something. Raises InputError for a missing or unreadable file."""
    rows: list[tuple[object, ...]] = []
    spans: list[_Span] = []
    for path in paths:
        parser = ErrorlogParser()
        kept = (CrashBlock, ServerBooted, ServerShutdown)  # not the routine errors of a 1 GiB log
        records = [r for r in parse_file(path, parser) if isinstance(r, kept)]
        rows += [_crash_row(r) for r in records if isinstance(r, CrashBlock)]
        spans += _uptime(records, _first_time(path), parser.state().last_time)
    crashes = pd.DataFrame(rows, columns=list(_CRASH_COLUMNS)).drop_duplicates("key", ignore_index=True)
    crashes["time"] = pd.to_datetime(crashes["time"]).astype("datetime64[ns]")
    for col in ("spid", "kpid", "family"):
        crashes[col] = crashes[col].astype("Int64")
    if not spans:
        return crashes, None
    uptime = pd.DataFrame(spans, columns=["start", "end"])
    return crashes, uptime.astype("datetime64[ns]")


def _uptime(records: Sequence[ErrorlogRecord], first: datetime | None, last_text: str | None) -> list[_Span]:
    """Intervals the server ran, as one log tells it (empty when it does not say)."""
    says = any(
        isinstance(r, ServerShutdown | ServerBooted) or (isinstance(r, CrashBlock) and r.server_terminated)
        for r in records
    )
    if not says or first is None:
        return []
    # A log opens on a running server (mid-run), unless it opens with a start-up: then the
    # boot decides (a failed one never ran).
    opener = min(records, key=lambda r: r.time)
    opens_with_boot = isinstance(opener, ServerBooted) and opener.time <= first
    last = datetime.fromisoformat(last_text) if last_text else None
    runs = logged_runs(records, up_at=None if opens_with_boot else first, last=last)
    return [(s, e) for s, e in runs if e is not None]


def _first_time(path: Path) -> datetime | None:
    """The time of the first prefixed line in the first 64 KiB (plain or gzip), or None."""
    try:
        with open_errorlog(path) as f:
            head = f.read(1 << 16)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(str(path), f"cannot read: {e}") from e
    lines = head.split(b"\n")
    for raw in lines if len(head) < 1 << 16 else lines[:-1]:  # the last may be cut
        line = parse_line(decode(raw), 0)
        if line is not None:
            return line.time
    return None


_CRASH_COLUMNS = ("key", "signature", "time", "spid", "kpid", "family", "procedure", "sql", "login", "host",
                  "application")  # fmt: skip


def _crash_row(b: CrashBlock) -> tuple[object, ...]:
    key = digest("crash", b.time.isoformat(), b.spid, b.kpid)  # the identity: time, spid, kpid
    return (key, b.signature, b.time, b.spid, b.kpid, b.family, b.procedure, b.sql, b.login, b.hostname,
            b.program)  # fmt: skip


def offline_inputs(
    errorlogs: Sequence[Path],
    statements: Path | None = None,
    changes: Path | None = None,
    *,
    server: str | None = None,
) -> SuspectInputs:
    """Everything ``asewatch suspects --errorlog …`` ranks (``server`` picks the rows of a
    changes file that holds several). Raises InputError for a bad file."""
    crashes, uptime = crashes_from_errorlogs(errorlogs)
    return SuspectInputs(
        crashes=crashes,
        statements=load_statements(statements) if statements is not None else None,
        minutes=None,
        changes=load_changes(changes, server=server) if changes is not None else None,
        uptime=uptime,
    )
