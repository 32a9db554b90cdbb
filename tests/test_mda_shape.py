"""The sampler's SQL shaping: the same shape as monitor.redact.sql_shape, and no personal
identity number survives it, whatever the text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.mda.shape import shape
from monitor.redact import personal_numbers, sql_shape
from monitor.sim.workload import personnummer

pytestmark = pytest.mark.unit

WORDS = ("exec", "select", "*", "from", "where", "and", "p_patient_get", "t.col", "@pnr", "=", ",", "(", ")",
         "--", "x1", "#tmp", "@@spid", "in", "order by", "0x1F", "1.5e3", "-7", "+2", "12")  # fmt: skip


def pnr_literals() -> st.SearchStrategy[str]:
    return st.builds(personnummer, st.integers(0, 999)).flatmap(
        lambda p: st.sampled_from([p, p.replace("-", ""), p[2:], p[2:].replace("-", "+")])
    )


literals = st.one_of(
    st.text(max_size=12).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.text(max_size=12).map(lambda s: '"' + s.replace('"', '""') + '"'),
    pnr_literals().map(lambda s: f"'{s}'"),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.3f}"),
)
sql_like = st.lists(st.one_of(st.sampled_from(WORDS), literals), min_size=1, max_size=25).map(" ".join)


@given(sql_like)
@settings(max_examples=400, deadline=None)
def test_the_shape_is_redacts_sql_shape(text: str) -> None:
    assert shape(text) == personal_numbers(sql_shape(text))[0]


@given(st.lists(st.one_of(st.text(max_size=8), pnr_literals()), max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_no_personal_number_survives_any_text(text: str) -> None:
    assert personal_numbers(shape(text))[1] == 0


def test_the_sims_statements() -> None:
    for text, want in [
        (("exec p_brev_sok_central_utskrift @avd = 12, @fran_datum = '2024-01-01', @utskriftstyp = 'CENTRAL', "
          "@pnr = '19121212-1212'"), "exec p_brev_sok_central_utskrift @avd = ?, @fran_datum = ?, @utskriftstyp = ?, @pnr = ?"),
        ("exec p_ordination_save @pnr = '19121212-1212', @lakemedel_id = 12345, @dos = '2x1'",
         "exec p_ordination_save @pnr = ?, @lakemedel_id = ?, @dos = ?"),
        ("select b.brev_id from brev b where b.avd_id = @avd and b.pnr = 191212121212",
         "select b.brev_id from brev b where b.avd_id = @avd and b.pnr = ?"),
    ]:  # fmt: skip
        assert shape(text) == want
