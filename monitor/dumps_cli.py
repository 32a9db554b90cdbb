"""``asewatch dumps`` and ``asewatch dumps prune``: dump files on the command line.

monitor/cli.py loads this module when ``dumps`` runs; ``asewatch show`` adds a crash's
dumps with :func:`crash_dumps`, :func:`dump_json` and :func:`dumps_table`.

This module imports monitor.cli's helpers inside the commands (monitor.cli_core imports
this one).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from monitor.cli_options import STATE_DIR as _STATE_DIR
from monitor.config_dumps import DumpsConfig
from monitor.dumps_read import DumpRow, dumps_of_crash, list_dumps
from monitor.dumps_retention import RetentionReport, enforce
from monitor.store import Store

_CONFIG = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config file (its [dumps] section sets the retention rules).",
)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).isoformat(timespec="seconds")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _keep(d: DumpRow) -> str:
    """kept / suppressed / evicted / removed, as a DBA reads it."""
    if d.retention in ("evicted", "evicting"):
        return f"evicted ({d.evict_reason})" if d.evict_reason else "evicted"
    if d.retention == "removed":
        return "removed"
    return "suppressed" if d.suppressed else "kept"


def dump_json(d: DumpRow) -> dict[str, Any]:
    """The public JSON shape of one dump (``asewatch dumps --json``)."""
    doc = asdict(d)
    doc["holders"] = list(d.holders)
    doc["keep"] = _keep(d)
    for k in ("mtime", "first_seen", "finished_at", "evicted_at", "shipped_at"):
        doc[k] = _iso(doc[k])
    return doc


def crash_dumps(store: Store, crash_id: int | None) -> list[DumpRow]:
    """The dumps attached to crash ``crash_id`` (none for None). Raises StoreError."""
    if crash_id is None:
        return []
    with store.reader() as r:
        return dumps_of_crash(r, crash_id)


def dumps_table(rows: list[DumpRow], title: str | None = None) -> Table:
    """The dumps as a table (``asewatch dumps``; ``asewatch show`` for one crash's)."""
    t = Table(title=title or f"Dumps ({len(rows)})")
    for name in ("id", "server", "path", "size", "sha256", "state", "crash", "keep", "shipped", "in use"):
        t.add_column(name, overflow="fold")
    for d in rows:
        state = d.state + (f": {d.reason}" if d.reason else "")
        t.add_row(
            str(d.id), d.server or "?", d.path, _size(d.size), (d.sha256 or "")[:16], state,
            str(d.crash_id or ""), _keep(d), _iso(d.shipped_at) or "", ", ".join(d.holders),
        )  # fmt: skip
    return t


def _dumps_config(config_path: Path | None) -> tuple[Any, DumpsConfig]:
    from monitor.cli import load  # noqa: PLC0415 - see module doc

    cfg = load(config_path)
    section = getattr(cfg, "dumps", None) if cfg is not None else None
    return cfg, section if isinstance(section, DumpsConfig) else DumpsConfig()


@click.group("dumps", invoke_without_command=True)
@_CONFIG
@_STATE_DIR
@click.option("--server", help="Only this server.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per dump.")
@click.pass_context
def dumps_group(
    ctx: click.Context, config_path: Path | None, state_dir: Path | None, server: str | None, as_json: bool
) -> None:
    """Every dump and core file: path, server, size, SHA-256, state (complete, truncated,
    unreadable, writing), the crash it belongs to, and whether its file is kept, suppressed
    by flood control or evicted by retention."""
    if ctx.invoked_subcommand is not None:
        return
    from monitor.cli import console, open_store  # noqa: PLC0415 - see module doc

    cfg, _ = _dumps_config(config_path)
    with open_store(state_dir, cfg) as store, store.reader() as r:
        rows = list_dumps(r, server)
    if as_json:
        click.echo(json.dumps([dump_json(d) for d in rows], ensure_ascii=False))
        return
    console().print(dumps_table(rows))


@dumps_group.command("prune")
@_CONFIG
@_STATE_DIR
@click.option("--dry-run", is_flag=True, help="Only say what would be evicted and what is protected.")
@click.option("--force", is_flag=True, help="Also evict dumps not shipped yet (never one in use).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def prune_cmd(
    config_path: Path | None, state_dir: Path | None, dry_run: bool, force: bool, as_json: bool
) -> None:
    """Apply the retention rules now: delete dump files (records stay) that flood control
    suppressed or that exceed the age, count, bytes or free-space limits. A dump in use
    (being packaged or shipped) is never evicted; one not shipped yet only with --force."""
    from monitor.cli import console, open_store  # noqa: PLC0415 - see module doc

    cfg, policy = _dumps_config(config_path)
    with open_store(state_dir, cfg) as store:
        report = enforce(store, policy, force=force, dry_run=dry_run, by="cli")
    if as_json:
        click.echo(json.dumps(_report_json(report), ensure_ascii=False))
        return
    out = console()
    verb = "would evict" if dry_run else "evicted"
    done = report.planned if dry_run else report.evicted
    for e in done:
        out.print(f"{verb} dump {e.dump.id} ({e.rule}, {_size(e.dump.size)}): {e.dump.path}")
    for e, why in report.failed:
        out.print(f"could not evict dump {e.dump.id}: {why}")
    for b in report.blocked:
        out.print(f"kept dump {b.dump.id} ({b.rule} limit): {b.why}")
    freed = sum(e.dump.size for e in done)
    out.print(f"{len(done)} dump file(s), {_size(freed)} {verb}; {len(report.blocked)} protected")


def _report_json(report: RetentionReport) -> dict[str, Any]:
    def ev(rows: Any) -> list[dict[str, Any]]:
        return [{"id": e.dump.id, "path": e.dump.path, "rule": e.rule, "size": e.dump.size} for e in rows]

    return {
        "dry_run": report.dry_run,
        "planned": ev(report.planned),
        "evicted": ev(report.evicted),
        "failed": [{"id": e.dump.id, "path": e.dump.path, "why": why} for e, why in report.failed],
        "blocked": [{"id": b.dump.id, "rule": b.rule, "why": b.why} for b in report.blocked],
    }
