"""Server settings: snapshot, per-parameter changes, parallel flagging, the .cfg file, dump conditions."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from collectors.settings import (
    SettingsCollector,
    diff_settings,
    join_config,
    parse_cfg,
)
from monitor.errors import SourceError
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.events_changes import DumpConditions, SettingChanged, SettingsSnapshot, SettingValue
from tests.fake_odbc import FakeAse, Table

pytestmark = pytest.mark.unit

# Section rows have parent 0; parameters point at their section. Numbers as on a 16.0 server
# are irrelevant: the collector joins the two tables on `config` only.
SECTIONS = {1: "General Information", 3: "Diagnostics", 7: "Parallel Query", 8: "Physical Memory",
            10: "Query Tuning", 12: "User Environment"}  # fmt: skip
PARAMS = [  # config, name, parent, value, value2
    (101, "configuration file", 1, 0, "/opt/sap/ASE-16_0/CLINIC1.cfg"),
    (121, "dump on conditions", 3, 1, None),
    (122, "maximum dump conditions", 3, 10, None),
    (171, "number of worker processes", 7, 20, None),
    (172, "max parallel degree", 7, 1, None),
    (173, "max scan parallel degree", 7, 1, None),
    (181, "max memory", 8, 2097152, None),
    (182, "total logical memory", 8, 0, None),
    (201, "optimization goal", 10, 0, "allrows_oltp"),
    (211, "number of user connections", 12, 200, None),
]


def ase() -> FakeAse:
    server = FakeAse()
    server.tables["master..sysconfigures"] = Table(
        ("config", "name", "parent", "value", "value2", "comment"),
        [(c, n, 0, 0, None, n) for c, n in SECTIONS.items()] + [(*p, p[1]) for p in PARAMS],
    )
    server.tables["master..syscurconfigs"] = Table(
        ("config", "value", "value2", "defvalue"),
        [(c, v, v2, "0") for c, _, _, v, v2 in PARAMS] + [(182, 1234567, None, "0")],
    )
    server.procedures["sp_shmdumpconfig"] = [
        # A real server sends a summary set first; the collector takes the set with a Type column.
        (("Configurable Shared Memory Dump Configuration",), [("Maximum Dump Conditions: 10",)]),
        (("Type", "Value", "Max Dumps", "Dump Count", "Dump Directory", "Dump File", "Page Cache",
          "Procedure Cache", "Unused Space", "Halt Engines", "Cluster"),
         [("signal", "11", 2, 0, "/sybase/dumps", None, "Omit", "Include", "Omit", "Halt", "Local"),
          ("timeslice", None, 1, 0, "/sybase/dumps", None, "Omit", "Include", "Omit", "Halt", "Local")]),
    ]  # fmt: skip
    return server


def sp_configure(server: FakeAse, name: str, value: int, *, dynamic: bool = True) -> None:
    """What sp_configure does to the two tables: the configured value, and the run value if dynamic."""
    config = next(p[0] for p in PARAMS if p[1] == name)
    cfg = server.tables["master..sysconfigures"]
    cfg.rows = [(c, n, p, value if c == config else v, v2, cm) for c, n, p, v, v2, cm in cfg.rows]
    if dynamic:
        cur = server.tables["master..syscurconfigs"]
        cur.rows = [(c, value if c == config else v, v2, d) for c, v, v2, d in cur.rows]


def of(events: Sequence[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


class Clock:
    def __init__(self) -> None:
        self.t = 1_764_140_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


# --------------------------------------------------------------------------- sysconfigures


def test_first_poll_is_one_snapshot_of_every_parameter_with_parallel_flagged() -> None:
    c = SettingsCollector("CLINIC1", ase().connect, clock=Clock())
    events = c.poll()
    (snap,) = of(events, SettingsSnapshot)
    assert of(events, SettingChanged) == []
    values = snap.values()
    assert sorted(values) == sorted(p[1] for p in PARAMS)  # the section rows are not parameters
    mpd = values["max parallel degree"]
    assert (mpd.section, mpd.configured, mpd.run, mpd.parallel) == ("Parallel Query", "1", "1", True)
    assert values["configuration file"].run == "/opt/sap/ASE-16_0/CLINIC1.cfg"  # character value from value2
    assert values["optimization goal"].parallel and values["optimization goal"].configured == "allrows_oltp"
    assert {n for n, v in values.items() if v.parallel} == {
        "number of worker processes", "max parallel degree", "max scan parallel degree", "optimization goal",
    }  # fmt: skip
    assert values["max memory"].parallel is False


def test_sp_configure_is_one_change_and_back_is_another() -> None:
    server = ase()
    c = SettingsCollector("CLINIC1", server.connect, clock=Clock())
    c.poll()
    sp_configure(server, "max parallel degree", 4)
    (up,) = of(c.poll(), SettingChanged)
    assert (up.name, up.old_run, up.new_run, up.old_configured, up.new_configured) == (
        "max parallel degree", "1", "4", "1", "4",
    )  # fmt: skip
    assert up.parallel and up.source == "sysconfigures" and up.section == "Parallel Query"
    assert of(c.poll(), SettingChanged) == []  # unchanged: nothing
    sp_configure(server, "max parallel degree", 1)
    (down,) = of(c.poll(), SettingChanged)
    assert (down.old_run, down.new_run) == ("4", "1")
    assert server.connects == 1  # one connection, reused


def test_a_static_change_shows_the_configured_value_pending() -> None:
    server = ase()
    c = SettingsCollector("CLINIC1", server.connect, clock=Clock())
    c.poll()
    sp_configure(server, "max memory", 4194304, dynamic=False)
    (ch,) = of(c.poll(), SettingChanged)
    assert (ch.old_configured, ch.new_configured, ch.old_run, ch.new_run) == ("2097152", "4194304", "2097152", "2097152")  # fmt: skip
    assert not ch.parallel


def test_live_measurements_are_not_changes() -> None:
    server = ase()
    c = SettingsCollector("CLINIC1", server.connect, clock=Clock())
    c.poll()
    cur = server.tables["master..syscurconfigs"]
    cur.rows = [(cfg, v + 1 if cfg == 182 else v, v2, d) for cfg, v, v2, d in cur.rows]
    assert of(c.poll(), SettingChanged) == []


def test_changes_made_while_the_agent_was_down_are_reported_against_the_store() -> None:
    server = ase()
    known = SettingsCollector("CLINIC1", server.connect, clock=Clock()).poll()[0]
    assert isinstance(known, SettingsSnapshot)
    sp_configure(server, "max parallel degree", 4)
    restarted = SettingsCollector("CLINIC1", server.connect, known=known.values(), clock=Clock())
    events = restarted.poll()
    assert len(of(events, SettingsSnapshot)) == 1
    assert [(e.name, e.new_run) for e in of(events, SettingChanged)] == [("max parallel degree", "4")]


def test_join_leaves_out_sections_and_keeps_parameters_without_run_values() -> None:
    rows = [(7, "Parallel Query", 0, 0, None), (9, "Empty Section", 0, 0, None), (172, "max parallel degree", 7, 4, None),
            (300, "new in this EBF", 7, 5, None)]  # fmt: skip
    values = join_config(rows, [(172, 1, None)])
    assert sorted(values) == ["max parallel degree", "new in this EBF"]
    assert values["new in this EBF"].run is None and values["new in this EBF"].parallel


def test_diff_reports_parameters_that_appear_and_disappear() -> None:
    a = {"x": SettingValue("x", None, "1", "1", False)}
    b = {"y": SettingValue("y", "Parallel Query", "2", "2", True)}
    changes = diff_settings(a, b, 5.0, "sysconfigures")
    assert [(c.name, c.old_run, c.new_run) for c in changes] == [("x", "1", None), ("y", None, "2")]


def test_a_server_that_is_down_is_a_source_error_and_the_collector_reconnects() -> None:
    server = ase()
    c = SettingsCollector("CLINIC1", server.connect, clock=Clock())
    c.poll()
    server.restart()  # the connection dies with the server
    with pytest.raises(SourceError, match="Communication link failure"):
        c.poll()
    server.up = False
    with pytest.raises(SourceError, match="unavailable"):
        c.poll()
    server.up = True
    sp_configure(server, "max parallel degree", 4)
    assert [e.name for e in of(c.poll(), SettingChanged)] == ["max parallel degree"]
    assert server.connects == 2


# --------------------------------------------------------------------------- dump conditions


def test_dump_conditions_at_start_and_only_when_the_setup_changes() -> None:
    server = ase()
    c = SettingsCollector("CLINIC1", server.connect, clock=Clock())
    (cond,) = of(c.poll(), DumpConditions)
    assert cond.enabled is True and cond.error is None
    assert cond.types == ("signal", "timeslice") and cond.values == ("11", None)
    assert cond.max_dumps == (2, 1) and cond.directories == ("/sybase/dumps", "/sybase/dumps")
    columns, rows = server.procedures["sp_shmdumpconfig"][1]
    server.procedures["sp_shmdumpconfig"][1] = (columns, [(*rows[0][:3], 1, *rows[0][4:]), rows[1]])
    assert of(c.poll(), DumpConditions) == []  # a dump was taken: the count moved, the setup did not
    sp_configure(server, "dump on conditions", 0)
    (off,) = of(c.poll(), DumpConditions)
    assert off.enabled is False


def test_unreadable_dump_conditions_say_why_and_keep_the_connection() -> None:
    server = ase()
    del server.procedures["sp_shmdumpconfig"]
    c = SettingsCollector("CLINIC1", server.connect, clock=Clock())
    events = c.poll()
    (cond,) = of(events, DumpConditions)
    assert cond.error is not None and "Incorrect syntax" in cond.error and cond.types == ()
    assert len(of(events, SettingsSnapshot)) == 1
    c.poll()
    assert server.connects == 1


# --------------------------------------------------------------------------- the .cfg file

CFG = """\
##############################################################################
#
#                      Configuration File for the Sybase SQL Server
#
#                 Please read the System Administration Guide (SAG)
#                 before changing any of the values in this file.
#
##############################################################################


