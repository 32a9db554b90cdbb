"""Feature flags: from the application's flag table over SQL, or from a JSON file; every change an event."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from collectors.flags import FlagsCollector, flags_from_document, parse_flags_file
from monitor.errors import SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import FlagChanged
from tests.fake_odbc import FakeAse, Table

pytestmark = pytest.mark.unit

QUERY = "select name, value from imx..app_feature_flags"


def imx(flags: dict[str, str]) -> FakeAse:
    server = FakeAse()
    server.tables["imx..app_feature_flags"] = Table(("name", "value"), list(flags.items()))
    return server


def set_flag(server: FakeAse, name: str, value: str | None) -> None:
    table = server.tables["imx..app_feature_flags"]
    rows = [r for r in table.rows if r[0] != name]
    table.rows = rows if value is None else [*rows, (name, value)]


def changes(events: Sequence[FlagChanged]) -> list[tuple[str, str | None, str | None, str]]:
    return [(e.name, e.old, e.new, e.source) for e in events]


def test_query_first_sight_is_a_change_from_none_then_only_real_changes() -> None:
    server = imx({"brevutskrift_central_search": "0", "e_recept_v2": "1"})
    c = FlagsCollector("CLINIC1", query=QUERY, connect=server.connect)
    assert changes(c.poll()) == [
        ("brevutskrift_central_search", None, "0", "query"),
        ("e_recept_v2", None, "1", "query"),
    ]
    assert c.poll() == []
    set_flag(server, "brevutskrift_central_search", "1")
    assert changes(c.poll()) == [("brevutskrift_central_search", "0", "1", "query")]
    set_flag(server, "e_recept_v2", None)
    assert changes(c.poll()) == [("e_recept_v2", "1", None, "query")]
    assert server.statements.count(QUERY) == 4 and server.connects == 1


def test_a_restarted_agent_reports_only_what_changed_since_the_store_knew() -> None:
    server = imx({"brevutskrift_central_search": "1", "e_recept_v2": "1"})
    known = {"brevutskrift_central_search": "0", "e_recept_v2": "1"}
    c = FlagsCollector("CLINIC1", query=QUERY, connect=server.connect, known=known)
    assert changes(c.poll()) == [("brevutskrift_central_search", "0", "1", "query")]


def test_a_failing_query_keeps_the_flags_instead_of_dropping_them() -> None:
    server = imx({"brevutskrift_central_search": "1"})
    c = FlagsCollector("CLINIC1", query=QUERY, connect=server.connect)
    c.poll()
    server.up = False
    with pytest.raises(SourceError, match="flag query failed"):
        c.poll()
    server.up = True
    assert c.poll() == []  # no "dropped" then "new again"
    assert c.flags == {"brevutskrift_central_search": "1"}
    bad = FlagsCollector("CLINIC1", query="select name from imx..app_feature_flags", connect=server.connect)
    with pytest.raises(SourceError, match=r"\(name, value\)"):
        bad.poll()


def test_file_flags_json_object_and_list_shapes(tmp_path: Path) -> None:
    assert flags_from_document({"a": True, "b": False, "c": 3, "d": None, "e": " on "}) == {
        "a": "true", "b": "false", "c": "3", "e": "on",
    }  # fmt: skip
    assert flags_from_document([{"name": "a", "value": "1"}, {"name": "b"}]) == {"a": "1"}
    with pytest.raises(ValueError, match="expected an object"):
        flags_from_document(["a", "b"])
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_flags_file(tmp_path / "f.json", "{")


def test_file_flags_as_the_application_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"brevutskrift_central_search": False, "journal_snabbsok": True}))
    c = FlagsCollector("CLINIC1", path=path)
    assert changes(c.poll()) == [
        ("brevutskrift_central_search", None, "false", "file"),
        ("journal_snabbsok", None, "true", "file"),
    ]
    assert c.poll() == []
    tmp = tmp_path / "flags.json.tmp"  # written atomically, as the simulator and most tools do
    tmp.write_text(json.dumps({"brevutskrift_central_search": True, "journal_snabbsok": True}))
    os.replace(tmp, path)
    assert changes(c.poll()) == [("brevutskrift_central_search", "false", "true", "file")]


def test_a_half_written_or_missing_file_is_a_source_error_not_a_drop(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text('{"a": true}')
    c = FlagsCollector("CLINIC1", path=path)
    c.poll()
    path.write_text('{"a": tr')
    with pytest.raises(SourceError, match="not valid JSON"):
        c.poll()
    path.unlink()
    with pytest.raises(SourceError, match="cannot read"):
        c.poll()
    path.write_text('{"a": true}')
    assert c.poll() == []


def test_yaml_without_pyyaml_says_what_to_do(tmp_path: Path) -> None:
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: F401, PLC0415
    except ImportError:
        with pytest.raises(ValueError, match="PyYAML"):
            parse_flags_file(tmp_path / "flags.yaml", "a: true\n")
    else:
        assert parse_flags_file(tmp_path / "flags.yaml", "a: true\n") == {"a": "true"}


def test_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="either"):
        FlagsCollector("CLINIC1")
    with pytest.raises(ValueError, match="either"):
        FlagsCollector("CLINIC1", query=QUERY)  # no connection to run it on


def test_run_emits_changes_and_health_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    got: list[Event] = []
    lock = threading.Lock()

    def emit(events: Sequence[Event], positions: object) -> None:
        with lock:
            got.extend(events)

    c = FlagsCollector("CLINIC1", path=path, poll_interval=0.02)
    stop = threading.Event()
    t = threading.Thread(target=c.run, args=(emit, stop), name="flags-test")
    t.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(e, CollectorFailed) for e in got):
                    break
            time.sleep(0.01)
        path.write_text('{"brevutskrift_central_search": true}')
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(e, FlagChanged) for e in got):
                    break
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(timeout=5)
    assert not t.is_alive()
    with lock:
        flags = [e for e in got if isinstance(e, FlagChanged)]
        assert changes(flags) == [("brevutskrift_central_search", None, "true", "file")]
        assert any(isinstance(e, CollectorSucceeded) and e.collector == "flags:CLINIC1" for e in got)
