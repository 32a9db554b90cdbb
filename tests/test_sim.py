"""The simulated dataserver: a real process, a real-format errorlog, real crashes and restarts.

Every test starts the sim through SimServer (a context manager that stops everything it
started by PID, with bounded waits) and checks what a DBA and asewatch rely on: the
process looks like a dataserver, the errorlog has ASE's exact format, a crash leaves a
complete block, a dump of the configured size and a SIGSEGV exit, the supervisor
restarts after crashes and kills but not after a shutdown, and the truth file says
what happened.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from monitor.errors import InputError
from monitor.sim.control import SimServer
from monitor.sim.crash import begin_crashing_call, causing_sql
from monitor.sim.crashblock import CrashContext, render
from monitor.sim.layout import read_cfg, read_run_file
from monitor.sim.scenario import Scenario, incident_path, load_scenario, loads_scenario
from monitor.sim.state import SimState
from monitor.sim.tds.catalog import objects
from monitor.sim.workload import (
    BATCH_PROCEDURE,
    CATALOG,
    CRASH_INNER_SQL,
    CRASH_LINE,
    CRASH_PROCEDURE,
    CRASH_STATEMENT,
    PROCEDURES,
    Topology,
    Workload,
    luhn_digit,
)

pytestmark = pytest.mark.integration

PREFIX = re.compile(
    r"^(?:(\d{2}):)?(\d{2,4}):(\d{5}):(\d{5}):(\d{4}/\d{2}/\d{2}) (\d{2}:\d{2}:\d{2}\.\d{2}) (kernel|server)\s+(.*)$"
)
PNR = re.compile(r"'(\d{8})-(\d{4})'")
MIB = 1024 * 1024
CULPRIT = CRASH_PROCEDURE.name

SHORT = """
[scenario]
name = "short"
restart_delay = 0.3

[workload]
rate = 200
sessions = 12
error_every = 0.7

[flags]
brevutskrift_central_search = false

[crash]
procedure = "p_brev_sok_central_utskrift"
flag = "brevutskrift_central_search"
config = "max parallel degree"
above = 1

[[events]]
at = 0.3
kind = "deployment"
what = "IMX 7.1.0"

[[events]]
at = 0.5
kind = "flag"
name = "brevutskrift_central_search"
value = true

[[events]]
at = 0.7
kind = "config"
name = "max parallel degree"
value = 4

# The nightly batch: its own login and program, several statements of a heavy procedure.
[[calls]]
at = 1.2
procedure = "p_brev_batch_nattkorning"
login = "imx_batch"
program = "IMX Batch"
statements = 5

[[calls]]
at = 1.5
procedure = "p_brev_sok_central_utskrift"
login = "sekr_karin"

# Both fall into the downtime after the crash (the crash path blocks the loop).
[[events]]
at = 1.55
kind = "config"
name = "max scan parallel degree"
value = 2

