"""Events about dump files (issue 5): found, finished, refused.

Every class here must be in ``DumpEvent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitor.eventkey import digest

DumpState = Literal["writing", "complete", "truncated", "unreadable"]


@dataclass(frozen=True, slots=True)
class DumpSeen:
    """A dump or core file in a configured folder, in ``state``. Identity: its SHA-256
    once finished (``sha256`` is None while it is being written)."""

    time: float
    path: str
    size: int
    mtime: float
    state: DumpState
    sha256: str | None

    @property
    def key(self) -> str:
        return "dump:" + digest(self.path, self.state, self.sha256 or f"{self.size}:{self.mtime:.3f}")


DumpEvent = DumpSeen
