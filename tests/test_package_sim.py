"""End to end: the agent records the incident on the simulated dataserver; the package tells it all.

A short incident (upgrade, feature flag on, ``max parallel degree`` 1 -> 4, the new
search crashes the server) runs on the simulated dataserver beside the agent
(in-process, real threads); the real settings and flags collectors read the server over
FreeTDS before the crash. The package built from that store must hold the crash joined
with the server's exit, the configuration and flags as they stood, the change, the dump
restorable byte for byte, and not one of the patients' personal identity numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pyodbc
import pytest

from collectors.flags import FlagsCollector
from collectors.settings import SettingsCollector
from monitor.package import build_package
from monitor.package_manifest import validate_manifest
from monitor.sim.control import SimServer
from monitor.store import Batch, Store
from tests.agent_helpers import agent_config, crash_rows, running_agent, wait_until
from tests.test_package_helpers import manifest_of, patients_of, personal_numbers_in, sha256sum_check

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVER = f"PE{os.getpid()}"
PROCEDURE = "p_brev_sok_central_utskrift"
SCENARIO = """
[scenario]
name = "package-e2e"
seed = 9
restart_delay = 0.5

[workload]
rate = 30.0
sessions = 10
error_every = 0.0

[flags]
brevutskrift_central_search = false

[config]
"max parallel degree" = 1

[crash]
procedure = "p_brev_sok_central_utskrift"
flag = "brevutskrift_central_search"
config = "max parallel degree"
above = 1

[[events]]
at = 1.0
kind = "deployment"
what = "IMX 7.1.0"
by = "imx_deploy"

[[events]]
at = 1.5
kind = "flag"
name = "brevutskrift_central_search"
value = true
by = "imx_forvaltning"

[[events]]
at = 2.0
kind = "config"
name = "max parallel degree"
value = 4
by = "sa"

[[calls]]
at = 1.0
procedure = "p_patient_get"
login = "usk_lena"

[[calls]]
at = 2.5
procedure = "p_journal_read"
login = "ssk_maria"

[[calls]]
at = 7.0
procedure = "p_brev_sok_central_utskrift"
login = "sekr_karin"
"""


def connector(sim: SimServer) -> Any:
    cs = sim.connection_string("asewatch")

    def connect() -> Any:
        conn = pyodbc.connect(cs, autocommit=True, timeout=5)
        conn.timeout = 5
        return conn

    return connect


def test_the_package_of_a_recorded_crash_tells_the_whole_story_and_no_patient(tmp_path: Path) -> None:
    if "FreeTDS" not in pyodbc.drivers():
        pytest.skip("the FreeTDS ODBC driver is not registered (apt-get install tdsodbc unixodbc)")
    scenario = tmp_path / "incident.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    state = tmp_path / "state"
    sim = SimServer(
        tmp_path / "sim", SERVER, scenario=scenario, dump_size=2 << 20, dump_seconds=0.1, tds_port=0
    )
    base = agent_config(state, SERVER, errorlog=sim.errorlog, run_file=sim.run_file)
    server = base.servers[0].model_copy(update={"dump_dirs": (sim.dump_dir,)})
    config = base.model_copy(update={"servers": (server,)})
    facts: list[Any] = []
    with running_agent(config, state):
        sim.start()
        try:
            sim.wait_for(lambda: sim.truth("config"), 20)  # max parallel degree is 4 now
            settings = SettingsCollector(SERVER, connector(sim))
            flags = FlagsCollector(SERVER, query="select name, value from imx..app_feature_flags",
                                   connect=connector(sim))  # fmt: skip
            try:
                facts += [*settings.poll(), *flags.poll()]
            finally:
                settings.close()
                flags.close()
            crash = sim.wait_for(lambda: next(iter(sim.truth("crash")), None), 30)
            dump = sim.wait_for(lambda: next(iter(sim.truth("dump")), None), 30)
            row = wait_until(
                lambda: next((r for r in crash_rows(state) if r.exit_pid == crash.pid and r.kind == "signal"), None),
                30, "the crash record joined with the server's exit",
            )  # fmt: skip
            sim.wait_boot(after=crash.pid, timeout=20)
        finally:
            sim.stop()
    with Store.open(state) as store:
        store.append(Batch(events=[(SERVER, e) for e in facts]))
        assert row.id is not None
        result = build_package(store, row.id, tmp_path / "out", config, case_number="SAP-0042")
    m = manifest_of(result.path)
    assert validate_manifest(m) == []
    c = m["crash"]
    assert (c["state"], c["server_terminated"], c["exit_pid"], c["procedure"]) == (
        "crashed",
        True,
        crash.pid,
        PROCEDURE,
    )
    assert (c["spid"], c["family"], c["login"]) == (crash["spid"], crash["family"], crash["login"])
    conf = m["configuration"]
    params = json.loads((result.path / conf["settings"]).read_text())["sysconfigures"]["parameters"]
    assert params["max parallel degree"]["run"] == "4"
    assert json.loads((result.path / conf["flags"]).read_text())["brevutskrift_central_search"] == "true"
    assert "signal 11" in conf["dump_conditions"].lower()
    assert conf["cfg_file"] == f"config/{SERVER}.cfg"  # the -c of the dataserver the agent saw
    assert "max parallel degree" in (result.path / conf["cfg_file"]).read_text(encoding="utf-8")
    changes = json.loads((result.path / conf["changes"]).read_text())
    change = next(r for r in changes if r["kind"] == "config" and r["what"] == "max parallel degree")
    assert (change["old"], change["new"], change["by"], change["after_crash"]) == ("1", "4", "sa", False)
    (d,) = m["dumps"]
    assert d["source_path"] == dump["path"] and d["original_bytes"] == dump["bytes"]
    unz = subprocess.run(
        ["zstd", "-d", "-c", str(result.path / d["name"])], capture_output=True, timeout=60, check=True
    )
    assert (
        hashlib.sha256(unz.stdout).hexdigest() == hashlib.sha256(Path(dump["path"]).read_bytes()).hexdigest()
    )
    patients = patients_of(sim.truth_path, Path(dump["path"]))
    assert len(patients) >= 3  # the calls' and the crash's SQL, and the statements in the dump
    assert personal_numbers_in(result.path, patients) == []
    assert sha256sum_check(result.path).returncode == 0
    assert m["vendor"]["case_number"] == "SAP-0042"
