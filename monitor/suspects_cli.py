"""``asewatch suspects``: ranked suspects of every crash group, from the store or offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from monitor.cli import console, fail, load, open_store
from monitor.cli_options import CONFIG, STATE_DIR
from monitor.errors import AsewatchError

if TYPE_CHECKING:  # the ranking (pandas, scipy) is imported only when this command runs
    from monitor.suspects import SuspectGroup


@click.command("suspects")
@click.option("--errorlog", "errorlogs", multiple=True, type=click.Path(path_type=Path),
              help="Offline: an errorlog (plain or .gz; repeat). No agent and no store needed.")  # fmt: skip
@click.option("--statements", type=click.Path(path_type=Path),
              help="Offline: statements, CSV or Parquet (monSysStatement or export columns).")  # fmt: skip
@click.option("--changes", type=click.Path(path_type=Path),
              help="Offline: changes, CSV (time, kind, name, old, new; or export columns).")  # fmt: skip
@click.option("--signature", help="Only the crash group of this signature.")
@click.option("--server", help="Only this server (offline: its rows of a changes file).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object (the public shape).")
@CONFIG
@STATE_DIR
def suspects_cmd(  # noqa: PLR0917 - click passes every option
    errorlogs: tuple[Path, ...],
    statements: Path | None,
    changes: Path | None,
    signature: str | None,
    server: str | None,
    as_json: bool,
    config_path: Path | None,
    state_dir: Path | None,
) -> None:
    """Rank what each crash group goes with: procedures, flags, settings, changes, logins, hosts."""
    from monitor.suspects import suspects_json  # noqa: PLC0415 - see TYPE_CHECKING above

    try:
        if errorlogs:
            groups = _offline(errorlogs, statements, changes, server)
        elif statements is not None or changes is not None:
            fail("--statements and --changes need --errorlog FILE (the crashes)")
        else:
            groups = _from_store(state_dir, config_path, server)
    except AsewatchError as e:
        fail(str(e))
    if signature is not None:
        groups = [g for g in groups if g.signature == signature]
        if not groups:
            fail(f"no crash group with signature {signature!r}")
    doc = suspects_json(groups)
    if as_json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    from monitor.suspects_view import suspects_table  # noqa: PLC0415 - rich only for the table

    out = console()
    if not doc["groups"]:
        out.print("No crashes: nothing to rank.")
    for group in doc["groups"]:  # type: ignore[attr-defined]
        out.print(suspects_table(group))


def _offline(
    errorlogs: tuple[Path, ...], statements: Path | None, changes: Path | None, server: str | None
) -> list[SuspectGroup]:
    from monitor.suspects import rank_suspects  # noqa: PLC0415
    from monitor.suspects_input import offline_inputs  # noqa: PLC0415 - pyarrow only when offline

    return rank_suspects(offline_inputs(errorlogs, statements, changes, server=server))


def _from_store(state_dir: Path | None, config_path: Path | None, server: str | None) -> list[SuspectGroup]:
    from monitor.readmodel import servers as store_servers  # noqa: PLC0415
    from monitor.suspects import rank_suspects  # noqa: PLC0415
    from monitor.suspects_store import store_inputs  # noqa: PLC0415

    groups: list[SuspectGroup] = []
    with open_store(state_dir, load(config_path)) as store, store.reader() as r:
        for s in [server] if server else store_servers(r):
            groups += rank_suspects(store_inputs(r, s))
    return groups
