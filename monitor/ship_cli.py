"""``asewatch ship`` and ``asewatch doctor``. Thin, like monitor/cli.py: parse, call, print.

``ship`` shows the queue (what is where, what
failed and why, when it is retried); ``--now`` ships at once, past windows and retry
times (in this process, or by asking the running agent); ``--release PACKAGE`` lets a
metadata-first package's dumps go. ``doctor`` runs the readiness checks and exits 1
when something would lose the next dump.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import BaseModel, ValidationError

from monitor.cli_options import CONFIG, STATE_DIR
from monitor.config import Config, load_config, resolve_state_dir
from monitor.config_errors import problems_of
from monitor.config_package import package_config_of, validate_package_section
from monitor.config_ship import ShipConfig, VendorConfig
from monitor.errors import ConfigError
from monitor.store import Batch, Store

__all__ = ["Settings", "doctor_cmd", "load_settings", "ship_cmd"]


@dataclass(frozen=True, slots=True)
class Settings:
    """The config with the sections shipping and doctor read."""

    config: Config
    ship: ShipConfig
    vendor: VendorConfig | None
    recipients: tuple[str, ...] | None


def _fail(message: str) -> NoReturn:
    click.echo(f"asewatch: error: {message}", err=True)
    raise SystemExit(2)


def _validate(model: type[BaseModel], data: Any, path: Path, prefix: str) -> Any:
    try:
        return model.model_validate(data, context={"base": path.absolute().parent, "require_server": False})
    except ValidationError as exc:
        problems = [(f"{prefix}.{k}" if prefix and k else prefix or k, r) for k, r in problems_of(exc, model)]
    if len(problems) == 1:
        raise ConfigError(str(path), *problems[0])
    listing = "\n".join(f"  {k}: {r}" for k, r in problems)
    raise ConfigError(str(path), "", f"{len(problems)} problems:\n{listing}")


def load_settings(path: Path) -> Settings:
    """Load the config at ``path`` with its ``[ship]``, ``[vendor]`` and ``[package]`` sections.

    Works whether or not ``Config`` carries those sections yet: the ones it does not know
    are validated here on their own. Raises ConfigError naming the file, key and reason.
    """
    fields = Config.model_fields
    if all(k in fields for k in ("ship", "vendor", "package")):
        cfg = load_config(path, require_server=False)
        ship = getattr(cfg, "ship", None) or ShipConfig()
        return Settings(cfg, ship, getattr(cfg, "vendor", None), _recipients(cfg))
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    own: dict[str, Any] = {
        k: data.pop(k) for k in ("ship", "vendor", "package") if k in data and k not in fields
    }
    cfg = _validate(Config, data, path, "")
    ship = (
        _validate(ShipConfig, own["ship"], path, "ship")
        if "ship" in own
        else getattr(cfg, "ship", ShipConfig())
    )
    vendor = (
        _validate(VendorConfig, own["vendor"], path, "vendor")
        if "vendor" in own
        else getattr(cfg, "vendor", None)
    )
    if "package" in own:
        try:
            package = validate_package_section(own, path.absolute().parent)
        except ValidationError as exc:
            key, reason = problems_of(exc, type(package_config_of(None)))[0]
            raise ConfigError(str(path), f"package.{key}", reason) from None
        recipients: tuple[str, ...] | None = tuple(package.encryption.recipients)
    else:
        recipients = _recipients(cfg)
    return Settings(cfg, ship, vendor, recipients)


def _recipients(cfg: object) -> tuple[str, ...] | None:
    package = getattr(cfg, "package", None)
    return None if package is None else tuple(package_config_of(cfg).encryption.recipients)


def _settings(path: Path | None) -> Settings | None:
    if path is None:
        return None
    try:
        return load_settings(path)
    except ConfigError as e:
        _fail(str(e))


def _store(state_dir: Path | None, settings: Settings | None) -> Store:
    path = resolve_state_dir(state_dir, settings.config if settings else None)
    if not (path / "asewatch.db").exists():
        _fail(f"no asewatch store in {path} (start the agent, or pass --state-dir)")
    return Store.open(path)


# --------------------------------------------------------------------------- ship


@click.command("ship")
@CONFIG
@STATE_DIR
@click.option("--now", is_flag=True, help="Ship what is queued at once, past time windows and retry times.")
@click.option(
    "--release", "release", metavar="PACKAGE", help="Let the held dumps of PACKAGE go (metadata-first)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: targets, packages, files.")
def ship_cmd(
    *, config_path: Path | None, state_dir: Path | None, now: bool, release: str | None, as_json: bool
) -> None:
    """The shipping queue: each package file on each target, its state, attempts and last error."""
    from monitor import ship_status  # noqa: PLC0415 - keeps `asewatch --help` fast

    settings = _settings(config_path)
    code = 0
    with _store(state_dir, settings) as store:
        if release is not None:
            try:
                click.echo(ship_status.release(store, release, f"cli:{getpass.getuser()}"), err=as_json)
            except ValueError as e:
                _fail(str(e))
        if now:
            if settings is None:
                _fail(
                    "--now needs the config (the targets): asewatch ship --now -c /etc/asewatch/asewatch.toml"
                )
            message, code = ship_status.ship_now(store, settings.ship, settings.vendor)
            click.echo(message, err=as_json)
        with store.reader() as r:
            status = ship_status.status(r, time.time())
    if as_json:
        click.echo(json.dumps(status, ensure_ascii=False))
    else:
        ship_status.print_status(status, sys.stdout.isatty())
    raise SystemExit(code)


# --------------------------------------------------------------------------- doctor


@click.command("doctor")
@CONFIG
@STATE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: the verdict and every check.")
@click.option("--no-probe", is_flag=True, help="Do not send the test upload to the vendor targets.")
def doctor_cmd(*, config_path: Path | None, state_dir: Path | None, as_json: bool, no_probe: bool) -> None:
    """Readiness checks: would the next dump be captured, and would it reach the vendor?

    Exit status 1 when a check fails (something would lose the next dump), else 0.
    """
    from monitor.doctor import SaveChecks, run_doctor  # noqa: PLC0415
    from monitor.doctor_facts import doctor_inputs  # noqa: PLC0415

    if config_path is None:
        _fail("doctor needs the config: asewatch doctor -c /etc/asewatch/asewatch.toml")
    settings = _settings(config_path)
    assert settings is not None
    where = resolve_state_dir(state_dir, settings.config)
    store = Store.open(where) if (where / "asewatch.db").exists() else None
    try:
        inputs = doctor_inputs(
            settings.config.servers, store, settings.ship, settings.vendor, settings.recipients
        )
        report = run_doctor(inputs, probe_targets=not no_probe)
        if store is not None:
            store.append(Batch(ops=(SaveChecks(report),)))
    finally:
        if store is not None:
            store.close()
    if as_json:
        click.echo(report.dumps())
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for c in report.checks:
            who = f"{c.server}: " if c.server else ""
            click.echo(f"[{marks[c.verdict]}] {who}{c.name}: {c.detail}")
            if c.fix:
                click.echo(f"         fix: {c.fix}")
        click.echo(f"verdict: {report.verdict}")
    raise SystemExit(report.exit_code)