[[calls]]
at = 1.6
procedure = "p_patient_get"
"""


def records(log: Path) -> list[tuple[tuple[str, ...], list[str]]]:
    """Errorlog records: (prefix groups, [message, continuation lines...])."""
    out: list[tuple[tuple[str, ...], list[str]]] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        m = PREFIX.match(line)
        if m:
            out.append((m.groups(), [m.group(8)]))
        else:
            assert out, f"continuation line before any record: {line!r}"
            out[-1][1].append(line)
    return out


def crash_blocks(log: Path) -> list[list[tuple[tuple[str, ...], list[str]]]]:
    """The records from each 'Current process' line to its 'end of stack trace' (inclusive)."""
    blocks, current = [], None
    for rec in records(log):
        msg = rec[1][0]
        if msg.startswith("Current process ("):
            current = []
        if current is not None:
            current.append(rec)
            if msg.startswith("end of stack trace"):
                blocks.append(current)
                current = None
    return blocks


def frames(block: list[tuple[tuple[str, ...], list[str]]]) -> tuple[list[str], list[str]]:
    """(function names, addresses+offsets) of the pc: lines."""
    names, where = [], []
    for _, msg in block:
        m = re.match(r"pc: (0x[0-9a-f]{16}) (.+)\+(0x[0-9a-f]+)\(\)$", msg[0])
        if m:
            names.append(m.group(2))
            where.append(f"{m.group(1)}+{m.group(3)}")
    return names, where


def assert_gone(sim: SimServer) -> None:
    """No dataserver or engine process of this sim is left (zombies of others do not count)."""
    pids = {r.pid for r in sim.truth() if r.source == "dataserver"}
    for r in sim.truth("boot"):
        pids.update(r.get("engine_pids", []))
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    assert alive == []


@pytest.fixture
def short_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "short.toml"
    path.write_text(SHORT, encoding="utf-8")
    return path


def test_process_looks_like_a_dataserver(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "w", name="CLINIC1")
    with sim:
        pid = sim.pid()
        assert pid is not None
        proc = psutil.Process(pid)
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "dataserver"
        cmd = proc.cmdline()
        assert cmd[1] == str(tmp_path / "w" / "bin" / "dataserver")
        assert "-sCLINIC1" in cmd
        assert f"-e{sim.errorlog}" in cmd
        assert f"-c{sim.cfg}" in cmd
        assert f"-M{sim.workdir}" in cmd
        # The RUN file holds the command the supervisor ran (it adds only --t0).
        run = read_run_file(sim.run_file)
        assert cmd[1 : 1 + len(run)] == run
        assert cmd[1 + len(run)] == "--t0"
        assert (sim.workdir / "CLINIC1.krg").exists()
        assert read_cfg(sim.cfg)["max parallel degree"] == "1"
    assert_gone(sim)


def test_scenario_crash_restart_and_truth(tmp_path: Path, short_scenario: Path) -> None:
    sim = SimServer(tmp_path / "w", scenario=short_scenario, dump_size=MIB)
    with sim:
        first = sim.pid()
        second = sim.wait_boot(after=first, timeout=15)
        assert second != first
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
        sim.wait_for(lambda: [r for r in sim.truth("error") if r.pid == second], timeout=10)
        assert read_cfg(sim.cfg)["max parallel degree"] == "4"
        assert '"brevutskrift_central_search": true' in sim.flags_path.read_text()
    assert_gone(sim)

    text = sim.errorlog.read_text(encoding="utf-8")
    assert text.endswith("\n")
    recs = records(sim.errorlog)
    # Every unprefixed line continues a multi-line SQL text.
    for _, lines in recs:
        if len(lines) > 1:
            assert lines[0].startswith(("SQL Text: ", "SQL causing error : "))
    msgs = [lines[0] for _, lines in recs]
    assert "The configuration option 'max parallel degree' has been changed by 'sa' from '1' to '4'." in msgs
    assert any(m.startswith("Adaptive Server Enterprise/16.0 SP04 PL03/EBF ") for m in msgs)
    assert "Error: 1608, Severity: 18, State: 4" in msgs

    (block,) = crash_blocks(sim.errorlog)
    prefixes = {groups[:6] for groups, _ in block}
    assert len(prefixes) == 1, "every line of a crash block carries the crashing task's prefix"
    _, thread, family, spid, day, clock = prefixes.pop()
    (crash,) = sim.truth("crash")
    assert crash["log_time"] == f"{day} {clock}"
    assert (int(thread), int(family), int(spid)) == (crash["thread"], crash["family"], crash["spid"])
    assert int(family) != 0 and int(spid) != int(family)
    assert crash["procedure"] == "p_brev_sok_central_utskrift"
    assert crash["login"] == "sekr_karin"
    body = [lines[0] for _, lines in block]
    assert body[0] == f"Current process (0x{crash['kpid']:x}) infected with signal 11 (SIGSEGV)"
    # The statement inside the procedure caused the error; the batch (SQL Text) names the procedure.
    assert crash["causing_sql"] == CRASH_INNER_SQL and crash["sql"].startswith(f"exec {CULPRIT} ")
    causing = next(lines for _, lines in block if lines[0].startswith("SQL causing error : "))
    assert "\n".join(causing) == f"SQL causing error : {CRASH_INNER_SQL}"
    assert f"SQL Text: {crash['sql']}" in body
    assert body[-1] == f"end of stack trace, spid {crash['spid']}, kpid {crash['kpid']}, suid {crash['suid']}"
    assert f"extended error information: hostname: {crash['host']} login: sekr_karin" in body
    for date, tail in PNR.findall(crash["sql"]):
        assert int(tail[-1]) == luhn_digit(date[2:] + tail[:3]), "personal numbers carry a valid check digit"

    # The restart's boot lines follow the crash block.
    after = msgs[msgs.index(body[-1]) + 1]
    assert after.startswith("SySAM: Using licenses from:")

    dump = Path(crash["dump_path"])
    assert dump.parent == sim.dump_dir
    assert dump.stat().st_size == MIB
    (dumped,) = sim.truth("dump")
    assert dumped["complete"] is True and dumped["bytes"] == MIB

    kinds = [r.kind for r in sim.truth()]
    assert kinds[:2] == ["supervisor_start", "boot"]
    for kind in ("deployment", "flag", "config", "crash", "dump"):
        assert kind in kinds
    (deploy,) = sim.truth("deployment")
    assert deploy["what"] == "IMX 7.1.0"
    exits = sim.truth("exit")
    assert exits[0]["dataserver_pid"] == first
    assert (exits[0]["returncode"], exits[0]["signal"]) == (-11, 11)
    assert exits[-1]["stopped_by"] == "sigterm" and exits[-1]["returncode"] == 0
    # The restarted incarnation continued the timeline: every event applied once; the one that
    # fell into the downtime was applied at its boot, the call then was missed.
    assert [r.get("event") for r in sim.truth() if "event" in r.fields] == [0, 1, 2, 3]
    late = sim.truth("config")[-1]
    assert (late["name"], late.pid) == ("max scan parallel degree", second)
    assert late.st > late["at"]
    batch, missed = sim.truth("call")
    assert (missed["procedure"], missed["outcome"], missed.pid) == ("p_patient_get", "missed", second)
    assert (batch["procedure"], batch["outcome"], batch.pid) == ("p_brev_batch_nattkorning", "ok", first)
    assert (batch["login"], batch["program"], batch["statements"]) == ("imx_batch", "IMX Batch", 5)
    assert read_cfg(sim.cfg)["max scan parallel degree"] == "2"


def test_sigterm_gives_polite_shutdown_and_no_restart(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "w")
    with sim:
        pid = sim.shutdown()
        sim.wait_for(lambda: sim.returncode() is not None, timeout=10)
        assert sim.returncode() == 0
        assert [r.pid for r in sim.truth("boot")] == [pid]
    assert_gone(sim)
    tail = [(g[1], g[3], g[6], lines[0]) for g, lines in records(sim.errorlog)[-6:]]
    assert [t[3] for t in tail] == [
        "Shutdown started by user 'sa'. SQL text: shutdown",
        "ASE shutdown by request.",
        "ueshutdown: exiting",
        "Main thread performing final shutdown.",
        "Blocking call queue shutdown.",
        "SySAM: Checked in license for 1 ASE_CORE",
    ]
    assert [t[2] for t in tail] == ["server", "server", "kernel", "kernel", "kernel", "kernel"]
    assert tail[0][1] != "00000" and tail[3][:2] == ("0000", "00000")
    assert [r.kind for r in sim.truth()][-3:] == ["shutdown", "exit", "supervisor_stop"]
    assert sim.truth("supervisor_stop")[0]["reason"] == "shutdown"
    assert not (sim.workdir / "CLINIC1.krg").exists()
    assert sim.pid() is None


def test_sigkill_writes_nothing_and_is_restarted(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "w", restart_delay=0.2)
    with sim:
        old = sim.kill()
        new = sim.wait_boot(after=old, timeout=10)
        assert new != old
        exit_rec = sim.wait_for(lambda: sim.truth("exit"), timeout=5)[0]
        assert (exit_rec["dataserver_pid"], exit_rec["signal"]) == (old, 9)
        msgs = [lines[0] for _, lines in records(sim.errorlog)]
        assert not any(m.startswith("Shutdown started") for m in msgs)
        assert sum(m.startswith("SySAM: Checked out license") for m in msgs) == 2
    assert_gone(sim)
    assert [r.kind for r in sim.truth()].count("crash") == 0


def test_crashes_vary_addresses_but_not_function_names(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "w", restart_delay=0.2, dump_size=256 * 1024)
    with sim:
        first = sim.crash_now()
        second = sim.wait_boot(after=first, timeout=15)
        sim.crash_now()
        sim.wait_for(lambda: len(sim.truth("boot")) == 3, timeout=15)
    assert_gone(sim)
    one, two = crash_blocks(sim.errorlog)
    names1, where1 = frames(one)
    names2, where2 = frames(two)
    assert names1 == names2
    assert names1[:5] == ["pcstkwalk", "ucstkgentrace", "ucbacktrace", "terminate_process", "kisignal"]
    assert names1[5] == "LeXchgOp::_LeOpNext(ExeCtxt&)"
    assert where1 != where2
    addr1, addr2 = (next(m[0] for _, m in b if m[0].startswith("Address 0x0x")) for b in (one, two))
    assert addr1 != addr2
    crashes = sim.truth("crash")
    assert [c["trigger"] for c in crashes] == ["signal", "signal"]
    assert crashes[1]["frames"] == crashes[0]["frames"]
    assert [e["signal"] for e in sim.truth("exit")][:2] == [11, 11]
    assert second in {c.pid for c in crashes}
    for c in crashes:
        assert Path(c["dump_path"]).stat().st_size == 256 * 1024


def test_unsupervised_crash_dies_by_sigsegv_mid_dump(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "w", supervise=False, dump_size=MIB, dump_truncate=0.5)
    with sim:
        sim.crash_now()
        sim.wait_for(lambda: sim.returncode() is not None, timeout=10)
        assert sim.returncode() == -11
    (dump,) = sim.truth("dump")
    assert dump["complete"] is False
    assert Path(dump["path"]).stat().st_size == MIB // 2
    assert crash_blocks(sim.errorlog)[0][-1][1][0].startswith("end of stack trace")


def test_process_mode_engines_follow_engine_zero(tmp_path: Path) -> None:
    sim = SimServer(tmp_path / "w", engines=3, restart_delay=0.2)
    with sim:
        pid = sim.pid()
        assert pid is not None
        children = psutil.Process(pid).children()
        assert len(children) == 2
        for child in children:
            assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "dataserver"
            assert child.cmdline()[2:4] in (["-ONLINE:1", "-sCLINIC1"], ["-ONLINE:2", "-sCLINIC1"])
        sim.kill()
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        sim.wait_boot(after=pid, timeout=10)
    assert_gone(sim)
    msgs = [lines[0] for _, lines in records(sim.errorlog)]
    assert f"engine 0, os pid {pid}  online" in msgs


def test_incident_scenario_yields_five_crashes_then_calm() -> None:
    sc = load_scenario(incident_path())
    plan = sc.plan()
    outcomes = [c.outcome for c in plan]
    assert outcomes.count("crash") == 5
    assert "missed" not in outcomes
    last_crash = max(c.at for c in plan if c.outcome == "crash")
    calm = [c for c in plan if c.at > last_crash]
    assert calm and all(c.outcome == "ok" for c in calm)
    assert sum(c.procedure == "p_brev_sok_central_utskrift" for c in calm) == 3
    assert {c.procedure for c in plan if c.outcome == "crash"} == {"p_brev_sok_central_utskrift"}
    assert sc.end_after is not None and sc.end_after <= 90
    deploy = [e for e in sc.events if e.kind == "deployment"]
    assert [e.name for e in deploy] == ["IMX 7.1.0"]
    changes = [(e.at, e.value) for e in sc.events if e.kind == "config" and e.name == "max parallel degree"]
    assert [v for _, v in changes] == ["4", "1"]
    workaround = changes[-1][0]
    assert last_crash < workaround < calm[0].at
    flags, config = sc.state_at(workaround + 0.1)
    assert flags["brevutskrift_central_search"] is True and config["max parallel degree"] == "1"
    flags, config = sc.state_at(deploy[0].at - 0.1)
    assert flags["brevutskrift_central_search"] is False and config["max parallel degree"] == "1"


def test_the_incident_makes_the_ranking_earn_its_answer() -> None:
    """The harder incident of issue 9, from its plan: the statement inside the procedure in four
    of five crash blocks, a batch near some crashes (and at other times), an innocent flag
    switched on first, the culprit only in scheduled calls, a frequent innocent procedure."""
    sc = load_scenario(incident_path())
    plan = sc.plan()
    crashes = [c for c in plan if c.outcome == "crash"]
    at = [c.at for c in crashes]
    assert [causing_sql(c.call) for c in crashes].count(CRASH_INNER_SQL) == 4  # one shows the exec
    on = {e.name: e.at for e in sc.events if e.kind == "flag" and e.value is True}
    deployed = next(e.at for e in sc.events if e.kind == "deployment")
    # The innocent flag first: no culprit call between the two switches, so only the order tells.
    assert on["lab_svar_push"] < deployed < on["brevutskrift_central_search"] < at[0]
    assert not [c for c in sc.calls if c.procedure == CULPRIT and c.at < on["brevutskrift_central_search"]]
    assert sc.state_at(sc.end_after or 90)[0]["lab_svar_push"] is True  # it stays on
    batch = [c for c in sc.calls if c.procedure == BATCH_PROCEDURE.name]
    assert all((c.login, c.program) == ("imx_batch", "IMX Batch") and c.statements > 1 for c in batch)
    assert {i for i, t in enumerate(at) if any(0 < t - b.at <= 5 for b in batch)} == {1, 2}  # crashes 2, 3
    assert sum(all(abs(b.at - t) > 5 for t in at) for b in batch) >= 2  # and at times with no crash
    assert BATCH_PROCEDURE.reads[0] > max(p.reads[1] for p in CATALOG)  # heavy
    # The culprit and the batch never run in the background: only their scheduled calls.
    assert {CULPRIT, BATCH_PROCEDURE.name}.isdisjoint(p.name for p in CATALOG)
    assert [c.outcome for c in plan if c.procedure == CULPRIT] == ["crash"] * 5 + ["ok"] * 3
    # The frequent innocent procedure also runs on the searching user's own task before each search.
    assert {c.before for c in sc.calls if c.procedure == CULPRIT} == {("p_patient_get",)}
    patient = next(p for p in CATALOG if p.name == "p_patient_get")
    assert sc.rate * patient.weight / sum(p.weight for p in CATALOG) >= 10  # calls per second


def _workload(sc: Scenario, seed: int = 7) -> Workload:
    state = SimState("CLINIC1", sc.version, sc.flags, {**sc.config, "max parallel degree": "4"})
    return Workload(state, random.Random(seed), Topology(sc.engines, process_mode=False), sc.sessions)


def test_background_runs_p_patient_get_every_second_and_never_the_culprit() -> None:
    sc = load_scenario(incident_path())
    wl = _workload(sc)
    pos = 0
    for _ in range(30):  # thirty seconds of background at the incident's rate, one tick a second
        wl.background(int(sc.rate))
        pos, rows = wl.state.pipe_read(pos)
        names = {r.procedure for r in rows}
        assert "p_patient_get" in names
        assert CULPRIT not in names and BATCH_PROCEDURE.name not in names


def test_the_crashing_family_names_the_procedure_in_its_statements() -> None:
    """The block may show only the select, but the parent's finished statements (monSysStatement)
    and every worker's executing one name the procedure."""
    sc = load_scenario(incident_path())
    wl = _workload(sc)
    wl.background(50)
    call = next(c for c in sc.calls if c.procedure == CULPRIT)
    mark = wl.state.next_seq()  # every statement the call makes comes after this
    proc, parent, sql, workers = begin_crashing_call(wl, call, 4)
    assert proc is CRASH_PROCEDURE and parent.login == call.login and sql.startswith(f"exec {CULPRIT} ")
    body = [
        r
        for r in wl.state.since(0)
        if (r.spid, r.kpid) == (parent.spid, parent.kpid) and r.procedure == CULPRIT
    ]
    assert [r.statement_number for r in body] == list(range(1, CRASH_STATEMENT))
    assert all(r.end is not None and r.line < CRASH_LINE and r.sql == sql for r in body)
    assert all(a.end is not None and a.end <= b.start + 1e-6 for a, b in itertools.pairwise(body))
    # The user opened the patient first, on the same task, in the seconds before the search.
    [opened] = [r for r in wl.state.since(mark) if r.spid == parent.spid and r.procedure == "p_patient_get"]
    assert opened.kpid == parent.kpid and opened.batch_id != body[0].batch_id
    assert opened.end is not None and 0.3 <= body[0].start - opened.end <= 1.5 + 1e-6
    # The batch's text is in the text pipe once (monSysSQLText), not once per statement.
    texts = [t for t in wl.state.text_since(0) if (t.spid, t.batch_id) == (parent.spid, body[0].batch_id)]
    assert [t.sequence for t in texts] == [1] and sql.startswith(texts[0].text)
    active = {r.spid: r for r in wl.state.active()}
    assert (active[parent.spid].procedure, active[parent.spid].line) == (CULPRIT, CRASH_LINE)
    assert len(workers) == 4
    for w in workers:
        assert w.family == parent.spid and w.spid != parent.spid
        run = active[w.spid]
        assert (run.kpid, run.procedure, run.sql, run.end) == (w.kpid, CULPRIT, CRASH_INNER_SQL, None)


