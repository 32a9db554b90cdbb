"""The change-ledger commands: ``asewatch change add``, ``asewatch changes``, ``asewatch export changes``.

Thin, like monitor/cli.py: parse, call monitor/ledger.py, print. monitor/cli.py loads this
module when one of them runs; ``export changes`` joins monitor/export_cli.py's group.

The ledger's columns (``changes --json`` keys, CSV header and Parquet columns, in order):

=========  ====================================================================================
column     meaning
=========  ====================================================================================
time       when it happened or was first seen, local time (JSON: ISO 8601; CSV: YYYY-MM-DD HH:MM:SS[.ffffff])
server     the ASE server
kind       ``deployment``, ``version`` (ASE version/EBF at boot), ``config``, ``flag``,
           ``procedures`` (one summary per database and poll), ``procedure``, ``dump conditions``
what       the deployed release, parameter, flag, ``db..procedure`` or summary text
old        the value before (procedures: first 12 hex digits of the text's SHA-256); empty if none
new        the value after; empty if none (a dropped procedure, a removed flag)
by         who did it, when known (the errorlog's login for sp_configure, ``--by`` for deployments)
source     who saw it: ``cli``, ``file``, ``errorlog``, ``sysconfigures``, ``cfgfile`` (joined
           with ``+`` when several saw one change), ``query``, ``syscomments``, ``sp_shmdumpconfig``
=========  ====================================================================================
"""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from pathlib import Path

import click

from monitor import readmodel
from monitor.cli import fail, load, open_store, parse_time
from monitor.cli_options import CONFIG, STATE_DIR
from monitor.events_changes import Deployment
from monitor.ledger import COLUMNS, LedgerRow, ledger, rows_json
from monitor.store import Batch

_KINDS = ("deployment", "version", "config", "flag", "procedures", "procedure", "dump conditions")

SINCE = click.option("--since", metavar="TIME", help="Leave out changes before this local time (ISO 8601).")
SERVER = click.option("--server", help="Only this server.")
KIND = click.option(
    "--kind", "kinds", multiple=True, type=click.Choice(_KINDS), help="Only these kinds (repeat)."
)


def _rows(state_dir: Path | None, config_path: Path | None, since: str | None, server: str | None,
          kinds: tuple[str, ...]) -> list[LedgerRow]:  # fmt: skip
    since_t = parse_time(since, "--since")
    with open_store(state_dir, load(config_path)) as store, store.reader() as r:
        return ledger(r, since=since_t, server=server, kinds=kinds or None)


# --------------------------------------------------------------------------- change add


@click.group("change")
def change_group() -> None:
    """Record changes the agent cannot see (application deployments)."""


@change_group.command("add")
@click.argument("name")
@click.option("--at", "at", metavar="TIME", help="When it happened, local time (ISO 8601). Default: now.")
@click.option("--by", "by", metavar="WHO", help="Who did it. Default: the user running this command.")
@click.option(
    "--server", "servers", multiple=True,
    help="A server it concerns (repeatable). Default: every configured server, else every one in the store.",
)  # fmt: skip
@CONFIG
@STATE_DIR
def change_add_cmd(
    *,
    name: str,
    at: str | None,
    by: str | None,
    servers: tuple[str, ...],
    config_path: Path | None,
    state_dir: Path | None,
) -> None:
    """Record a deployment NAME (e.g. "IMX 7.1.0") in the store; it joins the change ledger.

    Recording the same NAME at the same time again changes nothing.
    """
    if not name.strip():
        fail("NAME is empty; give the release, e.g. asewatch change add 'IMX 7.1.0'")
    cfg = load(config_path)
    when = (parse_time(at, "--at") or datetime.now()).timestamp()
    who = by if by is not None else getpass.getuser()
    event = Deployment(when, name.strip(), who, "cli")
    with open_store(state_dir, cfg, create=True) as store:
        if not servers and cfg is not None:
            servers = tuple(s.name for s in cfg.servers)
        if not servers:
            with store.reader() as r:
                servers = tuple(readmodel.servers(r))
        if not servers:
            fail("no server is configured or known to the store; name it: --server NAME")
        new = store.append(Batch(events=[(s, event) for s in servers]))
    stamp = datetime.fromtimestamp(when).isoformat(sep=" ", timespec="seconds")
    state = "recorded" if new else "already recorded"
    click.echo(f"{state}: deployment {event.name!r} at {stamp} by {who} ({', '.join(servers)})")


# --------------------------------------------------------------------------- changes


@click.command("changes")
@CONFIG
@STATE_DIR
@SINCE
@SERVER
@KIND
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array, one object per change.")
def changes_cmd(*, config_path: Path | None, state_dir: Path | None, since: str | None,
                server: str | None, kinds: tuple[str, ...], as_json: bool) -> None:  # fmt: skip
    """Every change in time order: deployments, ASE version, settings, flags, procedures."""
    rows = _rows(state_dir, config_path, since, server, kinds)
    if as_json:
        click.echo(rows_json(rows))
        return
    from rich.console import Console  # noqa: PLC0415 - keeps `asewatch --help` fast
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"Changes ({len(rows)})")
    for col in ("time", "server", "kind", "what", "old -> new", "by", "source"):
        table.add_column(col)
    for row in rows:
        values = "" if row.old is None and row.new is None else f"{row.old or '-'} -> {row.new or '-'}"
        table.add_row(
            row.time.isoformat(sep=" ", timespec="seconds"), row.server, row.kind,
            row.what, values, row.by or "", row.source,
        )  # fmt: skip
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


# --------------------------------------------------------------------------- export changes


@click.command("changes")
@CONFIG
@STATE_DIR
@SINCE
@SERVER
@KIND
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write (CSV: default stdout; Parquet: required).")  # fmt: skip
def export_changes_cmd(*, config_path: Path | None, state_dir: Path | None, since: str | None,
                       server: str | None, kinds: tuple[str, ...], fmt: str,
                       output: Path | None) -> None:  # fmt: skip
    """The change ledger as CSV or Parquet, columns time, server, kind, what, old, new, by, source.

    time is local time (a timestamp column in Parquet, YYYY-MM-DD HH:MM:SS in CSV); empty values are nulls.
    """
    if fmt == "parquet" and output is None:
        fail("--format parquet needs --output FILE (Parquet is binary)")
    rows = _rows(state_dir, config_path, since, server, kinds)
    import pandas as pd  # noqa: PLC0415 - heavy; only this command needs it

    frame = pd.DataFrame([[getattr(r, c) for c in COLUMNS] for r in rows], columns=list(COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"])
    try:
        if fmt == "parquet":
            frame.to_parquet(output, index=False)
        elif output is None:
            frame.to_csv(sys.stdout, index=False)
        else:
            frame.to_csv(output, index=False)
    except OSError as e:
        fail(f"{output}: cannot write: {e.strerror or e}")
    if output is not None:
        click.echo(f"{len(rows)} change(s) written to {output}", err=True)
