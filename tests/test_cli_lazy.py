"""The root command loads a command's module only when that command runs.

Structural guards (no timings): what ``import monitor.cli`` and looking up one command
pull into the interpreter, and that the table of commands is whole.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from monitor.cli import COMMANDS, cli

pytestmark = pytest.mark.unit

HEAVY = (
    "pandas",
    "pydantic",
    "rich",
    "numpy",
    "scipy",
    "pyarrow",
    "psutil",
    "monitor.store",
    "monitor.config",
)


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = (
        f"import sys\n{code}\nimport json\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m in {HEAVY!r} or m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert _loaded_after("import monitor.cli") == []


def test_the_offline_suspects_command_is_found_without_the_ranking_or_the_config() -> None:
    loaded = _loaded_after(
        "from monitor.cli import cli\nimport click\n"
        "assert cli.get_command(click.Context(cli), 'suspects') is not None"
    )
    assert loaded == []


def test_the_offline_errorlog_command_is_found_without_the_config_or_the_store() -> None:
    loaded = _loaded_after(
        "from monitor.cli import cli\nimport click\n"
        "assert cli.get_command(click.Context(cli), 'errorlog') is not None"
    )
    assert loaded == []


def test_every_command_in_the_table_resolves_to_itself() -> None:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(ctx, "no-such-command") is None


def test_help_lists_every_command_and_an_unknown_one_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(COMMANDS)
    bad = CliRunner().invoke(cli, ["suspect"])
    assert bad.exit_code == 2 and "No such command 'suspect'" in bad.output