def test_a_scheduled_batch_call_runs_as_its_login_and_program() -> None:
    sc = load_scenario(incident_path())
    wl = _workload(sc)
    session = wl.user_session("imx_batch", "Nattbatch")
    assert (session.login, session.program) == ("imx_batch", "Nattbatch")
    assert wl.user_session("imx_batch", "Nattbatch") == session  # the same connection next time
    wl.run_body(BATCH_PROCEDURE, session, wl.sql(BATCH_PROCEDURE), 6)
    rows = [r for r in wl.state.since(0) if r.spid == session.spid]
    assert [r.statement_number for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {(r.procedure, r.login, r.program) for r in rows} == {
        (BATCH_PROCEDURE.name, "imx_batch", "Nattbatch")
    }
    assert sum(r.logical_reads for r in rows) >= 6 * BATCH_PROCEDURE.reads[0]


def test_every_procedure_the_sim_runs_resolves_to_its_name() -> None:
    """monSysStatement carries ProcedureID only: each must name its own procedure in sysobjects."""
    by_id = {o.id: o.name for db in ("imx_prod", "imx_audit") for o in objects(db, ()) if o.type == "P "}
    assert {p.proc_id: by_id.get(p.proc_id) for p in PROCEDURES.values()} == {
        p.proc_id: p.name for p in PROCEDURES.values()
    }


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("statements", "0", "calls[0].statements: must be an integer 1-1000"),
        ("statements", "true", "calls[0].statements: must be an integer"),
        ("causing", '"sql"', "calls[0].causing: must be 'inside' or 'exec'"),
        ("program", '""', "calls[0].program: must be a non-empty string"),
        ("login", "3", "calls[0].login: must be a non-empty string"),
        ("before", '"p_patient_get"', "calls[0].before: must be a list of up to 10 procedure names"),
        ("before", '["p", ""]', "calls[0].before: must be a list"),
    ],
)
def test_bad_scheduled_call_names_the_key(key: str, value: str, error: str) -> None:
    with pytest.raises(InputError, match=re.escape(error)):
        loads_scenario(f'[[calls]]\nat = 1\nprocedure = "p"\n{key} = {value}\n', "bad.toml")


def test_the_crash_block_shows_the_statement_inside_the_procedure() -> None:
    ctx = CrashContext(
        spid=210, kpid=1966089, family=44, suid=1501, login="sekr_karin", host="ws-avd12-034",
        program="IMX Klient", curdb=4, sql="exec p_brev_sok_central_utskrift @avd = 4",
        inner_sql=CRASH_INNER_SQL, statement_number=14, line_number=233, causing_sql=CRASH_INNER_SQL,
    )  # fmt: skip
    text = [m for _, m in render(ctx, random.Random(1)).lines]
    causing = next(m for m in text if m.startswith("SQL causing error"))
    assert "select b.brev_id" in causing and "exec" not in causing
    assert "SQL Text: exec p_brev_sok_central_utskrift @avd = 4" in text  # the batch, as ASE writes it
    plain = [m for _, m in render(replace(ctx, causing_sql=None), random.Random(1)).lines]
    assert "SQL causing error : exec p_brev_sok_central_utskrift @avd = 4" in plain


def test_bad_scenario_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[events]]\nkind = "config"\nname = "max parallel degree"\nvalue = 4\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_scenario(bad)
    assert str(bad) in str(err.value) and "events[0].at" in str(err.value)
