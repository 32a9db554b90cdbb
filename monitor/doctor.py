"""``asewatch doctor``: is this host ready to capture the next dump and get it to the vendor?

Each check gives a verdict and, unless it is ok, a fix:

- ``fail``: the next dump would be lost, or would not reach the vendor (dump conditions
  off, a dump folder missing, unwritable or too small, core files disabled, the vendor
  target refusing uploads, an expired contract, an unusable encryption recipient);
- ``warn``: something to look at that does not lose the dump (a fact unknown because
  the database or the process is not reachable, a contract ending soon, no contact);
- ``ok``.

The checks take their facts through :class:`DoctorInputs` (injected callables and
paths), so they run the same in the agent, in the CLI and in tests. Server checks
(errorlog, dump conditions, dump folders, core limit) carry the server's name; host
checks (targets, vendor, recipients) carry ``""``. ``ase_dump_capture_ready{server}``
is 1 when none of the server's checks failed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from monitor.config_ship import VendorConfig
from monitor.events_changes import DumpConditions
from monitor.ship_targets import Target

__all__ = [
    "Check",
    "DoctorInputs",
    "DoctorReport",
    "ProcessFacts",
    "SaveChecks",
    "ServerFacts",
    "run_doctor",
]

Verdict = Literal["ok", "warn", "fail"]
_RANK = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict. ``server`` is ``""`` for host-wide checks; ``fix`` is empty when ok."""

    name: str
    server: str
    verdict: Verdict
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """The running dataserver (engine 0) of a server: its PID and the user it runs as."""

    pid: int
    uid: int
    gids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What doctor knows of one server from the config (and the running process's ``-e``)."""

    name: str
    errorlog: Path | None
    dump_dirs: tuple[Path, ...] = ()


def _no_facts(_server: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class DoctorInputs:
    """Everything doctor looks at. The callables return None when the fact is unknown
    (no database connection, the server not running): that check then warns.

    ``dump_conditions(server)``: the latest ``DumpConditions`` the settings collector
    stored; ``shared_memory(server)``: the configured shared memory in bytes (what one
    dump may take); ``process(server)``: the running dataserver; ``proc_root``: where
    ``<pid>/limits`` is read; ``targets``: the shipping targets to probe (a small
    upload, deleted again); ``vendor``: the ``[vendor]`` section; ``recipients``: age
    recipients the packages are encrypted to; ``today``: for the contract's end.
    """

    servers: tuple[ServerFacts, ...]
    dump_conditions: Callable[[str], DumpConditions | None] = _no_facts
    shared_memory: Callable[[str], int | None] = _no_facts
    process: Callable[[str], ProcessFacts | None] = _no_facts
    proc_root: Path = Path("/proc")
    targets: Sequence[Target] = ()
    vendor: VendorConfig | None = None
    recipients: Sequence[str] | None = None
    today: date = field(default_factory=date.today)
    probe_timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """All verdicts, in order. ``exit_code`` is 1 when a check failed, else 0."""

    checks: tuple[Check, ...]

    @property
    def verdict(self) -> Verdict:
        worst = max((_RANK[c.verdict] for c in self.checks), default=0)
        verdicts: tuple[Verdict, ...] = ("ok", "warn", "fail")
        return verdicts[worst]

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "fail" else 0

    def ready(self, server: str) -> bool:
        """Whether nothing would lose ``server``'s next dump (its own checks only)."""
        return all(c.verdict != "fail" for c in self.checks if c.server == server)

    def to_json(self) -> dict[str, object]:
        """The ``doctor --json`` document."""
        return {"verdict": self.verdict, "checks": [asdict(c) for c in self.checks]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)


def run_doctor(inputs: DoctorInputs, *, probe_targets: bool = True) -> DoctorReport:
    """Run every check (targets are probed only with ``probe_targets``). Never raises for a
    failing check: each failure is a verdict."""
    from monitor.doctor_host import server_checks  # noqa: PLC0415 - the two halves import this module
    from monitor.doctor_vendor import host_checks  # noqa: PLC0415

    checks: list[Check] = []
    for server in inputs.servers:
        checks.extend(server_checks(server, inputs))
    checks.extend(host_checks(inputs, probe_targets=probe_targets))
    return DoctorReport(tuple(checks))


@dataclass(frozen=True, slots=True)
class SaveChecks:
    """Store op: replace the stored verdicts with ``report``'s (for the metrics)."""

    report: DoctorReport

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM doctor_checks")
        conn.executemany(
            "INSERT OR REPLACE INTO doctor_checks (server, name, verdict, detail, fix, checked_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(c.server, c.name, c.verdict, c.detail, c.fix, now) for c in self.report.checks],
        )
