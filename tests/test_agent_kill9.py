"""``kill -9`` of the agent, again and again, while the dataserver crashes: nothing lost, nothing twice.

A short incident-shaped scenario (an upgrade switches a feature on, parallel query goes
to 4, five calls of the buggy procedure crash the server, the workaround, calm, a polite
shutdown at the end) runs on the simulated dataserver, with ``asewatch agent -c`` as a
subprocess. The test SIGKILLs the agent at nine moments, some random and some aimed with
the sim's truth file and the store: in the background workload, just after a crash block
was written (dump still being written), at the supervisor's exit line, just after the
agent started again (resume and catch-up running), at the moment the crash's exit is
stored (its block perhaps not yet; the agent then stays down past the unclean grace), during
a boot, and just before the final shutdown (it restarts after the server is gone). Each
time it restarts the agent with the same config and store.

At the end every crash in the truth file is exactly one crash record joined with its
exit, the errorlog records in the store are exactly those an offline ``asewatch errorlog
--json`` finds in the final errorlog (the ground truth for records), and the stored
errorlog position is the end of the file.

Not covered, on purpose: a whole dataserver lifetime (start to crash) while the agent
is down. Its exit cannot be observed, so that crash's record has no exit to join.
The kill schedule keeps every downtime shorter than a lifetime.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from monitor.sim.control import SimServer
from monitor.sim.truth import TruthRecord
from tests.agent_helpers import (
    GRACE_S,
    AgentProcess,
    count_events,
    crash_rows,
    errorlog_offset,
    run_cli,
    server_name,
    wait_until,
    write_agent_toml,
    write_scenario,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

END_AFTER = 44.0
SCENARIO = f"""\
[scenario]
name = "kill9"
description = "incident-shaped: 5 crashes in p_brev_sok_central_utskrift, then the workaround"
seed = 20240315
restart_delay = 1.0
end_after = {END_AFTER}

[workload]
rate = 40.0
sessions = 20
error_every = 1.5

[flags]
brevutskrift_central_search = false
journal_snabbsok = true

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
at = 2.0
kind = "flag"
name = "brevutskrift_central_search"
value = true
by = "imx_forvaltning"

[[events]]
at = 3.0
kind = "config"
name = "max parallel degree"
value = 4
by = "sa"

[[calls]]
at = 6.0
procedure = "p_brev_sok_central_utskrift"
login = "sekr_karin"

[[calls]]
at = 12.0
procedure = "p_brev_sok_central_utskrift"
login = "usk_lena"

[[calls]]
at = 18.0
procedure = "p_brev_sok_central_utskrift"
login = "sekr_karin"

[[calls]]
at = 27.0
procedure = "p_brev_sok_central_utskrift"
login = "ssk_maria"

[[calls]]
at = 33.0
procedure = "p_brev_sok_central_utskrift"
login = "sekr_karin"

[[events]]
at = 36.0
kind = "config"
name = "max parallel degree"
value = 1
by = "sa"

[[calls]]
at = 38.0
procedure = "p_brev_sok_central_utskrift"
login = "usk_lena"

[[calls]]
at = 40.0
procedure = "p_brev_sok_central_utskrift"
login = "ssk_maria"
"""


def log_time(record: TruthRecord) -> datetime:
    return datetime.strptime(record["log_time"], "%Y/%m/%d %H:%M:%S.%f")


def stored_facts(db: Path, crash: TruthRecord) -> set[str]:
    """Which facts of this crash the store holds: its exit, its crash block (read-only, cheap)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT kind, payload FROM events WHERE kind IN ('ProcessExited', 'CrashBlock')"
        ).fetchall()
    finally:
        conn.close()
    out: set[str] = set()
    for kind, payload in rows:
        doc = json.loads(payload)
        if kind == "ProcessExited" and doc["pid"] == crash.pid:
            out.add("exit")
        elif kind == "CrashBlock" and doc["spid"] == crash["spid"] and doc["kpid"] == crash["kpid"]:
            out.add("block")
    return out


