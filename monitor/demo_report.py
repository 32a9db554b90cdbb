"""What ``asewatch demo`` prints at the end, and its verdict against the simulator's truth.

For each crash: when, the procedure and the login (from the errorlog), what the flight
recorder froze of the session behind it, and the changes that preceded it; then the crash
groups, the change list and the stops and restarts.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from monitor.events import ConfigChanged, ProcessExited, ProcessStarted, ServerBooted, ServerShutdown
from monitor.flightrec_read import FrozenActivity, frozen_activity
from monitor.ledger import LedgerRow, ledger
from monitor.redact import personal_numbers, sql_shape
from monitor.sim.truth import TruthRecord
from monitor.store_types import CrashRow
from monitor.suspects_agent import compute
from monitor.suspects_view import suspects_table

if TYPE_CHECKING:
    from monitor.agent import Agent

SERVER = "CLINIC1"
PROCEDURE = "p_brev_sok_central_utskrift"
FLAG = "brevutskrift_central_search"
CHANGE_KINDS = ("deployment", "flag", "config", "procedures")
_PNR = re.compile(r"\d{8}-\d{4}")


@dataclass
class Outcome:
    ok: bool
    reason: str


def report(
    console: Console,
    agent: Agent,
    *,
    truth_crashes: list[TruthRecord],
    state: Path,
    state_kept: bool,
    inbox: Path,
) -> Outcome:
    """Print the tables; return whether asewatch found what the simulator did."""
    rows = agent.store.crashes(SERVER)
    with agent.store.reader() as r:
        changes = [c for c in ledger(r, server=SERVER) if c.kind in CHANGE_KINDS]
        frozen = {row.key: frozen_activity(r, row.key) for row in rows}
        shipped = {
            pid for (pid,) in r.query("SELECT package_id FROM ship_packages WHERE done_at IS NOT NULL")
        }
    packages = {row.key: agent.store.get_state(f"package:{row.key}") for row in rows}
    console.print(_crashes_table(rows, frozen, changes))
    console.print(_packages_table(rows, packages, shipped, inbox))
    console.print(_groups_table(rows))
    console.print(_changes_table(changes))
    console.print(_timeline_table(agent))
    with agent.store.reader() as r:
        suspects = compute(r, SERVER)
    for group in suspects["groups"]:
        console.print(suspects_table(group, limit=8))
    if state_kept:
        console.print(f"The store is kept in {state}: try `asewatch crashes --state-dir {state}`.")
    console.print(f"Metrics were served at {agent.metrics_url}")
    outcome = _verdict(rows, truth_crashes, changes)
    if outcome.ok:
        outcome = _package_verdict(rows, packages, shipped, inbox, truth_crashes) or outcome
    if outcome.ok:
        from monitor.demo_suspects import suspects_verdict  # noqa: PLC0415 - it imports this module

        ranked = suspects_verdict(suspects)
        outcome = Outcome(ranked.ok, f"{outcome.reason} {ranked.reason}" if ranked.ok else ranked.reason)
    return outcome


def _verdict(rows: list[CrashRow], truth: list[TruthRecord], changes: list[LedgerRow]) -> Outcome:
    signatures = {r.signature for r in rows if r.kind == "signal"}
    procedures = {r.procedure for r in rows}
    if len(rows) != len(truth):
        return Outcome(False, f"the simulator crashed {len(truth)} times; asewatch recorded {len(rows)}")
    if len(signatures) != 1 or procedures != {PROCEDURE}:
        return Outcome(False, f"expected one signature in {PROCEDURE}; got {signatures} in {procedures}")
    if not all(r.state == "crashed" and r.exit_pid for r in rows):
        return Outcome(False, "not every crash was joined with the exit of the dataserver process")
    first = min(r.time for r in rows if r.time) if rows else None
    before = {(c.kind, c.what.split(" ")[0]) for c in changes if first is None or c.time <= first}
    wanted = {("deployment", "IMX"), ("flag", FLAG), ("config", "max")}
    missing = wanted - before
    if missing:
        return Outcome(False, f"changes before the first crash not found: {sorted(missing)}")
    return Outcome(
        True,
        f"asewatch caught all {len(rows)} crashes as one signature ({signatures.pop()}) in {PROCEDURE}, "
        f"after the upgrade, the flag {FLAG} and max parallel degree 1 -> 4.",
    )


def _package_verdict(
    rows: list[CrashRow],
    packages: Mapping[str, str | None],
    shipped: set[str],
    inbox: Path,
    truth: list[TruthRecord],
) -> Outcome | None:
    """None when every crash's package reached the inbox with no personal number outside the dumps."""
    missing = [r.id for r in rows if packages.get(r.key) not in shipped]
    if missing:
        return Outcome(False, f"crashes {missing} were not packaged and shipped to {inbox}")
    numbers = {n for t in truth for n in _PNR.findall(str(t.get("sql") or ""))}
    for f in inbox.rglob("*"):
        if f.is_file() and not f.name.endswith((".zst", ".age")):
            text = f.read_text(errors="replace")
            leaked = [n for n in numbers if n in text]
            if leaked:
                return Outcome(False, f"{f} holds a personal identity number from the workload")
    return None


