"""Retention of dump files: flood-suppressed files, then age, count, bytes and free-space quotas.

Files go, records stay: evicting deletes a dump's file and keeps its row (``evicted``, with
the rule that evicted it). Never evicted: a dump in use (a live hold: being packaged or
shipped), a dump still being written, the newest dump of each server (for the count, bytes
and free-space rules), and a kept dump not shipped yet unless the operator allows it
(``force`` / ``evict_unshipped``). Flood-suppressed dumps are not kept by policy, so they
are evicted without waiting to be shipped.

Order: suppressed files first; then everything older than ``max_age_days``; then the oldest
files beyond ``max_count``; then the largest files until ``max_bytes`` and each folder's
``min_free_bytes`` hold (largest first frees the most space for the fewest dumps lost).

:func:`plan_retention` is pure (tests hold it to these rules); :func:`enforce` claims the
planned dumps in one transaction (a dump held meanwhile is skipped), deletes their files
(only if the file at the path is still that dump: same size and mtime, a regular file,
inside its folder) and records the evictions as events.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from collectors.dumps_files import open_folder, outside
from monitor.config_dumps import DumpsConfig
from monitor.dumps_read import DumpRow, hold_is_live, list_dumps
from monitor.events_dumps import DumpEvicted
from monitor.store import Batch, Store


@dataclass(frozen=True, slots=True)
class Eviction:
    """``dump`` is to go by ``rule``: flood, age, count, bytes or free."""

    dump: DumpRow
    rule: str


@dataclass(frozen=True, slots=True)
class Blocked:
    """A rule wanted ``dump`` gone but it is protected: ``why`` says how to proceed."""

    dump: DumpRow
    rule: str
    why: str


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    evict: tuple[Eviction, ...]
    blocked: tuple[Blocked, ...]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a retention pass planned, could not do (``blocked``), did and failed to do."""

    planned: tuple[Eviction, ...]
    blocked: tuple[Blocked, ...]
    evicted: tuple[Eviction, ...]
    failed: tuple[tuple[Eviction, str], ...]
    dry_run: bool


def plan_retention(
    rows: Sequence[DumpRow],
    config: DumpsConfig,
    now: float,
    *,
    force: bool = False,
    free: Mapping[int, int] | None = None,
    device: Mapping[int, int] | None = None,
    need: Mapping[int, int] | None = None,
) -> RetentionPlan:
    """Which dump files to evict now, and which a rule wanted but may not (pure).

    ``free``: free bytes per file-system device; ``device``: the device of each dump id's
    folder; ``need``: extra bytes wanted free per device (a packager making room).
    ``force``: evict kept dumps not shipped yet too.
    """
    free, device, need = free or {}, device or {}, need or {}
    present = [r for r in rows if r.present and r.state != "writing"]
    newest: dict[str, DumpRow] = {}
    for r in present:
        if r.server not in newest or (r.time, r.id) > (newest[r.server].time, newest[r.server].id):
            newest[r.server] = r
    evict: dict[int, Eviction] = {}
    blocked: dict[tuple[int, str], Blocked] = {}
    may_go_unshipped = force or config.evict_unshipped

    def take(r: DumpRow, rule: str) -> bool:
        if r.id in evict:
            return False
        why = None
        if r.holders:
            why = f"in use by {', '.join(r.holders)}"
        elif rule != "flood" and r.retention == "kept":
            if r.shipped_at is None and not may_go_unshipped:
                why = "not shipped yet (asewatch dumps prune --force evicts it)"
            elif rule in ("count", "bytes", "free") and newest.get(r.server) is r:
                why = "the newest dump of its server is always kept"
        if why is not None:
            blocked.setdefault((r.id, rule), Blocked(r, rule, why))
            return False
        evict[r.id] = Eviction(r, rule)
        return True

    for r in present:
        if r.retention == "evicting":  # claimed by a pass that stopped before deleting
            evict[r.id] = Eviction(r, r.evict_reason or "resume")
        elif r.retention == "suppressed":
            take(r, "flood")
    if config.max_age_days > 0:
        cutoff = now - config.max_age_days * 86400
        for r in present:
            if (r.finished_at or r.first_seen) < cutoff:
                take(r, "age")
    left = [r for r in present if r.id not in evict]
    if config.max_count > 0 and len(left) > config.max_count:
        over = len(left) - config.max_count
        for r in sorted(left, key=lambda r: (r.time, r.id)):
            if over <= 0:
                break
            over -= take(r, "count")
    left = [r for r in present if r.id not in evict]
    by_size = sorted(left, key=lambda r: (-r.size, r.time, r.id))
    if config.max_bytes > 0:
        total = sum(r.size for r in left)
        for r in by_size:
            if total <= config.max_bytes:
                break
            if take(r, "bytes"):
                total -= r.size
    for dev, avail_now in free.items():
        avail, floor = avail_now, config.min_free_bytes + need.get(dev, 0)
        for r in by_size:
            if avail >= floor:
                break
            if device.get(r.id) == dev and take(r, "free"):
                avail += r.size
    return RetentionPlan(tuple(evict.values()), tuple(blocked.values()))


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer can still use on ``folder``'s file system. Raises OSError."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def has_room(folder: Path, nbytes: int, *, reserve: int = 0) -> bool:
    """Whether ``folder`` has room for ``nbytes`` more and still ``reserve`` bytes free after.

    Pessimistic on purpose (pt-stalk's disk guard): ask with the size you will write, plus
    a margin in ``reserve`` (e.g. the dumps' ``min_free_bytes``). False when the folder
    cannot be inspected.
    """
    try:
        return free_bytes(folder) - nbytes >= reserve
    except OSError:
        return False


