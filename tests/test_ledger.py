"""The change ledger: one stream in time order, the errorlog/sysconfigures/.cfg join, versions at boot,
what the store knew (for restarts), the deployments file, the CLI commands on a real store, metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pydantic import ValidationError

from collectors.deployments import DeploymentFileWatch, read_deployments
from collectors.errorlog.parser import ErrorlogParser
from collectors.flags import FlagsCollector
from collectors.procedures import ProceduresCollector
from collectors.settings import SettingsCollector
from monitor.cli import cli as asewatch_cli
from monitor.config_changes import ChangesConfig, FlagSourceConfig, unknown_servers
from monitor.events import ConfigChanged, Event, ServerBooted
from monitor.events_changes import (
    Deployment,
    DumpConditions,
    FlagChanged,
    ProcedureChanged,
    ProcedureChangeSummary,
    SettingChanged,
    SettingsSnapshot,
    SettingValue,
)
from monitor.ledger import known_flags, known_procedures, known_settings, ledger
from monitor.metrics_changes import METRICS_CHANGES, add_change_metrics
from monitor.store import Batch, Store
from tests.fake_odbc import FakeAse
from tests.test_procedures import BREV, Imx, body
from tests.test_settings import ase, sp_configure

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 8, 0, 0)


def at(seconds: float) -> float:
    """POSIX seconds of T0 + seconds (T0 is local time, as the errorlog's)."""
    return (T0 + timedelta(seconds=seconds)).timestamp()


def log_line(seconds: float, spid: int, message: str) -> str:
    t = T0 + timedelta(seconds=seconds)
    return f"00:0002:00000:{spid:05d}:{t:%Y/%m/%d %H:%M:%S}.{t.microsecond // 10000:02d} server  {message}\n"


def errorlog(*lines: str) -> list[Event]:
    parser = ErrorlogParser()
    return [*parser.feed("".join(lines).encode()), *parser.close()]


def changed_by(seconds: float, name: str, old: str, new: str, by: str = "sa") -> ConfigChanged:
    (e,) = errorlog(log_line(seconds, 36, f"The configuration option '{name}' has been changed by '{by}' from '{old}' to '{new}'."))  # fmt: skip
    assert isinstance(e, ConfigChanged)
    return e


def poll_change(
    seconds: float, name: str, old: str, new: str, source: str = "sysconfigures"
) -> SettingChanged:
    run = (old, new) if source == "sysconfigures" else (None, None)
    return SettingChanged(at(seconds), source, name, "Parallel Query", True, old, new, *run)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as s:
        yield s


def put(store: Store, *events: Event, server: str = "CLINIC1") -> None:
    store.append(Batch(events=[(server, e) for e in events]))


def rows(store: Store, **kw: object) -> list[tuple[object, ...]]:
    with store.reader() as r:
        return [(x.kind, x.what, x.old, x.new, x.by, x.source) for x in ledger(r, **kw)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the stream


def test_one_stream_in_time_order_whatever_the_order_written(store: Store) -> None:
    put(store, FlagChanged(at(120), "brevutskrift_central_search", "0", "1", "query"))
    put(store, changed_by(180, "max parallel degree", "1", "4"))
    put(store, ProcedureChangeSummary(at(60), "imx", 1, 1, 0, 1, (BREV, "p_x")),
        ProcedureChanged(at(60), "imx", BREV, "new", None, "ab" * 32, True),
        ProcedureChanged(at(60), "imx", "p_x", "changed", "cd" * 32, "ef" * 32, False))  # fmt: skip
    put(store, Deployment(at(0), "IMX 7.1.0", "imx_deploy", "cli"))
    got = rows(store)
    assert got == [
        ("deployment", "IMX 7.1.0", None, None, "imx_deploy", "cli"),
        ("procedures", f"2 procedures changed in imx (1 new, 1 changed, 1 asks for parallel plans), among them {BREV}, p_x", None, None, None, "syscomments"),
        ("procedure", f"imx..{BREV} (asks for parallel plans)", None, "abababababab", None, "syscomments"),
        ("procedure", "imx..p_x", "cdcdcdcdcdcd", "efefefefefef", None, "syscomments"),
        ("flag", "brevutskrift_central_search", "0", "1", None, "query"),
        ("config", "max parallel degree", "1", "4", "sa", "errorlog"),
    ]  # fmt: skip
    with store.reader() as r:
        times = [x.time for x in ledger(r)]
    assert times == sorted(times) and times[0] == T0


def test_since_server_and_kind_filters(store: Store) -> None:
    put(store, Deployment(at(0), "IMX 7.1.0", None, "cli"))
    put(store, Deployment(at(0), "IMX 7.1.0", None, "cli"), server="RO1")
    put(store, FlagChanged(at(10), "a", None, "1", "file"))
    put(store, FlagChanged(at(20), "b", None, "1", "file"), server="RO1")
    assert [r[1] for r in rows(store, since=T0 + timedelta(seconds=5))] == ["a", "b"]
    assert [r[1] for r in rows(store, server="RO1")] == ["IMX 7.1.0", "b"]
    with store.reader() as r:
        assert [(x.server, x.what) for x in ledger(r, kinds=["deployment"])] == [
            ("CLINIC1", "IMX 7.1.0"), ("RO1", "IMX 7.1.0"),
        ]  # fmt: skip


def test_errorlog_line_and_the_polls_that_saw_it_are_one_change_with_who_did_it(store: Store) -> None:
    put(store, changed_by(100, "max parallel degree", "1", "4"))
    put(
        store,
        poll_change(103, "max parallel degree", "1", "4"),
        poll_change(101, "max parallel degree", "1", "4", "cfgfile"),
    )
    put(store, changed_by(700, "max parallel degree", "4", "1", by="dba_erik"))
    put(store, poll_change(760, "max parallel degree", "4", "1"))
    assert rows(store) == [
        ("config", "max parallel degree", "1", "4", "sa", "errorlog+sysconfigures+cfgfile"),
        ("config", "max parallel degree", "4", "1", "dba_erik", "errorlog+sysconfigures"),
    ]


def test_what_only_one_source_saw_keeps_its_own_row(store: Store) -> None:
    put(store, changed_by(0, "number of user connections", "200", "300"))
    put(store, poll_change(5, "max scan parallel degree", "1", "2"))  # nobody logged it
    put(store, poll_change(6, "number of worker processes", "20", "40", "cfgfile"))  # a hand edit of the .cfg
    put(store, poll_change(4000, "number of user connections", "200", "300"))  # far too late to be the same
    put(store, SettingChanged(at(7), "sysconfigures", "max memory", "Physical Memory", False, "2097152", "4194304", "2097152", "2097152"))  # fmt: skip
    assert rows(store) == [
        ("config", "number of user connections", "200", "300", "sa", "errorlog"),
        ("config", "max scan parallel degree", "1", "2", None, "sysconfigures"),
        ("config", "number of worker processes", "20", "40", None, "cfgfile"),
        ("config", "max memory (configured value)", "2097152", "4194304", None, "sysconfigures"),
        ("config", "number of user connections", "200", "300", None, "sysconfigures"),
    ]


def test_a_version_change_is_seen_at_boot(store: Store) -> None:
    v1 = "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/SLES 12.5/ase160sp04pl03x/3541/64-bit/FBO/Mon Jun 15 10:12:33 2023"
    v2 = v1.replace("PL03/EBF 30399", "PL04/EBF 30555")
    boots = [ServerBooted(T0 + timedelta(hours=h), v, False, None, h * 1000) for h, v in
             ((0, v1), (1, v1), (2, None), (3, v2), (4, v2))]  # fmt: skip
    put(store, *boots)
    put(store, ServerBooted(T0, v2, False, None, 0), server="RO1")  # another server's first boot: no change
    assert rows(store, kinds=["version"]) == [("version", "ASE version", v1, v2, None, "errorlog")]


def test_dump_conditions_changes_after_the_first_reading(store: Store) -> None:
    def cond(t: float, enabled: bool, count: int) -> DumpConditions:
        return DumpConditions(
            at(t), enabled, ("signal",), ("11",), (2,), (count,), ("/dumps",), (None,), ("Halt",), None
        )

    put(store, cond(0, True, 0), cond(10, True, 1), cond(20, False, 1))
    assert rows(store) == [("dump conditions", "dump conditions",
                            "dump on conditions on; signal 11 (max 2) -> /dumps",
                            "dump on conditions off; signal 11 (max 2) -> /dumps", None, "sp_shmdumpconfig")]  # fmt: skip


# --------------------------------------------------------------------------- what the store knew


def test_known_settings_are_the_newest_snapshot_of_the_source_plus_later_changes(store: Store) -> None:
    v = {"max parallel degree": SettingValue("max parallel degree", "Parallel Query", "1", "1", True),
         "max memory": SettingValue("max memory", "Physical Memory", "100", "100", False)}  # fmt: skip
    with store.reader() as r:
        assert known_settings(r, "CLINIC1", "sysconfigures") is None
    put(store, SettingsSnapshot.of(at(0), "sysconfigures", v))
    for i in range(10):  # many agent restarts: each a snapshot of the .cfg file too
        put(store, SettingsSnapshot.of(at(i + 1), "cfgfile", {"max memory": SettingValue("max memory", None, str(i), None, False)}, "/x.cfg"))  # fmt: skip
    put(
        store,
        poll_change(50, "max parallel degree", "1", "4"),
        poll_change(51, "max parallel degree", "4", "8", "cfgfile"),
    )
    put(store, SettingChanged(at(52), "sysconfigures", "max memory", None, False, "100", None, "100", None))
    with store.reader() as r:
        sys = known_settings(r, "CLINIC1", "sysconfigures")
        cfg = known_settings(r, "CLINIC1", "cfgfile")
        other = known_settings(r, "RO1", "sysconfigures")
    assert (
        sys is not None and sorted(sys) == ["max parallel degree"] and sys["max parallel degree"].run == "4"
    )
    assert (
        cfg is not None
        and cfg["max memory"].configured == "9"
        and cfg["max parallel degree"].configured == "8"
    )
    assert other is None


def test_known_flags_and_procedures(store: Store) -> None:
    put(store, FlagChanged(at(0), "a", None, "0", "query"), FlagChanged(at(1), "a", "0", "1", "query"),
        FlagChanged(at(2), "b", None, "1", "query"), FlagChanged(at(3), "b", "1", None, "query"))  # fmt: skip
    server = FakeAse()
    imx = Imx(server)
    imx.create("p_a", body("p_a"))
    imx.create("p_b", body("p_b"))
    c = ProceduresCollector("CLINIC1", server.connect, ["imx"])
    put(store, *c.poll()[0])
    imx.create("p_a", body("p_a", "7.1"))
    imx.drop("p_b")
    imx.create(BREV, body(BREV))
    put(store, *c.poll()[0])
    with store.reader() as r:
        assert known_flags(r, "CLINIC1") == {"a": "1"}
        known = known_procedures(r, "CLINIC1")
    assert known == {"imx": c.fingerprints("imx")} and sorted(known["imx"]) == ["p_a", BREV]


# --------------------------------------------------------------------------- deployments file


def test_deployments_file_lines(tmp_path: Path) -> None:
    text = (
        '{"time": "2026-11-26T08:00:00", "name": "IMX 7.1.0", "by": "imx_deploy"}\n'
        "\n"
        '{"time": 1764140400.5, "what": "IMX 7.1.1", "server": "RO1"}\n'
        '{"name": "no time"}\n'
        "not json\n"
        '{"time": 1, "name": "x", "server": [1]}\n'
        '{"time": "2026-11-26T09:00:00", "name": "half a li'
    )
    found, problems = read_deployments(text)
    assert [(d.time, d.name, d.by, d.source, servers) for d, servers in found] == [
        (T0.timestamp(), "IMX 7.1.0", "imx_deploy", "file", ()), (1764140400.5, "IMX 7.1.1", None, "file", ("RO1",)),
    ]  # fmt: skip
    assert problems == [
        'line 4: "time" is missing',
        "line 5: not JSON: Expecting value",
        'line 6: "server" must be a server name or a list of them',
    ]


def test_deployments_file_watch_emits_each_deployment_once_per_server(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "deployments.jsonl"
    watch = DeploymentFileWatch(path, ["CLINIC1", "RO1"])
    assert watch.poll() == ([], [])  # no file yet: nothing, no error
    path.write_text('{"time": "2026-11-26T08:00:00", "name": "IMX 7.1.0", "by": "imx_deploy"}\n')
    first, _ = watch.poll()
    with path.open("a") as f:
        f.write('{"time": "2026-11-27T08:00:00", "name": "IMX 7.1.1", "server": "RO1"}\n')
    second, problems = watch.poll()
    assert [(s, d.name) for s, d in first] == [("CLINIC1", "IMX 7.1.0"), ("RO1", "IMX 7.1.0")]
    assert [(s, d.name) for s, d in second] == [("RO1", "IMX 7.1.1")] and problems == []
    for server, d in first:
        put(store, d, server=server)
    for server, d in DeploymentFileWatch(path, ["CLINIC1", "RO1"]).poll()[0]:  # a restarted agent re-reads
        put(store, d, server=server)
    with store.reader() as r:
        assert [(x.server, x.what, x.source) for x in ledger(r)] == [
            ("CLINIC1", "IMX 7.1.0", "file"), ("RO1", "IMX 7.1.0", "file"), ("RO1", "IMX 7.1.1", "file"),
        ]  # fmt: skip


def test_deployments_file_watch_runs_routes_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "deployments.jsonl"
    path.write_text('{"time": 1764140400, "name": "IMX 7.1.0"}\nbad\n')
    got: list[tuple[str, list[Event]]] = []
    stop = threading.Event()

    def emit(server: str, events: Sequence[Event]) -> None:
        got.append((server, list(events)))
        stop.set()  # one round is enough

    t = threading.Thread(
        target=DeploymentFileWatch(path, ["CLINIC1"]).run, args=(emit, stop), name="deploy-test"
    )
    t.start()
    t.join(timeout=5)
    assert not t.is_alive()
    assert got[0][0] == "CLINIC1" and isinstance(got[0][1][0], Deployment)
    health = [e for server, events in got if server == "" for e in events]
    assert [type(e).__name__ for e in health] == ["CollectorFailed"] and "line 2: not JSON" in health[
        0
    ].reason  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the incident, end to end on fakes


def test_the_incident_reads_as_one_change_list(store: Store) -> None:
    """Upgrade, flag on, max parallel degree 1 -> 4 (and back, the workaround): what `changes` must show."""
    server = ase()
    imx = Imx(server)
    server.tables["imx..app_feature_flags"] = type(server.tables["imx..sysobjects"])(
        ("name", "value"), [("brevutskrift_central_search", "0"), ("e_recept_v2", "1")]
    )
    for i in range(3):
        imx.create(f"p_journal_{i}", body(f"p_journal_{i}"))
    now = [at(0)]

    def clock() -> float:
        return now[0]

    settings = SettingsCollector("CLINIC1", server.connect, clock=clock)
    flags = FlagsCollector("CLINIC1", query="select name, value from imx..app_feature_flags", connect=server.connect, clock=clock)  # fmt: skip
    procs = ProceduresCollector("CLINIC1", server.connect, ["imx"], clock=clock)
    put(store, *settings.poll(), *flags.poll(), *procs.poll()[0])  # the agent's start: baselines
    put(store, Deployment(at(100), "IMX 7.1.0", "imx_deploy", "cli"))
    for i in range(3):
        imx.create(f"p_journal_{i}", body(f"p_journal_{i}", "7.1"))
    imx.create(BREV, body(BREV, "7.1", parallel=True))
    now[0] = at(160)  # the next procedure poll
    put(store, *procs.poll()[0])
    server.tables["imx..app_feature_flags"].rows[0] = ("brevutskrift_central_search", "1")
    now[0] = at(200)
    put(store, *flags.poll())
    sp_configure(server, "max parallel degree", 4)
    put(store, *errorlog(log_line(300, 36, "The configuration option 'max parallel degree' has been changed by 'sa' from '1' to '4'.")))  # fmt: skip
    now[0] = at(340)  # the settings poll after it
    put(store, *settings.poll())
    sp_configure(server, "max parallel degree", 1)
    put(store, *errorlog(log_line(900, 36, "The configuration option 'max parallel degree' has been changed by 'sa' from '4' to '1'.")))  # fmt: skip
    now[0] = at(960)
    put(store, *settings.poll())

    runner = CliRunner()
    result = runner.invoke(asewatch_cli, ["changes", "--json", "--state-dir", str(store.path.parent)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    seen = [(d["kind"], d["what"], d["old"], d["new"], d["by"], d["source"]) for d in doc]
    assert ("deployment", "IMX 7.1.0", None, None, "imx_deploy", "cli") in seen
    assert any(
        k == "procedures"
        and w.startswith(
            "4 procedures changed in imx (1 new, 3 changed, 1 asks for parallel plans), among them " + BREV
        )
        for k, w, *_ in seen
    )
    assert ("procedure", f"imx..{BREV} (asks for parallel plans)") in [(k, w) for k, w, *_ in seen]
    assert ("flag", "brevutskrift_central_search", "0", "1", None, "query") in seen
    configs = [s for s in seen if s[0] == "config"]
    assert configs == [
        ("config", "max parallel degree", "1", "4", "sa", "errorlog+sysconfigures"),
        ("config", "max parallel degree", "4", "1", "sa", "errorlog+sysconfigures"),
    ]
    assert [d["time"] for d in doc] == sorted(d["time"] for d in doc)
    assert set(doc[0]) == {"time", "server", "kind", "what", "old", "new", "by", "source"}


# --------------------------------------------------------------------------- CLI on a real store


def test_change_add_then_changes(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    runner = CliRunner()
    args = [
        "change",
        "add",
        "IMX 7.1.0",
        "--at",
        "2026-11-26T08:00",
        "--by",
        "imx_deploy",
        "--state-dir",
        state,
    ]
    first = runner.invoke(asewatch_cli, [*args, "--server", "CLINIC1"])
    assert first.exit_code == 0 and first.output.startswith(
        "recorded: deployment 'IMX 7.1.0' at 2026-11-26 08:00:00"
    )
    again = runner.invoke(asewatch_cli, [*args, "--server", "CLINIC1"])
    assert again.exit_code == 0 and again.output.startswith("already recorded")
    everyone = runner.invoke(
        asewatch_cli, ["change", "add", "IMX 7.1.1", "--at", "2026-11-27 08:00", "--state-dir", state]
    )
    assert everyone.exit_code == 0 and everyone.output.rstrip().endswith(
        "(CLINIC1)"
    )  # the servers the store knows
    out = runner.invoke(asewatch_cli, ["changes", "--json", "--state-dir", state])
    doc = json.loads(out.output)
    assert [(d["time"], d["server"], d["what"], d["source"]) for d in doc] == [
        ("2026-11-26T08:00:00", "CLINIC1", "IMX 7.1.0", "cli"), ("2026-11-27T08:00:00", "CLINIC1", "IMX 7.1.1", "cli"),
    ]  # fmt: skip
    assert doc[1]["by"]  # the user who ran it
    since = runner.invoke(asewatch_cli, ["changes", "--json", "--since", "2026-11-27", "--state-dir", state])
    assert [d["what"] for d in json.loads(since.output)] == ["IMX 7.1.1"]
    table = runner.invoke(asewatch_cli, ["changes", "--state-dir", state])
    assert table.exit_code == 0 and "IMX 7.1.0" in table.output and "imx_deploy" in table.output


def test_change_add_concerns_every_configured_server_by_default(tmp_path: Path) -> None:
    cfg = tmp_path / "asewatch.toml"
    cfg.write_text('[[server]]\nname = "CLINIC1"\n\n[[server]]\nname = "RO1"\n')
    state = str(tmp_path / "state")
    runner = CliRunner()
    out = runner.invoke(asewatch_cli, ["change", "add", "IMX 7.1.0", "--at", "2026-11-26 08:00", "-c", str(cfg), "--state-dir", state])  # fmt: skip
    assert out.exit_code == 0 and out.output.rstrip().endswith("(CLINIC1, RO1)")
    doc = json.loads(
        runner.invoke(asewatch_cli, ["changes", "--json", "--server", "RO1", "--state-dir", state]).output
    )
    assert [(d["server"], d["what"]) for d in doc] == [("RO1", "IMX 7.1.0")]


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(asewatch_cli, ["changes", "--state-dir", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no asewatch store" in missing.output
    bad = runner.invoke(
        asewatch_cli, ["change", "add", "X", "--at", "yesterday", "--state-dir", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "--at 'yesterday': not a time" in bad.output
    parquet = runner.invoke(
        asewatch_cli, ["export", "changes", "--format", "parquet", "--state-dir", str(tmp_path)]
    )
    assert parquet.exit_code == 2 and "needs --output" in parquet.output
    nobody = runner.invoke(asewatch_cli, ["change", "add", "X", "--state-dir", str(tmp_path / "empty")])
    assert nobody.exit_code == 2 and "--server NAME" in nobody.output


def test_export_csv_and_parquet_have_the_documented_columns(store: Store, tmp_path: Path) -> None:
    put(store, Deployment(at(0), "IMX 7.1.0", "imx_deploy", "cli"))
    put(store, changed_by(60, "max parallel degree", "1", "4"))
    state = str(store.path.parent)
    runner = CliRunner()
    csv_out = runner.invoke(asewatch_cli, ["export", "changes", "--state-dir", state])
    assert csv_out.exit_code == 0
    lines = csv_out.output.splitlines()
    assert lines[0] == "time,server,kind,what,old,new,by,source"
    assert lines[2] == "2026-11-26 08:01:00,CLINIC1,config,max parallel degree,1,4,sa,errorlog"
    target = tmp_path / "changes.parquet"
    pq = runner.invoke(
        asewatch_cli, ["export", "changes", "--format", "parquet", "-o", str(target), "--state-dir", state]
    )
    assert pq.exit_code == 0, pq.output
    frame = pd.read_parquet(target)
    assert list(frame.columns) == ["time", "server", "kind", "what", "old", "new", "by", "source"]
    assert str(frame["time"].dtype).startswith("datetime64")
    assert frame["time"].iloc[0] == pd.Timestamp(T0) and frame["what"].tolist() == [
        "IMX 7.1.0",
        "max parallel degree",
    ]


def test_export_holds_activity_and_changes() -> None:
    result = CliRunner().invoke(asewatch_cli, ["export", "--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == ["activity", "changes"]


# --------------------------------------------------------------------------- metrics


class _Changes(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        fams = {m.name: m.family() for m in METRICS_CHANGES}
        with self.store.reader() as r:
            add_change_metrics(r, fams)
        yield from fams.values()


def scrape(store: Store) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Changes(store))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_metrics_config_values_flags_and_procedure_changes(store: Store) -> None:
    server = ase()
    settings = SettingsCollector("CLINIC1", server.connect)
    put(store, *settings.poll())
    sp_configure(server, "max parallel degree", 4)
    put(store, *settings.poll())
    put(store, FlagChanged(at(0), "brevutskrift_central_search", None, "true", "file"),
        FlagChanged(at(0), "lab_svar_push", None, "false", "file"))  # fmt: skip
    put(store, ProcedureChanged(at(1), "imx", BREV, "new", None, "a" * 64, True), ProcedureChanged(at(1), "imx", "p_x", "dropped", "b" * 64, None, False))  # fmt: skip
    put(
        store, changed_by(5, "max parallel degree", "1", "8"), server="RO1"
    )  # no sysconfigures: the errorlog says
    got = scrape(store)
    assert got[("ase_config_value", (("parameter", "max parallel degree"), ("server", "CLINIC1")))] == 4
    assert (
        got[("ase_config_value", (("parameter", "number of worker processes"), ("server", "CLINIC1")))] == 20
    )
    assert (
        "ase_config_value",
        (("parameter", "optimization goal"), ("server", "CLINIC1")),
    ) not in got  # text
    assert got[("ase_config_value", (("parameter", "max parallel degree"), ("server", "RO1")))] == 8
    assert (
        got[("ase_feature_flag_enabled", (("flag", "brevutskrift_central_search"), ("server", "CLINIC1")))]
        == 1
    )
    assert got[("ase_feature_flag_enabled", (("flag", "lab_svar_push"), ("server", "CLINIC1")))] == 0
    assert got[("ase_procedure_definition_changes_total", (("server", "CLINIC1"),))] == 2
    assert got[("ase_procedure_definition_changes_total", (("server", "RO1"),))] == 0


# --------------------------------------------------------------------------- config


def test_changes_config_validation(tmp_path: Path) -> None:
    cfg = ChangesConfig.model_validate(
        {"procedures": {"databases": ["imx"]}, "flags": [{"server": "CLINIC1", "file": "flags.json"}],
         "settings": {"cfg_files": {"CLINIC1": "CLINIC1.cfg"}}, "deployments_file": "deploy.jsonl"},
        context={"base": tmp_path},
    )  # fmt: skip
    assert cfg.flags[0].file == tmp_path / "flags.json" and cfg.deployments_file == tmp_path / "deploy.jsonl"
    assert cfg.settings.cfg_file("CLINIC1") == tmp_path / "CLINIC1.cfg" and cfg.settings.poll_interval == 60.0
    assert unknown_servers(cfg, ("CLINIC1",)) == [] and cfg.settings.cfg_file("RO1") is None
    assert hash(cfg) == hash(cfg.model_copy())  # frozen and hashable, like the whole config
    assert unknown_servers(cfg, ("RO1",)) == [
        ("changes.settings.cfg_files.CLINIC1", "no [[server]] named 'CLINIC1'"),
        ("changes.flags[0].server", "no [[server]] named 'CLINIC1'"),
    ]
    for bad, match in (
        ({"server": "S"}, "exactly one of query and file"),
        ({"server": "S", "query": "delete from imx..app_feature_flags"}, "must be a select"),
        ({"server": "S", "query": "select 1", "file": "f.json"}, "exactly one"),
    ):
        with pytest.raises(ValidationError, match=match):
            FlagSourceConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="not database names"):
        ChangesConfig.model_validate({"procedures": {"databases": ["imx..x"]}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ChangesConfig.model_validate({"settings": {"pol_interval": 5}})
