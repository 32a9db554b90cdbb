"""Events of the change ledger: deployments, server settings, feature flags, procedures.

Owned by the settings/flags/procedures work (issue 4). Every class here must be in
``ChangeEvent`` (it is part of ``monitor.events.Event``, so the codec and store know it).
All times are POSIX seconds (the agent's own observations), except a deployment's,
which is when the operator says it happened.

The codec carries flat fields only, so a snapshot keeps one tuple per column (the
``i``-th entries of ``names``, ``sections``, … describe one parameter); ``values()``
gives them back as :class:`SettingValue` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from monitor.eventkey import digest

SettingSource = Literal["sysconfigures", "cfgfile"]
FlagSource = Literal["query", "file"]
ProcedureChange = Literal["new", "changed", "dropped"]


@dataclass(frozen=True, slots=True)
class Deployment:
    """An application deployment or other change recorded by an operator or a watched file.

    ``time`` is POSIX seconds of when it happened (``--at``), ``source`` how it was recorded.
    """

    time: float
    name: str
    by: str | None
    source: Literal["cli", "file"]

    @property
    def key(self) -> str:
        return "deploy:" + digest(f"{self.time:.3f}", self.name)


def _nth(values: tuple[object, ...], i: int) -> object:
    """The i-th column value of a flat snapshot, None past its end (an event read from a damaged
    or hand-made payload must still describe itself)."""
    return values[i] if i < len(values) else None


# --------------------------------------------------------------------------- server settings


@dataclass(frozen=True, slots=True)
class SettingValue:
    """One configuration parameter as one source shows it (not an event: a row of a snapshot).

    ``configured`` is the configured value (``sysconfigures.value``/``value2``, or the
    ``.cfg`` file's text, ``DEFAULT`` included); ``run`` the running value
    (``syscurconfigs``; None from the ``.cfg`` file). ``section`` is the parent group
    (``Parallel Query``). ``parallel`` marks the query-parallelism parameters.
    """

    name: str
    section: str | None
    configured: str | None
    run: str | None
    parallel: bool


@dataclass(frozen=True, slots=True)
class SettingsSnapshot:
    """Every parameter as ``source`` showed it at ``time``: taken when a collector starts.

    ``path`` is the ``.cfg`` file read (source ``cfgfile``), else None.
    """

    time: float
    source: SettingSource
    path: str | None
    names: tuple[str, ...]
    sections: tuple[str | None, ...]
    configured: tuple[str | None, ...]
    run: tuple[str | None, ...]
    parallel: tuple[bool, ...]

    @property
    def key(self) -> str:
        return "setsnap:" + digest(f"{self.time:.6f}", self.source, self.path)

    def values(self) -> dict[str, SettingValue]:
        """The snapshot's parameters by name."""
        rows = zip(self.names, self.sections, self.configured, self.run, self.parallel, strict=True)
        return {n: SettingValue(n, s, c, r, p) for n, s, c, r, p in rows}

    @classmethod
    def of(
        cls, time: float, source: SettingSource, values: dict[str, SettingValue], path: str | None = None
    ) -> SettingsSnapshot:
        """The snapshot of ``values`` (ordered by name)."""
        rows = [values[n] for n in sorted(values)]
        return cls(
            time,
            source,
            path,
            tuple(v.name for v in rows),
            tuple(v.section for v in rows),
            tuple(v.configured for v in rows),
            tuple(v.run for v in rows),
            tuple(v.parallel for v in rows),
        )


@dataclass(frozen=True, slots=True)
class SettingChanged:
    """A parameter's configured and/or run value changed between two reads of ``source``.

    A parameter that appears has ``old_*`` None; one that disappears has ``new_*`` None.
    Who changed it is not known here: the errorlog's ``ConfigChanged`` says, and the
    ledger joins the two.
    """

    time: float
    source: SettingSource
    name: str
    section: str | None
    parallel: bool
    old_configured: str | None
    new_configured: str | None
    old_run: str | None
    new_run: str | None

    @property
    def key(self) -> str:
        return "setchg:" + digest(
            f"{self.time:.6f}",
            self.source,
            self.name,
            self.old_configured,
            self.new_configured,
            self.old_run,
            self.new_run,
        )


@dataclass(frozen=True, slots=True)
class DumpConditions:
    """The shared-memory dump setup: ``dump on conditions`` and the ``sp_shmdumpconfig`` rows.

    ``enabled`` is the run value of ``dump on conditions`` (None: unknown). The tuples are
    the display's columns, one entry per condition (``types[i]`` = ``signal``,
    ``values[i]`` = ``11`` …). ``error`` says why the conditions could not be read
    (e.g. a missing role); then the tuples are empty. Emitted at start and on change.
    """

    time: float
    enabled: bool | None
    types: tuple[str, ...]
    values: tuple[str | None, ...]
    max_dumps: tuple[int | None, ...]
    dump_counts: tuple[int | None, ...]
    directories: tuple[str | None, ...]
    files: tuple[str | None, ...]
    halt: tuple[str | None, ...]
    error: str | None

    @property
    def key(self) -> str:
        return "dumpcond:" + digest(
            f"{self.time:.6f}", self.enabled, self.types, self.values, self.max_dumps, self.directories,
            self.files, self.halt, self.error,
        )  # fmt: skip

    @classmethod
    def from_display(
        cls, time: float, enabled: bool | None, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> DumpConditions:
        """The conditions in ``sp_shmdumpconfig`` display rows (columns matched by name, any case;
        rows without a Type are left out).

        >>> rows = [("signal", 11, 2), ("timeslice", None, 1)]
        >>> DumpConditions.from_display(0.0, True, ["Type", "Value", "Max Dumps"], rows).describe()
        'dump on conditions on; signal 11 (max 2); timeslice (max 1)'
        """
        index = {c.strip().lower(): i for i, c in enumerate(columns)}

        def col(row: Sequence[object], name: str) -> str | None:
            i = index.get(name)
            value = row[i] if i is not None and i < len(row) else None
            return None if value is None else (str(value).strip() or None)

        def num(row: Sequence[object], name: str) -> int | None:
            text = col(row, name)
            return int(text) if text is not None and text.lstrip("-").isdigit() else None

        kept = [r for r in rows if col(r, "type")]
        return cls(
            time=time,
            enabled=enabled,
            types=tuple(str(col(r, "type")) for r in kept),
            values=tuple(col(r, "value") for r in kept),
            max_dumps=tuple(num(r, "max dumps") for r in kept),
            dump_counts=tuple(num(r, "dump count") for r in kept),
            directories=tuple(col(r, "dump directory") for r in kept),
            files=tuple(col(r, "dump file") for r in kept),
            halt=tuple(col(r, "halt engines") for r in kept),
            error=None,
        )

    def describe(self) -> str:
        """One line a DBA reads: ``on; signal 11 (max 2) -> /dumps; timeslice (max 1)``.

        The dump counts are left out on purpose: they move with every dump, the setup does not.
        """
        if self.error is not None:
            return f"unreadable: {self.error}"
        state = {True: "on", False: "off", None: "unknown"}[self.enabled]
        parts = [f"dump on conditions {state}"]
        for i, kind in enumerate(self.types):
            value, most, folder = (_nth(t, i) for t in (self.values, self.max_dumps, self.directories))
            text = kind if value in (None, "") else f"{kind} {value}"
            if most is not None:
                text += f" (max {most})"
            if folder:
                text += f" -> {folder}"
            parts.append(text)
        return "; ".join(parts)


# --------------------------------------------------------------------------- feature flags


@dataclass(frozen=True, slots=True)
class FlagChanged:
    """An application feature flag changed value. First sight is a change from None; a flag
    that is gone is a change to None. Values are text as the source gives them (JSON
    booleans become ``true``/``false``)."""

    time: float
    name: str
    old: str | None
    new: str | None
    source: FlagSource

    @property
    def key(self) -> str:
        return "flag:" + digest(f"{self.time:.6f}", self.name, self.old, self.new, self.source)


# --------------------------------------------------------------------------- stored procedures


@dataclass(frozen=True, slots=True)
class ProcedureBaseline:
    """Every procedure of ``database`` with the SHA-256 of its normalized text, taken on the
    first poll when the store knew none: later polls (and later agents) compare to it."""

    time: float
    database: str
    names: tuple[str, ...]
    sha256: tuple[str, ...]

    @property
    def key(self) -> str:
        return "procbase:" + digest(f"{self.time:.6f}", self.database)

    def fingerprints(self) -> dict[str, str]:
        """Procedure name -> SHA-256 hex."""
        return dict(zip(self.names, self.sha256, strict=True))


@dataclass(frozen=True, slots=True)
class ProcedureChanged:
    """One procedure of ``database`` is new, changed (its text's SHA-256 differs) or dropped.

    ``parallel``: the new text asks for parallel plans itself (``set parallel_degree N`` or
    ``set scan_parallel_degree N`` with N > 1, or a ``(parallel N)`` hint): an upgrade can
    bring parallelism with no server setting changed.
    """

    time: float
    database: str
    name: str
    change: ProcedureChange
    old_sha256: str | None
    new_sha256: str | None
    parallel: bool

    @property
    def key(self) -> str:
        return "proc:" + digest(f"{self.time:.6f}", self.database, self.name, self.change, self.new_sha256)


@dataclass(frozen=True, slots=True)
class ProcedureChangeSummary:
    """All procedure changes one poll saw in ``database`` (an application upgrade is one of
    these plus one ProcedureChanged per procedure). ``parallel`` counts the new or changed
    ones whose text asks for parallel plans. ``names`` lists at most :data:`SUMMARY_NAMES`
    of them: those asking for parallel plans first, then new, changed, dropped."""

    time: float
    database: str
    new: int
    changed: int
    dropped: int
    parallel: int
    names: tuple[str, ...]

    @property
    def key(self) -> str:
        return "procsum:" + digest(f"{self.time:.6f}", self.database)

    @property
    def total(self) -> int:
        return self.new + self.changed + self.dropped

    def describe(self) -> str:
        """``37 procedures changed in imx (37 changed, 1 asks for parallel plans), among them p_a, …``.

        >>> ProcedureChangeSummary(0.0, "imx", 1, 0, 0, 0, ("p_x",)).describe()
        '1 procedure changed in imx (1 new), among them p_x'
        """
        counts = ", ".join(
            f"{n} {what}"
            for n, what in (
                (self.new, "new"), (self.changed, "changed"), (self.dropped, "dropped"),
                (self.parallel, "ask" + "s" * (self.parallel == 1) + " for parallel plans"),
            )
            if n
        )  # fmt: skip
        noun = "procedure" if self.total == 1 else "procedures"
        text = f"{self.total} {noun} changed in {self.database} ({counts})"
        return text + (f", among them {', '.join(self.names[:3])}" if self.names else "")


SUMMARY_NAMES = 20

ChangeEvent = (
    Deployment
    | SettingsSnapshot
    | SettingChanged
    | DumpConditions
    | FlagChanged
    | ProcedureBaseline
    | ProcedureChanged
    | ProcedureChangeSummary
)