class Run:
    """The sim, the agent subprocess and the kill log of one run."""

    def __init__(self, tmp: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.server = server_name("k9")
        self.sim = SimServer(
            tmp / "sim", name=self.server, scenario=write_scenario(tmp, SCENARIO),
            dump_size=1024 * 1024, dump_seconds=0.4, seed=seed % 1000,
        )  # fmt: skip
        self.state = tmp / "state"
        config = write_agent_toml(
            tmp / "asewatch.toml",
            self.state,
            self.server,
            errorlog=self.sim.errorlog,
            run_file=self.sim.run_file,
            quiet_period=1.0,  # a block is held ~1 s, the exit comes after the 0.4 s dump: room to aim
        )
        self.agent = AgentProcess(config, tmp / "agent.log")
        self.kills: list[str] = []
        self.t0 = 0.0

    def st(self) -> float:
        return time.monotonic() - self.t0

    def about(self) -> str:
        """What a failure message needs: the seed, the kills and the agent's log tail."""
        return (
            f"seed {self.seed} (ASEWATCH_KILL9_SEED={self.seed} reproduces the schedule); "
            f"kills: {self.kills}\nagent log tail:\n{self.agent.log_text()[-4000:]}"
        )

    def kill(self, why: str, down: float) -> None:
        """SIGKILL the agent, stay down ``down`` seconds, start it again."""
        self.agent.kill9()
        self.kills.append(f"{self.st():.1f}s {why} (down {down:.1f}s)")
        time.sleep(down)
        self.agent.start()

    def truth(self, kind: str, n: int, timeout: float = 20.0) -> TruthRecord:
        """The n-th truth line of ``kind`` (waits for it)."""
        return wait_until(
            lambda: len(rs := self.sim.truth(kind)) >= n and rs[n - 1], timeout, f"truth {kind} #{n}", 0.01
        )

    def at(self, second: float) -> None:
        time.sleep(max(0.0, second - self.st()))


def test_kill9_again_and_again_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("ASEWATCH_KILL9_SEED") or random.SystemRandom().randrange(2**31))
    run = Run(tmp_path, seed)
    rng, sim, agent = run.rng, run.sim, run.agent
    try:
        agent.start()
        agent.metrics_url()
        run.t0 = time.monotonic()
        sim.start()

        run.at(rng.uniform(1.5, 4.5))
        run.kill("background workload, timeline events", rng.uniform(0.1, 1.0))

        run.truth("crash", 1)
        time.sleep(rng.uniform(0.0, 0.3))
        run.kill("crash 1: block written, dump being written", rng.uniform(0.5, 2.0))

        run.truth("exit", 2)
        run.kill("crash 2: the supervisor saw the exit", rng.uniform(0.2, 1.5))
        agent.metrics_url()
        time.sleep(rng.uniform(0.0, 0.3))
        run.kill("just after the agent started: resume and catch-up", 0.3)

        crash3 = run.truth("crash", 3)
        db = run.state / "asewatch.db"
        wait_until(lambda: "exit" in stored_facts(db, crash3), 5, "crash 3's exit is stored", 0.01)
        caught = "block stored too" if "block" in stored_facts(db, crash3) else "block not yet stored"
        run.kill(f"crash 3: exit stored, {caught}; down past the grace", GRACE_S + 1.5)

        run.truth("boot", 5)
        time.sleep(rng.uniform(0.0, 0.5))
        run.kill("crash 4: during the boot after it", 0.5)

        run.truth("crash", 5)
        run.kill("crash 5: block written, dump being written", rng.uniform(0.5, 2.0))

        run.at(rng.uniform(36.5, 41.5))
        run.kill("calm after the workaround", 0.5)

        run.at(END_AFTER - 0.3)
        agent.kill9()
        run.kills.append(f"{run.st():.1f}s just before the final shutdown (down until the sim stopped)")
        wait_until(lambda: not sim.running(), 20, "the supervisor stops at the scenario's end")
        agent.start()

        # Settle: the whole errorlog read, and every exit decided (grace) after the last restart.
        size = sim.errorlog.stat().st_size
        wait_until(lambda: errorlog_offset(run.state, run.server) == size, 20, "the errorlog read to its end")
        time.sleep(GRACE_S + 1.5)
        stopped = agent.terminate(timeout=10.0)
        assert stopped.returncode == 0, run.about()
    finally:
        agent.stop()
        sim.stop()

    about = run.about()
    truth_crashes = sim.truth("crash")
    assert len(truth_crashes) == 5, about
    rows = crash_rows(run.state)
    summary = [(r.key, r.kind, r.time, r.spid, r.exit_pid, r.state) for r in rows]

    # Every crash in the truth file is exactly one record, joined with its exit; nothing else.
    assert len(rows) == len(truth_crashes), f"{summary}\n{about}"
    dupes = [k for k, n in Counter((r.time, r.spid) for r in rows).items() if n > 1]
    assert not dupes, f"{summary}\n{about}"
    for t in truth_crashes:
        mine = [r for r in rows if r.time == log_time(t) and r.spid == t["spid"]]
        assert len(mine) == 1, f"crash of pid {t.pid} at {t['log_time']}: {summary}\n{about}"
        r = mine[0]
        assert (r.kind, r.signal, r.state, r.exit_pid) == ("signal", 11, "crashed", t.pid), (
            f"{summary}\n{about}"
        )
        assert (r.login, r.procedure) == (t["login"], t["procedure"]), about

    # The errorlog records: what an offline analysis of the final file finds, each once.
    offline = run_cli("errorlog", "--json", str(sim.errorlog))
    assert offline.returncode == 0, offline.stderr
    report = json.loads(offline.stdout)
    errors = sum(e["count"] for e in report["errors"])
    assert errors == len(sim.truth("error")) > 0, about
    assert count_events(run.state, "ErrorlogError") == errors, about
    assert len(report["config_changes"]) == len(sim.truth("config")) == 2, about
    assert count_events(run.state, "ConfigChanged") == 2, about
    assert count_events(run.state, "CrashBlock") == len(report["crashes"]) == 5, about
    assert count_events(run.state, "ServerBooted") == len(report["boots"]) == len(sim.truth("boot")), about

    # The resume point is the end of the file.
    assert errorlog_offset(run.state, run.server) == sim.errorlog.stat().st_size, about
