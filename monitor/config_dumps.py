"""The ``[dumps]`` config section (issue 5): dump folders, completeness, attachment, flood
control and retention. Validated once like :mod:`monitor.config` (pydantic, frozen,
unknown keys refused).

Folders come from two places: each server's ``dump_dirs`` (the ``sp_shmdumpconfig``
dump_dir; the folder belongs to that server) and ``[[dumps.folder]]`` tables (OS core
folders, any other folder, with their own patterns; the server is optional).

Default patterns, and why: ASE's generated shared-memory dump file names are not
documented (see research/ase-facts.md b.1) and ``sp_shmdumpconfig`` wants a dedicated
dump_dir, so a server's dump_dirs match every name (``*``) except ASE's own non-dump
files: ``*.krg``/``*.srg*`` are the shared-memory control files every boot creates (left
behind after a crash they are evidence of an unclean stop, not a memory image), and
``*.cfg``, ``*.log``, ``*.pid`` are configuration, logs and pid files. Names starting
with ``.`` are always skipped (temporary names of copy tools that rename when done).
An OS core folder usually holds other files too, so a ``[[dumps.folder]]`` matches
``core``, ``core.*``, ``*.core`` and ``*.dmp`` unless told otherwise.

Attach it to ``Config`` as ``dumps: DumpsConfig = Field(default_factory=DumpsConfig)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from monitor.config_types import ConfigPath, Seconds, Section

__all__ = [
    "CORE_PATTERNS",
    "DUMP_DIR_EXCLUDE",
    "DUMP_DIR_PATTERNS",
    "DumpFolderConfig",
    "DumpsConfig",
    "unknown_dump_servers",
]

DUMP_DIR_PATTERNS: tuple[str, ...] = ("*",)
DUMP_DIR_EXCLUDE: tuple[str, ...] = ("*.krg", "*.srg*", "*.cfg", "*.log", "*.pid")
CORE_PATTERNS: tuple[str, ...] = ("core", "core.*", "*.core", "*.dmp")
_SERVER_NAME = re.compile(r"[A-Za-z0-9_]+")


def _pattern(value: str) -> str:
    # A pattern matches a name inside the folder: it must never reach another folder.
    if not value or "/" in value or "\0" in value or value in (".", ".."):
        raise ValueError(f"{value!r} is not a file-name pattern (no '/', not '.' or '..')")
    return value


NonNegSeconds = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Pattern = Annotated[StrictStr, AfterValidator(_pattern)]
Count = Annotated[StrictInt, Field(ge=0)]
Bytes = Annotated[StrictInt, Field(ge=0)]


def _pairs(value: object) -> object:
    # A TOML table {server = bytes}, kept as pairs: the config stays hashable (frozen).
    return tuple(value.items()) if isinstance(value, dict) else value


def _no_dotdot(value: Path) -> Path:
    if ".." in value.parts:
        raise ValueError(f"{value} has a '..' component; give the folder's real path")
    return value


class DumpFolderConfig(Section):
    """``[[dumps.folder]]``: one more folder to watch.

    ``path``: the folder (not searched recursively). ``server``: the server its dumps
    belong to; None means: the server whose dataserver wrote the file (its ``-sNAME``),
    else a file name starting with ``NAME_``, else the only configured server.
    ``patterns``/``exclude``: file-name globs (``fnmatch``, case-sensitive).
    ``expected_bytes``: the size a complete dump in this folder has, when known.
    """

    path: Annotated[ConfigPath, AfterValidator(_no_dotdot)]
    server: StrictStr | None = None
    patterns: tuple[Pattern, ...] = Field(default=CORE_PATTERNS, min_length=1)
    exclude: tuple[Pattern, ...] = ()
    expected_bytes: Annotated[StrictInt, Field(gt=0)] | None = None

    @field_validator("server")
    @classmethod
    def _server_name(cls, value: str | None) -> str | None:
        if value is not None and not _SERVER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an ASE server name (letters, digits and _)")
        return value


class DumpsConfig(Section):
    """``[dumps]``: how dump files are watched, judged, attached and kept.

    Watching: ``settle_seconds`` a file must stay unchanged (with no writer) before it is
    finished; ``poll_interval`` (s) between folder checks when no file event wakes the
    watcher; ``use_watchdog`` (inotify; polling otherwise). ``patterns``/``exclude``: globs
    for the servers' ``dump_dirs``. ``expected_bytes``: per server, the size of a complete
    shared-memory dump (a smaller finished one is ``truncated``; :meth:`expected` reads it).
    ``writer_exit_truncates``: a dump whose writer process vanished while the file was still
    growing is ``truncated`` (turn off if the writer exits right after its last write and no
    expected size is set).

    Attaching: a dump whose time lies from ``attach_before`` s before a crash of its server
    to ``attach_after`` s after it belongs to that crash.

    Flood control: of the dumps of one server and crash signature on one local day, the
    first ``keep_first`` and the last ``keep_last`` keep their files; the others'
    files are deleted (their records stay, counted as suppressed). 0 and 0 keep all.

    Retention (files only; records are kept): ``max_age_days``, ``max_count`` (files kept
    over all folders), ``max_bytes`` (their total), ``min_free_bytes`` (free space each
    dump folder's file system must keep); 0 turns a rule off. ``evict_unshipped``: also
    evict dumps not shipped yet (otherwise only ``asewatch dumps prune --force`` does).
    ``retention_interval`` (s) between retention passes of the agent.
    """

    folders: tuple[DumpFolderConfig, ...] = Field(default=(), alias="folder")
    patterns: tuple[Pattern, ...] = Field(default=DUMP_DIR_PATTERNS, min_length=1)
    exclude: tuple[Pattern, ...] = DUMP_DIR_EXCLUDE
    settle_seconds: Seconds = 5.0
    poll_interval: Seconds = 1.0
    use_watchdog: StrictBool = True
    expected_bytes: Annotated[
        tuple[tuple[StrictStr, Annotated[StrictInt, Field(gt=0)]], ...], BeforeValidator(_pairs)
    ] = ()
    writer_exit_truncates: StrictBool = True
    attach_before: NonNegSeconds = 60.0
    attach_after: NonNegSeconds = 600.0
    keep_first: Count = 3
    keep_last: Count = 3
    max_age_days: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 30.0
    max_count: Count = 50
    max_bytes: Bytes = 0
    min_free_bytes: Bytes = 1 << 30
    evict_unshipped: StrictBool = False
    retention_interval: Seconds = 60.0

    def expected(self, server: str | None) -> int | None:
        """The configured size of a complete dump of ``server`` (bytes), None when not set."""
        return dict(self.expected_bytes).get(server) if server else None

    @model_validator(mode="after")
    def _unique_folders(self) -> DumpsConfig:
        seen: set[Path] = set()
        for folder in self.folders:
            if folder.path in seen:
                raise ValueError(f"folder {folder.path} is configured twice")
            seen.add(folder.path)
        return self


def unknown_dump_servers(dumps: DumpsConfig, servers: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(key, reason)`` for every server named in ``dumps`` that is not configured (for the
    whole config's validator, which knows the servers).

    >>> unknown_dump_servers(DumpsConfig.model_validate({"expected_bytes": {"X": 1}}), ("A",))
    [('dumps.expected_bytes.X', "no [[server]] named 'X'")]
    """
    out = [
        (f"dumps.expected_bytes.{name}", f"no [[server]] named {name!r}")
        for name, _ in dumps.expected_bytes
        if name not in servers
    ]
    out += [
        (f"dumps.folder[{i}].server", f"no [[server]] named {f.server!r}")
        for i, f in enumerate(dumps.folders)
        if f.server is not None and f.server not in servers
    ]
    return out
