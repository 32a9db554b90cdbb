"""Runs a parsed statement against the live state and returns its :class:`~.reply.Reply`.

Errors are :class:`~.sql.SqlError` with ASE's message numbers: 208 unknown table, 207
unknown column, 911 unknown database, 2812 unknown procedure, 137 unknown global variable,
14216 unknown function, 257/249 literal of the wrong type. A ``where`` on a pipe table
filters what comes back, but the read consumes every unread row, as in ASE.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from monitor.sim.tds import catalog
from monitor.sim.tds.host import DATABASES, Env, db_name, resolve_db
from monitor.sim.tds.procs import PROCEDURES
from monitor.sim.tds.reply import Message, Reply, ResultSet, Row
from monitor.sim.tds.sql import (
    ColRef,
    Exec,
    Expr,
    Func,
    Lit,
    Noop,
    Pred,
    Select,
    SqlError,
    Star,
    Statement,
    Use,
    Var,
    Wait,
)
from monitor.sim.tds.systables import find_table
from monitor.sim.tds.tables import MDA, parse_version
from monitor.sim.tds.wire import DT, FL, I2, I4, I8, VC, Column


def run(stmt: Statement, env: Env) -> Reply:
    """Execute ``stmt`` for ``env.conn``. Raises :class:`SqlError`."""
    if isinstance(stmt, Select):
        return _select(stmt, env) if stmt.table else _expressions(stmt, env)
    if isinstance(stmt, Exec):
        proc = PROCEDURES.get(stmt.proc)
        if proc is None or (stmt.db is not None and stmt.db not in ("master", "sybsystemprocs")):
            where = f"{stmt.db}..{stmt.proc}" if stmt.db else stmt.proc
            raise SqlError(
                2812,
                f"Stored procedure '{where}' not found. Specify owner.objectname or use sp_help to check "
                "whether the object exists (sp_help may produce lots of output).",
            )
        return proc(stmt.args, env)
    if isinstance(stmt, Use):
        db = _database(stmt.db)
        old, env.conn.db = env.conn.db, db
        me = next((s for s in env.state.sessions() if s.spid == env.conn.spid), None)
        if me is not None:  # monProcess.DBName follows the connection's current database
            env.state.connect(dataclasses.replace(me, db=db, dbid=DATABASES[db]))
        return Reply(messages=(Message(5701, f"Changed database context to '{db}'."),), database=(db, old))
    if isinstance(stmt, Wait):
        return Reply(wait=stmt.seconds)
    assert isinstance(stmt, Noop)
    return Reply()


def _database(name: str) -> str:
    db = resolve_db(name)
    if db is None:
        raise SqlError(
            911,
            f"Attempt to locate entry in sysdatabases for database '{name}' by name failed - no entry found "
            "under that name. Make sure that name is entered properly.",
        )
    return db


# ------------------------------------------------------------------ select from a table
def _select(stmt: Select, env: Env) -> Reply:
    assert stmt.table is not None
    db = _database(stmt.table.db) if stmt.table.db else env.conn.db
    table = find_table(db, stmt.table.name)
    if table is None:
        raise SqlError(
            208,
            f"{stmt.table} not found. Specify owner.objectname or use sp_help to check whether the object "
            "exists (sp_help may produce lots of output).",
        )
    visible = table.visible(parse_version(env.state.version))
    index = {c.name: (i, c) for i, c in visible}

    def column(name: str) -> tuple[int, Column]:
        if name not in index:
            raise SqlError(207, f"Invalid column name '{name}'.")
        return index[name]

    out: list[tuple[Column, Callable[[Row], object]]] = []
    count_alias: str | None = None
    for item in stmt.items:
        e = item.expr
        if isinstance(e, Star):
            out += [(c, _getter(i)) for i, c in visible]
        elif isinstance(e, ColRef):
            i, c = column(e.name)
            out.append((Column(item.alias or c.name, c.type, c.length), _getter(i)))
        elif isinstance(e, Func) and e.name == "count" and e.args == (Star(),):
            count_alias = item.alias or ""
        else:
            value, c = _evaluate(e, env)
            out.append((Column(item.alias or "", c.type, c.length), _constant(value)))
    tests = [_test(p, *column(p.column)) for p in stmt.where]
    for name, _ in stmt.order:
        column(name)
    rows = [r for r in table.rows(env) if all(t(r) for t in tests)]  # a pipe read consumes every row
    if count_alias is not None:
        if out:
            raise SqlError(
                156, "Incorrect syntax near 'count': mixing count(*) and columns needs a group by."
            )
        return Reply((ResultSet((I4(count_alias),), [(len(rows),)]),))
    for name, desc in reversed(stmt.order):
        i = index[name][0]
        rows.sort(key=lambda r, i=i: (r[i] is not None, 0 if r[i] is None else r[i]), reverse=desc)  # type: ignore[misc]
    if stmt.top is not None:
        rows = rows[: stmt.top]
    columns = tuple(c for c, _ in out)
    getters = [g for _, g in out]
    return Reply((ResultSet(columns, [tuple(g(r) for g in getters) for r in rows]),))


def _getter(i: int) -> Callable[[Row], object]:
    return lambda r: r[i]


def _constant(value: object) -> Callable[[Row], object]:
    return lambda _r: value


def _coerce(lit: Lit, column: Column) -> object:
    v = lit.value
    if v is None:
        return None
    if column.type == "varchar":
        return str(v).rstrip(" ")
    if column.type == "datetime":
        if not isinstance(v, str):
            raise SqlError(257, "Implicit conversion from datatype 'INT' to 'DATETIME' is not allowed.")
        try:
            return datetime.fromisoformat(v.strip().replace("/", "-")).timestamp()
        except ValueError:
            raise SqlError(
                249, f"Syntax error during implicit conversion of VARCHAR value '{v}' to a DATETIME field."
            ) from None
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            raise SqlError(
                257,
                f"Implicit conversion from datatype 'VARCHAR' to '{column.type.upper()}' is not allowed. "
                "Use the CONVERT function to run this query.",
            ) from None
    return v


def _norm(v: object, column: Column) -> object:
    if v is None:
        return None
    if column.type == "varchar":
        return str(v).rstrip(" ")
    if column.type == "datetime" and isinstance(v, datetime):
        return v.timestamp()
    return v


def _test(pred: Pred, i: int, column: Column) -> Callable[[Row], bool]:
    if pred.op in ("isnull", "notnull") or (pred.op in ("=", "!=") and pred.values[0].value is None):
        want_null = pred.op in ("isnull", "=")
        return lambda r: (r[i] is None) == want_null
    values = [_coerce(lit, column) for lit in pred.values]
    if pred.op == "like":
        pattern = re.compile(_like(str(pred.values[0].value)), re.S)
        return lambda r: r[i] is not None and pattern.fullmatch(str(r[i]).rstrip(" ")) is not None
    if pred.op == "in":
        wanted = set(values)
        return lambda r: _norm(r[i], column) in wanted
    want = values[0]
    compare: Callable[[Any, Any], bool] = _COMPARE[pred.op]
    return lambda r: r[i] is not None and compare(_norm(r[i], column), want)


_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}
_COMPARE |= {"<=": operator.le, ">=": operator.ge}


def _like(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i)
            if end > i:
                out.append("[" + pattern[i + 1 : end] + "]")
                i = end
            else:
                out.append(re.escape(ch))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


# ----------------------------------------------------------------- select expressions
def _expressions(stmt: Select, env: Env) -> Reply:
    values = []
    columns = []
    for item in stmt.items:
        value, c = _evaluate(item.expr, env)
        values.append(value)
        columns.append(Column(item.alias or "", c.type, c.length))
    return Reply((ResultSet(tuple(columns), [tuple(values)]),))


def _text(value: str | None, name: str = "") -> tuple[object, Column]:
    return value, VC(name, max(1, len((value or " ").encode("utf-8"))))


def _variable(name: str, env: Env) -> tuple[object, Column]:
    host, conn = env.host, env.conn
    variables: dict[str, Callable[[], tuple[object, Column]]] = {
        "@@version": lambda: _text(host.version),
        "@@servername": lambda: (host.server_name, VC("", 30)),
        "@@spid": lambda: (conn.spid, I2("")),
        "@@kernelmode": lambda: (host.kernel_mode, VC("", 30)),
        "@@trancount": lambda: (0, I4("")),
        "@@error": lambda: (0, I4("")),
        "@@rowcount": lambda: (0, I4("")),
        "@@nestlevel": lambda: (0, I4("")),
        "@@maxpagesize": lambda: (4096, I4("")),
        "@@langid": lambda: (0, I2("")),
        "@@textsize": lambda: (32768, I4("")),
        "@@max_connections": lambda: (int(host.run_value("number of user connections")), I4("")),
    }
    if name not in variables:
        raise SqlError(137, f"Must declare variable '{name}'.", 15)
    return variables[name]()


def _evaluate(e: Expr, env: Env) -> tuple[object, Column]:
    if isinstance(e, Lit):
        v = e.value
        if isinstance(v, bool) or v is None:
            return None, I4("")
        if isinstance(v, int):
            return v, I4("") if -(2**31) <= v < 2**31 else I8("")
        if isinstance(v, float):
            return v, FL("")
        return _text(v)
    if isinstance(e, Var):
        return _variable(e.name, env)
    if isinstance(e, ColRef):
        raise SqlError(207, f"Invalid column name '{e.name}'.")
    if isinstance(e, Star):
        raise SqlError(263, "Must specify table to select from.")
    args = [_evaluate(a, env)[0] for a in e.args]
    return _function(e.name, args, env)


def _function(name: str, args: list[object], env: Env) -> tuple[object, Column]:
    if name == "getdate" and not args:
        return time.time(), DT("")
    if name == "object_name" and 1 <= len(args) <= 2:
        dbid = args[1] if len(args) == 2 else DATABASES.get(env.conn.db)
        db = db_name(dbid) if isinstance(dbid, int) else None
        found = next((o.name for o in _objects(db, env) if o.id == args[0]), None) if db else None
        return found, VC("", 255)
    if name == "object_id" and len(args) == 1 and isinstance(args[0], str):
        db, _, obj = args[0].rpartition("..")
        found_id = next(
            (o.id for o in _objects(resolve_db(db) if db else env.conn.db, env) if o.name == obj), None
        )
        return found_id, I4("")
    if name == "db_name" and len(args) <= 1:
        return db_name(args[0]) if args and isinstance(args[0], int) else env.conn.db, VC("", 30)
    if name == "db_id" and len(args) <= 1:
        target = resolve_db(str(args[0])) if args else env.conn.db
        return DATABASES.get(target or ""), I2("")
    if name in ("suser_name", "user_name") and not args:
        return (env.conn.login if name == "suser_name" else "dbo"), VC("", 30)
    if name == "host_name" and not args:
        return env.conn.host, VC("", 30)
    if name == "replicate" and len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], int):
        return _text((args[0] * max(0, args[1]))[:16384] or None)
    raise SqlError(
        14216,
        f"Function '{name}' not found. If this is a SQLJ function or SQL function, use sp_help to check "
        "whether the object exists (sp_help may produce lots of output).",
    )


def _objects(db: str | None, env: Env) -> list[catalog.DbObject]:
    if db is None:
        return []
    return catalog.objects(db, env.state.deployments(), tuple(t.name for t in MDA))
