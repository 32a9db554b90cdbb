"""Where doctor's facts come from on a real host: the config, the store and ``/proc``.

:func:`doctor_inputs` builds :class:`~monitor.doctor.DoctorInputs` for ``asewatch
doctor`` and the agent: the dump conditions and ``max memory`` come from what the
settings collector stored (events and ``sysconfigures`` values), the dataserver and its
user from the process table. :class:`DoctorLoop` runs doctor in the agent now and
then and stores the verdicts for ``ase_dump_capture_ready``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from collectors.process import DataserverTarget, find_dataservers
from monitor.config import ServerConfig
from monitor.config_ship import ShipConfig, VendorConfig
from monitor.doctor import DoctorInputs, DoctorReport, ProcessFacts, SaveChecks, ServerFacts, run_doctor
from monitor.errors import AsewatchError
from monitor.events_changes import DumpConditions
from monitor.ship_targets import make_target
from monitor.store import Batch, Store

__all__ = ["DoctorLoop", "doctor_inputs", "process_facts"]

log = logging.getLogger("asewatch.doctor")

_PAGE = 2048  # "max memory" is in 2 KiB pages


def process_facts(pid: int, proc_root: Path = Path("/proc")) -> ProcessFacts | None:
    """The effective uid and the groups (primary and supplementary) of ``pid``, from
    ``<proc_root>/<pid>/status``; None when the process is gone or unreadable."""
    uid: int | None = None
    gids: set[int] = set()
    try:
        text = (proc_root / str(pid) / "status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if key == "Uid" and len(fields) >= 2:
            uid = int(fields[1])
        elif key == "Gid" and len(fields) >= 2:
            gids.add(int(fields[1]))
        elif key == "Groups":
            gids.update(int(g) for g in fields)
    return None if uid is None else ProcessFacts(pid, uid, tuple(sorted(gids)))


def _finder(servers: Sequence[ServerConfig], proc_root: Path) -> Callable[[str], ProcessFacts | None]:
    by_name = {s.name: s for s in servers}

    def find(name: str) -> ProcessFacts | None:
        s = by_name.get(name)
        if s is None:
            return None
        try:
            procs = find_dataservers(DataserverTarget(s.name, s.pid_file, s.run_file))
        except AsewatchError:
            return None
        main = [p for p in procs if p.engine == 0]
        return process_facts(main[0].pid, proc_root) if main else None

    return find


def _errorlog(s: ServerConfig) -> Path | None:
    if s.errorlog is not None:
        return s.errorlog
    try:
        for p in find_dataservers(DataserverTarget(s.name, s.pid_file, s.run_file)):
            if p.engine == 0 and p.args.errorlog:
                return Path(p.args.errorlog)
    except AsewatchError:
        return None
    return None


def _store_facts(
    store: Store | None,
) -> tuple[Callable[[str], DumpConditions | None], Callable[[str], int | None]]:
    if store is None:
        return (lambda _s: None), (lambda _s: None)

    def conditions(server: str) -> DumpConditions | None:
        last = None
        with store.reader() as r:
            for se in r.events(kinds=["DumpConditions"], server=server):
                last = se.event
        return last if isinstance(last, DumpConditions) else None

    def shared_memory(server: str) -> int | None:
        from monitor.metrics_changes import config_values  # noqa: PLC0415 - the ledger is heavy

        with store.reader() as r:
            pages = config_values(r, server).get("max memory")
        return None if pages is None else int(pages) * _PAGE

    return conditions, shared_memory


def doctor_inputs(
    servers: Sequence[ServerConfig],
    store: Store | None,
    ship: ShipConfig | None,
    vendor: VendorConfig | None,
    recipients: Sequence[str] | None,
    *,
    proc_root: Path = Path("/proc"),
) -> DoctorInputs:
    """Doctor's inputs for this host: ``store`` (None: no agent has run) gives the dump
    conditions and the shared memory size; ``ship`` the targets to probe."""
    conditions, shm = _store_facts(store)
    targets = [make_target(t) for t in (ship.targets if ship is not None else ()) if t.enabled]
    return DoctorInputs(
        servers=tuple(ServerFacts(s.name, _errorlog(s), tuple(s.dump_dirs)) for s in servers),
        dump_conditions=conditions,
        shared_memory=shm,
        process=_finder(servers, proc_root),
        proc_root=proc_root,
        targets=targets,
        vendor=vendor,
        recipients=recipients,
    )


class DoctorLoop:
    """Runs doctor every ``interval`` seconds in the agent (thread ``doctor``) and stores the
    verdicts. ``make_inputs`` is called each time, so facts are fresh."""

    def __init__(
        self, store: Store, make_inputs: Callable[[], DoctorInputs], interval: float = 900.0
    ) -> None:
        self._store = store
        self._make_inputs = make_inputs
        self._interval = interval
        self.last: DoctorReport | None = None
        self._failing: set[tuple[str, str]] = set()

    def run_once(self) -> DoctorReport:
        """One run, stored. Raises StoreError when the verdicts cannot be stored."""
        report = run_doctor(self._make_inputs())
        self._store.append(Batch(ops=(SaveChecks(report),)))
        failing = {(c.server, c.name): c for c in report.checks if c.verdict == "fail"}
        for key, c in failing.items():
            if key not in self._failing:  # once per new failure, not at every run
                who = f"{c.server}: " if c.server else ""
                log.error("doctor: %s%s: %s (fix: %s)", who, c.name, c.detail, c.fix)
        for server, name in self._failing - failing.keys():
            log.info("doctor: %s%s: fixed", f"{server}: " if server else "", name)
        self._failing = set(failing)
        self.last = report
        return report

    def run(self, stop: threading.Event) -> None:
        """Run now, then every ``interval`` seconds until ``stop``; failures are logged."""
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("doctor run failed; next try in %.0f s", self._interval)
            if stop.wait(self._interval):
                return
