"""Personal data out of text that is shown or leaves the host.

For now: the shape of SQL (string and number literals replaced, the statement kept) and
Swedish personal identity / coordination numbers anywhere in text, validated by the
Luhn check so that other 10/12-digit numbers are left alone.
"""

from __future__ import annotations

import re

# 19121212-1212, 191212121212, 121212-1212, 121212+1212 (a + marks age 100 or more).
PNR_RE = re.compile(r"(?<!\d)(?:(?:19|20)\d{2}|\d{2})(\d{2})(\d{2})[-+]?(\d{4})(?!\d)")
_STRING_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_NUMBER_RE = re.compile(r"(?<![\w@#$.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


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


def sql_shape(sql: str) -> str:
    """The statement with its literals replaced by ``?``: what ran, not with which data.

    >>> sql_shape("exec p_patient_get @pnr = '19121212-1212', @avd = 12")
    'exec p_patient_get @pnr = ?, @avd = ?'
    >>> sql_shape("select * from t1 where x = 'it''s' and y = -1.5")
    'select * from t1 where x = ? and y = ?'
    """
    return _NUMBER_RE.sub("?", _STRING_RE.sub("?", sql))
