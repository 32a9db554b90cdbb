"""Personal data out of text that is shown or leaves the host.

The rules, each a *kind* in the redaction report:

- ``personal_number``: Swedish personal identity and coordination numbers anywhere in
  text (10 or 12 digits, with or without ``-``/``+``), validated by date and the Luhn
  check so that other 10/12-digit numbers are left alone;
- ``sql_string`` / ``sql_number``: string, number and hex literals in SQL text become
  ``?`` (the statement's shape stays: keywords, identifiers and ``@variables``), and a
  literal left open at the end (text cut at a capture limit) is cut off too;
- ``data_value``: the values ASE prints in ``duplicate key value is (...)``;
- ``pattern:<name>``: the patterns configured in ``[package.redact.patterns]``.

:class:`Redactor` applies them and keeps a :class:`RedactionLog` of what it replaced
where (kind, file, field and how many; never the values) for the vendor package's
``redaction.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# 19121212-1212, 191212121212, 121212-1212, 121212+1212 (a + marks age 100 or more).
PNR_RE = re.compile(r"(?<!\d)(?:(?:19|20)\d{2}|\d{2})(\d{2})(\d{2})[-+]?(\d{4})(?!\d)")
_STRING_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_HEX_RE = re.compile(r"(?<![\w@#$.])0[xX][0-9a-fA-F]*(?![\w.])")
_NUMBER_RE = re.compile(r"(?<![\w@#$.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_DUPLICATE_KEY_RE = re.compile(r"(duplicate key value is \()([^)\n]*)(\))", re.IGNORECASE)
# The errorlog line prefix (every variant in research/ase-facts.md a.1).
_PREFIX_RE = re.compile(
    r"^(?:\d{2}:)?\d{2,4}:\d{5}:\d{5}:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{2} (?:kernel|server)\s+"
)
# Where SQL starts on an errorlog line; unprefixed lines after it continue the SQL.
_SQL_MARK_RE = re.compile(r"(SQL causing error\s*:\s?|SQL Text:\s?|SQL text:\s?)")
_SQL_END_RE = re.compile(r"^\s*(Current statement number|\*{4,})")

PERSONAL_NUMBER = "personal_number"
SQL_STRING = "sql_string"
SQL_NUMBER = "sql_number"
DATA_VALUE = "data_value"

#: What each built-in kind replaces (the report's ``rules``).
RULES = {
    PERSONAL_NUMBER: "Swedish personal identity and coordination numbers (10/12 digits, with or without "
    "-/+, valid date and Luhn check) -> <pnr>",
    SQL_STRING: "string literals in SQL text -> ?",
    SQL_NUMBER: "number and hex literals in SQL text -> ?",
    DATA_VALUE: "values ASE prints in 'duplicate key value is (...)' -> (?)",
}


def luhn_ok(digits: str) -> bool:
    """The Luhn check over the 10-digit form (YYMMDDNNNC).

    >>> luhn_ok("1212121212"), luhn_ok("1212121213")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(digits):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _is_pnr(m: re.Match[str]) -> bool:
    text = re.sub(r"\D", "", m.group(0))
    ten = text[-10:]
    month, day = int(m.group(1)), int(m.group(2))
    # Coordination numbers add 60 to the day.
    return 1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91) and luhn_ok(ten)


def personal_numbers(text: str, replacement: str = "<pnr>") -> tuple[str, int]:
    """Replace valid personal identity and coordination numbers; returns (text, how many).

    >>> personal_numbers("exec p @pnr = '19121212-1212', @n = 1212121212")
    ("exec p @pnr = '<pnr>', @n = <pnr>", 2)
    >>> personal_numbers("order 1234567890 and 19121212-1213")[1]
    0
    """
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        if _is_pnr(m):
            count += 1
            return replacement
        return m.group(0)

    return PNR_RE.sub(sub, text), count


def sql_shape_counted(sql: str) -> tuple[str, int, int]:
    """The statement's shape and how many (string, number) literals were replaced.

    A quote left open at the end (text cut short) is cut off with everything after it.

    >>> sql_shape_counted("exec p @a = 'x', @b = 0x1f, @c = 2, @d = 'cut sho")
    ('exec p @a = ?, @b = ?, @c = ?, @d = ?', 2, 2)
    """
    shaped, strings = _STRING_RE.subn("?", sql)
    quotes = [i for i in (shaped.find("'"), shaped.find('"')) if i >= 0]
    if quotes:
        shaped = shaped[: min(quotes)] + "?"
        strings += 1
    shaped, hexes = _HEX_RE.subn("?", shaped)
    shaped, numbers = _NUMBER_RE.subn("?", shaped)
    return shaped, strings, hexes + numbers


def sql_shape(sql: str) -> str:
    """The statement with its literals replaced by ``?``: what ran, not with which data.

    >>> sql_shape("exec p_patient_get @pnr = '19121212-1212', @avd = 12")
    'exec p_patient_get @pnr = ?, @avd = ?'
    >>> sql_shape("select * from t1 where x = 'it''s' and y = -1.5")
    'select * from t1 where x = ? and y = ?'
    """
    return sql_shape_counted(sql)[0]


