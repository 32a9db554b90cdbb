"""What ``asewatch ship`` shows and does: the queue as JSON or a table, ``--release``, ``--now``.

The JSON shape (``asewatch ship --json``)::

    {"targets":  [{"target", "up", "checked_at", "last_ok", "last_error",
                   "queue": {"queued", "held", "uploading", "failed", "verified"},
                   "attempts": {"verified", "failed"}, "oldest_pending_age_seconds"}],
     "packages": [{"package_id", "path", "found_at", "release_at", "released_at", "released_by",
                   "done_at"}],
     "files":    [{"package_id", "file", "target", "kind", "size", "state", "held", "attempts",
                   "last_error", "queued_at", "started_at", "verified_at", "next_attempt_at"}]}

Times are ISO 8601 local time (``null`` when not yet).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from monitor.config_ship import ShipConfig, VendorConfig
from monitor.ship_state import Release, package_exists, rows
from monitor.store import Batch, SetState, Store
from monitor.store_reader import StoreReader

__all__ = ["print_status", "release", "ship_now", "status"]

_STATES = ("queued", "held", "uploading", "failed", "verified")
_TIMES = ("found_at", "release_at", "released_at", "done_at", "queued_at", "started_at", "verified_at",
          "next_attempt_at", "checked_at", "last_ok")  # fmt: skip


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).isoformat(timespec="seconds")


def _times(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: (_iso(v) if k in _TIMES else v) for k, v in doc.items()}


def status(r: StoreReader, now: float) -> dict[str, Any]:
    """The queue as the JSON document above, from one store snapshot."""
    files = [asdict(row) for row in rows(r)]
    targets: dict[str, dict[str, Any]] = {}

    def target(name: str) -> dict[str, Any]:
        return targets.setdefault(name, {
            "target": name, "up": None, "checked_at": None, "last_ok": None, "last_error": None,
            "queue": dict.fromkeys(_STATES, 0), "attempts": {"verified": 0, "failed": 0},
            "oldest_pending_age_seconds": 0.0,
        })  # fmt: skip

    for name, up, checked, ok, error in r.query(
        "SELECT target, up, checked_at, last_ok, last_error FROM ship_targets ORDER BY target"
    ):
        target(name).update(up=bool(up), checked_at=checked, last_ok=ok, last_error=error)
    for name, result, n in r.query("SELECT target, result, n FROM ship_counters"):
        target(name)["attempts"][result] = n
    for f in files:
        t = target(f["target"])
        state = "held" if f["held"] and f["state"] == "queued" else f["state"]
        t["queue"][state] += 1
        if f["state"] != "verified" and not f["held"]:
            t["oldest_pending_age_seconds"] = max(t["oldest_pending_age_seconds"], now - f["queued_at"])
    packages = [
        dict(
            zip(
                ("package_id", "path", "found_at", "release_at", "released_at", "released_by", "done_at"),
                p,
                strict=True,
            )
        )
        for p in r.query(
            "SELECT package_id, path, found_at, release_at, released_at, released_by, done_at"
            " FROM ship_packages ORDER BY found_at, package_id"
        )
    ]
    return {
        "targets": [_times(t) for _, t in sorted(targets.items())],
        "packages": [_times(p) for p in packages],
        "files": [_times(f) for f in files],
    }


def print_status(doc: dict[str, Any], tty: bool) -> None:
    """The status as rich tables: one line per target, then every file not yet verified."""
    from rich.console import Console  # noqa: PLC0415 - keeps `asewatch --help` fast
    from rich.table import Table  # noqa: PLC0415

    out = Console() if tty else Console(width=200)
    t = Table(title="Targets")
    for col in ("target", "up", *_STATES, "attempts ok/failed", "last error"):
        t.add_column(col)
    for tg in doc["targets"]:
        up = {True: "yes", False: "NO", None: "?"}[tg["up"]]
        counts = [str(tg["queue"][s]) for s in _STATES]
        attempts = f"{tg['attempts']['verified']}/{tg['attempts']['failed']}"
        t.add_row(tg["target"], up, *counts, attempts, tg["last_error"] or "")
    out.print(t)
    pending = [f for f in doc["files"] if f["state"] != "verified"]
    f_table = Table(title=f"Not shipped yet ({len(pending)})")
    for col in ("package", "file", "target", "state", "attempts", "next try", "last error"):
        f_table.add_column(col)
    for f in pending:
        state = "held (needs --release)" if f["held"] else f["state"]
        f_table.add_row(f["package_id"], f["file"], f["target"], state, str(f["attempts"]),
                        f["next_attempt_at"] or "", f["last_error"] or "")  # fmt: skip
    out.print(f_table)


def release(store: Store, package_id: str, by: str) -> str:
    """Release the held dumps of ``package_id``; a one-line message. Raises ValueError when
    the store does not know the package."""
    with store.reader() as r:
        if not package_exists(r, package_id):
            raise ValueError(f"no package {package_id!r} in the shipping queue; `asewatch ship` lists them")
    store.append(Batch(ops=(Release(package_id, by),)))
    return f"released: the dumps of {package_id} ship at the next chance (window permitting)"


def ship_now(store: Store, ship: ShipConfig, vendor: VendorConfig | None) -> tuple[str, int]:
    """Ship what is queued now, past windows and retry times; ``(message, exit code)``. When
    the agent holds the shipping lock, ask it instead (it does the same within seconds)."""
    from monitor.ship import FORCE_STATE_KEY, ShipBusyError, Shipper  # noqa: PLC0415 - paramiko is heavy

    shipper = Shipper.from_config(
        store, ship, store.path.parent, contract_end=vendor.contract_end if vendor else None
    )
    try:
        results = shipper.run_once(force=True)
    except ShipBusyError:
        store.append(Batch(ops=(SetState(FORCE_STATE_KEY, repr(time.time())),)))
        return "the agent is shipping from this store: asked it to ship now", 0
    verified = sum(r.verified for r in results.values())
    failed = sum(r.failed for r in results.values())
    return f"shipped now: {verified} file(s) verified, {failed} attempt(s) failed", 1 if failed else 0
