"""Server configuration: every parameter's run and configured value, the ``.cfg`` file, dump conditions.

Over the database connection (``master..sysconfigures`` + ``master..syscurconfigs``, joined
here on ``config``) the collector takes a snapshot at start and then emits one
``SettingChanged`` per parameter whose configured or run value moved. The query-parallelism
parameters (ase-facts section d) are flagged ``parallel``, because the incident's workaround
was a parallelism change. The ``.cfg`` file (``-c`` of the dataserver), when known, is read
the same way (source ``cfgfile``): a hand edit waiting for the next boot shows there first.
``dump on conditions`` and the ``sp_shmdumpconfig`` rows become a ``DumpConditions`` event at
start and whenever they change, for the readiness checks.

Who changed a value is not visible here; the errorlog's ``ConfigChanged`` line says, and the
change ledger joins the two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from monitor.errors import AsewatchError, SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import (
    DumpConditions,
    SettingChanged,
    SettingSource,
    SettingsSnapshot,
    SettingValue,
)
from monitor.sqlfiles import load_sql

log = logging.getLogger("asewatch.settings")

Emit = Callable[[Sequence[Event], Mapping[str, str]], None]

#: Query-parallelism parameters (ase-facts section d); any parameter of the
#: ``Parallel Query`` section counts too.
PARALLEL_PARAMETERS = frozenset({
    "max parallel degree", "max scan parallel degree", "number of worker processes", "max repartition degree",
    "max resource granularity", "max query parallel degree", "max utility parallel degree",
    "enable deferred parallel", "enable streamlined parallel", "optimization goal",
    "min pages for parallel scan", "memory per worker process", "prod-consumer overlap factor",
})  # fmt: skip
PARALLEL_SECTION = "parallel query"

# Read-only parameters whose "run value" is a live measurement, not a setting: a change in
# them is noise. They stay in the snapshot. [UNVERIFIED against a real server's churn]
VOLATILE_PARAMETERS = frozenset({"total logical memory", "total physical memory"})
CFG_SETTLE_S = 2.0  # a .cfg last written this long ago is complete (seconds)


class Cursor(Protocol):
    """The part of a DB-API cursor (pyodbc's) the collector uses."""

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...
    def execute(self, sql: str) -> object: ...
    def fetchall(self) -> Sequence[Sequence[Any]]: ...
    def nextset(self) -> bool | None: ...
    def close(self) -> None: ...


class Connection(Protocol):
    """The part of a DB-API connection the collector uses (``autocommit=True`` expected)."""

    def cursor(self) -> Cursor: ...
    def close(self) -> None: ...


def sql(name: str) -> str:
    """The statement in ``collectors/sql_settings/<name>.sql`` without its comment lines."""
    return load_sql("collectors", "sql_settings", name)


def is_parallel(name: str, section: str | None) -> bool:
    """Whether a parameter governs query parallelism.

    >>> is_parallel("max parallel degree", None), is_parallel("max memory", "Physical Memory")
    (True, False)
    """
    return name.lower() in PARALLEL_PARAMETERS or (section or "").lower() == PARALLEL_SECTION


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(value).strip()


def _value(number: object, text: object) -> str | None:
    """A parameter's value: its text (``value2``) for a character parameter, else the integer."""
    t = _text(text)
    return t if t else _text(number)


def join_config(
    configures: Sequence[Sequence[Any]], curconfigs: Sequence[Sequence[Any]]
) -> dict[str, SettingValue]:
    """Parameters from ``sysconfigures`` rows ``(config, name, parent, value, value2)`` and
    ``syscurconfigs`` rows ``(config, value, value2)``.

    A row another row names as its ``parent`` is a section, not a parameter, and so is a
    top-level row (``parent`` 0) with no run value. A parameter with no ``syscurconfigs``
    row has run value None. Joined on ``config`` (numbers differ between servers and
    versions, never between the two tables of one server).

    >>> cfg = [(19, "Parallel Query", 0, 0, None), (124, "max parallel degree", 19, 4, None)]
    >>> join_config(cfg, [(124, 1, None)])["max parallel degree"]
    SettingValue(name='max parallel degree', section='Parallel Query', configured='4', run='1', parallel=True)
    """
    by_config = {row[0]: row for row in configures}
    parents = {row[2] for row in configures}
    running = {row[0]: _value(row[1], row[2]) for row in curconfigs}
    out: dict[str, SettingValue] = {}
    for config, name, parent, value, value2 in configures:
        if config in parents or name is None or (parent == 0 and config not in running):
            continue
        pname = str(name).strip()
        section_row = by_config.get(parent)
        section = _text(section_row[1]) if section_row is not None and parent != config else None
        out.setdefault(
            pname,
            SettingValue(
                pname, section, _value(value, value2), running.get(config), is_parallel(pname, section)
            ),
        )
    return out


def parse_cfg(text: str) -> dict[str, SettingValue]:
    """Parameters of a ``<SERVER>.cfg`` file: ``[Section]`` headers, ``\\tname = value|DEFAULT`` lines.

    Comments (``#``) and blank lines are skipped; ``DEFAULT`` is kept as the value (it
    means "the server's default", which a change away from it must show). Named caches
    repeat their parameter names, so those are keyed by cache (and buffer pool):
    ``Named Cache:default data cache / cache size``, ``… / 16K I/O Buffer Pool / pool size``.

    >>> v = parse_cfg("[Parallel Query]\\n\\tmax parallel degree = 4\\n")["max parallel degree"]
    >>> v.section, v.configured, v.run, v.parallel
    ('Parallel Query', '4', None, True)
    """
    section: str | None = None
    prefix = ""  # the named cache (and pool) the following lines belong to
    cache = ""
    out: dict[str, SettingValue] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            if section.lower().startswith("named cache:"):
                cache = prefix = f"{section} / "
            elif section.lower().endswith("buffer pool") and cache:
                prefix = f"{cache}{section} / "
            else:
                cache = prefix = ""
            continue
        name, eq, value = line.partition("=")
        if not eq or not name.strip():
            continue  # not a parameter line; a real file has none, a hand edit might
        pname = prefix + name.strip()
        if pname in out:  # a name repeated outside a cache: keep both, apart
            pname = f"{section} / {pname}"
        out[pname] = SettingValue(pname, section, value.strip(), None, is_parallel(name.strip(), section))
    return out


def diff_settings(
    old: Mapping[str, SettingValue], new: Mapping[str, SettingValue], at: float, source: SettingSource
) -> list[SettingChanged]:
    """One SettingChanged per parameter whose configured or run value differs (appeared or gone
    included), ordered by name; live measurements (:data:`VOLATILE_PARAMETERS`) are left out."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        if name.lower() in VOLATILE_PARAMETERS:
            continue
        a, b = old.get(name), new.get(name)
        if a is not None and b is not None and (a.configured, a.run) == (b.configured, b.run):
            continue
        ref = b or a
        assert ref is not None  # the name came from one of the two
        out.append(
            SettingChanged(
                at, source, name, ref.section, ref.parallel,
                a.configured if a else None, b.configured if b else None,
                a.run if a else None, b.run if b else None,
            )
        )  # fmt: skip
    return out


def _enabled(values: Mapping[str, SettingValue]) -> bool | None:
    v = values.get("dump on conditions")
    text = (v.run if v.run is not None else v.configured) if v is not None else None
    return None if text is None or not text.isdigit() else int(text) != 0


class SettingsCollector:
    """One server's configuration. ``run(emit, stop)`` polls until stopped; ``poll()`` and
    ``poll_cfg()`` are one step each (they raise SourceError, and keep their state on failure).

    ``connect`` opens a DB-API connection to the server (autocommit, with timeouts); it is
    called again after any failure. ``known`` / ``known_cfg`` are the values the store last
    had (see ``monitor.ledger.known_settings``): with them, changes made while the agent was
    down become events; without, the first read is only a snapshot. ``locate_cfg`` returns
    the ``.cfg`` path (configured, or the running dataserver's ``-c``), or None.
    Intervals are seconds.
    """

    def __init__(
        self,
        server: str,
        connect: Callable[[], Connection] | None,
        *,
        known: Mapping[str, SettingValue] | None = None,
        known_cfg: Mapping[str, SettingValue] | None = None,
        locate_cfg: Callable[[], Path | None] | None = None,
        poll_interval: float = 60.0,
        cfg_poll_interval: float = 5.0,
        read_dump_conditions: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self.source = f"settings:{server}"
        self.cfg_source = f"cfgfile:{server}"
        self._connect = connect
        self._conn: Connection | None = None
        self._values = dict(known) if known is not None else None
        self._cfg_values = dict(known_cfg) if known_cfg is not None else None
        self._locate_cfg = locate_cfg
        self._poll_interval = poll_interval
        self._cfg_interval = cfg_poll_interval
        self._dumps = read_dump_conditions
        self._clock = clock
        self._snapshot_taken = False
        self._cfg_snapshot_taken = False
        self._cfg_stat: tuple[str, int, int, int] | None = None  # the version read
        self._cfg_look: tuple[str, int, int, int] | None = None  # the version seen at the last look
        self._dump_seen: str | None = None

    # ------------------------------------------------------------------ one step

    def poll(self) -> list[Event]:
        """Read the parameters (and the dump conditions) once; return the new events.

        Raises SourceError when the server cannot be reached or a query fails; the
        connection is closed and reopened on the next poll.
        """
        if self._connect is None:
            return []
        configures = self._query(sql("sysconfigures"))[1]
        curconfigs = self._query(sql("syscurconfigs"))[1]
        now = self._clock()
        values = join_config(configures, curconfigs)
        out: list[Event] = []
        if not self._snapshot_taken:
            out.append(SettingsSnapshot.of(now, "sysconfigures", values))
        if self._values is not None:
            out.extend(diff_settings(self._values, values, now, "sysconfigures"))
        self._values, self._snapshot_taken = values, True
        if self._dumps:
            cond = self._dump_conditions(now, _enabled(values))
            if cond.describe() != self._dump_seen:
                self._dump_seen = cond.describe()
                out.append(cond)
        return out

    def poll_cfg(self) -> list[Event]:
        """Look at the ``.cfg`` file once; read it when its identity, size or mtime moved and it
        has settled (unchanged since the last look, or last written ``CFG_SETTLE_S`` ago): a
        server may rewrite the file in place, and a half-written file is not a change.

        Raises SourceError when the path is unknown or the file cannot be read (the last
        values read are kept: a file being rewritten is not "every parameter gone").
        """
        if self._locate_cfg is None:
            return []
        try:
            path = self._locate_cfg()
        except AsewatchError as e:  # e.g. a RUN file not there yet: an expected, reported failure
            raise SourceError(self.cfg_source, f"cannot locate the .cfg file: {e}") from e
        if path is None:
            raise SourceError(
                self.cfg_source, "the .cfg file is not known (not configured, server not running)"
            )
        try:
            st = path.stat()
            stamp = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._cfg_stat:
                return []
            settled = stamp == self._cfg_look or time.time() - st.st_mtime >= CFG_SETTLE_S
            self._cfg_look = stamp
            if not settled:
                return []
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise SourceError(self.cfg_source, f"cannot read: {e.strerror or e}", path=str(path)) from e
        values = parse_cfg(text)
        if not values:
            # ASE rewrites the file in place; a read in the middle sees a stub. Retry later.
            raise SourceError(self.cfg_source, "no parameters in the file (being written?)", path=str(path))
        now = self._clock()
        out: list[Event] = []
        if not self._cfg_snapshot_taken:
            out.append(SettingsSnapshot.of(now, "cfgfile", values, str(path)))
        if self._cfg_values is not None:
            out.extend(diff_settings(self._cfg_values, values, now, "cfgfile"))
        self._cfg_values, self._cfg_stat, self._cfg_snapshot_taken = values, stamp, True
        return out

    # ------------------------------------------------------------------ loop

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Poll the database every ``poll_interval`` s and the ``.cfg`` file every
        ``cfg_poll_interval`` s until ``stop`` is set. Never raises for a failing source:
        it emits CollectorFailed and retries at the next interval. Closes its connection."""
        steps: list[tuple[str, Callable[[], list[Event]], float]] = []
        if self._connect is not None:
            steps.append((self.source, self.poll, self._poll_interval))
        if self._locate_cfg is not None:
            steps.append((self.cfg_source, self.poll_cfg, self._cfg_interval))
        due = [0.0] * len(steps)
        try:
            while steps and not stop.is_set():
                for i, (source, step, interval) in enumerate(steps):
                    if time.monotonic() >= due[i]:
                        due[i] = time.monotonic() + interval
                        _step(emit, source, step, self._clock)
                stop.wait(max(0.0, min(due) - time.monotonic()))
        finally:
            self.close()

    def close(self) -> None:
        """Close the database connection, if open (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection may fail to close; nothing to do
                log.debug("closing the settings connection failed", exc_info=True)

    # ------------------------------------------------------------------ database

    def _query(self, statement: str) -> tuple[list[str], list[Sequence[Any]]]:
        """Columns and rows of the first result set with columns. Raises SourceError."""
        sets = self._query_sets(statement)
        return next(((c, r) for c, r in sets if c), ([], []))

    def _query_sets(
        self, statement: str, *, close_on_error: bool = True
    ) -> list[tuple[list[str], list[Sequence[Any]]]]:
        assert self._connect is not None
        try:
            if self._conn is None:
                self._conn = self._connect()
            cur = self._conn.cursor()
            try:
                cur.execute(statement)
                sets = []
                while True:
                    if cur.description:
                        sets.append(([str(d[0]) for d in cur.description], list(cur.fetchall())))
                    if not cur.nextset():
                        break
            finally:
                cur.close()
        except Exception as e:  # the driver's own errors (pyodbc.Error), translated here
            if close_on_error:
                self.close()
            raise SourceError(self.source, f"{' '.join(statement.split())[:80]!r} failed: {e}") from e
        return sets

    def _dump_conditions(self, now: float, enabled: bool | None) -> DumpConditions:
        try:
            # A refused procedure (a missing role) leaves the connection usable; a dead
            # connection shows at the next poll's first query.
            sets = self._query_sets(sql("shmdumpconfig"), close_on_error=False)
        except SourceError as e:
            return DumpConditions(now, enabled, (), (), (), (), (), (), (), e.reason)
        columns, rows = next(((c, r) for c, r in sets if "type" in (x.strip().lower() for x in c)), ([], []))
        return DumpConditions.from_display(now, enabled, columns, rows)


def _step(emit: Emit, source: str, step: Callable[[], list[Event]], clock: Callable[[], float]) -> None:
    try:
        events = step()
    except SourceError as e:
        emit([CollectorFailed(source, e.reason, clock())], {})
        return
    emit([*events, CollectorSucceeded(source, clock())], {})
