"""The scenario file (TOML) that drives the simulated dataserver, and its timeline.

Times in a scenario are seconds from the supervisor's start (t0). Every dataserver
incarnation gets the same t0, so a restarted server continues the same timeline: the
flag and configuration state at a moment is the initial state plus every timeline event
up to that moment. :meth:`Scenario.plan` computes, without running anything, which
scheduled calls crash the server, succeed, or find it down.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from monitor.errors import InputError

EventKind = Literal["deployment", "flag", "config"]
Outcome = Literal["crash", "ok", "missed"]
Causing = Literal["inside", "exec"]
MAX_STATEMENTS = 1000  # statements one scheduled call may run (a batch body), bounds the work per tick
MAX_BEFORE = 10  # calls a scheduled call's session makes first (``before``), bounds the work per tick
FlagValue = bool | int | str

DEFAULT_VERSION = (
    "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/SLES 12.5/"
    "ase160sp04pl03x/3541/64-bit/FBO/Mon Jun 15 10:12:33 2023"
)

# The server configuration a fresh sim starts from (sp_configure names, values as strings).
DEFAULT_CONFIG: Mapping[str, str] = MappingProxyType(
    {
        "max online engines": "4",
        "number of user connections": "200",
        "number of worker processes": "20",
        "max parallel degree": "1",
        "max scan parallel degree": "1",
        "enable monitoring": "1",
        "statement pipe active": "1",
        "statement pipe max messages": "5000",
        "sql text pipe active": "1",
        "sql text pipe max messages": "5000",
        "errorlog pipe active": "1",
        "errorlog pipe max messages": "1000",
        "dump on conditions": "1",
        "max memory": "2097152",
    }
)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A change at scenario second ``at``: an application deployment, a flag or a config value."""

    index: int
    at: float
    kind: EventKind
    name: str
    value: FlagValue
    by: str


