"""Config sections of the MDA sampler and flight recorder (issue 4): ``[database]`` and ``[mda]``.

Validated once like :mod:`monitor.config` (pydantic, frozen, unknown keys refused).
Neither section holds a password: ``password_env`` names an environment variable and
``password_file`` a file readable only by its owner; the password itself is read at
each connect (so a rotated password is picked up) and never stored in the config, a
log line, an error, an event or a repr.

Attach them to ``Config`` as ``database: DatabaseConfig | None = None`` and
``mda: MdaConfig = Field(default_factory=MdaConfig)``; a server is sampled only when
``[database]`` is configured.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from monitor.config_types import ConfigPath, Seconds, Section

__all__ = ["DatabaseConfig", "MdaConfig", "check_password_file"]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters that would end an ODBC attribute or break the string's braces.
_ODBC_UNSAFE = re.compile(r"[;{}=\x00]")


def check_password_file(path: Path) -> str | None:
    """Why ``path`` must not be used as a password file, or None when it is fine.

    A password file must be a regular file owned by the agent's user with no group or
    world permission bits (``chmod 600``): anyone else who can read it can log in to
    ASE. Reads only the file's metadata.
    """
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_mode & 0o077:
        return (
            f"{path} is readable or writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to the agent's user (uid {os.geteuid()})"
    return None


class DatabaseConfig(Section):
    """``[database]``: how the agent logs in to ASE for the MDA tables (read-only, autocommit).

    Either ``dsn`` (an odbc.ini data source) or ``host`` + ``port`` with ``driver``
    (the odbcinst.ini name, or a path to ``libtdsodbc.so``). ``user`` needs ``mon_role``.
    The password comes from exactly one of ``password_env`` (an environment variable's
    name) and ``password_file`` (a file of mode 0600 owned by the agent's user; one line,
    surrounding whitespace stripped). ``login_timeout`` and ``query_timeout`` are
    seconds; every query is bounded by the latter, so a hung server costs at most that.
    ``tds_version`` stays 5.0 for ASE (anything else makes ASE log error 1621 at every
    connect).
    """

    host: StrictStr | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 5000
    dsn: StrictStr | None = None
    driver: StrictStr = "FreeTDS"
    user: StrictStr = "asewatch"
    password_env: StrictStr | None = None
    password_file: ConfigPath | None = None
    app: StrictStr = "asewatch"
    charset: StrictStr = "UTF-8"
    tds_version: StrictStr = "5.0"
    login_timeout: Seconds = 5.0
    query_timeout: Seconds = 5.0

    @field_validator("host", "dsn", "driver", "user", "app", "charset", "tds_version")
    @classmethod
    def _odbc_safe(cls, value: str | None) -> str | None:
        if value is not None and (not value or _ODBC_UNSAFE.search(value)):
            raise ValueError(f"{value!r} is empty or holds one of ; {{ }} = (not allowed in an ODBC string)")
        return value

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("password_file")
    @classmethod
    def _private_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            problem = check_password_file(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_way_each(self) -> DatabaseConfig:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("set exactly one of password_env and password_file")
        if (self.dsn is None) == (self.host is None):
            raise ValueError("set exactly one of dsn and host")
        return self


class MdaConfig(Section):
    """``[mda]``: the sampler and the flight recorder.

    ``sample_interval`` (s) between reads of the pipe tables; the sampler reads sooner
    when a read comes back more than half full. ``raw_minutes``: how long the raw ring
    keeps statements, SQL text, sessions and call stacks; ``max_raw_rows`` caps each raw
    table whatever the age. ``aggregate_days``: how long per-minute aggregates per
    procedure (and the activity frozen into crash records) are kept; ``max_aggregate_rows``
    caps the aggregates. ``reconnect_initial`` and
    ``reconnect_backoff_max`` (s) bound the exponential back-off after a failure.
    ``statement_pipe_size`` / ``sql_text_pipe_size`` override the pipe sizes read from
    ``sysconfigures`` (used to detect probable overflow). ``freeze_window`` (s): how much
    of every spid's activity before a crash is frozen into the crash record.
    """

    enabled: StrictBool = True
    sample_interval: Seconds = 5.0
    raw_minutes: Annotated[StrictInt, Field(ge=1, le=24 * 60)] = 30
    max_raw_rows: Annotated[StrictInt, Field(ge=1000)] = 500_000
    aggregate_days: Annotated[StrictInt, Field(ge=1, le=3650)] = 35
    max_aggregate_rows: Annotated[StrictInt, Field(ge=1000)] = 5_000_000
    reconnect_initial: Seconds = 0.5
    reconnect_backoff_max: Seconds = 30.0
    statement_pipe_size: Annotated[StrictInt, Field(ge=1)] | None = None
    sql_text_pipe_size: Annotated[StrictInt, Field(ge=1)] | None = None
    freeze_window: Seconds = 60.0

    @model_validator(mode="after")
    def _backoff_order(self) -> MdaConfig:
        if self.reconnect_backoff_max < self.reconnect_initial:
            raise ValueError("reconnect_backoff_max must be at least reconnect_initial")
        return self
