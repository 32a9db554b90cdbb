"""What the store knows around a crash, for the vendor package: each fact "when known".

Every reader here takes one :class:`~monitor.store_reader.StoreReader` snapshot and
returns plain JSON values, or raises :class:`Unavailable` with the reason a DBA reads
in the manifest (no sampling of that server, a feature not installed, an older store
without the table). Settings, dump conditions and flags are given as they stood at the
crash (the newest snapshot before it with the changes up to it applied), not as they
are now: the vendor's question is what the server ran with when it fell.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.crashes import local_epoch
from monitor.errors import StoreError
from monitor.events import ProcessStarted, ServerBooted
from monitor.events_changes import DumpConditions, FlagChanged, SettingChanged, SettingsSnapshot
from monitor.store_reader import StoreReader


class Unavailable(Exception):  # noqa: N818 - a state, not a failure: "not available: <reason>"
    """A fact the package cannot carry, and why."""


@dataclass(frozen=True, slots=True)
class Boot:
    """A boot of the server as the errorlog follower stored it."""

    time: datetime
    version: str | None
    offset: int


def boots_around(r: StoreReader, server: str, at: datetime) -> tuple[Boot | None, Boot | None]:
    """The last boot at or before ``at`` and the first one after it (None when not stored)."""
    before: Boot | None = None
    after: Boot | None = None
    for se in r.events(kinds=[ServerBooted], server=server):
        e = se.event
        if not isinstance(e, ServerBooted):
            continue
        boot = Boot(e.time, e.version, e.offset)
        if e.time <= at:
            before = boot
        elif after is None:
            after = boot
    return before, after


def version_of(r: StoreReader, server: str, boot: Boot | None) -> str:
    """The ``@@version`` of the run that crashed: its boot's, else the newest boot that logged one."""
    if boot is not None and boot.version:
        return boot.version
    versions = [
        se.event.version
        for se in r.events(kinds=[ServerBooted], server=server)
        if isinstance(se.event, ServerBooted) and se.event.version
    ]
    if not versions:
        raise Unavailable("no boot with an @@version line in the errorlog the agent read")
    return versions[-1]


def errorlog_path(r: StoreReader, server: str, configured: Path | None) -> Path:
    """The errorlog: the configured one, else the file the follower's saved position names."""
    if configured is not None:
        return configured
    raw = r.position(f"errorlog:{server}")
    if raw:
        try:
            return Path(json.loads(raw)["tail"]["path"])
        except (ValueError, KeyError, TypeError):
            pass
    raise Unavailable("no errorlog configured for the server and none followed yet")


def kernel_mode(r: StoreReader, server: str, settings: dict[str, Any] | None, threadpool: bool | None) -> str:
    """``threaded`` or ``process``: from ``sp_configure 'kernel mode'`` when sampled, else from the
    errorlog (threaded engines log ``... of Threadpool ...``), else from engine processes seen."""
    row = (settings or {}).get("kernel mode")
    if row and (row.get("run") or row.get("configured")):
        return str(row.get("run") or row.get("configured")).strip().lower()
    if threadpool:
        return "threaded"
    for se in r.events(kinds=[ProcessStarted], server=server):
        if isinstance(se.event, ProcessStarted) and se.event.engine not in (None, 0):
            return "process"
    raise Unavailable("no 'kernel mode' setting sampled, and neither the errorlog nor the process list says")


def cfg_file(r: StoreReader, server: str, settings: dict[str, Any] | None, at: float) -> Path:
    """The server's ``.cfg`` file: the one the settings collector read, else the ``-c`` of the
    dataserver that ran at ``at`` (POSIX seconds), when the file is still there."""
    path = ((settings or {}).get("cfgfile") or {}).get("path")
    if not path:
        for se in r.events(kinds=[ProcessStarted], server=server):
            e = se.event
            if isinstance(e, ProcessStarted) and e.create_time <= at and e.engine in (None, 0):
                path = next((a[2:] for a in e.cmdline if a.startswith("-c") and len(a) > 2), path)
    if not path:
        raise Unavailable("the .cfg file is not known (no settings collector, no -c seen)")
    if not Path(path).is_file():
        raise Unavailable(f"{path} is not there any more")
    return Path(path)