@dataclass(frozen=True, slots=True)
class ScheduledCall:
    """A user (or a batch job) calling ``procedure`` at scenario second ``at``, outside the
    background workload: as ``login`` from ``program`` when given, running ``statements``
    statements of the procedure's body, after one call of each of ``before`` on the same
    session (the user's clicks just before). ``causing`` is what a crash block shows as
    ``SQL causing error`` when the call crashes: the parallel statement ``inside`` the
    procedure (as most real crashes in a procedure do), or the ``exec`` batch.
    """

    at: float
    procedure: str
    login: str | None
    program: str | None = None
    statements: int = 1
    causing: Causing = "inside"
    before: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CrashTrigger:
    """The simulated bug: ``procedure`` crashes while ``flag`` is on and ``config`` > ``above``."""

    procedure: str
    flag: str
    config: str
    above: int

    def holds(self, procedure: str, flags: Mapping[str, FlagValue], config: Mapping[str, str]) -> bool:
        """True when a call of ``procedure`` under this state crashes the server."""
        if procedure != self.procedure or not flags.get(self.flag):
            return False
        try:
            return int(config.get(self.config, "0")) > self.above
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """What :meth:`Scenario.plan` predicts for one scheduled call."""

    at: float
    procedure: str
    outcome: Outcome
    call: ScheduledCall | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario. Build it with :func:`load_scenario` or :func:`default_scenario`."""

    name: str
    description: str
    seed: int
    end_after: float | None
    restart_delay: float
    version: str
    engines: int
    rate: float
    sessions: int
    error_every: float
    flags: Mapping[str, FlagValue]
    config: Mapping[str, str]
    events: tuple[TimelineEvent, ...]
    calls: tuple[ScheduledCall, ...]
    trigger: CrashTrigger | None
    source: str = field(default="<built-in default>")

    def state_at(self, t: float) -> tuple[dict[str, FlagValue], dict[str, str]]:
        """Flags and config values at scenario second ``t`` (initial state plus events up to ``t``)."""
        flags = dict(self.flags)
        config = dict(self.config)
        for ev in self.events:
            if ev.at > t:
                break
            if ev.kind == "flag":
                flags[ev.name] = ev.value
            elif ev.kind == "config":
                config[ev.name] = str(ev.value)
        return flags, config

    def plan(
        self, *, boot_seconds: float = 0.6, crash_seconds: float | None = None
    ) -> tuple[PlannedCall, ...]:
        """Predict each scheduled call's outcome, modelling restarts.

        ``boot_seconds`` is the time from process start to serving calls; ``crash_seconds``
        the time from a crash to the restart (dump + restart delay; default restart delay
        + 0.5 s). A call while the server is down is ``missed``; events that fall into a
        downtime are applied at the next boot, as the dataserver does.
        """
        down = self.restart_delay + 0.5 if crash_seconds is None else crash_seconds
        flags, config = dict(self.flags), dict(self.config)
        items: list[TimelineEvent | ScheduledCall] = sorted(
            [*self.events, *self.calls], key=lambda i: (i.at, isinstance(i, ScheduledCall))
        )
        up_at = boot_seconds
        out: list[PlannedCall] = []
        for item in items:
            if isinstance(item, TimelineEvent):
                if item.kind == "flag":
                    flags[item.name] = item.value
                elif item.kind == "config":
                    config[item.name] = str(item.value)
                continue
            if self.end_after is not None and item.at >= self.end_after:
                continue
            if item.at < up_at:
                out.append(PlannedCall(item.at, item.procedure, "missed", item))
            elif self.trigger is not None and self.trigger.holds(item.procedure, flags, config):
                out.append(PlannedCall(item.at, item.procedure, "crash", item))
                up_at = item.at + down + boot_seconds
            else:
                out.append(PlannedCall(item.at, item.procedure, "ok", item))
        return tuple(out)


def default_scenario() -> Scenario:
    """A scenario with no timeline: a steady background workload that never crashes."""
    return Scenario(
        name="steady",
        description="steady background workload, no changes, no crashes",
        seed=1,
        end_after=None,
        restart_delay=1.5,
        version=DEFAULT_VERSION,
        engines=4,
        rate=50.0,
        sessions=40,
        error_every=20.0,
        flags=MappingProxyType({}),
        config=DEFAULT_CONFIG,
        events=(),
        calls=(),
        trigger=None,
    )


def incident_path() -> Path:
    """Path of the built-in incident scenario (``monitor/sim/incident.toml``)."""
    return Path(str(resources.files("monitor.sim").joinpath("incident.toml")))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file.

    Raises :class:`InputError` naming the file, the key and the reason when the file is
    missing, is not TOML, or a value is wrong.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(p), f"cannot read scenario: {exc.strerror}") from exc
    return loads_scenario(text, str(p))


def loads_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate a scenario from TOML ``text``; errors name ``source`` and the key.

    >>> batch = 'at = 4\\nprocedure = "p_b"\\nlogin = "imx_batch"\\nprogram = "IMX Batch"\\nstatements = 16'
    >>> c = loads_scenario(f"[[calls]]\\n{batch}\\nbefore = ['p_a']\\n").calls[0]
    >>> (c.login, c.program, c.statements, c.causing, c.before)
    ('imx_batch', 'IMX Batch', 16, 'inside', ('p_a',))
    >>> loads_scenario('[[calls]]\\nat = 1\\nprocedure = "p"\\ncausing = "sql"\\n')
    Traceback (most recent call last):
    ...
    monitor.errors.InputError: <string>: calls[0].causing: must be 'inside' or 'exec', not 'sql' ...
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, f"not valid TOML: {exc}") from exc
    return _Parser(source).scenario(doc)


def _name(value: object) -> bool:
    return isinstance(value, str) and bool(value)


class _Parser:
    """Validates one document; every error names ``file: key``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, reason: str) -> InputError:
        return InputError(self.path, f"{key}: {reason}", hint="see monitor/sim/incident.toml for the format")

    def table(self, doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def number(self, table: Mapping[str, Any], key: str, default: float | None, where: str) -> float:
        if key not in table and default is None:
            raise self.fail(f"{where}.{key}", "is required")
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(f"{where}.{key}", f"must be a number >= 0, not {value!r}")
        return float(value)

    def text(self, table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}.{key}", "must be a non-empty string")
        return value

    def scenario(self, doc: Mapping[str, Any]) -> Scenario:
        base = default_scenario()
        head = self.table(doc, "scenario")
        server = self.table(doc, "server")
        work = self.table(doc, "workload")
        end_after = head.get("end_after")
        flags = self.flags(self.table(doc, "flags"))
        config = dict(DEFAULT_CONFIG)
        for name, value in self.table(doc, "config").items():
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise self.fail(f"config.{name}", "must be an integer or a string")
            config[name] = str(value)
        events = self.events(doc.get("events", []))
        trigger = self.trigger(doc.get("crash"), flags, config, events)
        return Scenario(
            name=self.text(head, "name", "scenario", "unnamed"),
            description=str(head.get("description", "")),
            seed=int(self.number(head, "seed", 1, "scenario")),
            end_after=None if end_after is None else self.number(head, "end_after", 0, "scenario"),
            restart_delay=self.number(head, "restart_delay", base.restart_delay, "scenario"),
            version=self.text(server, "version", "server", DEFAULT_VERSION),
            engines=max(1, int(self.number(server, "engines", base.engines, "server"))),
            rate=self.number(work, "rate", base.rate, "workload"),
            sessions=max(2, int(self.number(work, "sessions", base.sessions, "workload"))),
            error_every=self.number(work, "error_every", base.error_every, "workload"),
            flags=MappingProxyType(flags),
            config=MappingProxyType(config),
            events=events,
            calls=self.calls(doc.get("calls", [])),
            trigger=trigger,
            source=self.path,
        )

    def flags(self, table: Mapping[str, Any]) -> dict[str, FlagValue]:
        out: dict[str, FlagValue] = {}
        for name, value in table.items():
            if not isinstance(value, bool | int | str):
                raise self.fail(f"flags.{name}", "must be a boolean, an integer or a string")
            out[name] = value
        return out

    def events(self, raw: object) -> tuple[TimelineEvent, ...]:
        if not isinstance(raw, list):
            raise self.fail("events", "must be an array of tables ([[events]])")
        out = []
        for i, item in enumerate(raw):
            where = f"events[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "must be a table")
            kind = item.get("kind")
            if kind not in ("deployment", "flag", "config"):
                raise self.fail(f"{where}.kind", "must be 'deployment', 'flag' or 'config'")
            at = self.number(item, "at", None, where)
            value: FlagValue = ""
            if kind == "deployment":
                name = self.text(item, "what", where)
            else:
                name = self.text(item, "name", where)
                raw_value = item.get("value")
                if not isinstance(raw_value, bool | int | str):
                    raise self.fail(f"{where}.value", "must be a boolean, an integer or a string")
                value = str(raw_value) if kind == "config" else raw_value
            by = str(item.get("by", {"config": "sa", "flag": "app_admin"}.get(kind, "deploy")))
            out.append(TimelineEvent(i, at, kind, name, value, by))
        out.sort(key=lambda e: (e.at, e.index))
        return tuple(out)

    def calls(self, raw: object) -> tuple[ScheduledCall, ...]:
        if not isinstance(raw, list):
            raise self.fail("calls", "must be an array of tables ([[calls]])")
        out = []
        for i, item in enumerate(raw):
            where = f"calls[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "must be a table")
            statements = item.get("statements", 1)
            if type(statements) is not int or not 1 <= statements <= MAX_STATEMENTS:  # bool is no count
                raise self.fail(
                    f"{where}.statements", f"must be an integer 1-{MAX_STATEMENTS}, not {statements!r}"
                )
            causing = item.get("causing", "inside")
            if causing not in ("inside", "exec"):
                raise self.fail(f"{where}.causing", f"must be 'inside' or 'exec', not {causing!r}")
            before = item.get("before", [])
            if not isinstance(before, list) or len(before) > MAX_BEFORE or not all(map(_name, before)):
                raise self.fail(f"{where}.before", f"must be a list of up to {MAX_BEFORE} procedure names")
            out.append(
                ScheduledCall(
                    at=self.number(item, "at", None, where),
                    procedure=self.text(item, "procedure", where),
                    login=self.text(item, "login", where) if "login" in item else None,
                    program=self.text(item, "program", where) if "program" in item else None,
                    statements=statements,
                    causing=causing,
                    before=tuple(before),
                )
            )
        out.sort(key=lambda c: c.at)
        return tuple(out)

    def trigger(
        self,
        raw: object,
        flags: Mapping[str, FlagValue],
        config: Mapping[str, str],
        events: tuple[TimelineEvent, ...],
    ) -> CrashTrigger | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise self.fail("crash", "must be a table")
        trig = CrashTrigger(
            procedure=self.text(raw, "procedure", "crash"),
            flag=self.text(raw, "flag", "crash"),
            config=self.text(raw, "config", "crash"),
            above=int(self.number(raw, "above", 1, "crash")),
        )
        flag_names = set(flags) | {e.name for e in events if e.kind == "flag"}
        if trig.flag not in flag_names:
            raise self.fail("crash.flag", f"'{trig.flag}' is not in [flags] nor set by an event")
        if trig.config not in config:
            raise self.fail("crash.config", f"'{trig.config}' is not a known configuration option")
        return trig
