"""``asewatch activity`` and ``asewatch export activity``: the flight recorder on the command line.

monitor/cli.py loads this module when one of its commands runs; ``export activity`` joins
the ``export`` group in monitor/export_cli.py.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from monitor.cli_options import CONFIG as _CONFIG
from monitor.cli_options import STATE_DIR as _STATE_DIR
from monitor.flightrec_read import ActivityRow, FrozenActivity, frozen_activity, recent_activity
from monitor.store_types import CrashRow


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).isoformat(timespec="milliseconds")


def _row_json(r: ActivityRow) -> dict[str, Any]:
    doc = asdict(r)
    doc["start"], doc["end"] = _iso(r.start), _iso(r.end)
    return doc


def _num(value: int | None) -> str:
    return "" if value is None else str(value)


def _table(rows: list[ActivityRow], title: str) -> Table:
    t = Table(title=title, show_lines=False)
    for name in ("end", "role", "spid", "kpid", "login", "host", "program", "db", "procedure", "line",
                 "cpu ms", "reads", "err", "sql"):  # fmt: skip
        t.add_column(name, overflow="fold")
    for r in rows:
        t.add_row(
            (_iso(r.end or r.start) or "")[11:], r.role or "", str(r.spid), str(r.kpid), r.login or "",
            r.host or "", r.program or "", r.db or "", r.procedure or "", str(r.line or ""),
            _num(r.cpu_ms), _num(r.logical_reads), str(r.error or ""), (r.sql or "")[:160],
        )  # fmt: skip
    return t


def _frozen_json(f: FrozenActivity, row: CrashRow) -> dict[str, Any]:
    return {
        "errorlog": {"login": row.login, "host": row.host, "program": row.program,
                     "procedure": row.procedure},
        "crash": {"id": row.id, "key": f.crash_key, "server": f.server, "time": _iso(f.crash_time),
                  "spid": f.spid, "kpid": f.kpid, "family": f.family},
        "session": {"spid": f.session_spid, "kpid": f.session_kpid, "login": f.login, "host": f.host,
                    "program": f.program},
        "procedures": list(f.procedures()),
        "window_seconds": f.window, "complete": f.complete, "truncated": f.truncated,
        "stack": [asdict(s) | {"sampled_at": _iso(s.sampled_at)} for s in f.stack],
        "statements": [_row_json(s) for s in f.statements],
    }  # fmt: skip


@click.command("activity")
@_CONFIG
@_STATE_DIR
@click.option("--server", help="Only this server.")
@click.option("--spid", type=int, help="Only this spid.")
@click.option("--before", "crash", metavar="CRASH", help="The activity frozen at this crash (id or key).")
@click.option(
    "--minutes", type=float, default=5.0, show_default=True, help="How far back the live ring goes."
)
@click.option(
    "--limit", type=click.IntRange(1), default=200, show_default=True, help="At most this many rows."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def activity_cmd(
    *,
    config_path: Path | None,
    state_dir: Path | None,
    server: str | None,
    spid: int | None,
    crash: str | None,
    minutes: float,
    limit: int,
    as_json: bool,
) -> None:
    """What ran on the server: the newest statements of the flight recorder, or (with --before)
    what was frozen into a crash's record: the crashing session, its procedure call stack,
    the SQL it was running and every spid's activity in the minute before."""
    from monitor.cli import console, fail, load, open_store  # noqa: PLC0415 - see module doc

    with open_store(state_dir, load(config_path)) as store, store.reader() as r:
        if crash is None:
            since = time.time() - minutes * 60
            rows = recent_activity(r, server=server, spid=spid, since=since, limit=limit)
            if as_json:
                click.echo(json.dumps({"statements": [_row_json(x) for x in rows]}, ensure_ascii=False))
            else:
                console().print(_table(rows, f"Activity, last {minutes:g} min ({len(rows)} statements)"))
            return
        row = r.crash(int(crash) if crash.isdigit() else crash)
        if row is None:
            fail(f"no crash {crash!r}; `asewatch crashes` lists them")
        frozen = frozen_activity(r, row.key, spid=spid)
    if frozen is None:
        fail(f"no activity was frozen for crash {crash} (its server {row.server} is not sampled over MDA)")
    if as_json:
        click.echo(json.dumps(_frozen_json(frozen, row), ensure_ascii=False))
        return
    out = console()
    who = f"{frozen.login or '?'} on {frozen.host or '?'} ({frozen.program or '?'})"
    out.print(
        f"Crash {row.id} of {frozen.server} at {_iso(frozen.crash_time)}: spid {frozen.spid} "
        f"kpid {frozen.kpid} family {frozen.family}; session spid {frozen.session_spid}: {who}"
    )
    out.print(f"Procedures: {', '.join(frozen.procedures()) or 'none recorded'}")
    out.print(
        f"The errorlog's crash block: login {row.login}, procedure {row.procedure}, program {row.program}"
    )
    for s in frozen.stack:
        out.print(f"  stack spid {s.spid} level {s.level}: {s.db}.{s.owner}.{s.name} line {s.line}")
    note = "" if frozen.complete else " (still settling)"
    note += f", cut to the newest {len(frozen.statements)}" if frozen.truncated else ""
    out.print(_table(list(frozen.statements), f"Activity before the crash, {frozen.window:g} s{note}"))


@click.command("activity")
@_CONFIG
@_STATE_DIR
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--what", type=click.Choice(["statements", "minutes"]), default="statements", show_default=True,
              help="The raw ring of statements, or the per-minute aggregates per procedure.")  # fmt: skip
@click.option("--server", help="Only this server.")
@click.option("--since", metavar="TIME", help="From this local time (ISO 8601).")
@click.option("--until", metavar="TIME", help="Up to this local time (ISO 8601).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
def export_activity_cmd(
    *,
    config_path: Path | None,
    state_dir: Path | None,
    fmt: str,
    what: str,
    server: str | None,
    since: str | None,
    until: str | None,
    output: Path | None,
) -> None:
    """Write the flight recorder as CSV or Parquet. SQL is its redacted shape; the columns are
    listed in the README (and in monitor/flightrec_export.py)."""
    from monitor.cli import fail, load, open_store, parse_time  # noqa: PLC0415 - see module doc
    from monitor.flightrec_export import activity_frame, write_export  # noqa: PLC0415 - pandas is slow to load

    if fmt == "parquet" and output is None and sys.stdout.isatty():
        fail("Parquet is binary: pass -o FILE (or redirect stdout)")
    lo, hi = parse_time(since), parse_time(until, "--until")
    with open_store(state_dir, load(config_path)) as store, store.reader() as r:
        frame = activity_frame(
            r,
            "minutes" if what == "minutes" else "statements",
            server=server,
            since=lo.timestamp() if lo else 0.0,
            until=hi.timestamp() if hi else float("inf"),
        )
    try:
        data = write_export(frame, "parquet" if fmt == "parquet" else "csv", output)
    except OSError as e:
        fail(f"{output}: cannot write: {e.strerror or e}")
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    elif output is not None:
        click.echo(f"{output}: {len(frame)} rows", err=True)
