"""The ``[changes]`` config section: settings, flags, procedures and deployments to track.

Validated like the rest of the config (pydantic, frozen, unknown keys refused). It is
self-contained so that ``monitor/config.py`` can import it without an import cycle.
The database connection itself comes from each server's database settings (the MDA
section); these models say only what to read and how often. Durations are float seconds.

    [changes]
    deployments_file = "/var/lib/imx/deployments.jsonl"   # JSON lines, see collectors/deployments.py

    [changes.settings]                 # sysconfigures/syscurconfigs, sp_shmdumpconfig, the .cfg file
    poll_interval = 60
    cfg_files = { CLINIC1 = "/opt/sap/ASE-16_0/CLINIC1.cfg" }   # else the dataserver's -c

    [changes.procedures]
    databases = ["imx"]
    poll_interval = 300

    [[changes.flags]]
    server = "CLINIC1"
    query = "select name, value from imx..app_feature_flags"
    # or: file = "/etc/imx/flags.json"
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

from monitor.config_types import ConfigPath, Seconds, Section

__all__ = [
    "ChangesConfig",
    "FlagSourceConfig",
    "ProceduresConfig",
    "SettingsConfig",
    "unknown_servers",
]

_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def _pairs(value: object) -> object:
    # A TOML table {server = path}, kept as pairs: the config stays hashable (frozen).
    return tuple(value.items()) if isinstance(value, dict) else value


class SettingsConfig(Section):
    """``[changes.settings]``: server configuration.

    ``enabled``: read sysconfigures/syscurconfigs (servers with a database connection).
    ``poll_interval`` (s) between reads; ``dump_conditions``: also read ``sp_shmdumpconfig``.
    ``cfg_files``: server name -> its ``.cfg`` file; a server not listed uses the running
    dataserver's ``-c``. ``cfg_poll_interval`` (s) between looks at the file (a stat).
    """

    enabled: StrictBool = True
    poll_interval: Seconds = 60.0
    dump_conditions: StrictBool = True
    cfg_files: Annotated[tuple[tuple[StrictStr, ConfigPath], ...], BeforeValidator(_pairs)] = ()
    cfg_poll_interval: Seconds = 5.0

    def cfg_file(self, server: str) -> Path | None:
        """The ``.cfg`` file configured for ``server``, or None."""
        return dict(self.cfg_files).get(server)


class ProceduresConfig(Section):
    """``[changes.procedures]``: fingerprint the procedures of ``databases`` (none: off) every
    ``poll_interval`` s, on every server with a database connection."""

    databases: tuple[StrictStr, ...] = ()
    poll_interval: Seconds = 300.0

    @field_validator("databases")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if not _DATABASE.fullmatch(d)]
        if bad:
            raise ValueError(f"not database names: {bad} (letters, digits and _, not starting with a digit)")
        return value


class FlagSourceConfig(Section):
    """``[[changes.flags]]``: one server's application flags, from ``query`` (run on the
    server's database connection; it must return ``(name, value)`` rows) or ``file``
    (JSON object ``{"flag": value}``; YAML with PyYAML installed). ``poll_interval`` in s."""

    server: StrictStr
    query: StrictStr | None = None
    file: ConfigPath | None = None
    poll_interval: Seconds = 30.0

    @field_validator("query")
    @classmethod
    def _read_only(cls, value: str | None) -> str | None:
        if value is not None and not value.lstrip().lower().startswith("select"):
            raise ValueError("must be a select returning (name, value) rows")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FlagSourceConfig:
        if (self.query is None) == (self.file is None):
            raise ValueError("give exactly one of query and file")
        return self


class ChangesConfig(Section):
    """``[changes]``: what the change ledger tracks besides the errorlog.

    ``deployments_file``: JSON lines of deployments to watch (None: only ``asewatch change
    add``); ``deployments_poll_interval`` in s.
    """

    settings: SettingsConfig = Field(default_factory=SettingsConfig)
    procedures: ProceduresConfig = Field(default_factory=ProceduresConfig)
    flags: tuple[FlagSourceConfig, ...] = ()
    deployments_file: ConfigPath | None = None
    deployments_poll_interval: Seconds = 5.0


def unknown_servers(changes: ChangesConfig, servers: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(key, reason)`` for every server named in ``changes`` that is not configured
    (for the whole config's validator, which knows the servers)."""
    out = [
        (f"changes.settings.cfg_files.{name}", f"no [[server]] named {name!r}")
        for name, _ in changes.settings.cfg_files
        if name not in servers
    ]
    out += [
        (f"changes.flags[{i}].server", f"no [[server]] named {f.server!r}")
        for i, f in enumerate(changes.flags)
        if f.server not in servers
    ]
    return out
