"""Events of the change ledger: deployments, server settings, feature flags, procedures.

Owned by the settings/flags/procedures work (issue 4). Every class here must be in
``ChangeEvent`` (it is part of ``monitor.events.Event``, so the codec and store know it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitor.eventkey import digest


@dataclass(frozen=True, slots=True)
class Deployment:
    """An application deployment or other change recorded by an operator or a watched file.

    ``time`` is POSIX seconds of when it happened (``--at``), ``source`` how it was recorded.
    """

    time: float
    name: str
    by: str | None
    source: Literal["cli", "file"]

    @property
    def key(self) -> str:
        return "deploy:" + digest(f"{self.time:.3f}", self.name)


ChangeEvent = Deployment
