"""Procedure fingerprints: baseline, new / changed / dropped, one summary per database and poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from collectors.procedures import ProceduresCollector, fingerprint, join_text, normalize
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import ProcedureBaseline, ProcedureChanged, ProcedureChangeSummary
from tests.fake_odbc import FakeAse, Table

pytestmark = pytest.mark.unit

BREV = "p_brev_sok_central_utskrift"


def body(name: str, version: str = "7.0", lines: int = 3, parallel: bool = False) -> str:
    stmts = "\n".join(
        f"    select pnr, namn from patient where vardenhet = @enhet -- {version} {i}" for i in range(lines)
    )
    hint = "    set parallel_degree 4  /* central printing */\n" if parallel else ""
    return f"create procedure {name} @enhet int as\nbegin\n{hint}{stmts}\nend\n"


class Imx:
    """The application database as ASE keeps it: sysobjects rows and 255-char syscomments pieces."""

    def __init__(self, server: FakeAse, db: str = "imx") -> None:
        self.server, self.db = server, db
        self.next_id = 1_500_000_000
        server.tables[f"{db}..sysobjects"] = Table(("id", "name", "type", "crdate"))
        server.tables[f"{db}..syscomments"] = Table(("id", "colid", "text"))
        self.create("patient", None, kind="U ")  # a table: not a procedure

    def create(self, name: str, text: str | None, kind: str = "P ") -> None:
        self.drop(name)
        self.next_id += 7
        oid = self.next_id
        self.server.tables[f"{self.db}..sysobjects"].rows.append((oid, name, kind, "2026-11-26"))
        if text is not None:
            pieces = [text[i : i + 255] for i in range(0, len(text), 255)]
            # Stored out of order on purpose: only colid orders the pieces.
            rows = [(oid, colid, piece) for colid, piece in enumerate(pieces, 1)]
            self.server.tables[f"{self.db}..syscomments"].rows.extend(reversed(rows))

    def drop(self, name: str) -> None:
        objs = self.server.tables[f"{self.db}..sysobjects"]
        gone = {r[0] for r in objs.rows if r[1] == name}
        objs.rows = [r for r in objs.rows if r[0] not in gone]
        com = self.server.tables[f"{self.db}..syscomments"]
        com.rows = [r for r in com.rows if r[0] not in gone]


class Clock:
    def __init__(self) -> None:
        self.t = 1_764_140_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def installed(n: int = 5) -> tuple[FakeAse, Imx]:
    server = FakeAse()
    imx = Imx(server)
    for i in range(n):
        imx.create(f"p_journal_{i:02d}", body(f"p_journal_{i:02d}", lines=8))
    return server, imx


def test_pieces_are_joined_in_colid_order_and_fingerprinted_whole() -> None:
    text = body("p_long", lines=20)
    assert len(text) > 3 * 255
    pieces = [(9, i + 1, text[i * 255 : (i + 1) * 255]) for i in range(len(text) // 255 + 1)]
    assert join_text(reversed(pieces)) == {9: text}
    server, imx = installed(0)
    imx.create("p_long", text)
    c = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=Clock())
    assert c.fingerprints("imx") == {"p_long": fingerprint(text)}


def test_normalization_ignores_line_endings_and_trailing_blanks_only() -> None:
    text = body("p_x")
    assert fingerprint(text) == fingerprint(text.replace("\n", "\r\n").replace(" as\n", " as   \n") + "\n\n")
    assert fingerprint(text) != fingerprint(text.replace("vardenhet", "vardenhet_id"))
    assert normalize("  a\n") == "a"


def test_first_poll_without_a_stored_baseline_is_a_baseline_not_new_procedures() -> None:
    server, _ = installed(5)
    c = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=Clock())
    events, failures = c.poll()
    assert failures == []
    (base,) = events
    assert isinstance(base, ProcedureBaseline) and base.database == "imx"
    assert list(base.names) == [f"p_journal_{i:02d}" for i in range(5)]  # the table is not there
    assert c.poll() == ([], [])


def test_an_upgrade_is_one_summary_and_one_event_per_procedure() -> None:
    server, imx = installed(5)
    c = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=Clock())
    (base,) = c.poll()[0]
    assert isinstance(base, ProcedureBaseline)
    for i in (1, 3, 4):
        imx.create(f"p_journal_{i:02d}", body(f"p_journal_{i:02d}", "7.1", lines=8))
    imx.create("p_journal_04", body("p_journal_04", "7.1", lines=8, parallel=True))
    imx.create(BREV, body(BREV, "7.1"))
    imx.drop("p_journal_00")
    events, _ = c.poll()
    summary, *per = events
    assert isinstance(summary, ProcedureChangeSummary)
    assert (summary.new, summary.changed, summary.dropped, summary.parallel, summary.total) == (1, 3, 1, 1, 5)
    # The one that now asks for parallel plans leads; then new, changed, dropped.
    assert summary.names == ("p_journal_04", BREV, "p_journal_01", "p_journal_03", "p_journal_00")
    assert summary.describe() == (
        "5 procedures changed in imx (1 new, 3 changed, 1 dropped, 1 asks for parallel plans), "
        f"among them p_journal_04, {BREV}, p_journal_01"
    )
    kinds = {(e.name, e.change, e.parallel) for e in per if isinstance(e, ProcedureChanged)}
    assert kinds == {(BREV, "new", False), ("p_journal_01", "changed", False), ("p_journal_03", "changed", False),
                     ("p_journal_04", "changed", True), ("p_journal_00", "dropped", False)}  # fmt: skip
    new = next(e for e in per if isinstance(e, ProcedureChanged) and e.name == BREV)
    assert new.old_sha256 is None and new.new_sha256 == fingerprint(body(BREV, "7.1"))
    old = base.fingerprints()["p_journal_01"]
    changed = next(e for e in per if isinstance(e, ProcedureChanged) and e.name == "p_journal_01")
    assert changed.old_sha256 == old != changed.new_sha256
    assert c.poll() == ([], [])  # the next poll compares with the upgraded state


def test_a_reinstall_of_the_same_text_is_no_change() -> None:
    server, imx = installed(3)
    c = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=Clock())
    c.poll()
    imx.create("p_journal_01", body("p_journal_01", lines=8).replace("\n", "\r\n"))  # new id, CRLF
    assert c.poll() == ([], [])


def test_changes_while_the_agent_was_down_are_found_against_the_stored_fingerprints() -> None:
    server, imx = installed(3)
    (base,) = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=Clock()).poll()[0]
    assert isinstance(base, ProcedureBaseline)
    imx.create(BREV, body(BREV, "7.1"))
    restarted = ProceduresCollector("CLINIC1", server.connect, ["imx"], known={"imx": base.fingerprints()})
    events, _ = restarted.poll()
    assert [(e.name, e.change) for e in events if isinstance(e, ProcedureChanged)] == [(BREV, "new")]
    assert sum(isinstance(e, ProcedureChangeSummary) for e in events) == 1


def test_many_procedures_are_read_in_bounded_in_lists() -> None:
    server, _ = installed(250)
    c = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=Clock())
    assert len(c.fingerprints("imx")) == 250
    reads = [s for s in server.statements if "syscomments" in s]
    assert len(reads) == 3 and all(s.split(" in (")[1].count(",") < 100 for s in reads)


def test_one_unreadable_database_does_not_stop_the_others() -> None:
    server, _ = installed(2)
    c = ProceduresCollector("CLINIC1", server.connect, ["nosuchdb", "imx"], clock=Clock())
    events, failures = c.poll()
    assert [type(e).__name__ for e in events] == ["ProcedureBaseline"]
    assert len(failures) == 1 and "nosuchdb..sysobjects not found" in failures[0].reason


def test_database_names_are_identifiers() -> None:
    with pytest.raises(ValueError, match="not database names"):
        ProceduresCollector("CLINIC1", FakeAse().connect, ["imx; drop table x"])


def test_run_emits_one_batch_per_poll_and_stops() -> None:
    server, imx = installed(2)
    batches: list[list[Event]] = []
    lock = threading.Lock()

    def emit(events: Sequence[Event], positions: object) -> None:
        with lock:
            batches.append(list(events))

    c = ProceduresCollector("CLINIC1", server.connect, ["imx"], poll_interval=0.02)
    stop = threading.Event()
    t = threading.Thread(target=c.run, args=(emit, stop), name="procedures-test")
    t.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if batches:
                    break
            time.sleep(0.01)
        server.up = False
        server.restart()
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(e, CollectorFailed) for b in batches for e in b):
                    break
            time.sleep(0.01)
        imx.create(BREV, body(BREV, "7.1"))
        server.up = True
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(e, ProcedureChangeSummary) for b in batches for e in b):
                    break
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(timeout=5)
    assert not t.is_alive()
    with lock:
        upgrade = next(b for b in batches if any(isinstance(e, ProcedureChangeSummary) for e in b))
    # The summary, its procedure events and the health report travel together (one transaction).
    assert [type(e).__name__ for e in upgrade] == [
        "ProcedureChangeSummary",
        "ProcedureChanged",
        "CollectorSucceeded",
    ]
    assert isinstance(upgrade[-1], CollectorSucceeded) and upgrade[-1].collector == "procedures:CLINIC1"
