"""``asewatch package CRASH``: build the vendor package of one crash (thin: parse, call, print).

monitor/cli.py loads this module when ``package`` runs.
Until monitor/config.py carries the ``[package]`` (and ``[vendor]``/``[ship]``) sections,
this command reads them from the same TOML itself, so one config file serves both.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from monitor.config_package import PackageConfig, validate_package_section
from monitor.errors import AsewatchError, ConfigError

_OWN_SECTIONS = ("package", "vendor", "ship")


@dataclass(frozen=True)
class _WithSections:
    """A loaded Config with the sections it does not carry yet (``extra``), read beside it."""

    base: Any
    extra: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name in self.extra:
            return self.extra[name]
        return getattr(self.base, name)


def load_with_package(path: Path) -> Any:
    """The config at ``path`` with its ``[package]`` section, whether or not monitor/config.py
    knows that section yet. Raises ConfigError naming file, key and reason."""
    from monitor.config import Config, load_config  # noqa: PLC0415 - keeps `asewatch --help` fast
    from monitor.config_errors import problems_of  # noqa: PLC0415

    missing = [s for s in _OWN_SECTIONS if s not in Config.model_fields]
    if not missing:
        return load_config(path, require_server=False)
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # load_config words these best: let it.
        load_config(path, require_server=False)
        raise ConfigError(where, "", str(exc)) from None
    extra = {s: data.pop(s) for s in missing if s in data}
    base_dir = Path(path).absolute().parent
    steps: list[tuple[str, Any, Any]] = [
        (
            "",
            Config,
            lambda: Config.model_validate(data, context={"base": base_dir, "require_server": False}),
        ),
        ("package", PackageConfig, lambda: validate_package_section(extra, base_dir)),
    ]
    models = _ship_models()
    steps += [(s, models[s], _validator(models[s], extra[s], base_dir)) for s in ("vendor", "ship")
              if s in missing and s in extra and s in models]  # fmt: skip
    done: dict[str, Any] = {}
    for section, model, validate in steps:
        try:
            done[section] = validate()
        except ValidationError as exc:
            key, reason = problems_of(exc, model)[0]
            raise ConfigError(where, ".".join(k for k in (section, key) if k), reason) from None
    return _WithSections(done.pop(""), done)


def _ship_models() -> dict[str, Any]:
    try:
        from monitor import config_ship  # noqa: PLC0415 - the shipper's sections, when present
    except ImportError:
        return {}
    return {"vendor": config_ship.VendorConfig, "ship": config_ship.ShipConfig}


def _validator(model: Any, data: Any, base_dir: Path) -> Any:
    return lambda: model.model_validate(data, context={"base": base_dir})


@click.command("package")
@click.argument("crash")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the package into (default: [package] out_dir, else the ship spool).",
)
@click.option("--case", "case_number", metavar="NUMBER", help="The vendor's case number, when one is open.")
@click.option(
    "--dump",
    "dumps",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Package this dump file instead of the crash's own (repeatable).",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config file.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the store lives (default: the config's [agent] state_dir).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def package_cmd(
    crash: str, *, out_dir: Path | None, case_number: str | None, dumps: tuple[Path, ...],
    config_path: Path | None, state_dir: Path | None, as_json: bool, progress: bool | None,
) -> None:  # fmt: skip
    """Build the vendor package of CRASH (its id from `asewatch crashes`, or its key): manifest,
    errorlog excerpts, configuration and changes, the dumps compressed (and encrypted when
    [package.encryption] names recipients), all personal data redacted, with SHA256SUMS."""
    from monitor.cli import console, fail, open_store  # noqa: PLC0415
    from monitor.package import build_package  # noqa: PLC0415

    try:
        cfg = load_with_package(config_path) if config_path is not None else None
    except ConfigError as e:
        fail(str(e))
    try:
        with open_store(state_dir, getattr(cfg, "base", cfg)) as store:
            result = build_package(store, crash, out_dir, cfg, dumps=list(dumps) or None,
                                   case_number=case_number, progress=progress)  # fmt: skip
    except AsewatchError as e:
        fail(str(e))
    if as_json:
        doc = {
            "package_id": result.package_id,
            "path": str(result.path),
            "archive": str(result.archive) if result.archive else None,
            "files": [f.to_json() for f in result.files],
            "unavailable": result.manifest.get("unavailable", {}),
            "removed_stale": [str(p) for p in result.removed_stale],
        }
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    out = console()
    total = sum(f.size for f in result.files)
    out.print(f"[bold]{result.package_id}[/bold]: {len(result.files)} files, {total} bytes in {result.path}")
    for f in result.files:
        out.print(f"  {f.name:<48} {f.size:>14}  {f.kind}")
    for what, why in sorted(result.manifest.get("unavailable", {}).items()):
        out.print(f"  [yellow]not available[/yellow] {what}: {why}")
    if result.archive is not None:
        out.print(f"  archive: {result.archive}")
