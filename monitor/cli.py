"""The ``asewatch`` command: thin. It parses arguments, calls the monitor, prints."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from monitor import __version__
from monitor.errors import AsewatchError


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line reason to stderr and exit."""
    click.echo(f"asewatch: error: {message}", err=True)
    raise SystemExit(code)


def parse_time(value: str | None) -> datetime | None:
    """A local time from the command line: ``2020-01-27``, ``2020-01-27T12:00`` or ``2020-01-27 12:00:05``."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--since {value!r}: not a time; use ISO 8601 like 2020-01-27 or 2020-01-27T12:00:00")


def console() -> Console:
    """Rich console for stdout; wide when piped, so tables are not folded for grep and files."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def main() -> None:
    """Entry point: any unexpected failure becomes one line on stderr, never a traceback."""
    try:
        cli(prog_name="asewatch")
    except AsewatchError as e:
        fail(str(e))
    except Exception as e:
        if os.environ.get("ASEWATCH_DEBUG"):
            raise
        fail(f"internal error: {type(e).__name__}: {e} (set ASEWATCH_DEBUG=1 for the traceback)", code=1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asewatch")
def cli() -> None:
    """asewatch: crash-dump and stability monitor for SAP ASE."""


@cli.command("errorlog")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object (the public shape).")
@click.option("--since", metavar="TIME", help="Leave out records before this local time (ISO 8601).")
def errorlog_cmd(files: tuple[Path, ...], as_json: bool, since: str | None) -> None:
    """Analyse ASE errorlog FILES (plain or .gz): crashes grouped by signature, errors, changes, stops."""
    from monitor.logreport import analyse  # noqa: PLC0415 - keeps `asewatch --help` fast
    from monitor.views import errorlog_views  # noqa: PLC0415

    since_t = parse_time(since)
    try:
        report = analyse(list(files), since_t)
    except AsewatchError as e:
        fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
        return
    out = console()
    for view in errorlog_views(report):
        out.print(view)
