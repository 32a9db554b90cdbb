"""Rendering for the terminal: rich tables built from reports. Views never read sources."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from monitor.logreport import Report


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
