"""Redaction: what must never leave the host in a vendor package, and what must stay readable.

Property tests (hypothesis): a valid Swedish personal identity or coordination number, in
any of its written forms and anywhere in text, SQL or an errorlog, never survives; numbers
that fail the Luhn check and other digits stay; the shape of SQL (keywords, identifiers,
@variables) stays, and shaping twice changes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.redact import (
    PERSONAL_NUMBER,
    SQL_NUMBER,
    SQL_STRING,
    Redactor,
    luhn_ok,
    personal_numbers,
    sql_shape,
    sql_shape_counted,
)

pytestmark = pytest.mark.unit


def check_digit(nine: str) -> int:
    total = 0
    for i, ch in enumerate(nine):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return (10 - total % 10) % 10


@st.composite
def personal_number(draw: st.DrawFn, coordination: bool | None = None) -> tuple[str, str]:
    """A valid personal identity (or coordination) number: (12-digit century form, 10-digit form)."""
    year = draw(st.integers(1900, 2025))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    if coordination if coordination is not None else draw(st.booleans()):
        day += 60
    serial = draw(st.integers(0, 999))
    nine = f"{year % 100:02d}{month:02d}{day:02d}{serial:03d}"
    ten = nine + str(check_digit(nine))
    return f"{year // 100}{ten}", ten


FORMS = ("YYYYMMDD-NNNC", "YYYYMMDDNNNC", "YYMMDD-NNNC", "YYMMDDNNNC", "YYMMDD+NNNC")


def written(twelve: str, ten: str, form: str) -> str:
    return {
        "YYYYMMDD-NNNC": f"{twelve[:8]}-{twelve[8:]}",
        "YYYYMMDDNNNC": twelve,
        "YYMMDD-NNNC": f"{ten[:6]}-{ten[6:]}",
        "YYMMDDNNNC": ten,
        "YYMMDD+NNNC": f"{ten[:6]}+{ten[6:]}",
    }[form]


# Text around a number: anything but a digit right next to it (a longer digit run is another number).
SURROUND = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30).map(
    lambda s: re.sub(r"\d", "x", s)
)


@settings(max_examples=300)
@given(pnr=personal_number(), form=st.sampled_from(FORMS), before=SURROUND, after=SURROUND)
def test_a_valid_personal_number_in_any_form_never_survives(
    pnr: tuple[str, str], form: str, before: str, after: str
) -> None:
    twelve, ten = pnr
    number = written(twelve, ten, form)
    text = f"{before}{number}{after}"
    r = Redactor()
    for out in (r.text(text, "f"), r.sql(text, "f"), r.errorlog(text + "\n", "f")):
        assert not re.search(r"\d", out), out  # the only digits were the number's
    assert r.log.totals()[PERSONAL_NUMBER] >= 3


@given(pnr=personal_number(coordination=True))
def test_coordination_numbers_are_personal_numbers_too(pnr: tuple[str, str]) -> None:
    twelve, ten = pnr
    assert personal_numbers(f"samordningsnummer {twelve[:8]}-{twelve[8:]} och {ten}") == (
        "samordningsnummer <pnr> och <pnr>",
        2,
    )


@given(pnr=personal_number(), wrong=st.integers(1, 9), form=st.sampled_from(FORMS))
def test_a_number_failing_the_luhn_check_stays(pnr: tuple[str, str], wrong: int, form: str) -> None:
    twelve, ten = pnr
    bad_digit = str((int(ten[-1]) + wrong) % 10)
    bad_twelve, bad_ten = twelve[:-1] + bad_digit, ten[:-1] + bad_digit
    assert not luhn_ok(bad_ten)
    text = f"order {written(bad_twelve, bad_ten, form)} shipped"
    assert Redactor().text(text, "f") == text


@given(digits=st.from_regex(r"[0-9]{1,9}|[0-9]{11}|[0-9]{13,20}", fullmatch=True))
def test_other_digit_runs_stay(digits: str) -> None:
    text = f"kpid {digits}, engine 3"
    assert Redactor().text(text, "f") == text


def test_dates_and_luhn_together_decide() -> None:
    # Luhn-valid but month 13: not a personal number (a kpid or an order number may look like this).
    nine = "991301123"
    number = nine + str(check_digit(nine))
    assert luhn_ok(number)
    assert personal_numbers(f"kpid {number}") == (f"kpid {number}", 0)


IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
STRING_LIT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).map(
    lambda s: "'" + s.replace("'", "''") + "'"
)
NUMBER_LIT = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.3f}"),
    st.integers(0, 2**32).map(lambda n: f"0x{n:x}"),
)


@st.composite
def statement(draw: st.DrawFn) -> tuple[str, str, int, int]:
    """(SQL, its expected shape, string literals, number literals)."""
    proc = draw(IDENT)
    parts, shape_parts, strings, numbers = [], [], 0, 0
    for i in range(draw(st.integers(0, 6))):
        var = f"@{draw(IDENT)}{i}"
        if draw(st.booleans()):
            lit = draw(STRING_LIT)
            strings += 1
        else:
            lit = draw(NUMBER_LIT)
            numbers += 1
        parts.append(f"{var} = {lit}")
        shape_parts.append(f"{var} = ?")
    table, col = draw(IDENT), draw(IDENT)
    sql = f"exec {proc} " + ", ".join(parts) + f"\nselect {col} from {table}1 where {col} = @{col}"
    shape = f"exec {proc} " + ", ".join(shape_parts) + f"\nselect {col} from {table}1 where {col} = @{col}"
    return sql, shape, strings, numbers


@settings(max_examples=300)
@given(case=statement())
def test_sql_keeps_its_shape_and_loses_every_literal(case: tuple[str, str, int, int]) -> None:
    sql, expected, strings, numbers = case
    shaped, n_strings, n_numbers = sql_shape_counted(sql)
    assert shaped == expected
    assert (n_strings, n_numbers) == (strings, numbers)
    assert sql_shape(shaped) == shaped  # stable: shaping a shape changes nothing


def test_a_literal_cut_short_is_cut_off() -> None:
    assert sql_shape("select * from patient where efternamn = 'Tolvan") == (
        "select * from patient where efternamn = ?"
    )


def test_an_errorlog_keeps_its_lines_and_shapes_only_the_sql() -> None:
    log = (
        "00:0003:00021:00201:2026/11/26 12:32:01.12 kernel  SQL causing error : exec p @pnr = '19121212-1212', @avd = 12\n"
        "00:0003:00021:00201:2026/11/26 12:32:01.12 kernel  Current statement number: 14 Current line number: 233\n"
        "00:0003:00021:00201:2026/11/26 12:32:01.12 server  SQL Text: select b.pnr from brev b\n"
        "where b.utskrift_central = 1 and b.namn = 'Tolvan Tolvansson'\n"
        "  and b.skapad >= '2024-03-14'\n"
        "00:0003:00021:00201:2026/11/26 12:32:01.12 server  end of stack trace, spid 201, kpid 426878149, suid 1202\n"
        "00:0004:00000:00014:2026/11/26 12:32:02.48 server  Attempt to insert duplicate key row. The duplicate key value is (121212-1212, Tolvan)\n"
    )
    r = Redactor()
    out = r.errorlog(log, "errorlog/excerpt.log")
    lines = out.splitlines()
    assert len(lines) == len(log.splitlines())
    assert lines[0].endswith("SQL causing error : exec p @pnr = ?, @avd = ?")
    assert "Current statement number: 14 Current line number: 233" in lines[1]  # not SQL: numbers stay
    assert lines[3] == "where b.utskrift_central = ? and b.namn = ?"
    assert lines[4] == "  and b.skapad >= ?"
    assert "spid 201, kpid 426878149, suid 1202" in lines[5]
    assert lines[6].endswith("The duplicate key value is (?)")
    assert "Tolvan" not in out and "1212" not in out.replace("12:32", "")
    totals = r.log.totals()
    assert totals[PERSONAL_NUMBER] >= 2 and totals[SQL_STRING] == 3 and totals[SQL_NUMBER] == 2


def test_the_real_crash_sample_keeps_its_structure(corpus: Path) -> None:
    text = (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text(
        encoding="utf-8", errors="surrogateescape"
    )
    out = Redactor().errorlog(text, "x")
    assert len(out.splitlines()) == len(text.splitlines())
    assert "SQL Text: exec sp_showplan ?, null, null, null, ?" in out
    assert "SQL Text: select @a = query_text(@spid)" in out
    assert "end of stack trace, spid 308, kpid 732758348, suid 1" in out


def test_configured_patterns_and_the_report_name_kinds_and_places_never_values() -> None:
    r = Redactor({"journal_id": r"JN-\d{8}"})
    doc = {
        "crash": {"sql": "exec p_journal @id = 'JN-00123456', @pnr = 191212121212", "login": "usk_lena"},
        "notes": ["see JN-00999999"],
        "stored_sha256": "a1912121212b" + "0" * 52,
    }
    out = r.json(doc, "manifest.json", verbatim=frozenset({"stored_sha256"}))
    assert out["crash"]["sql"] == "exec p_journal @id = ?, @pnr = <pnr>"
    assert out["notes"] == ["see <journal_id>"]
    assert out["stored_sha256"] == doc["stored_sha256"]  # our own hash: a digit run in it is no number
    report = json.dumps(r.log.to_json(r.rules))
    for secret in ("JN-00", "191212121212", "1212121212", "usk_lena", r"JN-\\d{8}"):
        assert secret not in report
    rows = {(x["file"], x["field"], x["kind"]): x["count"] for x in r.log.to_json(r.rules)["replacements"]}
    assert rows[("manifest.json", "crash.sql", "pattern:journal_id")] == 1
    assert rows[("manifest.json", "crash.sql", PERSONAL_NUMBER)] == 1
    assert rows[("manifest.json", "notes[]", "pattern:journal_id")] == 1