def settings_at(r: StoreReader, server: str, at: float) -> dict[str, Any]:
    """``{source: {parameter: {section, configured, run, parallel}}}`` as they stood at ``at``
    (POSIX seconds), for each source (``sysconfigures``, ``cfgfile``) the agent read."""
    snaps: dict[str, tuple[int, SettingsSnapshot]] = {}
    for se in r.events(kinds=[SettingsSnapshot], server=server):
        e = se.event
        if isinstance(e, SettingsSnapshot) and e.time <= at:
            snaps[e.source] = (se.seq, e)
    if not snaps:
        raise Unavailable("no server configuration sampled before the crash (settings collector not running)")
    out: dict[str, Any] = {}
    for source, (seq, snap) in sorted(snaps.items()):
        values = {n: dataclasses.asdict(v) for n, v in snap.values().items()}
        for se in r.events(kinds=[SettingChanged], server=server, since_seq=seq):
            c = se.event
            if not isinstance(c, SettingChanged) or c.source != source or c.time > at:
                continue
            if c.new_configured is None and c.new_run is None:
                values.pop(c.name, None)
            else:
                values[c.name] = {"name": c.name, "section": c.section, "configured": c.new_configured,
                                  "run": c.new_run, "parallel": c.parallel}  # fmt: skip
        out[source] = {"path": snap.path, "parameters": values}
    return out


def dump_conditions_at(r: StoreReader, server: str, at: float) -> dict[str, Any]:
    """``dump on conditions`` and the ``sp_shmdumpconfig`` rows as last read before ``at``."""
    found: DumpConditions | None = None
    for se in r.events(kinds=[DumpConditions], server=server):
        if isinstance(se.event, DumpConditions) and se.event.time <= at:
            found = se.event
    if found is None:
        raise Unavailable("sp_shmdumpconfig was not read before the crash (settings collector not running)")
    rows = [
        {"type": t, "value": v, "max_dumps": m, "dump_count": c, "directory": d, "file": f, "halt": h}
        for t, v, m, c, d, f, h in zip(
            found.types, found.values, found.max_dumps, found.dump_counts, found.directories, found.files,
            found.halt, strict=False,
        )
    ]  # fmt: skip
    return {"read_at": found.time, "dump_on_conditions": found.enabled, "conditions": rows,
            "error": found.error, "summary": found.describe()}  # fmt: skip


def flags_at(r: StoreReader, server: str, at: float) -> dict[str, str]:
    """Every application feature flag's value at ``at`` (flags gone by then are left out)."""
    flags: dict[str, str] = {}
    seen = False
    for se in r.events(kinds=[FlagChanged], server=server):
        e = se.event
        if isinstance(e, FlagChanged) and e.time <= at:
            seen = True
            if e.new is None:
                flags.pop(e.name, None)
            else:
                flags[e.name] = e.new
    if not seen:
        raise Unavailable("no feature flags read before the crash (flags collector not configured)")
    return flags


def change_ledger(r: StoreReader, server: str, crash_time: datetime, days: float) -> list[dict[str, Any]]:
    """The change ledger from ``days`` before the crash until now, each row marked before/after it."""
    ledger = _optional("monitor.ledger", "the change ledger")
    try:
        rows = ledger.ledger(r, since=crash_time - timedelta(days=days), server=server)
    except StoreError as exc:
        raise Unavailable(f"the change ledger cannot be read: {exc}") from None
    if not rows:
        raise Unavailable(f"no changes recorded in the {days:g} days before the crash or since")
    return [dict(row.to_json(), after_crash=row.time > crash_time) for row in rows]


def flight_recorder(r: StoreReader, crash_key: str) -> dict[str, Any]:
    """The activity frozen at the crash (statements, call stacks, the session), as JSON."""
    read = _optional("monitor.flightrec_read", "the flight recorder")
    try:
        frozen = read.frozen_activity(r, crash_key)
    except StoreError as exc:
        raise Unavailable(f"the flight recorder cannot be read: {exc}") from None
    if frozen is None:
        raise Unavailable("nothing frozen for this crash (no MDA sampling of the server at the time)")
    doc: dict[str, Any] = dataclasses.asdict(frozen)
    doc["procedures"] = list(frozen.procedures())
    return doc


def crash_epoch(t: datetime | None, fallback: float | None) -> float:
    """POSIX seconds of a crash: its errorlog time (local), else the exit time."""
    if t is not None:
        return local_epoch(t)
    if fallback is not None:
        return fallback
    raise Unavailable("the crash has no time")


def _optional(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unavailable(f"{what} is not part of this asewatch ({module} missing)") from None