def enforce(
    store: Store,
    config: DumpsConfig,
    *,
    now: float | None = None,
    force: bool = False,
    dry_run: bool = False,
    by: str = "agent",
    need: Mapping[Path, int] | None = None,
) -> RetentionReport:
    """One retention pass (see the module doc). ``need``: bytes to make free in these folders
    besides the floor. Deletes files and writes the store (unless ``dry_run``); raises
    StoreError when the store cannot be read or written. A file that cannot be deleted is
    reported in ``failed`` and its dump stays."""
    t = time.time() if now is None else now
    with store.reader() as r:
        rows = list_dumps(r)
    free: dict[int, int] = {}
    device: dict[int, int] = {}
    want: dict[int, int] = {}
    folders = {Path(row.path).parent for row in rows if row.present} | set(need or {})
    dev_of: dict[Path, int] = {}
    for folder in folders:
        try:
            dev_of[folder] = os.stat(folder).st_dev
            free[dev_of[folder]] = free_bytes(folder)
        except OSError:
            continue
    for row in rows:
        if Path(row.path).parent in dev_of:
            device[row.id] = dev_of[Path(row.path).parent]
    for folder, n in (need or {}).items():
        if folder in dev_of:
            want[dev_of[folder]] = want.get(dev_of[folder], 0) + n
    plan = plan_retention(rows, config, t, force=force, free=free, device=device, need=want)
    if dry_run or not plan.evict:
        return RetentionReport(plan.evict, plan.blocked, (), (), dry_run)
    store.append(Batch(ops=(ClaimEvictions(tuple((e.dump.id, e.rule) for e in plan.evict), force),)))
    with store.reader() as r:
        claimed = {int(i) for (i,) in r.query("SELECT id FROM dumps WHERE retention = 'evicting'")}
    done: list[Eviction] = []
    failed: list[tuple[Eviction, str]] = []
    for e in plan.evict:
        if e.dump.id not in claimed:
            continue  # taken into use (or evicted by another pass) meanwhile
        problem = _delete(e.dump)
        (failed.append((e, problem)) if problem else done.append(e))
    events = [
        (
            e.dump.server,
            DumpEvicted(t, e.dump.server, e.dump.path, e.dump.sha256, e.dump.size, e.rule, force, by),
        )
        for e in done
    ]
    store.append(
        Batch(
            events=events,
            ops=(FinishEvictions(tuple(e.dump.id for e in done), tuple(x.dump.id for x, _ in failed), t),),
        )
    )
    return RetentionReport(plan.evict, plan.blocked, tuple(done), tuple(failed), False)


def _delete(row: DumpRow) -> str | None:
    """Delete the dump's file if it is still that dump; None when it is gone, else the problem."""
    path = Path(row.path)
    why = outside(path.parent, path)
    if why is not None:
        return f"not deleted: {why}"
    try:
        dir_fd = open_folder(path.parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot open {path.parent}: {exc.strerror or exc}"
    try:
        st = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns / 1e9) != (row.size, row.mtime):
            return None  # the name now holds another file: this dump's bytes are already gone
        os.unlink(path.name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot delete {path}: {exc.strerror or exc}"
    finally:
        os.close(dir_fd)
    return None


@dataclass(frozen=True, slots=True)
class ClaimEvictions:
    """Mark dumps ``evicting`` (a store op), re-checked inside the transaction: a dump held
    meanwhile, being written, or no longer on disk is left alone."""

    items: tuple[tuple[int, str], ...]
    forced: bool

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        for dump_id, rule in self.items:
            holds = conn.execute("SELECT pid, pid_start FROM dump_holds WHERE dump_id = ?", (dump_id,))
            if any(hold_is_live(int(pid), float(start)) for pid, start in holds.fetchall()):
                continue
            conn.execute(
                "UPDATE dumps SET retention = 'evicting', evict_reason = coalesce(evict_reason, ?), "
                "forced = ?, updated_at = ? WHERE id = ? AND state <> 'writing' "
                "AND retention IN ('kept', 'suppressed', 'evicting')",
                (rule, int(self.forced), now, dump_id),
            )
            conn.execute("DELETE FROM dump_holds WHERE dump_id = ?", (dump_id,))  # stale holds only


@dataclass(frozen=True, slots=True)
class FinishEvictions:
    """Record deleted files as ``evicted``; give the ones that could not be deleted back."""

    evicted: tuple[int, ...]
    failed: tuple[int, ...]
    at: float

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        for dump_id in self.evicted:
            conn.execute(
                "UPDATE dumps SET retention = 'evicted', evicted_at = coalesce(evicted_at, ?), "
                "updated_at = ? WHERE id = ? AND retention IN ('evicting', 'evicted')",
                (self.at, now, dump_id),
            )
        for dump_id in self.failed:
            conn.execute(
                "UPDATE dumps SET retention = CASE suppressed WHEN 1 THEN 'suppressed' ELSE 'kept' END, "
                "evict_reason = NULL, forced = 0, updated_at = ? WHERE id = ? AND retention = 'evicting'",
                (now, dump_id),
            )
