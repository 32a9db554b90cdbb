"""One-shot test hooks for the TDS server: hang the next query, or drop its connection mid-reply.

A hook is a JSON file in ``<workdir>/tds-control/`` (written by
:meth:`monitor.sim.control.SimServer.tds_hang` / ``tds_drop_next``)::

    {"action": "hang", "seconds": 5.0, "table": "monState"}
    {"action": "drop", "table": null}

``table`` (a table name as written in the query, without database) limits the hook to the
next query that reads that table; ``null`` means the next statement of any connection.
The connection that claims a hook deletes its file (the unlink is the claim, so exactly one
query gets it); hooks are taken oldest first. The directory is listed at every statement
(a few microseconds for an empty directory).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class Hook:
    """A claimed hook: ``hang`` for ``seconds``, or ``drop`` the connection mid-reply."""

    action: Literal["hang", "drop"]
    seconds: float
    table: str | None


class Hooks:
    """Reads and claims hook files in ``directory``. Thread-safe (claiming is an unlink)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _pending(self) -> list[str]:
        try:
            with os.scandir(self.directory) as it:
                return sorted(e.path for e in it if e.name.endswith(".json"))
        except FileNotFoundError:
            return []

    def claim(self, table: str | None) -> Hook | None:
        """The oldest hook that applies to a statement reading ``table`` (``None``: no table).

        The hook's file is deleted; ``None`` if no hook applies.
        """
        for name in self._pending():
            path = Path(name)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # claimed by another connection meanwhile, or not a hook
            want = data.get("table")
            if want is not None and want != table:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            action: Literal["hang", "drop"] = "drop" if data.get("action") == "drop" else "hang"
            return Hook(action, float(data.get("seconds", 0.0)), want)
        return None


def add_hook(
    directory: Path, action: Literal["hang", "drop"], *, seconds: float = 0.0, table: str | None = None
) -> Path:
    """Write a hook file atomically (the server never sees half a file). Returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{action}"
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps({"action": action, "seconds": seconds, "table": table}), encoding="utf-8")
    final = directory / f"{name}.json"
    os.replace(tmp, final)
    return final
