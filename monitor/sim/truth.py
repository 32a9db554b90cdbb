"""Ground truth: one JSON line per significant thing the simulation did.

Tests and the demo compare what asewatch found with these lines. Every line has
``kind``, ``time`` (POSIX seconds), ``st`` (scenario seconds since t0), ``source``
(``dataserver`` or ``supervisor``), ``pid`` (of the writing process), ``server`` and
``t0`` (the run's start, POSIX seconds; it identifies the run);
the other keys depend on the kind (see ``control.py`` for the full schema). Both the
dataserver and the supervisor append to the same file: ``O_APPEND``, one line per
write, fsynced.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One parsed truth line. ``fields`` holds the kind-specific keys."""

    kind: str
    time: float
    st: float
    source: str
    pid: int
    server: str
    t0: float
    fields: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A kind-specific field, or ``default``."""
        return self.fields.get(key, default)


class TruthWriter:
    """Appends truth lines for one process."""

    def __init__(self, path: Path, *, source: str, server: str, t0: float) -> None:
        self.path = path
        self.source = source
        self.server = server
        self.t0 = t0

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one line (fsynced) and return it as written. Raises ``OSError``."""
        now = time.time()
        line: dict[str, Any] = {
            "kind": kind,
            "time": round(now, 3),
            "st": round(now - self.t0, 3),
            "source": self.source,
            "pid": os.getpid(),
            "server": self.server,
            "t0": self.t0,
            **fields,
        }
        data = (json.dumps(line, sort_keys=False, default=str) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return line


_COMMON = ("kind", "time", "st", "source", "pid", "server", "t0")


def read_truth(path: Path, offset: int = 0) -> list[TruthRecord]:
    """Parse a truth file from byte ``offset``; a missing file is empty, a torn line is skipped."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for raw in text.splitlines():
        try:
            d = json.loads(raw)
        except json.JSONDecodeError:
            continue
        out.append(
            TruthRecord(
                kind=str(d.get("kind", "")),
                time=float(d.get("time", 0.0)),
                st=float(d.get("st", 0.0)),
                source=str(d.get("source", "")),
                pid=int(d.get("pid", 0)),
                server=str(d.get("server", "")),
                t0=float(d.get("t0", 0.0)),
                fields={k: v for k, v in d.items() if k not in _COMMON},
            )
        )
    return out
