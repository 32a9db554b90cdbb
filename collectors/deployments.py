"""Deployments from a watched file: JSON lines, one deployment each, appended by a release tool.

    {"time": "2026-11-26T08:00:00", "name": "IMX 7.1.0", "by": "imx_deploy"}
    {"time": 1764140400.0, "what": "IMX 7.1.1", "server": "CLINIC1"}

``time`` is ISO 8601 (naive = this host's local time) or POSIX seconds; ``name`` (or
``what``) is required, ``by`` optional; ``server`` (a name or a list) limits it to those
servers, else it concerns every server the agent watches. Each line becomes a
``Deployment`` (source ``file``) per server; a deployment's identity is its time and name,
so re-reading the file changes nothing in the store. A line that is not complete yet (no
newline) waits for the next read.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from monitor.errors import SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import Deployment

#: ``emit(server, events)``: unlike the per-server collectors, one file speaks for several servers.
#: Health events (CollectorFailed/Succeeded, never stored) go out with server ``""``.
RoutedEmit = Callable[[str, Sequence[Event]], None]


def parse_time(value: object) -> float:
    """POSIX seconds from a number or an ISO 8601 string (naive = local time). Raises ValueError.

    >>> parse_time(12.5), parse_time("1970-01-01T00:00:10+00:00")
    (12.5, 10.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value.strip()).timestamp()
    raise ValueError(f"time must be ISO 8601 text or POSIX seconds, not {value!r}")


def parse_line(line: str) -> tuple[Deployment, tuple[str, ...]]:
    """One JSON line to a Deployment (source ``file``) and the servers it names (empty: every
    server). Raises ValueError saying what is wrong."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    name = doc.get("name", doc.get("what"))
    if not isinstance(name, str) or not name.strip():
        raise ValueError('"name" (the deployed thing, e.g. "IMX 7.1.0") is missing')
    if "time" not in doc:
        raise ValueError('"time" is missing')
    servers = doc.get("server", ())
    servers = (servers,) if isinstance(servers, str) else servers
    if not isinstance(servers, list | tuple) or not all(isinstance(x, str) and x for x in servers):
        raise ValueError('"server" must be a server name or a list of them')
    by = doc.get("by")
    deployment = Deployment(
        parse_time(doc["time"]), name.strip(), str(by) if by is not None else None, "file"
    )
    return deployment, tuple(servers)


def read_deployments(text: str) -> tuple[list[tuple[Deployment, tuple[str, ...]]], list[str]]:
    """The deployments (with the servers they name) in the file's complete lines, and one
    problem per bad line (``line N: why``)."""
    found: list[tuple[Deployment, tuple[str, ...]]] = []
    problems: list[str] = []
    complete = text[: text.rfind("\n") + 1]
    for n, line in enumerate(complete.splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append(parse_line(line))
        except ValueError as e:
            problems.append(f"line {n}: {e}")
    return found, problems


class DeploymentFileWatch:
    """Watch ``path`` every ``poll_interval`` s and emit the deployments it lists, each once per
    server it concerns (``servers``: every server the agent watches)."""

    def __init__(
        self,
        path: Path,
        servers: Sequence[str],
        *,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.source = "deployments"
        self._servers = tuple(servers)
        self._interval = poll_interval
        self._clock = clock
        self._stat: tuple[int, int, int] | None = None
        self._seen: set[tuple[str, str]] = set()
        self._problems: list[str] = []  # of the file as last read: reported until it changes

    def poll(self) -> tuple[list[tuple[str, Deployment]], list[str]]:
        """``(server, deployment)`` pairs not emitted before, and the file's problems. Raises
        SourceError if unreadable; a missing file is no deployments yet."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stat, self._problems = None, []
            return [], []
        except OSError as e:
            raise SourceError(self.source, f"cannot read: {e.strerror or e}", path=str(self.path)) from e
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stat:
            return [], list(self._problems)
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise SourceError(self.source, f"cannot read: {e.strerror or e}", path=str(self.path)) from e
        self._stat = stamp
        found, self._problems = read_deployments(text)
        new = []
        for deployment, named in found:
            for server in named or self._servers:
                if (server, deployment.key) not in self._seen:
                    self._seen.add((server, deployment.key))
                    new.append((server, deployment))
        return new, list(self._problems)

    def run(self, emit: RoutedEmit, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; never raises for a failing source."""
        while not stop.is_set():
            try:
                found, problems = self.poll()
            except SourceError as e:
                emit("", [CollectorFailed(self.source, e.reason, self._clock())])
            else:
                for server in dict.fromkeys(s for s, _ in found):
                    emit(server, [d for s, d in found if s == server])
                health: Event = (
                    CollectorFailed(self.source, f"{self.path}: {problems[0]}", self._clock())
                    if problems
                    else CollectorSucceeded(self.source, self._clock())
                )
                emit("", [health])
            stop.wait(self._interval)
