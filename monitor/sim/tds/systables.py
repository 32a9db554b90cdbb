"""System tables and the application's flag table, served from the live state.

- ``master..sysconfigures``: configured values (what the ``.cfg`` says, pending static changes
  included); section rows have ``parent = 0`` and parameters point at their section.
- ``master..syscurconfigs``: run values and defaults. ``status & 8`` marks a dynamic parameter.
  Character parameters (``optimization goal``, ``kernel mode``, ``configuration file``) keep
  their value in ``value2``, numeric ones have ``value2`` NULL.
- ``<db>..sysobjects`` / ``<db>..syscomments`` for every database (see catalog.py).
- ``master..sysdatabases``.
- ``imx..app_feature_flags`` (``name``, ``value``): the scenario's flags; booleans read
  ``'true'`` / ``'false'``.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.sim.params import SECTIONS, Param, all_params
from monitor.sim.tds import catalog
from monitor.sim.tds.host import DATABASES, Env
from monitor.sim.tds.tables import MDA, Row, Table
from monitor.sim.tds.wire import DT, I2, I4, VC

SYSCONFIGURES = (
    I2("config"), I4("value"), VC("comment", 255), I4("status"), VC("name", 255), I2("parent"),
    VC("value2", 255), I4("value3"), I4("value4"),
)  # fmt: skip
SYSCURCONFIGS = (
    I2("config"), I4("value"), VC("comment", 255), I4("status"), VC("value2", 255), VC("defvalue", 255),
    I4("minimum_value"), I4("maximum_value"), I4("memory_used"), I4("display_level"), I4("datatype"),
    I4("message_num"), I4("apf_percent"),
)  # fmt: skip
SYSOBJECTS = (
    I4("id"), VC("name", 255), I4("uid"), VC("type", 2), I2("userstat"), I2("sysstat"), I2("indexdel"),
    I2("schemacnt"), I4("sysstat2"), DT("crdate"), DT("expdate"), I4("deltrig"), I4("instrig"),
    I4("updtrig"), I4("seltrig"), I4("ckfirst"), I2("cache"), VC("loginame", 30),
)  # fmt: skip
SYSCOMMENTS = (
    I4("id"), I2("number"), I2("colid"), I2("texttype"), I2("language"), VC("text", 255), I2("colid2"),
    I2("status"), I4("partitionid"),
)  # fmt: skip
SYSDATABASES = (VC("name", 30), I2("dbid"), I4("suid"), I2("status"), I2("version"), DT("crdate"))
FLAGS = (VC("name", 64), VC("value", 255))


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def param_value(p: Param, value: str, env: Env) -> tuple[int, str | None]:
    """(``value``, ``value2``) of a parameter as the system tables show it."""
    if p.name == "configuration file":
        return 0, str(env.host.cfg)
    if p.kind == "str":
        return 0, value
    return _number(value), None


def _sysconfigures(env: Env) -> Iterable[Row]:
    for name, number in SECTIONS.items():
        yield number, 0, name, 0, name, 0, None, 0, 0
    for p in all_params():
        value, value2 = param_value(p, env.host.configured_value(p.name), env)
        yield p.config, value, p.name, 8 if p.dynamic else 0, p.name, SECTIONS[p.section], value2, 0, 0


def _syscurconfigs(env: Env) -> Iterable[Row]:
    for p in all_params():
        run = env.host.kernel_mode if p.name == "kernel mode" else env.host.run_value(p.name)
        value, value2 = param_value(p, run, env)
        memory = p.memory_kb * max(1, value) if p.memory_kb else 0
        yield (
            p.config, value, p.name, 8 if p.dynamic else 0, value2, p.default, p.minimum, p.maximum, memory,
            1, 2 if p.kind == "str" else 1, 17000 + p.config, 0,
        )  # fmt: skip


def _objects(db: str, env: Env) -> list[catalog.DbObject]:
    return catalog.objects(db, env.state.deployments(), tuple(t.name for t in MDA))


def _sysobjects(db: str) -> Table:
    def rows(env: Env) -> Iterable[Row]:
        for o in _objects(db, env):
            yield (
                o.id, o.name, 1, o.type, 0, 0, 0, 0, 0, o.crdate, o.crdate, 0, 0, 0, 0, 0, 0,
                "sa" if o.type == "S " else ("imx_deploy" if o.type == "P " else "dbo"),
            )  # fmt: skip

    return Table(db, "sysobjects", SYSOBJECTS, rows)


def _syscomments(db: str) -> Table:
    def rows(env: Env) -> Iterable[Row]:
        for o in _objects(db, env):
            for colid, text in catalog.comments(o):
                yield o.id, 0, colid, 0, 0, text, 0, 0, 0

    return Table(db, "syscomments", SYSCOMMENTS, rows)


def _sysdatabases(env: Env) -> Iterable[Row]:
    for name, dbid in DATABASES.items():
        when = catalog.APP_INSTALLED if name.startswith("imx") else catalog.INSTALLED
        yield name, dbid, 1, 0, 1, when


def flag_text(value: object) -> str:
    """How the application's flag table stores a value.

    >>> flag_text(True), flag_text(3), flag_text("on")
    ('true', '3', 'on')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flags(env: Env) -> Iterable[Row]:
    for name, value in sorted(env.state.flags().items()):
        yield name, flag_text(value)


def _registry() -> dict[tuple[str, str], Table]:
    out = {(t.db, t.name): t for t in MDA}
    for db in DATABASES:
        out[(db, "sysobjects")] = _sysobjects(db)
        out[(db, "syscomments")] = _syscomments(db)
    out[("master", "sysconfigures")] = Table("master", "sysconfigures", SYSCONFIGURES, _sysconfigures)
    out[("master", "syscurconfigs")] = Table("master", "syscurconfigs", SYSCURCONFIGS, _syscurconfigs)
    out[("master", "sysdatabases")] = Table("master", "sysdatabases", SYSDATABASES, _sysdatabases)
    out[("imx_prod", "app_feature_flags")] = Table("imx_prod", "app_feature_flags", FLAGS, _flags)
    return out


TABLES = _registry()


def find_table(db: str, name: str) -> Table | None:
    """The table ``name`` in database ``db`` (already resolved, e.g. ``imx_prod``), or ``None``."""
    return TABLES.get((db, name))
