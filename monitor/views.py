"""Rendering for the terminal: rich tables built from reports. Views never read sources."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from monitor.events import CrashBlock
from monitor.logreport import Report
from monitor.readmodel import ServerView
from monitor.signature import meaningful_frames
from monitor.store_types import CrashRow


def _short(text: str | None, width: int = 70) -> str:
    if not text:
        return "-"
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def errorlog_views(report: Report) -> Iterator[RenderableType]:
    """The human form of ``asewatch errorlog``: a summary line, then one table per kind of record."""
    data = report.to_json()
    yield Text(
        f"{len(report.files)} file(s), {report.lines} lines, {report.unparsed_lines} unparsed; "
        f"{len(report.crashes)} crash(es) in {len(data['signatures'])} signature group(s), "
        f"{sum(report.errors.values())} error(s), {len(report.config_changes)} configuration change(s), "
        f"{len(report.boots)} boot(s), {len(report.shutdowns)} shutdown(s)",
        style="bold",
    )
    if data["signatures"]:
        yield _signatures(data["signatures"])
    if report.crashes:
        yield _crashes(data["crashes"])
    if data["errors"]:
        t = Table(title="Errors by number and severity")
        for col in ("number", "severity", "count"):
            t.add_column(col, justify="right")
        for e in data["errors"]:
            t.add_row(str(e["number"]), str(e["severity"]), str(e["count"]))
        yield t
    if data["config_changes"]:
        t = Table(title="Configuration changes")
        for col in ("time", "option", "by", "old", "new"):
            t.add_column(col)
        for c in data["config_changes"]:
            t.add_row(c["time"], c["option"], c["by"], c["old"], c["new"])
        yield t
    if data["boots"] or data["shutdowns"]:
        yield _stops(data["boots"], data["shutdowns"])


def _signatures(groups: list[dict[str, Any]]) -> Table:
    t = Table(title="Crashes grouped by signature")
    for col in ("signature", "count", "kind", "first", "last", "top frames", "SQL", "login / host / program"):
        t.add_column(col, overflow="fold")
    for g in groups:
        kind = g["kind"] + (f" {g['signal']}" if g["signal"] is not None else "")
        who = " / ".join(", ".join(g[k]) or "-" for k in ("logins", "hosts", "programs"))
        frames = "\n".join(f for f in g["top_frames"] if f) or "-"
        t.add_row(g["signature"], str(g["count"]), kind, g["first"], g["last"], frames, _short(g["sql"]), who)
    return t


def _crashes(crashes: list[dict[str, Any]]) -> Table:
    t = Table(title="Crashes")
    for col in ("time", "kind", "spid", "family", "kpid", "login", "procedure", "complete", "server down"):
        t.add_column(col)
    for c in crashes:
        kind = c["kind"] + (f" {c['signal']}" if c["signal"] is not None else "")
        t.add_row(
            c["time"],
            kind,
            str(c["spid"]),
            str(c["family"]),
            str(c["kpid"] if c["kpid"] is not None else "-"),
            c["login"] or "-",
            c["procedure"] or "-",
            "yes" if c["complete"] else "truncated",
            "yes" if c["server_terminated"] else "no",
        )
    return t


def _stops(boots: list[dict[str, Any]], shutdowns: list[dict[str, Any]]) -> Table:
    t = Table(title="Boots and shutdowns")
    for col in ("time", "event", "detail"):
        t.add_column(col, overflow="fold")
    rows = [
        (b["time"], "boot failed" if b["failed"] else "boot", b["failure"] or b["version"] or "-")
        for b in boots
    ]
    rows += [(s["time"], f"shutdown ({s['kind']})", f"by {s['by']}" if s["by"] else "-") for s in shutdowns]
    for row in sorted(rows):
        t.add_row(*row)
    return t


def crash_json_row(row: CrashRow) -> dict[str, Any]:
    """One crash record as ``asewatch crashes --json`` prints it."""
    return {
        "id": row.id,
        "server": row.server,
        "time": row.time.isoformat(timespec="milliseconds") if row.time else None,
        "kind": row.kind,
        "signal": row.signal,
        "signature": row.signature,
        "state": row.state,
        "spid": row.spid,
        "family": row.family,
        "kpid": row.kpid,
        "login": row.login,
        "host": row.host,
        "program": row.program,
        "sql": row.sql,
        "procedure": row.procedure,
        "server_terminated": row.server_terminated,
        "complete": row.complete,
        "exit_pid": row.exit_pid,
        "exit_time": row.exit_time,
    }


def crashes_table(rows: list[CrashRow]) -> Table:
    t = Table(title=f"Crashes ({len(rows)})")
    for col in ("id", "server", "time", "kind", "signature", "state", "spid", "login", "procedure"):
        t.add_column(col)
    for r in rows:
        kind = (r.kind or "-") + (f" {r.signal}" if r.signal is not None else "")
        t.add_row(
            str(r.id), r.server, r.time.isoformat(timespec="seconds") if r.time else "-", kind,
            r.signature or "-", r.state or "-", str(r.spid) if r.spid is not None else "-",
            r.login or "-", r.procedure or "-",
        )  # fmt: skip
    return t


def crash_detail(row: CrashRow, block: CrashBlock | None) -> Iterator[RenderableType]:
    """``asewatch show``: the record, then what the errorlog said."""
    t = Table(show_header=False, title=f"Crash {row.id} on {row.server}")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in crash_json_row(row).items():
        if k != "sql":
            t.add_row(k, "-" if v is None else str(v))
    yield t
    if row.sql:
        yield Text("SQL causing error:", style="bold")
        yield Text(row.sql)
    if block is not None:
        yield Text("Stack (innermost first; signature frames marked *):", style="bold")
        top = set(meaningful_frames(block.frames))
        yield Text("\n".join(("* " if f in top else "  ") + f for f in block.frames) or "(no frames logged)")


def status_table(views: list[ServerView], counts: dict[str, int], last: dict[str, CrashRow]) -> Table:
    t = Table(title="Servers")
    for col in ("server", "state", "pid", "started", "crashes", "last crash", "last signature"):
        t.add_column(col)
    for v in views:
        started = (
            datetime.fromtimestamp(v.start_time).isoformat(timespec="seconds")
            if v.up and v.start_time
            else "-"
        )
        lc = last.get(v.server)
        t.add_row(
            v.server, "[green]up[/]" if v.up else "[red]down[/]", str(v.pid or "-"), started,
            str(counts.get(v.server, 0)),
            lc.time.isoformat(timespec="seconds") if lc and lc.time else "-",
            (lc.signature or lc.kind or "-") if lc else "-",
        )  # fmt: skip
    return t
