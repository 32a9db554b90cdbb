"""The ``asewatch`` command: thin. It parses arguments, calls the monitor, prints."""

from __future__ import annotations

import click

from monitor import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asewatch")
def main() -> None:
    """asewatch: crash-dump and stability monitor for SAP ASE."""