[Configuration Options]

[General Information]

[Backup/Recovery]
\trecovery interval in minutes = DEFAULT
\tprint recovery information = DEFAULT
\ttape retention in days = DEFAULT

[Named Cache:default data cache]
\tcache size = 2000M
\tcache status = default data cache
\tcache replacement policy = DEFAULT
\tlocal cache partition number = DEFAULT

[16K I/O Buffer Pool]
\tpool size = 200.0000M
\twash size = DEFAULT
\tlocal async prefetch limit = DEFAULT

[Named Cache:log cache]
\tcache size = 100M
\tcache status = log only
\tcache replacement policy = DEFAULT
\tlocal cache partition number = DEFAULT

[16K I/O Buffer Pool]
\tpool size = 50.0000M
\twash size = DEFAULT
\tlocal async prefetch limit = DEFAULT

[Parallel Query]
\tnumber of worker processes = 20
\tmemory per worker process = DEFAULT
\tmax parallel degree = 1
\tmax scan parallel degree = DEFAULT
\tmax repartition degree = DEFAULT
\tmax resource granularity = DEFAULT

[Physical Memory]
\tmax memory = 2097152
\tadditional network memory = DEFAULT
\tlock shared memory = DEFAULT

[Query Tuning]
\toptimization goal = allrows_oltp

