"""The system procedures the simulated server runs: sp_configure, sp_shmdumpconfig, sp_datatype_info.

All answer in stored-procedure shape (one result set, then RETURNSTATUS and DONEPROC).

- ``sp_configure`` lists every parameter (one result set, not ASE's one per section),
  ``sp_configure 'name'`` the parameters whose name contains it, and
  ``sp_configure 'name', value`` (``'name', 0, 'text'`` for character parameters) changes a
  parameter: only the ``sa`` login may (error 10353 otherwise). Columns: ``Parameter Name``,
  ``Default``, ``Memory Used`` (int), ``Config Value``, ``Run Value``, ``Unit``, ``Type``
  (dynamic | static | read-only); the values are strings.
- ``sp_shmdumpconfig`` (or ``'display'``) lists the dump conditions: a signal 11 condition and a
  timeslice condition writing to the sim's dump directory, and the ``Defaults`` row. Columns:
  ``Type``, ``Value`` (int, NULL where none), ``Max Dumps``, ``Dump Count`` (ints; the count
  restarts at every boot, as in ASE), ``Dump Directory``, ``Dump File`` (NULL: generated
  names), ``Page Cache``, ``Procedure Cache``, ``Unused Space``, ``Halt Engines``, ``Cluster``.
  Other actions are refused with an error.
- ``sp_datatype_info [n]``: ODBC type rows (FreeTDS asks for them at every pyodbc connect).
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.sim.errorlog_writer import stamp
from monitor.sim.params import OPTIMIZATION_GOALS, Param, all_params, find
from monitor.sim.tds.host import Env
from monitor.sim.tds.reply import Message, Reply, ResultSet, Row
from monitor.sim.tds.sql import Lit, SqlError
from monitor.sim.tds.wire import I2, I4, VC, Column

ADMIN_LOGINS = frozenset({"sa"})
DYNAMIC_NOTE = "ASE need not be rebooted since the option is dynamic."
STATIC_NOTE = (
    "Since the option is static, Adaptive Server must be rebooted in order for the change to take effect."
)
SP_CONFIGURE = (
    VC("Parameter Name", 80), VC("Default", 30), I4("Memory Used"), VC("Config Value", 255),
    VC("Run Value", 255), VC("Unit", 30), VC("Type", 10),
)  # fmt: skip


def _config_row(p: Param, env: Env) -> Row:
    configured = env.host.configured_value(p.name)
    run = env.host.kernel_mode if p.name == "kernel mode" else env.host.run_value(p.name)
    if p.name == "configuration file":
        configured = run = str(env.host.cfg)
    try:
        memory = p.memory_kb * max(1, int(run)) if p.memory_kb else 0
    except ValueError:
        memory = 0
    kind = "read-only" if p.name == "configuration file" else ("dynamic" if p.dynamic else "static")
    return p.name, p.default, memory, configured, run, p.unit, kind


def _value(p: Param, args: Sequence[Lit]) -> str:
    """The new value from ``sp_configure`` arguments, validated. Raises :class:`SqlError`."""
    if p.kind == "str":
        text = args[-1].value if len(args) == 3 else args[1].value
        if not isinstance(text, str) or (p.name == "optimization goal" and text not in OPTIMIZATION_GOALS):
            raise SqlError(5849, f"Illegal value '{text}' specified for configuration option '{p.name}'.")
        return text
    value = args[1].value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or not p.minimum <= value <= p.maximum:
        raise SqlError(
            5849,
            f"Illegal value '{value}' specified for configuration option '{p.name}'. "
            f"The legal values are between '{p.minimum}' and '{p.maximum}'.",
        )
    return str(value)


def sp_configure(args: Sequence[Lit], env: Env) -> Reply:
    """Show or change configuration parameters (see the module doc). Raises :class:`SqlError`."""
    if not args:
        params = sorted(all_params(), key=lambda p: (p.section, p.name))
        return Reply((ResultSet(SP_CONFIGURE, [_config_row(p, env) for p in params]),), proc=True)
    pattern = args[0].value
    if not isinstance(pattern, str):
        raise SqlError(17410, "Configuration option name must be a character string.")
    matches = find(pattern)
    if not matches:
        raise SqlError(17411, f"Configuration option '{pattern}' does not exist.")
    if len(args) == 1:
        return Reply((ResultSet(SP_CONFIGURE, [_config_row(p, env) for p in matches]),), proc=True)
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:8])
        raise SqlError(17412, f"Configuration option '{pattern}' is not unique; it matches: {names}.")
    p = matches[0]
    if env.conn.login not in ADMIN_LOGINS:
        raise SqlError(
            10353,
            "You must have the following role(s) to execute this command/procedure: 'sa_role' . "
            "Please contact a user with the appropriate role for help.",
            14,
        )
    if p.name == "configuration file":
        raise SqlError(17413, f"Configuration option '{p.name}' is read-only.")
    new = _value(p, args)
    if p.name == "max parallel degree" and int(new) > int(env.host.run_value("number of worker processes")):
        raise SqlError(
            5849, "The value of 'max parallel degree' cannot be greater than 'number of worker processes'."
        )
    old = env.host.configured_value(p.name)
    messages = []
    if new != old:
        prefix = env.host.prefix(env.conn.spid, env.conn.engine)
        old, when = env.host.change_config(p.name, new, env.conn.login, prefix, static=not p.dynamic)
        env.host.truth.write(
            "config", name=p.name, old=old, new=new, log_time=stamp(when), by=env.conn.login,
            via="sp_configure", spid=env.conn.spid, static=not p.dynamic,
        )  # fmt: skip
    if p.dynamic:
        messages.append(Message(17419, f"Configuration option changed. {DYNAMIC_NOTE}"))
    else:
        messages.append(Message(17420, f"Configuration option changed. {STATIC_NOTE}"))
    return Reply((ResultSet(SP_CONFIGURE, [_config_row(p, env)]),), tuple(messages), proc=True)


SHMDUMPCONFIG = (
    VC("Type", 20), I4("Value"), I4("Max Dumps"), I4("Dump Count"), VC("Dump Directory", 255),
    VC("Dump File", 255), VC("Page Cache", 10), VC("Procedure Cache", 10), VC("Unused Space", 10),
    VC("Halt Engines", 10), VC("Cluster", 10),
)  # fmt: skip


def sp_shmdumpconfig(args: Sequence[Lit], env: Env) -> Reply:
    """Display the shared-memory dump conditions. Raises :class:`SqlError` for other actions."""
    action = args[0].value if args else "display"
    if action != "display":
        raise SqlError(
            18000, f"sp_shmdumpconfig: action '{action}' is not available on this (simulated) server."
        )
    where = str(env.host.dump_dir)
    rows: list[Row] = [
        ("Signal", 11, 10, 0, where, None, "Omit", "Include", "Omit", "Halt", "Default"),
        ("Timeslice", None, 1, 0, where, None, "Omit", "Include", "Omit", "Halt", "Default"),
        ("Defaults", None, 1, None, where, None, "Omit", "Include", "Omit", "Halt", "Local"),
    ]
    messages: tuple[Message, ...] = ()
    if env.host.run_value("dump on conditions") == "0":
        messages = (
            Message(
                18001, "Dump on conditions is disabled: no dump is taken (sp_configure 'dump on conditions')."
            ),
        )
    return Reply((ResultSet(SHMDUMPCONFIG, rows),), messages, proc=True)


DATATYPE_INFO: tuple[Column, ...] = (
    VC("TYPE_NAME", 30), I2("DATA_TYPE"), I4("PRECISION"), VC("LITERAL_PREFIX", 32), VC("LITERAL_SUFFIX", 32),
    VC("CREATE_PARAMS", 32), I2("NULLABLE"), I2("CASE_SENSITIVE"), I2("SEARCHABLE"), I2("UNSIGNED_ATTRIBUTE"),
    I2("MONEY"), I2("AUTO_INCREMENT"), VC("LOCAL_TYPE_NAME", 30), I2("MINIMUM_SCALE"), I2("MAXIMUM_SCALE"),
    I2("SQL_DATA_TYPE"), I2("SQL_DATETIME_SUB"), I4("NUM_PREC_RADIX"), I2("INTERVAL_PRECISION"),
)  # fmt: skip


def _t(
    name: str,
    code: int,
    precision: int,
    quote: str | None,
    params: str | None,
    *,
    cs: int = 0,
    unsigned: int | None = 0,
    sql_type: int | None = None,
    sub: int | None = None,
    radix: int | None = 10,
) -> Row:
    """One SQLGetTypeInfo row; ``unsigned``/``radix`` None for non-numeric types."""
    scale = 0 if radix else None
    auto = 0 if unsigned is not None else None
    searchable = 3 if quote else 2
    return (
        name, code, precision, quote, quote, params, 1, cs, searchable, unsigned, 0, auto, name, scale, scale,
        code if sql_type is None else sql_type, sub, radix, None,
    )  # fmt: skip


TYPES: tuple[Row, ...] = (
    _t("char", 1, 255, "'", "length", cs=1, unsigned=None, radix=None),
    _t("varchar", 12, 16384, "'", "max length", cs=1, unsigned=None, radix=None),
    _t("univarchar", -9, 8192, "'", "max length", cs=1, unsigned=None, radix=None),
    _t("text", -1, 2147483647, "'", None, cs=1, unsigned=None, radix=None),
    _t("varbinary", -3, 16384, "0x", "max length", unsigned=None, radix=None),
    _t("bit", -7, 1, None, None, radix=None),
    _t("tinyint", -6, 3, None, None, unsigned=1),
    _t("smallint", 5, 5, None, None),
    _t("int", 4, 10, None, None),
    _t("bigint", -5, 19, None, None),
    _t("numeric", 2, 38, None, "precision,scale"),
    _t("float", 8, 15, None, None, radix=2),
    _t("datetime", 11, 23, "'", None, unsigned=None, sql_type=9, sub=3, radix=None),
    _t("datetime", 93, 23, "'", None, unsigned=None, sql_type=9, sub=3, radix=None),
)


def sp_datatype_info(args: Sequence[Lit], env: Env) -> Reply:
    """ODBC type information, all types or those with ``DATA_TYPE`` = the first argument."""
    want = args[0].value if args else None
    rows = [r for r in TYPES if want is None or r[1] == want]
    return Reply((ResultSet(DATATYPE_INFO, rows),), proc=True)


PROCEDURES = {
    "sp_configure": sp_configure,
    "sp_shmdumpconfig": sp_shmdumpconfig,
    "sp_datatype_info": sp_datatype_info,
}
