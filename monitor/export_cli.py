"""``asewatch export``: the store's data as files for spreadsheets and notebooks.

One group for the subcommands that live beside their features: ``export activity``
(monitor/activity_cli.py) and ``export changes`` (monitor/changes_cli.py).
"""

from __future__ import annotations

import click

from monitor.activity_cli import export_activity_cmd
from monitor.changes_cli import export_changes_cmd


@click.group("export")
def export_group() -> None:
    """Export what the store holds (flight recorder, change ledger) as CSV or Parquet."""


export_group.add_command(export_activity_cmd, "activity")
export_group.add_command(export_changes_cmd, "changes")
