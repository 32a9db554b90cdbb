"""The change collectors through the real pyodbc + FreeTDS driver against the simulated dataserver:
an sp_configure change (with who did it, from the errorlog), the flag switched on, the upgrade's
procedure changes, and `asewatch changes` showing them as one list."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyodbc
import pytest
from click.testing import CliRunner

from collectors.errorlog.parser import ErrorlogParser
from collectors.flags import FlagsCollector
from collectors.procedures import ProceduresCollector
from collectors.settings import SettingsCollector
from monitor.cli import cli
from monitor.events import ConfigChanged, Event
from monitor.events_changes import (
    DumpConditions,
    FlagChanged,
    ProcedureChanged,
    ProcedureChangeSummary,
    SettingChanged,
    SettingsSnapshot,
)
from monitor.ledger import ledger
from monitor.sim.control import SimServer
from monitor.store import Batch, Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BREV = "p_brev_sok_central_utskrift"
SERVER = f"CHG{os.getpid()}"  # unique: other tests' agents look for their own dataservers by name
FLAG = "brevutskrift_central_search"
SCENARIO = """
[scenario]
name = "changes"
description = "the incident's changes without its crashes: upgrade, flag on, max parallel degree 1 -> 4"
seed = 7
restart_delay = 1.0
end_after = 120.0

[workload]
rate = 5.0
sessions = 5
error_every = 0.0

[flags]
brevutskrift_central_search = false
e_recept_v2 = true

[config]
"max parallel degree" = 1

[[events]]
at = 4.0
kind = "deployment"
what = "IMX 7.1.0"
by = "imx_deploy"

[[events]]
at = 4.5
kind = "flag"
name = "brevutskrift_central_search"
value = true
by = "imx_forvaltning"

[[events]]
at = 5.0
kind = "config"
name = "max parallel degree"
value = 4
by = "sa"
"""


@pytest.fixture(autouse=True)
def _freetds() -> None:
    if "FreeTDS" not in pyodbc.drivers():
        pytest.skip("the FreeTDS ODBC driver is not registered (apt-get install tdsodbc unixodbc)")


def connector(sim: SimServer, user: str = "asewatch") -> Any:
    cs = sim.connection_string(user)

    def connect() -> Any:
        conn = pyodbc.connect(cs, autocommit=True, timeout=5)
        conn.timeout = 5
        return conn

    return connect


def cfg_settled(settings: SettingsCollector) -> list[Event]:
    """The .cfg events once the file has settled (a just-written file waits one look)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        first = settings.poll_cfg()
        if first:
            return first
        time.sleep(0.2)
        again = settings.poll_cfg()
        if again:
            return again
    raise AssertionError("the .cfg file never settled")


def errorlog_records(sim: SimServer) -> list[Event]:
    parser = ErrorlogParser()
    return [*parser.feed(sim.errorlog.read_bytes()), *parser.close()]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as s:
        yield s


def test_sp_configure_through_freetds_is_one_change_with_who_did_it(tmp_path: Path, store: Store) -> None:
    with SimServer(tmp_path / "sim", SERVER, rate=5.0) as sim:
        settings = SettingsCollector(SERVER, connector(sim), locate_cfg=lambda: sim.cfg)
        try:
            start = [*settings.poll(), *cfg_settled(settings)]
            snaps = {e.source: e for e in start if isinstance(e, SettingsSnapshot)}
            mpd = snaps["sysconfigures"].values()["max parallel degree"]
            assert (mpd.section, mpd.configured, mpd.run, mpd.parallel) == ("Parallel Query", "1", "1", True)
            assert snaps["cfgfile"].values()["max parallel degree"].configured == "1"
            assert snaps["sysconfigures"].values()["configuration file"].run == str(sim.cfg)
            (dumps,) = [e for e in start if isinstance(e, DumpConditions)]
            assert dumps.enabled is True and dumps.error is None
            assert dumps.types[:2] == ("Signal", "Timeslice") and dumps.values[0] == "11"
            assert dumps.directories[0] == str(sim.dump_dir)

            sa = connector(sim, "sa")()
            try:
                sa.cursor().execute("sp_configure 'max parallel degree', 4").fetchall()
            finally:
                sa.close()
            changes = [e for e in [*settings.poll(), *cfg_settled(settings)] if isinstance(e, SettingChanged)]
        finally:
            settings.close()
        assert sorted((c.source, c.name, c.old_configured, c.new_configured, c.old_run, c.new_run) for c in changes) == [
            ("cfgfile", "max parallel degree", "1", "4", None, None),
            ("sysconfigures", "max parallel degree", "1", "4", "1", "4"),
        ]  # fmt: skip
        logged = [e for e in errorlog_records(sim) if isinstance(e, ConfigChanged)]
    assert [(c.option, c.by, c.old, c.new) for c in logged] == [("max parallel degree", "sa", "1", "4")]
    store.append(Batch(events=[(SERVER, e) for e in [*start, *changes, *logged]]))
    with store.reader() as r:
        rows = [(x.kind, x.what, x.old, x.new, x.by, x.source) for x in ledger(r)]
    assert rows == [("config", "max parallel degree", "1", "4", "sa", "errorlog+sysconfigures+cfgfile")]


