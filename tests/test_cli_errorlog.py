"""`asewatch errorlog`: the public JSON shape, human output, exit codes, .gz, --since."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ASEWATCH = Path(sys.executable).parent / "asewatch"
CRASH_KEYS = {
    "time", "kind", "signal", "engine", "family", "spid", "kpid", "suid", "login", "host", "program",
    "sql", "procedure", "frames", "complete", "server_terminated", "signature",
}  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ASEWATCH), *args], capture_output=True, text=True, timeout=60, check=False)


def test_json_over_the_whole_corpus(corpus: Path) -> None:
    files = sorted(str(p) for p in corpus.glob("*.log"))
    r = run("errorlog", "--json", *files)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # exactly one JSON object
    assert data["signature_version"] == 1
    assert data["files"] == files
    assert data["lines"] == 129 and data["unparsed_lines"] == 0
    assert len(data["crashes"]) == 2
    for c in data["crashes"]:
        assert set(c) >= CRASH_KEYS
    seg = next(c for c in data["crashes"] if c["kind"] == "signal")
    assert seg["time"] == "2018-05-04T19:37:01.480"
    assert (seg["signal"], seg["spid"], seg["kpid"], seg["suid"]) == (11, 308, 732758348, 1)
    assert (seg["login"], seg["host"], seg["program"], seg["procedure"]) == (
        "sa",
        "dbxtune",
        "AseTune-nogui",
        "sp_showplan",
    )
    assert seg["engine"] is None and seg["family"] == 0
    assert seg["frames"][5:7] == ["query_text", "LeRun"]
    ts = next(c for c in data["crashes"] if c["kind"] == "timeslice")
    assert ts["signal"] is None and ts["login"] is None and ts["sql"] is None
    groups = {g["signature"]: g for g in data["signatures"]}
    assert groups[seg["signature"]]["count"] == 1
    assert groups[seg["signature"]]["top_frames"][:2] == ["query_text", "LeRun"]
    assert {"first", "last"} <= set(groups[seg["signature"]])
    assert {(e["number"], e["severity"], e["count"]) for e in data["errors"]} == {
        (1621, 18, 4),
        (1105, 17, 1),
        (3475, 21, 1),
    }
    assert data["config_changes"] == [
        {"time": "2019-03-26T01:41:39.170", "option": "auditing", "by": "sa", "old": "0", "new": "1"}
    ]
    assert [b["time"] for b in data["boots"]] == ["2005-08-12T09:55:27.430", "2024-12-14T02:31:19.810"]
    assert all(b["version"] is None for b in data["boots"])
    assert data["shutdowns"] == [{"time": "2013-07-22T09:33:58.100", "kind": "requested", "by": "sa"}]


def test_repeats_group_under_one_signature_and_gz_works(corpus: Path, tmp_path: Path) -> None:
    block = (corpus / "dbxtune_sigsegv_query_text_2018.log").read_text()
    later = (
        block.replace("2018/05/04 19:37", "2018/05/05 03:12")
        .replace("00308", "01422")
        .replace("spid 308", "spid 1422")
    )
    gz = tmp_path / "CLINIC1.log.gz"
    with gzip.open(gz, "wt") as f:
        f.write(block + later)
    r = run("errorlog", "--json", str(gz))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["crashes"]) == 2
    [group] = data["signatures"]
    assert group["count"] == 2
    assert (group["first"], group["last"]) == ("2018-05-04T19:37:01.480", "2018-05-05T03:12:01.480")
    r = run("errorlog", "--json", "--since", "2018-05-05", str(gz))
    assert [c["spid"] for c in json.loads(r.stdout)["crashes"]] == [1422]


def test_human_output_names_the_crash(corpus: Path) -> None:
    r = run("errorlog", str(corpus / "dbxtune_sigsegv_query_text_2018.log"))
    assert r.returncode == 0, r.stderr
    assert "signature" in r.stdout and "sp_showplan" in r.stdout and "query_text" in r.stdout


@pytest.mark.parametrize("kind", ["missing", "directory", "corrupt-gz"])
def test_bad_files_exit_2_with_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.log"
    if kind == "directory":
        path.mkdir()
    elif kind == "corrupt-gz":
        path.write_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip")
    r = run("errorlog", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert str(path) in r.stderr


def test_bad_since_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "e.log"
    f.write_text("")
    r = run("errorlog", "--since", "yesterday", str(f))
    assert r.returncode == 2 and "--since" in r.stderr and "Traceback" not in r.stderr


def test_binary_junk_file_is_not_an_error(tmp_path: Path) -> None:
    f = tmp_path / "junk.log"
    f.write_bytes(bytes(range(256)) * 100)
    r = run("errorlog", "--json", str(f))
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["crashes"] == [] and data["unparsed_lines"] >= 1


def test_version_and_help_on_every_command() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("asewatch, version ")
    top = run("--help")
    assert top.returncode == 0
    commands = [ln.split()[0] for ln in top.stdout.split("Commands:")[1].splitlines() if ln.strip()]
    assert "errorlog" in commands
    for cmd in commands:
        h = run(cmd, "--help")
        assert h.returncode == 0 and "Usage:" in h.stdout, cmd
