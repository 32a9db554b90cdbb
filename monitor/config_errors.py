"""Pydantic's validation errors, said the way a DBA editing a TOML file needs them.

Each problem becomes ``(key, reason)``: the key is a dotted path as written in the
file (``server[0].errorlog``, ``metrics.port``), the reason says what is wrong and
shows the value found, in TOML's terms (table, array, true/false). An unknown key
gets a "did you mean" when one is close.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, time
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

_SHOULD = re.compile(r"^(Input|String|Value|List|Tuple) should")
_REASONS = {
    "missing": "required key is missing",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "path_type": "must be a path (a string)",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "tuple_type": "must be an array",
    "list_type": "must be an array",
    "finite_number": "must be a finite number",
}


def problems_of(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Every problem in ``exc`` (raised validating ``root``) as ``(dotted key, reason)``, in order."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        loc = _as_written(root, loc)
        key = dotted(loc)
        if kind == "asewatch":  # our own cross-field checks name the key they are about
            key = f"{key}.{ctx['key']}" if key else str(ctx["key"])
            reason = str(ctx["reason"])
        elif kind == "extra_forbidden":
            reason = "unknown key" + _did_you_mean(root, loc)
        elif loc == ("server",) and kind in ("tuple_type", "list_type"):
            reason = "must be an array of tables: write [[server]] above each server's settings"
        elif kind in _REASONS:
            reason = _REASONS[kind] + _got(kind, err.get("input"))
        else:
            message = _SHOULD.sub("must", str(err["msg"]).removeprefix("Value error, "))
            reason = message + _got(kind, err.get("input"))
        if (key, reason) not in problems:
            problems.append((key, reason))
    return problems


def dotted(loc: tuple[int | str, ...]) -> str:
    """``('server', 0, 'errorlog')`` -> ``server[0].errorlog``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _got(kind: str, value: Any) -> str:
    if kind in ("missing", "model_type", "model_attributes_type", "dict_type") or kind.startswith(
        "value_error"
    ):
        return ""
    if isinstance(value, dict):
        return " (got a table)"
    return f" (got {_toml(value)})"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif isinstance(value, date | time):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "an array"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, str):
            model = _model_of(model, part)
    if model is None:
        return ""
    names = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(names)})"


def _as_written(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``loc`` with field names replaced by the keys the file uses (their aliases)."""
    model: type[BaseModel] | None = root
    out: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and model is not None:
            field = model.model_fields.get(part)
            out.append(field.alias if field is not None and field.alias else part)
            model = _model_of(model, part)
        else:
            out.append(part)
    return tuple(out)


def _model_of(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The model class of ``model``'s field written as ``key`` in the file, if it is one."""
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return _find_model(field.annotation)
    return None


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None
