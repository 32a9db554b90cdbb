"""The ``asewatch`` command: thin. It parses arguments, calls the monitor, prints.

The root group loads each command's module only when that command runs (``COMMANDS``):
``asewatch suspects`` does not pay for the agent's config models, ``asewatch status`` not
for pandas. The helpers below are what every command module shares; they import the
config and the store inside their bodies for the same reason.
"""

from __future__ import annotations

import importlib
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from monitor import __version__
from monitor.errors import AsewatchError

if TYPE_CHECKING:
    from rich.console import Console

    from monitor.config import Config
    from monitor.store import Store

#: Every top-level command: its name, and where it is defined ("module:attribute").
COMMANDS = {
    "agent": "monitor.cli_core:agent_cmd",
    "status": "monitor.cli_core:status_cmd",
    "crashes": "monitor.cli_core:crashes_cmd",
    "show": "monitor.cli_core:show_cmd",
    "suspects": "monitor.suspects_cli:suspects_cmd",
    "activity": "monitor.activity_cli:activity_cmd",
    "changes": "monitor.changes_cli:changes_cmd",
    "change": "monitor.changes_cli:change_group",
    "dumps": "monitor.dumps_cli:dumps_group",
    "package": "monitor.package_cli:package_cmd",
    "ship": "monitor.ship_cli:ship_cmd",
    "doctor": "monitor.ship_cli:doctor_cmd",
    "export": "monitor.export_cli:export_group",
    "errorlog": "monitor.cli_core:errorlog_cmd",
    "config": "monitor.cli_core:config_group",
    "demo": "monitor.cli_core:demo_cmd",
}


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line reason to stderr and exit."""
    click.echo(f"asewatch: error: {message}", err=True)
    raise SystemExit(code)


def parse_time(value: str | None, option: str = "--since") -> datetime | None:
    """A local time from the command line: ``2020-01-27``, ``2020-01-27T12:00`` or
    ``2020-01-27 12:00:05``; one with an offset is converted to local time. Exits 2 naming
    ``option`` when it is not a time."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option} {value!r}: not a time; use ISO 8601 like 2026-11-26T08:00 or 2026-11-26 08:00:05")
    return t.astimezone().replace(tzinfo=None) if t.tzinfo else t


def console() -> Console:
    """Rich console for stdout; wide when piped, so tables are not folded for grep and files."""
    from rich.console import Console  # noqa: PLC0415 - see module doc

    return Console() if sys.stdout.isatty() else Console(width=200)


def load(config_path: Path | None, *, require_server: bool = False) -> Config | None:
    """The validated config, or None without a file; a bad config exits 2 naming file, key and reason."""
    from monitor.config import load_config  # noqa: PLC0415 - see module doc
    from monitor.errors import ConfigError  # noqa: PLC0415

    if config_path is None:
        return None
    try:
        return load_config(config_path, require_server=require_server)
    except ConfigError as e:
        fail(str(e))


def open_store(state_dir: Path | None, config: Config | None, *, create: bool = False) -> Store:
    """The store of ``state_dir`` (else the config's, else the per-user one); exits 2 when
    there is none, unless ``create``."""
    from monitor.config import resolve_state_dir  # noqa: PLC0415 - see module doc
    from monitor.store import Store  # noqa: PLC0415

    path = resolve_state_dir(state_dir, config)
    if not create and not (path / "asewatch.db").exists():
        fail(f"no asewatch store in {path} (start the agent, or pass --state-dir)")
    return Store.open(path)


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


class LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMANDS` when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command) or command.name != cmd_name:
                raise TypeError(f"{COMMANDS[cmd_name]} is not the command {cmd_name!r}")
            self.add_command(command)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asewatch")
def cli() -> None:
    """asewatch: crash-dump and stability monitor for SAP ASE."""
