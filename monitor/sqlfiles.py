"""SQL lives in ``.sql`` files, one statement per file; this reads them (one definition for the
read models and every collector) and names the part of DB-API that collectors use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol


@functools.cache
def load_sql(package: str, folder: str, name: str) -> str:
    """The statement in ``<package>/<folder>/<name>.sql`` without its comment lines.

    >>> load_sql("monitor", "sql", "servers")
    'SELECT DISTINCT server FROM events'
    """
    text = resources.files(package).joinpath(folder, f"{name}.sql").read_text(encoding="utf-8")
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--")).strip()


class Cursor(Protocol):
    """The part of a DB-API cursor (pyodbc's) the collectors use."""

    def execute(self, sql: str) -> object: ...
    def fetchall(self) -> Sequence[Sequence[Any]]: ...
    def close(self) -> None: ...


class Connection(Protocol):
    """The part of a DB-API connection the collectors use (``autocommit=True`` expected)."""

    def cursor(self) -> Cursor: ...
    def close(self) -> None: ...
