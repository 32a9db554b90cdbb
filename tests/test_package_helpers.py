"""Shared helpers for the vendor-package tests (no tests here).

:func:`record_crash` runs the simulated dataserver (a real process: real errorlog, a real
dump file, a real SIGSEGV), crashes it once and stores what the errorlog says the way the
agent does (errorlog parser -> store -> CrashAssembler), so a package is built from the
same records the agent writes. :func:`personal_numbers_in` looks for the simulated
patients' personal identity numbers, in every written form, in a package's files.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collectors.errorlog.reader import parse_file
from monitor.crashes import CrashAssembler
from monitor.sim.control import SimServer
from monitor.store import Batch, Store, UpsertCrash

pytestmark = pytest.mark.integration

STEADY = """\
[scenario]
name = "package-tests"
seed = 5
restart_delay = 0.5

[workload]
rate = 40.0
sessions = 12
error_every = 2.0
"""
_TRUTH_PNR = re.compile(r"(?<!\d)(19|20)(\d{6})-(\d{4})(?!\d)")


@dataclass(frozen=True)
class Recorded:
    """A crash of the simulated server as the store holds it, with the sim's ground truth."""

    root: Path
    state: Path
    server: str
    errorlog: Path
    dump_dir: Path
    dump: Path
    dump_complete: bool
    crash_id: int
    truth_crash: dict[str, Any]
    patients: frozenset[str]

    def store(self) -> Store:
        return Store.open(self.state)


def record_crash(
    root: Path, server: str, *, dump_size: int = 4 << 20, truncate: float | None = None
) -> Recorded:
    """Run the sim, crash it once (block + dump + SIGSEGV), wait for the restart, stop it (by PID,
    always), and store the errorlog's records and the crash row."""
    root.mkdir(parents=True, exist_ok=True)
    scenario = root / "scenario.toml"
    scenario.write_text(STEADY, encoding="utf-8")
    sim = SimServer(
        root / "sim",
        name=server,
        scenario=scenario,
        dump_size=dump_size,
        dump_seconds=0.1,
        dump_truncate=truncate,
    )
    sim.start()
    try:
        time.sleep(1.5)  # some workload first: its statements (patients' numbers in them) go into the dump
        crashed = sim.crash_now()
        dump = sim.wait_for(lambda: next((r for r in sim.truth("dump") if r.pid == crashed), None), 15)
        sim.wait_boot(after=crashed, timeout=15)
    finally:
        sim.stop()
    truth = sim.truth()
    crash = next(r for r in truth if r.kind == "crash" and r.pid == crashed)
    patients = patients_of(sim.truth_path, Path(dump["path"]))
    assert patients, "the crashing call should have used a personal identity number"
    state = root / "state"
    with Store.open(state) as store:
        new = store.append(Batch(events=[(server, r) for r in parse_file(sim.errorlog)]))
        rows = CrashAssembler().feed(new)
        store.append(Batch(ops=[UpsertCrash(r) for r in rows]))
        stored = [c for c in store.crashes(server) if c.kind == "signal"]
    assert len(stored) == 1, stored
    crash_id = stored[0].id
    assert crash_id is not None
    return Recorded(
        root, state, server, sim.errorlog, sim.dump_dir, Path(dump["path"]), bool(dump["complete"]), crash_id,
        dict(crash.fields), patients,
    )  # fmt: skip


def patients_of(truth: Path, dump: Path | None = None) -> frozenset[str]:
    """The personal identity numbers the simulated workload used: in the SQL of the truth file's
    calls and crashes, and in the statement texts the dump holds (the sim's cache pages)."""
    found = {m.group(0) for m in _TRUTH_PNR.finditer(truth.read_text(encoding="utf-8"))}
    if dump is not None:
        data = dump.read_bytes()
        found |= {m.group(0).decode() for m in re.finditer(rb"(?<!\d)(?:19|20)\d{6}-\d{4}(?!\d)", data)}
    return frozenset(found)


def written_forms(pnr: str) -> set[str]:
    """``19121212-1212`` as it may be written: with or without century, dash or plus."""
    twelve = pnr.replace("-", "")
    ten = twelve[2:]
    return {pnr, twelve, ten, f"{ten[:6]}-{ten[6:]}", f"{ten[:6]}+{ten[6:]}"}


def personal_numbers_in(folder: Path, patients: frozenset[str], *, skip_dumps: bool = True) -> list[str]:
    """``file: number`` for every patient number found in the package's files (dumps skipped)."""
    forms = {f.encode() for p in patients for f in written_forms(p)}
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if skip_dumps and path.parent.name == "dumps":
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {f.decode()}" for f in forms if f in data]
    return found


def manifest_of(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return doc


def sha256sum_check(folder: Path) -> subprocess.CompletedProcess[str]:
    """``sha256sum -c SHA256SUMS`` in ``folder`` (bounded)."""
    return subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def modes(folder: Path) -> dict[str, int]:
    """Permission bits of the folder and everything in it, by relative path."""
    out = {".": folder.stat().st_mode & 0o777}
    for p in folder.rglob("*"):
        out[str(p.relative_to(folder))] = p.stat().st_mode & 0o777
    return out