@dataclass
class RedactionLog:
    """What was replaced, where: ``(file, field, kind) -> count``. Values are never kept."""

    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, file: str, path: str, kind: str, count: int) -> None:
        """Count ``count`` replacements of ``kind`` in ``file`` (``path``: the field, "" for text)."""
        if count:
            key = (file, path, kind)
            self.counts[key] = self.counts.get(key, 0) + count

    def totals(self) -> dict[str, int]:
        """Replacements per kind over every file."""
        out: dict[str, int] = {}
        for (_, _, kind), n in sorted(self.counts.items()):
            out[kind] = out.get(kind, 0) + n
        return out

    def to_json(self, rules: Mapping[str, str], not_redacted: Iterable[str] = ()) -> dict[str, Any]:
        """The ``redaction.json`` document (schema ``asewatch.redaction/1``)."""
        return {
            "schema": "asewatch.redaction/1",
            "rules": dict(rules),
            "not_redacted": list(not_redacted),
            "totals": self.totals(),
            "replacements": [
                {"file": f, "field": p or None, "kind": k, "count": n}
                for (f, p, k), n in sorted(self.counts.items())
            ],
        }


class Redactor:
    """Applies every rule and logs what it replaced.

    ``patterns`` maps a name to a regular expression (already validated by the config);
    each match becomes ``<name>``. ``sql_fields`` names the JSON keys whose strings are
    SQL text (shaped, not only cleaned).
    """

    def __init__(
        self,
        patterns: Mapping[str, str] | None = None,
        *,
        sql_fields: Iterable[str] = ("sql", "sql_text", "text", "inner_sql"),
    ) -> None:
        self.patterns = {name: re.compile(rx) for name, rx in (patterns or {}).items()}
        self.sql_fields = frozenset(sql_fields)
        self.log = RedactionLog()

    @property
    def rules(self) -> dict[str, str]:
        """Every kind this redactor applies, with what it replaces (no regexes: they may name data)."""
        return RULES | {f"pattern:{n}": f"configured pattern {n!r} -> <{n}>" for n in self.patterns}

    def text(self, text: str, file: str, path: str = "") -> str:
        """``text`` with personal numbers, duplicate-key values and configured patterns replaced."""
        out, n = personal_numbers(text)
        self.log.add(file, path, PERSONAL_NUMBER, n)
        out, n = _DUPLICATE_KEY_RE.subn(r"\1?\3", out)
        self.log.add(file, path, DATA_VALUE, n)
        for name, rx in self.patterns.items():
            out, n = rx.subn(f"<{name}>", out)
            self.log.add(file, path, f"pattern:{name}", n)
        return out

    def sql(self, sql: str, file: str, path: str = "") -> str:
        """``sql`` cleaned (:meth:`text`) and then shaped (literals -> ``?``)."""
        out, strings, numbers = sql_shape_counted(self.text(sql, file, path))
        self.log.add(file, path, SQL_STRING, strings)
        self.log.add(file, path, SQL_NUMBER, numbers)
        return out

    def errorlog(self, text: str, file: str) -> str:
        """An errorlog excerpt: SQL on ``SQL causing error :`` / ``SQL Text:`` lines and their
        unprefixed continuation lines is shaped; every line is cleaned."""
        return "".join(self.errorlog_lines(text.splitlines(keepends=True), file))

    def errorlog_lines(self, lines: Iterable[str], file: str) -> Iterator[str]:
        """:meth:`errorlog` line by line (each with its line end), for logs too big to hold."""
        in_sql = False
        for line in lines:
            body = line.rstrip("\r\n")
            end = line[len(body) :]
            prefixed = _PREFIX_RE.match(body) is not None
            mark = _SQL_MARK_RE.search(body) if prefixed else None
            if mark is not None:
                head, sql = body[: mark.end()], body[mark.end() :]
                yield self.text(head, file) + self.sql(sql, file) + end
                in_sql = True
            elif in_sql and not prefixed and not _SQL_END_RE.match(body):
                yield self.sql(body, file) + end
            else:
                in_sql = False
                yield self.text(body, file) + end

    def json(self, value: Any, file: str, path: str = "", *, verbatim: frozenset[str] = frozenset()) -> Any:
        """A JSON value with every string redacted (SQL fields shaped); the log names each
        field by its path, list positions as ``[]`` (``crash.frames[]``). Values under a key
        in ``verbatim`` (hashes, public keys: data of our own making) are left as they are."""
        leaf = path.rsplit(".", 1)[-1].removesuffix("[]")
        if leaf in verbatim:
            return value
        if isinstance(value, str):
            return self.sql(value, file, path) if leaf in self.sql_fields else self.text(value, file, path)
        if isinstance(value, Mapping):
            return {
                k: self.json(v, file, f"{path}.{k}" if path else str(k), verbatim=verbatim)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.json(v, file, f"{path}[]", verbatim=verbatim) for v in value]
        return value
