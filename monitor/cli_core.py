"""The commands defined with the root group's helpers: ``errorlog``, ``config check``,
``agent``, ``status``, ``crashes``, ``show`` and ``demo`` (the others live beside the
feature they show; monitor/cli.py names them all and loads each when it runs)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from monitor.cli import console, fail, load, open_store, parse_time
from monitor.cli_options import CONFIG, STATE_DIR
from monitor.errors import AsewatchError

if TYPE_CHECKING:  # each command imports what it needs: `asewatch errorlog` loads no config models
    from monitor.store_types import CrashRow


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command("errorlog")
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


@click.group("config")
def config_group() -> None:
    """Configuration helpers."""


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE; print what it configures, or every problem with file, key and reason."""
    from monitor.config import resolve_state_dir  # noqa: PLC0415

    cfg = load(file, require_server=True)
    assert cfg is not None
    names = ", ".join(s.name for s in cfg.servers)
    click.echo(f"{file}: OK ({len(cfg.servers)} server(s): {names}; state in {resolve_state_dir(None, cfg)})")


@click.command("agent")
@CONFIG
@STATE_DIR
def agent_cmd(config_path: Path | None, state_dir: Path | None) -> None:
    """Run the agent beside the configured dataservers until SIGTERM or Ctrl-C."""
    from monitor.agent import Agent  # noqa: PLC0415
    from monitor.config import resolve_state_dir  # noqa: PLC0415

    if config_path is None:
        fail("the agent needs a config: asewatch agent -c /etc/asewatch/asewatch.toml")
    cfg = load(config_path, require_server=True)
    assert cfg is not None
    setup_logging(cfg.agent.log_level)
    raise SystemExit(Agent(cfg, resolve_state_dir(state_dir, cfg)).run())


@click.command("status")
@CONFIG
@STATE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(config_path: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """Each server: up or down, since when, its crashes and the newest one."""
    from monitor import readmodel  # noqa: PLC0415
    from monitor.views import crash_json_row, status_table  # noqa: PLC0415

    cfg = load(config_path)
    with open_store(state_dir, cfg) as store, store.reader() as r:
        names = readmodel.servers(r, tuple(s.name for s in cfg.servers) if cfg else ())
        views = [readmodel.server_view(r, s) for s in names]
        rows = r.crashes()
    counts: dict[str, int] = {}
    last: dict[str, CrashRow] = {}
    for row in rows:
        counts[row.server] = counts.get(row.server, 0) + 1
        if row.time and (row.server not in last or (last[row.server].time or row.time) <= row.time):
            last[row.server] = row
    if as_json:
        doc = [
            {
                "server": v.server, "up": v.up, "pid": v.pid, "start_time": v.start_time,
                "crashes": counts.get(v.server, 0),
                "last_crash": crash_json_row(last[v.server]) if v.server in last else None,
            }
            for v in views
        ]  # fmt: skip
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    console().print(status_table(views, counts, last))


@click.command("crashes")
@CONFIG
@STATE_DIR
@click.option("--server", help="Only this server.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per crash.")
def crashes_cmd(config_path: Path | None, state_dir: Path | None, server: str | None, as_json: bool) -> None:
    """Every crash the agent recorded: kind, signature, the SQL and who ran it."""
    from monitor.views import crash_json_row, crashes_table  # noqa: PLC0415

    with open_store(state_dir, load(config_path)) as store:
        rows = store.crashes(server)
    if as_json:
        click.echo(json.dumps([crash_json_row(r) for r in rows], ensure_ascii=False))
        return
    console().print(crashes_table(rows))


@click.command("show")
@click.argument("crash")
@CONFIG
@STATE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the record and the errorlog block).")
def show_cmd(crash: str, config_path: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """One crash in full: CRASH is its id (from `asewatch crashes`) or its key."""
    from monitor.codec import decode_event  # noqa: PLC0415
    from monitor.dumps_cli import crash_dumps, dump_json, dumps_table  # noqa: PLC0415
    from monitor.events import CrashBlock  # noqa: PLC0415
    from monitor.logreport import crash_json  # noqa: PLC0415
    from monitor.suspects_agent import group_of, stored  # noqa: PLC0415
    from monitor.suspects_view import suspects_table  # noqa: PLC0415
    from monitor.views import crash_detail, crash_json_row  # noqa: PLC0415

    with open_store(state_dir, load(config_path)) as store:
        row = store.crash(int(crash) if crash.isdigit() else crash)
        dumps = crash_dumps(store, row.id) if row is not None else []
        if row is not None:
            with store.reader() as r:
                group = group_of(stored(r, row.server), row.signature)
    if row is None:
        fail(f"no crash {crash!r}; `asewatch crashes` lists them")
    block = None
    if row.payload and row.payload != "{}":
        ev = decode_event("CrashBlock", row.payload)
        block = ev if isinstance(ev, CrashBlock) else None
    if as_json:
        doc = crash_json_row(row) | {"errorlog": crash_json(block) if block else None}
        doc["dumps"] = [dump_json(d) for d in dumps]
        doc["suspects"] = group["suspects"] if group else None
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    out = console()
    for view in crash_detail(row, block):
        out.print(view)
    if dumps:
        out.print(dumps_table(dumps, f"Dumps of crash {row.id}"))
    if group:
        out.print(suspects_table(group))


@click.command("demo")
@STATE_DIR
@click.option("--keep-running", is_flag=True, help="Leave the simulator, agent and /metrics up until Ctrl-C.")
def demo_cmd(state_dir: Path | None, keep_running: bool) -> None:
    """Replay the incident on a simulated dataserver and show asewatch catching it (under 2 minutes)."""
    from monitor.demo import run_demo  # noqa: PLC0415

    # The agent's own log goes to a file: the demo's screen is for the story.
    raise SystemExit(run_demo(console(), state_dir, keep_running))
