"""The SQL subset the simulated server accepts (helper-notes/sql-contract.md): tokens and statements.

Keywords and built-in function names are case-insensitive; table, column and database
names keep their case, as on an ASE server with the binary sort order. Anything outside
the subset raises :class:`SqlError` with an ASE message number (156 syntax, 105 unclosed
quote), which the server turns into an error reply on a connection that stays usable.
The parser is in parser.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYWORDS = frozenset(
    {
        "select", "from", "where", "and", "or", "in", "is", "not", "null", "like", "order", "by", "asc",
        "desc", "top", "as", "exec", "execute", "set", "use", "if", "begin", "commit", "rollback", "tran",
        "transaction", "waitfor", "delay", "union", "group", "having", "into", "distinct",
    }
)  # fmt: skip


class SqlError(Exception):
    """A server error reply: ASE message ``number``, ``severity`` (> 10 is an error), text."""

    def __init__(self, number: int, message: str, severity: int = 16, state: int = 1) -> None:
        super().__init__(message)
        self.number = number
        self.message = message
        self.severity = severity
        self.state = state


def syntax_error(near: str) -> SqlError:
    """ASE's message 156 for the token where parsing stopped."""
    return SqlError(156, f"Incorrect syntax near '{near[:40]}'.", 15)


@dataclass(frozen=True, slots=True)
class Lit:
    value: int | float | str | None


@dataclass(frozen=True, slots=True)
class Var:
    name: str  # "@@version", lower case


@dataclass(frozen=True, slots=True)
class Func:
    name: str  # lower case
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class ColRef:
    name: str


@dataclass(frozen=True, slots=True)
class Star:
    """``*`` (the select list) or the argument of ``count(*)``."""


Expr = Lit | Var | Func | ColRef | Star


@dataclass(frozen=True, slots=True)
class Item:
    expr: Expr
    alias: str | None


@dataclass(frozen=True, slots=True)
class Pred:
    """``column op value(s)``; op is one of = != < > <= >= in like isnull notnull."""

    column: str
    op: str
    values: tuple[Lit, ...]


@dataclass(frozen=True, slots=True)
class TableRef:
    db: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.db}..{self.name}" if self.db else self.name


@dataclass(frozen=True, slots=True)
class Select:
    items: tuple[Item, ...]
    table: TableRef | None
    where: tuple[Pred, ...]
    order: tuple[tuple[str, bool], ...]  # (column, descending)
    top: int | None


@dataclass(frozen=True, slots=True)
class Exec:
    db: str | None
    proc: str
    args: tuple[Lit, ...]


@dataclass(frozen=True, slots=True)
class Use:
    db: str


@dataclass(frozen=True, slots=True)
class Noop:
    """A statement answered with a plain DONE (set options, transaction control)."""

    kind: str


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


Statement = Select | Exec | Use | Noop | Wait

_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/
    |(?P<str>'(?:[^']|'')*')|(?P<dstr>"(?:[^"]|"")*")
    |(?P<num>\d+\.\d*(?:e[-+]?\d+)?|\.\d+|\d+)
    |(?P<var>@@?\w+)
    |(?P<ident>[A-Za-z_#][\w$#]*)|\[(?P<bident>[^\]]+)\]
    |(?P<op><=|>=|<>|!=|[=<>(),.*;+-])""",
    re.S | re.X | re.I,
)


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str  # str, num, var, ident, op, end
    text: str
    value: int | float | str | None


def tokenize(sql: str) -> list[Tok]:
    """Split ``sql`` into tokens. Raises :class:`SqlError` (105) on an unclosed quote, 156 on junk."""
    out: list[Tok] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            if sql[pos] in "'\"":
                raise SqlError(
                    105, f"Unclosed quote before the character string '{sql[pos + 1 : pos + 41]}'.", 15
                )
            raise syntax_error(sql[pos : pos + 20])
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            continue  # whitespace or a comment
        text = m.group(kind)
        if kind in ("str", "dstr"):
            q = text[0]
            out.append(Tok("str", text, text[1:-1].replace(q + q, q)))
        elif kind == "num":
            out.append(Tok("num", text, float(text) if "." in text or "e" in text.lower() else int(text)))
        elif kind == "bident":
            out.append(Tok("ident", text, text))
        else:
            out.append(Tok(kind, text, text))
    out.append(Tok("end", "", None))
    return out
