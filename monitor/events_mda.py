"""Events from the MDA tables (issue 4): what the monitoring connection learned.

Statement rows of the flight recorder are NOT events (they go to their own bounded
tables through store ops); these are the few facts worth a line in the event log.
Every class here must be in ``MdaEvent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.eventkey import digest


@dataclass(frozen=True, slots=True)
class ServerStartSeen:
    """``monState.StartDate`` changed: the server restarted (even if the process watch missed it).

    ``start_date`` is the server's local time; ``previous`` the start date seen before.
    """

    time: float
    start_date: datetime
    previous: datetime | None

    @property
    def key(self) -> str:
        return "mdastart:" + digest(self.start_date.isoformat())


MdaEvent = ServerStartSeen
