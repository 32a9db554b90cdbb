"""The agent's TOML config, validated once (pydantic, frozen, unknown keys refused) and passed down.

A bad config fails at start with one :class:`~monitor.errors.ConfigError` that lists
every problem, each as ``key: reason`` with the key as a dotted path such as
``server[0].errorlog``. Every setting has a default except a server's ``name``.
Durations are float seconds. Relative paths in a file are taken from the file's
folder (an agent's working directory is ``/`` under systemd), and ``~`` is expanded.

The sections, and what reads them:

- ``[agent]``: where the store lives, the write queue's size, the log level.
- ``[[server]]``: one table per ASE server this agent watches (at least one).
- ``[process]``: the process watcher's timing.
- ``[errorlog]``: the errorlog tailer's timing.
- ``[metrics]``: the Prometheus endpoint.

See ``asewatch.example.toml`` at the repository root for a commented example.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from monitor.config_changes import ChangesConfig, unknown_servers
from monitor.config_dumps import DumpsConfig, unknown_dump_servers
from monitor.config_errors import problems_of
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.config_package import PackageConfig
from monitor.config_ship import ShipConfig, VendorConfig
from monitor.config_types import ConfigPath, Seconds, Section
from monitor.errors import ConfigError

__all__ = [
    "AgentConfig",
    "Config",
    "ErrorlogConfig",
    "MetricsConfig",
    "ProcessConfig",
    "ServerConfig",
    "default_config",
    "default_state_dir",
    "load_config",
    "resolve_state_dir",
]


LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]

_SERVER_NAME = re.compile(r"[A-Za-z0-9_]+")
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _problem(key: str, reason: str) -> PydanticCustomError:
    """A validation error about ``key`` (relative to the model that raises it)."""
    return PydanticCustomError("asewatch", "{reason}", {"key": key, "reason": reason})


class AgentConfig(Section):
    """``[agent]``: the agent itself.

    ``state_dir``: where the store (``asewatch.db``) lives; None means the per-user
    state folder (see :func:`default_state_dir`). ``queue_size``: batches the store's
    write queue holds before collectors start dropping (and counting) them.
    ``log_level``: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case).
    """

    state_dir: ConfigPath | None = None
    queue_size: Annotated[StrictInt, Field(ge=1)] = 10_000
    log_level: LogLevel = "INFO"


class ServerConfig(Section):
    """``[[server]]``: one ASE server on this host.

    ``name``: the server name as in ``dataserver -sNAME`` (letters, digits, ``_``).
    ``errorlog``: its errorlog; None means "the ``-e`` of the running process".
    ``pid_file`` / ``run_file``: optional, to find the process and its RUN_ file.
    ``dump_dirs``: folders where shared-memory dumps and core files land.
    ``host``: the host name used in labels (default: this machine's host name).
    """

    name: StrictStr
    errorlog: ConfigPath | None = None
    pid_file: ConfigPath | None = None
    run_file: ConfigPath | None = None
    dump_dirs: tuple[ConfigPath, ...] = ()
    database: DatabaseConfig | None = None
    host: StrictStr = Field(default_factory=socket.gethostname, min_length=1)

    @field_validator("name")
    @classmethod
    def _server_name(cls, value: str) -> str:
        if not _SERVER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an ASE server name (as in -sNAME: letters, digits and _)")
        return value


class ProcessConfig(Section):
    """``[process]``: ``poll_interval`` (s) between process checks; ``sample_interval`` (s)
    between resource samples of a running server."""

    poll_interval: Seconds = 0.5
    sample_interval: Seconds = 5.0


class ErrorlogConfig(Section):
    """``[errorlog]``: ``poll_interval`` (s) between reads when not woken by file events;
    ``quiet_period`` (s): a crash block being written is emitted after this much quiet;
    ``use_watchdog``: wake on file-system events (inotify) instead of polling only."""

    poll_interval: Seconds = 1.0
    quiet_period: Seconds = 0.5
    use_watchdog: StrictBool = True


class MetricsConfig(Section):
    """``[metrics]``: the Prometheus ``/metrics`` endpoint.

    ``listen``: address to bind (IP or host name); ``port``: 0..65535, 0 picks a free
    port. ``tls_cert_file`` and ``tls_key_file``: both or neither; the files must exist.
    """

    enabled: StrictBool = True
    listen: StrictStr = "127.0.0.1"
    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 9399
    tls_cert_file: ConfigPath | None = None
    tls_key_file: ConfigPath | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOST_NAME.fullmatch(value):
                raise ValueError(f"{value!r} is not an IP address or a host name") from None
        return value

    @field_validator("tls_cert_file", "tls_key_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> MetricsConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            have, missing = (
                ("tls_cert_file", "tls_key_file")
                if self.tls_key_file is None
                else ("tls_key_file", "tls_cert_file")
            )
            raise _problem(missing, f"required when {have} is set (TLS needs both, or neither)")
        return self


class Config(Section):
    """The whole config. ``servers`` is the TOML's ``[[server]]`` array (pass it as ``server=``)."""

    agent: AgentConfig = Field(default_factory=AgentConfig)
    servers: tuple[ServerConfig, ...] = Field(default=(), alias="server", validate_default=True)
    process: ProcessConfig = Field(default_factory=ProcessConfig)
    errorlog: ErrorlogConfig = Field(default_factory=ErrorlogConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    mda: MdaConfig = Field(default_factory=MdaConfig)
    changes: ChangesConfig = Field(default_factory=ChangesConfig)
    ship: ShipConfig = Field(default_factory=ShipConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)
    vendor: VendorConfig | None = None
    dumps: DumpsConfig = Field(default_factory=DumpsConfig)

    @field_validator("servers")
    @classmethod
    def _some_server(cls, value: tuple[ServerConfig, ...], info: ValidationInfo) -> tuple[ServerConfig, ...]:
        context = info.context if isinstance(info.context, dict) else {}
        if not value and context.get("require_server"):
            raise ValueError('no [[server]] table; the agent needs at least one: [[server]] name = "SRV"')
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for i, server in enumerate(self.servers):
            if server.name in seen:
                raise _problem(f"server[{i}].name", f"server {server.name!r} is configured twice")
            seen.add(server.name)
        for key, reason in unknown_servers(self.changes, tuple(seen)):
            raise _problem(key, reason)
        for key, reason in unknown_dump_servers(self.dumps, tuple(seen)):
            raise _problem(key, reason)
        return self


def load_config(path: Path, *, require_server: bool = True) -> Config:
    """Read and validate the TOML file at ``path``.

    With ``require_server`` (the agent's case) at least one ``[[server]]`` must be
    configured. Raises ConfigError naming the file, and the key and reason of every
    problem (several problems: ``key`` is empty and ``reason`` lists them one a line);
    invalid TOML is reported with its line and column.
    """
    where = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(where, "", f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(where, "", f"not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, "", f"not valid TOML: {exc}") from None
    context = {"base": Path(path).absolute().parent, "require_server": require_server}
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as exc:
        problems = problems_of(exc, Config)
    if len(problems) == 1:
        raise ConfigError(where, *problems[0])
    listing = "\n".join(f"  {key}: {reason}" for key, reason in problems)
    raise ConfigError(where, "", f"{len(problems)} problems:\n{listing}")


def default_config() -> Config:
    """The built-in defaults (no servers): what the demo starts from.

    Add servers by building a new one, validated: ``Config(server=(ServerConfig(name="SIM"),))``.
    """
    return Config()


def default_state_dir(
    *, environ: Mapping[str, str] | None = None, euid: int | None = None, home: Path | None = None
) -> Path:
    """The per-user state folder: ``/var/lib/asewatch`` for root, else
    ``$XDG_STATE_HOME/asewatch`` (when set to an absolute path) or ``~/.local/state/asewatch``.
    The arguments stand in for the process's environment, effective uid and home (for tests).
    """
    env = os.environ if environ is None else environ
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/var/lib/asewatch")
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative value
        return Path(xdg) / "asewatch"
    return (Path.home() if home is None else home) / ".local" / "state" / "asewatch"


def resolve_state_dir(cli_value: Path | None, config: Config | None) -> Path:
    """Where the store lives: ``--state-dir`` wins, then ``[agent] state_dir``, then
    :func:`default_state_dir`. Returns an absolute path; creates nothing."""
    if cli_value is not None:
        return Path(cli_value).expanduser().absolute()
    if config is not None and config.agent.state_dir is not None:
        return config.agent.state_dir.absolute()
    return default_state_dir()
