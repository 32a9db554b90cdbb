"""Offline errorlog analysis: what ``asewatch errorlog`` reports, as data and as tables.

The JSON shape is a public interface (documented in the README): change it only by
adding keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from collectors.errorlog import ErrorlogParser, parse_file
from monitor.events import ConfigChanged, CrashBlock, ErrorlogError, ServerBooted, ServerShutdown
from monitor.signature import SIGNATURE_VERSION, meaningful_frames


def iso(t: datetime) -> str:
    """ISO 8601 without a zone, to the millisecond (ASE logs hundredths, local time).

    >>> iso(datetime(2020, 1, 27, 12, 20, 5, 160000))
    '2020-01-27T12:20:05.160'
    """
    return t.isoformat(timespec="milliseconds")


def crash_json(c: CrashBlock) -> dict[str, Any]:
    """One crash as the public JSON object."""
    return {
        "time": iso(c.time),
        "kind": c.kind,
        "signal": c.signal,
        "engine": c.engine,
        "thread": c.thread,
        "family": c.family,
        "spid": c.spid,
        "kpid": c.kpid,
        "suid": c.suid,
        "login": c.login,
        "host": c.hostname,
        "program": c.program,
        "sql": c.sql,
        "sql_text": list(c.sql_text),
        "procedure": c.procedure,
        "statement_number": c.statement_number,
        "line_number": c.line_number,
        "curdb": c.curdb,
        "lasterror": c.lasterror,
        "transtate": c.transtate,
        "curcmd": c.curcmd,
        "address_function": c.address_function,
        "frames": list(c.frames),
        "handlers": list(c.handlers),
        "complete": c.complete,
        "server_terminated": c.server_terminated,
        "signature": c.signature,
    }


@dataclass
class Report:
    """Everything found in one or more errorlogs."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    unparsed_lines: int = 0
    long_lines: int = 0
    crashes: list[CrashBlock] = field(default_factory=list)
    errors: Counter[tuple[int, int]] = field(default_factory=Counter)
    config_changes: list[ConfigChanged] = field(default_factory=list)
    boots: list[ServerBooted] = field(default_factory=list)
    shutdowns: list[ServerShutdown] = field(default_factory=list)

    def signatures(self) -> list[dict[str, Any]]:
        """Crashes grouped by signature, most frequent first."""
        groups: dict[str, list[CrashBlock]] = {}
        for c in self.crashes:
            groups.setdefault(c.signature, []).append(c)
        out: list[dict[str, Any]] = []
        for sig, cs in groups.items():
            first = cs[0]
            out.append(
                {
                    "signature": sig,
                    "count": len(cs),
                    "kind": first.kind,
                    "signal": first.signal,
                    "first": iso(min(c.time for c in cs)),
                    "last": iso(max(c.time for c in cs)),
                    "top_frames": list(meaningful_frames(first.frames))
                    or ([first.address_function] if first.address_function else []),
                    "sql": first.sql or (first.sql_text[0] if first.sql_text else None),
                    "procedures": sorted({c.procedure for c in cs if c.procedure}),
                    "logins": sorted({c.login for c in cs if c.login}),
                    "hosts": sorted({c.hostname for c in cs if c.hostname}),
                    "programs": sorted({c.program for c in cs if c.program}),
                    "server_terminated": sum(c.server_terminated for c in cs),
                }
            )
        out.sort(key=lambda g: (-g["count"], g["first"]))
        return out

    def to_json(self) -> dict[str, Any]:
        """The public ``asewatch errorlog --json`` object."""
        return {
            "signature_version": SIGNATURE_VERSION,
            "files": self.files,
            "lines": self.lines,
            "unparsed_lines": self.unparsed_lines,
            "long_lines": self.long_lines,
            "crashes": [crash_json(c) for c in self.crashes],
            "signatures": self.signatures(),
            "errors": [
                {"number": n, "severity": s, "count": k}
                for (n, s), k in sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "config_changes": [
                {"time": iso(c.time), "option": c.option, "by": c.by, "old": c.old, "new": c.new}
                for c in self.config_changes
            ],
            "boots": [
                {"time": iso(b.time), "version": b.version, "failed": b.failed, "failure": b.failure}
                for b in self.boots
            ],
            "shutdowns": [{"time": iso(s.time), "kind": s.kind, "by": s.by} for s in self.shutdowns],
        }


def analyse(paths: Sequence[Path], since: datetime | None = None) -> Report:
    """Parse every file (each as its own stream) into one report; records before ``since`` are left out.

    Raises ``InputError`` for a missing or unreadable file.
    """
    report = Report()
    for path in paths:
        parser = ErrorlogParser()
        report.files.append(str(path))
        _collect(report, parse_file(path, parser), since)
        report.lines += parser.lines
        report.unparsed_lines += parser.unparsed_lines
        report.long_lines += parser.long_lines
    for records in (report.crashes, report.config_changes, report.boots, report.shutdowns):
        records.sort(key=lambda r: r.time)
    return report


def _collect(report: Report, records: Iterable[object], since: datetime | None) -> None:
    for r in records:
        t = getattr(r, "time", None)
        if since is not None and t is not None and t < since:
            continue
        if isinstance(r, ErrorlogError):
            report.errors[(r.number, r.severity)] += 1
        elif isinstance(r, CrashBlock):
            report.crashes.append(r)
        elif isinstance(r, ConfigChanged):
            report.config_changes.append(r)
        elif isinstance(r, ServerBooted):
            report.boots.append(r)
        elif isinstance(r, ServerShutdown):
            report.shutdowns.append(r)