def test_the_incident_flag_switch_and_upgrade_through_freetds(tmp_path: Path, store: Store) -> None:
    scenario = tmp_path / "changes.toml"
    scenario.write_text(SCENARIO)
    with SimServer(tmp_path / "sim", SERVER, scenario=scenario) as sim:
        connect = connector(sim)
        flags = FlagsCollector(
            SERVER, query="select name, value from imx..app_feature_flags", connect=connect
        )
        procs = ProceduresCollector(SERVER, connect, ["imx"])
        settings = SettingsCollector(SERVER, connect)
        try:
            before = [*flags.poll(), *procs.poll()[0], *settings.poll()]
            assert sim.truth("deployment") == [], "the baseline must be taken before the upgrade"
            sim.wait_for(lambda: sim.truth("config") or None, timeout=20)
            deployed = sim.truth("deployment")[0]
            events, failures = procs.poll()
            after = [*flags.poll(), *events, *settings.poll()]
        finally:
            for c in (flags, procs, settings):
                c.close()
        logged = [e for e in errorlog_records(sim) if isinstance(e, ConfigChanged)]
    assert failures == []
    first = {(e.name, e.old, e.new) for e in before if isinstance(e, FlagChanged)}
    assert (FLAG, None, "false") in first
    assert [(e.name, e.old, e.new, e.source) for e in after if isinstance(e, FlagChanged)] == [
        (FLAG, "false", "true", "query")
    ]
    (summary,) = [e for e in after if isinstance(e, ProcedureChangeSummary)]
    per = {e.name: e for e in after if isinstance(e, ProcedureChanged)}
    assert summary.changed == 37 and summary.new == summary.dropped == 0 and len(per) == 37
    assert per[BREV].change == "changed" and per[BREV].parallel  # the upgrade brought `set parallel_degree 4`
    assert summary.names[0] == BREV and BREV in summary.describe()
    assert [(e.name, e.old_run, e.new_run) for e in after if isinstance(e, SettingChanged)] == [("max parallel degree", "1", "4")]  # fmt: skip

    # The operator records the deployment; `asewatch changes --json` shows the whole story.
    store.append(Batch(events=[(SERVER, e) for e in [*before, *after, *logged]]))
    state = str(store.path.parent)
    when = datetime.fromtimestamp(deployed.time).isoformat()
    runner = CliRunner()
    add = runner.invoke(cli, ["change", "add", "IMX 7.1.0", "--at", when, "--by", "imx_deploy", "--server", SERVER, "--state-dir", state])  # fmt: skip
    assert add.exit_code == 0, add.output
    out = runner.invoke(cli, ["changes", "--json", "--state-dir", state])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    kinds = [d["kind"] for d in doc]
    assert kinds.index("deployment") < kinds.index("procedures")
    assert {(d["kind"], d["what"], d["old"], d["new"]) for d in doc if d["kind"] == "flag" and d["old"] is not None} == {
        ("flag", FLAG, "false", "true")
    }  # fmt: skip
    assert [(d["what"], d["old"], d["new"], d["by"], d["source"]) for d in doc if d["kind"] == "config"] == [
        ("max parallel degree", "1", "4", "sa", "errorlog+sysconfigures")
    ]
    assert sum(d["kind"] == "procedure" for d in doc) == 37
