"""The options every store-reading command shares (one definition for all ``*_cli`` modules)."""

from __future__ import annotations

from pathlib import Path

import click

STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the store lives (default: the config's [agent] state_dir, else the per-user state folder).",
)
CONFIG = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config file.",
)
