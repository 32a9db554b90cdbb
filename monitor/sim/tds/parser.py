"""The parser of the accepted SQL subset (see sql.py for the statements it produces).

Recursive descent over :func:`~monitor.sim.tds.sql.tokenize`'s tokens; one statement per
batch, an optional trailing ``;``. Anything else raises :class:`~monitor.sim.tds.sql.SqlError`.
"""

from __future__ import annotations

import re

from monitor.sim.tds.sql import (
    KEYWORDS,
    ColRef,
    Exec,
    Expr,
    Func,
    Item,
    Lit,
    Noop,
    Pred,
    Select,
    SqlError,
    Star,
    Statement,
    TableRef,
    Tok,
    Use,
    Var,
    Wait,
    syntax_error,
    tokenize,
)


class _Parser:
    def __init__(self, sql: str) -> None:
        self.toks = tokenize(sql)
        self.i = 0

    # -------------------------------------------------------------- primitives
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return t

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text.lower() in words

    def accept_kw(self, *words: str) -> bool:
        if self.is_kw(*words):
            self.next()
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.accept_kw(word):
            raise self.error()

    def accept_op(self, op: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == op:
            self.next()
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            raise self.error()

    def error(self) -> SqlError:
        return syntax_error(self.tok.text or "end of batch")

    def name(self) -> str:
        t = self.tok
        if t.kind != "ident" or t.text.lower() in KEYWORDS:
            raise self.error()
        self.next()
        return str(t.value)

    def end(self) -> None:
        self.accept_op(";")
        if self.tok.kind != "end":
            raise self.error()

    # -------------------------------------------------------------- statements
    def statement(self) -> Statement:
        t = self.tok
        if t.kind != "ident":
            raise self.error()
        word = t.text.lower()
        if word == "select":
            return self.select()
        if word in ("exec", "execute"):
            self.next()
            return self.exec_()
        if word == "use":
            self.next()
            db = self.name()
            self.end()
            return Use(db)
        if word == "waitfor":
            return self.waitfor()
        if word in ("set", "if", "begin", "commit", "rollback"):
            return self.noop(word)
        if word.startswith("sp_") or (self.toks[self.i + 1].text == "." and word not in KEYWORDS):
            return self.exec_()  # a procedure call as the first statement of a batch needs no exec
        raise self.error()

    def noop(self, word: str) -> Noop:
        if word == "if":
            # Only what FreeTDS sends when autocommit is off: IF @@TRANCOUNT > 0 COMMIT|ROLLBACK ...
            self.next()
            if not (self.tok.kind == "var" and self.tok.text.lower() == "@@trancount"):
                raise self.error()
        self.i = len(self.toks) - 1  # set options and transaction control change nothing here
        return Noop(word)

    def waitfor(self) -> Wait:
        self.next()
        self.expect_kw("delay")
        t = self.next()
        if t.kind != "str":
            raise self.error()
        m = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", str(t.value))
        if m is None:
            raise SqlError(18162, f"Invalid time '{t.value}' given for waitfor delay.", 16)
        h, mi, s, frac = m.groups()
        self.end()
        return Wait(int(h) * 3600 + int(mi) * 60 + int(s) + float(f"0.{frac or 0}"))

    def exec_(self) -> Exec:
        db = None
        proc = self.name()
        if self.accept_op("."):  # db..proc or db.owner.proc
            if not self.accept_op("."):
                self.name()
                self.expect_op(".")
            db, proc = proc, self.name()
        args: list[Lit] = []
        if self.tok.kind != "end" and not (self.tok.kind == "op" and self.tok.text == ";"):
            while True:
                if self.tok.kind == "var" and self.toks[self.i + 1].text == "=":
                    self.next()
                    self.next()  # @name = value: positional order is what the sim's procedures use
                args.append(self.literal())
                if not self.accept_op(","):
                    break
        self.end()
        return Exec(db, proc, tuple(args))

    def literal(self) -> Lit:
        neg = self.accept_op("-")
        t = self.next()
        if t.kind == "num" and isinstance(t.value, int | float):
            return Lit(-t.value if neg else t.value)
        if neg:
            raise self.error()
        if t.kind == "str":
            return Lit(t.value)
        if t.kind == "ident" and t.text.lower() == "null":
            return Lit(None)
        self.i -= 1
        raise self.error()

    def select(self) -> Select:
        self.next()
        top = None
        if self.accept_kw("top"):
            t = self.next()
            if t.kind != "num" or not isinstance(t.value, int):
                raise self.error()
            top = t.value
        items = [self.item()]
        while self.accept_op(","):
            items.append(self.item())
        table = where = None
        order: list[tuple[str, bool]] = []
        if self.accept_kw("from"):
            table = self.table()
            if self.accept_kw("where"):
                where = self.where()
            if self.accept_kw("order"):
                self.expect_kw("by")
                while True:
                    col = self.name()
                    desc = self.accept_kw("desc")
                    if not desc:
                        self.accept_kw("asc")
                    order.append((col, desc))
                    if not self.accept_op(","):
                        break
        self.end()
        return Select(tuple(items), table, tuple(where or ()), tuple(order), top)

    def table(self) -> TableRef:
        first = self.name()
        if not self.accept_op("."):
            return TableRef(None, first)
        if not self.accept_op("."):
            self.name()  # the owner (dbo) in db.owner.table
            self.expect_op(".")
        return TableRef(first, self.name())

    def item(self) -> Item:
        alias: str | None
        if self.tok.kind == "ident" and self.toks[self.i + 1].text == "=" and not self.is_kw(*KEYWORDS):
            alias = self.name()
            self.next()
            return Item(self.expr(), alias)
        expr = self.expr()
        alias = None
        if self.accept_kw("as") or (self.tok.kind == "ident" and not self.is_kw(*KEYWORDS)):
            alias = self.name()
        elif self.tok.kind == "str":
            alias = str(self.next().value)
        return Item(expr, alias)

    def expr(self) -> Expr:
        t = self.tok
        if t.kind == "op" and t.text == "*":
            self.next()
            return Star()
        if t.kind == "var":
            self.next()
            return Var(t.text.lower())
        if t.kind == "ident" and not self.is_kw(*KEYWORDS) and self.toks[self.i + 1].text == "(":
            self.next()
            self.next()
            args: list[Expr] = []
            if not self.accept_op(")"):
                args.append(self.expr())
                while self.accept_op(","):
                    args.append(self.expr())
                self.expect_op(")")
            return Func(t.text.lower(), tuple(args))
        if t.kind == "ident" and not self.is_kw("null"):
            return ColRef(self.name())
        return self.literal()

    def where(self) -> list[Pred]:
        preds = [self.pred()]
        while self.accept_kw("and"):
            preds.append(self.pred())
        if self.is_kw("or"):
            raise self.error()  # the subset has conjunctions only
        return preds

    def pred(self) -> Pred:
        col = self.name()
        if self.accept_kw("is"):
            neg = self.accept_kw("not")
            self.expect_kw("null")
            return Pred(col, "notnull" if neg else "isnull", ())
        if self.accept_kw("in"):
            self.expect_op("(")
            values = [self.literal()]
            while self.accept_op(","):
                values.append(self.literal())
            self.expect_op(")")
            return Pred(col, "in", tuple(values))
        if self.accept_kw("like"):
            return Pred(col, "like", (self.literal(),))
        t = self.next()
        op = {"<>": "!="}.get(t.text, t.text)
        if t.kind != "op" or op not in ("=", "!=", "<", ">", "<=", ">="):
            self.i -= 1
            raise self.error()
        return Pred(col, op, (self.literal(),))


def parse(sql: str) -> Statement:
    """Parse one statement (a trailing ``;`` is allowed). Raises :class:`SqlError`.

    >>> parse("select SPID, Login from master..monProcess where SPID in (14, 15)").table
    TableRef(db='master', name='monProcess')
    >>> parse("sp_configure 'max parallel degree', 1")
    Exec(db=None, proc='sp_configure', args=(Lit(value='max parallel degree'), Lit(value=1)))
    """
    return _Parser(sql).statement()
