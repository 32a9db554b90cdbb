"""The sampler's SQL: one query per file in ``sql/``, and the columns each server version has.

Columns differ between ASE versions (HostName came in 15.7, StatementNumber in 15.0.2.5,
...), so the sampler reads ``master..monTableColumns`` once per connection and asks each
table only for the columns that exist there (DbxTune guards the same way by version).
A table that lacks one of its required columns is not read at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.sqlfiles import load_sql

# table -> (required columns, optional columns), in select order.
WANTED: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "monSysStatement": (
        ("SPID", "KPID", "BatchID", "StartTime"),
        (
            "EndTime", "ContextID", "StatementNumber", "LineNumber", "ProcNestLevel", "DBID", "DBName",
            "ProcedureID", "CpuTime", "WaitTime", "LogicalReads", "PhysicalReads", "RowsAffected",
            "ErrorStatus",
        ),
    ),
    "monSysSQLText": (("SPID", "KPID", "BatchID", "SQLText"), ("SequenceInBatch",)),
    "monProcess": (
        ("SPID", "KPID"),
        ("FamilyID", "Login", "HostName", "Application", "DBName", "Command", "BatchID", "LineNumber"),
    ),
    "monProcessProcedures": (
        ("SPID", "KPID"),
        ("ContextID", "DBName", "OwnerName", "ObjectName", "ObjectType", "LineNumber", "StatementNumber"),
    ),
    "monProcessSQLText": (("SPID", "KPID", "BatchID", "SQLText"), ("LineNumber", "SequenceInLine")),
    "monState": ((), ("StartDate", "Connections")),
}  # fmt: skip

_FILES = {
    "monSysStatement": "sys_statement",
    "monSysSQLText": "sys_sql_text",
    "monProcess": "process",
    "monProcessProcedures": "process_procedures",
    "monProcessSQLText": "process_sql_text",
    "monState": "state",
}

#: sysconfigures names the sampler reads: pipe sizes, pipe switches, the connection limit.
CONFIG_NAMES = (
    "number of user connections",
    "statement pipe max messages",
    "sql text pipe max messages",
    "statement pipe active",
    "sql text pipe active",
    "enable monitoring",
)


def sql(name: str) -> str:
    """The query in ``collectors/mda/sql/<name>.sql`` without its comment lines."""
    return load_sql("collectors.mda", "sql", name)


def _literal(value: str) -> str:
    """A quoted SQL string literal (only ever fed constants from this module)."""
    return "'" + value.replace("'", "''") + "'"


def table_columns_sql() -> str:
    """The ``monTableColumns`` query for every table the sampler reads."""
    return sql("table_columns").format(tables=", ".join(_literal(t) for t in WANTED))


def config_names_sql() -> str:
    """The ``sysconfigures`` query for :data:`CONFIG_NAMES`."""
    return sql("config_names").format(names=", ".join(_literal(n) for n in CONFIG_NAMES))


def config_run_values_sql(ids: Iterable[int]) -> str:
    """The ``syscurconfigs`` query for these config ids (ints, validated)."""
    return sql("config_run_values").format(ids=", ".join(str(int(i)) for i in ids))


def object_name_sql(object_id: int, dbid: int) -> str:
    """``select object_name(id, dbid)`` with the two ints formatted in (no ODBC parameters:
    pyodbc would prepare a TDS_DYNAMIC statement for them)."""
    return sql("object_name").format(id=int(object_id), dbid=int(dbid))


@dataclass(frozen=True, slots=True)
class TableQuery:
    """The select of one MDA table with the columns this server has; ``pos`` maps a column
    name to its position in a result row."""

    table: str
    columns: tuple[str, ...]
    text: str
    pos: Mapping[str, int]


def plan(available: Mapping[str, set[str]] | None) -> tuple[dict[str, TableQuery], list[str]]:
    """The query per table for the columns ``available`` (table -> column names), and the
    reasons tables were left out. ``None`` (monTableColumns unreadable): ask for every
    wanted column and let the server refuse.

    >>> q, skipped = plan({"monState": {"StartDate"}, "monProcess": {"KPID"}})
    >>> q["monState"].text
    'select StartDate from master..monState'
    >>> [s for s in skipped if s.startswith("monProcess ")]
    ['monProcess lacks SPID']
    """
    queries: dict[str, TableQuery] = {}
    skipped: list[str] = []
    for table, (required, optional) in WANTED.items():
        have = None if available is None else {c.lower() for c in available.get(table, set())}
        if have is not None:
            missing = [c for c in required if c.lower() not in have]
            if missing:
                skipped.append(f"{table} lacks {', '.join(missing)}")
                continue
        cols = tuple(c for c in (*required, *optional) if have is None or c.lower() in have)
        if not cols:
            skipped.append(f"{table} has none of the wanted columns")
            continue
        text = sql(_FILES[table]).format(columns=", ".join(cols))
        queries[table] = TableQuery(table, cols, text, getter(cols))
    return queries, skipped


def getter(columns: Sequence[str]) -> dict[str, int]:
    """Column name -> position for a select list."""
    return {c: i for i, c in enumerate(columns)}


def value(row: Sequence[Any], pos: Mapping[str, int], column: str) -> Any:
    """The value of ``column`` in ``row``, or None when the server has no such column."""
    i = pos.get(column)
    return None if i is None else row[i]