[User Environment]
\tnumber of user connections = 200
"""


def test_cfg_file_in_the_real_format() -> None:
    values = parse_cfg(CFG)
    mpd = values["max parallel degree"]
    assert (mpd.section, mpd.configured, mpd.run, mpd.parallel) == ("Parallel Query", "1", None, True)
    assert values["max scan parallel degree"].configured == "DEFAULT"
    assert values["max repartition degree"].parallel and values["optimization goal"].parallel
    assert not values["max memory"].parallel and not values["recovery interval in minutes"].parallel
    # Named caches repeat their parameter names: each is kept, under its cache (and pool).
    assert values["Named Cache:default data cache / cache size"].configured == "2000M"
    assert values["Named Cache:log cache / cache status"].configured == "log only"
    assert values["Named Cache:log cache / 16K I/O Buffer Pool / pool size"].configured == "50.0000M"
    assert (
        values["Named Cache:default data cache / 16K I/O Buffer Pool / pool size"].configured == "200.0000M"
    )
    assert "cache size" not in values and len(values) == 28


_AGE = [1000.0]


def written(path: Path, text: str, *, fresh: bool = False) -> None:
    """Write ``path``; unless ``fresh``, date it in the past (a file that has settled)."""
    path.write_text(text)
    if not fresh:
        _AGE[0] -= 1.0  # every write gets its own mtime, as real writes do
        when = time.time() - _AGE[0]
        os.utime(path, (when, when))


def test_cfg_file_snapshot_then_one_change_per_edit(tmp_path: Path) -> None:
    cfg = tmp_path / "CLINIC1.cfg"
    written(cfg, CFG)
    c = SettingsCollector("CLINIC1", None, locate_cfg=lambda: cfg, clock=Clock())
    (snap,) = c.poll_cfg()
    assert isinstance(snap, SettingsSnapshot) and snap.source == "cfgfile" and snap.path == str(cfg)
    assert c.poll_cfg() == []  # not touched: not even read
    written(cfg, CFG.replace("max parallel degree = 1", "max parallel degree = 4")
            .replace("max scan parallel degree = DEFAULT", "max scan parallel degree = 2"))  # fmt: skip
    changes = c.poll_cfg()
    assert [(e.name, e.old_configured, e.new_configured, e.old_run, e.new_run, e.parallel, e.source)
            for e in changes if isinstance(e, SettingChanged)] == [
        ("max parallel degree", "1", "4", None, None, True, "cfgfile"),
        ("max scan parallel degree", "DEFAULT", "2", None, None, True, "cfgfile"),
    ]  # fmt: skip


def test_a_cfg_file_being_written_is_read_once_it_settles(tmp_path: Path) -> None:
    cfg = tmp_path / "CLINIC1.cfg"
    written(cfg, CFG, fresh=True)
    c = SettingsCollector("CLINIC1", None, locate_cfg=lambda: cfg, clock=Clock())
    assert c.poll_cfg() == []  # just written: wait one look
    (snap,) = c.poll_cfg()  # unchanged since: complete
    assert isinstance(snap, SettingsSnapshot)
    written(cfg, CFG[: CFG.index("max parallel degree")], fresh=True)  # the server is half way through
    assert c.poll_cfg() == []
    written(cfg, CFG.replace("max parallel degree = 1", "max parallel degree = 4"), fresh=True)
    assert c.poll_cfg() == []  # it moved again: still not settled
    assert [(e.name, e.new_configured) for e in c.poll_cfg() if isinstance(e, SettingChanged)] == [
        ("max parallel degree", "4")
    ]


def test_cfg_file_caught_mid_write_keeps_the_last_values(tmp_path: Path) -> None:
    cfg = tmp_path / "CLINIC1.cfg"
    written(cfg, CFG)
    c = SettingsCollector("CLINIC1", None, locate_cfg=lambda: cfg, clock=Clock())
    c.poll_cfg()
    written(cfg, "##############\n#\n")
    with pytest.raises(SourceError, match="no parameters"):
        c.poll_cfg()
    written(cfg, CFG)
    assert c.poll_cfg() == []  # not "every parameter gone, then back"
    cfg.unlink()
    with pytest.raises(SourceError, match="cannot read"):
        c.poll_cfg()
    unknown = SettingsCollector("CLINIC1", None, locate_cfg=lambda: None)
    with pytest.raises(SourceError, match="not known"):
        unknown.poll_cfg()


# --------------------------------------------------------------------------- the loop


def test_run_reports_failures_recovers_and_stops(tmp_path: Path) -> None:
    server = ase()
    server.up = False
    cfg = tmp_path / "CLINIC1.cfg"
    cfg.write_text(CFG)
    got: list[Event] = []
    lock = threading.Lock()

    def emit(events: Sequence[Event], positions: object) -> None:
        with lock:
            got.extend(events)

    c = SettingsCollector(
        "CLINIC1", server.connect, locate_cfg=lambda: cfg, poll_interval=0.05, cfg_poll_interval=0.05
    )
    stop = threading.Event()
    t = threading.Thread(target=c.run, args=(emit, stop), name="settings-test")
    t.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(e, CollectorFailed) and e.collector == "settings:CLINIC1" for e in got):
                    break
            time.sleep(0.01)
        server.up = True
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(e, SettingsSnapshot) and e.source == "sysconfigures" for e in got):
                    break
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(timeout=5)
    assert not t.is_alive()
    with lock:
        sources = {(type(e).__name__, getattr(e, "source", None)) for e in got}
        ok = {e.collector for e in got if isinstance(e, CollectorSucceeded)}
    assert ("SettingsSnapshot", "sysconfigures") in sources and ("SettingsSnapshot", "cfgfile") in sources
    assert ok == {"settings:CLINIC1", "cfgfile:CLINIC1"}