def _packages_table(
    rows: list[CrashRow], packages: Mapping[str, str | None], shipped: set[str], inbox: Path
) -> Table:
    t = Table(title=f"Vendor packages (redacted, checksummed; shipped to {inbox})")
    for col in ("crash", "time", "package", "files", "shipped"):
        t.add_column(col, overflow="fold")
    for r in sorted(rows, key=lambda x: x.time or datetime.min):
        pid = packages.get(r.key)
        folder = inbox / pid if pid else None
        files = sorted(p.name for p in folder.iterdir()) if folder is not None and folder.is_dir() else []
        t.add_row(
            str(r.id), (r.time or datetime.min).strftime("%H:%M:%S"), pid or "-", ", ".join(files) or "-",
            "yes" if pid in shipped else "no",
        )  # fmt: skip
    return t


def _describe(c: LedgerRow) -> str:
    if c.kind in ("flag", "config"):
        return f"{c.what} {c.old} -> {c.new}"
    return c.what


def _crashes_table(
    rows: list[CrashRow], frozen: Mapping[str, FrozenActivity | None], changes: list[LedgerRow]
) -> Table:
    t = Table(title="Each crash: what ran, who ran it, and what had changed")
    for col in (
        "time",
        "procedure",
        "login (errorlog)",
        "session (flight recorder)",
        "changes before it (24 h)",
    ):
        t.add_column(col, overflow="fold")
    for r in sorted(rows, key=lambda x: x.time or datetime.min):
        fa = frozen.get(r.key)
        session = "-"
        if fa is not None:
            procs = ", ".join(fa.procedures()[:2]) or "-"
            session = f"{fa.login or '-'} on {fa.host or '-'} ({fa.program or '-'}): {procs}"
        when = r.time or datetime.min
        latest: dict[tuple[str, str], LedgerRow] = {}
        for c in changes:
            first_sight = c.kind == "flag" and c.old is None  # a flag's first value is not a change
            if not first_sight and when - timedelta(hours=24) <= c.time <= when:
                latest[(c.kind, c.what)] = c
        before = "; ".join(_describe(c) for c in sorted(latest.values(), key=lambda c: c.time)) or "-"
        t.add_row(when.strftime("%H:%M:%S"), r.procedure or "-", r.login or "-", session, before)
    return t


def _groups_table(rows: list[CrashRow]) -> Table:
    t = Table(title="Crash groups")
    for col in (
        "signature",
        "count",
        "kind",
        "procedure",
        "SQL (literals removed)",
        "logins",
        "first",
        "last",
    ):
        t.add_column(col, overflow="fold")
    groups: dict[str, list[CrashRow]] = {}
    for r in rows:
        groups.setdefault(r.signature or r.kind or "-", []).append(r)
    for sig, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = rs[0]
        sql = personal_numbers(sql_shape(first.sql))[0] if first.sql else "-"
        times = sorted(r.time for r in rs if r.time)
        t.add_row(
            sig, str(len(rs)), f"{first.kind} {first.signal or ''}".strip(), first.procedure or "-", sql,
            ", ".join(f"{k} ({n})" for k, n in Counter(r.login or "-" for r in rs).most_common()),
            times[0].strftime("%H:%M:%S") if times else "-", times[-1].strftime("%H:%M:%S") if times else "-",
        )  # fmt: skip
    return t


def _changes_table(changes: list[LedgerRow]) -> Table:
    t = Table(title=f"Changes to {SERVER} (the change ledger)")
    for col in ("time", "kind", "what", "by", "seen by"):
        t.add_column(col, overflow="fold")
    for c in changes:
        t.add_row(c.time.strftime("%H:%M:%S"), c.kind, _describe(c), c.by or "-", c.source)
    return t


def _timeline_table(agent: Agent) -> Table:
    """Stops, restarts and configuration changes, in order."""
    t = Table(title=f"Stops and restarts of {SERVER}")
    t.add_column("time")
    t.add_column("what")
    lines: list[tuple[float, str]] = []
    crash_exits = {r.exit_pid for r in agent.store.crashes(SERVER) if r.exit_pid}
    kinds = ("ProcessStarted", "ProcessExited", "ServerShutdown", "ServerBooted", "ConfigChanged")
    for se in agent.store.events(kinds=kinds, server=SERVER):
        e = se.event
        if isinstance(e, ProcessStarted) and e.engine in (None, 0):
            lines.append((e.create_time, f"dataserver started (pid {e.pid})"))
        elif isinstance(e, ProcessExited):
            why = "crashed" if e.pid in crash_exits else "stopped"
            lines.append((e.exit_time, f"dataserver pid {e.pid} exited: {why}"))
        elif isinstance(e, ServerShutdown) and e.kind != "unclean":
            by = f" by {e.by}" if e.by else ""
            lines.append((e.time.timestamp(), f"shutdown ({e.kind}){by}"))
        elif isinstance(e, ConfigChanged):
            lines.append((e.time.timestamp(), f"'{e.option}' changed by {e.by}: {e.old} -> {e.new}"))
        elif isinstance(e, ServerBooted) and e.version:
            lines.append((e.time.timestamp(), f"boot: {e.version.split('/')[1]}"))
    for at, what in sorted(lines):
        t.add_row(time.strftime("%H:%M:%S", time.localtime(at)), what)
    return t
