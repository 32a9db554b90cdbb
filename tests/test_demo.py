"""``asewatch demo``: the incident, replayed and caught, as a user runs it (a subprocess).

It must finish within 150 s with exit 0, show the one crash group in
p_brev_sok_central_utskrift, leave a store where ``asewatch crashes --json`` has the five
crashes (one signature, each joined with its exit, by the logins the incident names), and
never show a personal identity number: not in its output, not in its /metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.agent_helpers import (
    ASEWATCH,
    PNR_SHAPE,
    cli_json,
    metric_labels,
    no_personal_numbers,
    sample,
    scrape,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEADLINE_S = 150.0
PROCEDURE = "p_brev_sok_central_utskrift"
URL = re.compile(r"asewatch serves (http://\S+/metrics)")
LOGINS = Counter(
    {"sekr_karin": 3, "usk_lena": 1, "ssk_maria": 1}
)  # monitor/sim/incident.toml's crashing calls


def stop_leftovers(root: Path) -> None:
    """Stop (by PID) any process still running from ``root``: the demo's sim if the demo was killed."""
    mine = [
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(root) in a for a in p.info["cmdline"] or ()) and p.pid != os.getpid()
    ]
    for p in mine:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(mine, timeout=5)


def foreign_servers(root: Path) -> set[int]:
    """Dataservers named CLINIC1 that are not the demo's (another test or demo on this host)."""
    found = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        argv = p.info["cmdline"] or ()
        if "-sCLINIC1" in argv and not any(str(root) in a for a in argv):
            found.add(p.pid)
    return found


def test_the_demo_catches_the_incident_and_shows_no_personal_data(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out_path = tmp_path / "demo.out"
    # The demo's temporary folder (sim, errorlog, truth) goes under tmp_path, so anything left
    # running can be found by its path and stopped.
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    scrapes: list[str] = []
    foreign: set[int] = set()
    t0 = time.monotonic()
    with out_path.open("wb") as out:
        demo = subprocess.Popen(
            [ASEWATCH, "demo", "--state-dir", str(state)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        url = None
        next_scrape = 0.0
        while demo.poll() is None and time.monotonic() - t0 < DEADLINE_S:
            if url is None and (m := URL.search(out_path.read_text(encoding="utf-8", errors="replace"))):
                url = m.group(1)
            if url is not None and time.monotonic() >= next_scrape:
                with contextlib.suppress(OSError):  # the demo may just have closed its endpoint
                    scrapes.append(scrape(url))
                next_scrape = time.monotonic() + 5.0
                foreign |= foreign_servers(tmp_path)
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        if demo.poll() is None:  # too slow: let it clean up (SIGINT runs its finally), then kill
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=10)
        stop_leftovers(tmp_path)
    output = out_path.read_text(encoding="utf-8", errors="replace")
    if foreign:  # the demo's agent matches by the -s name: say so if it had company
        output += f"\n[test] other dataservers named CLINIC1 ran on this host meanwhile: {sorted(foreign)}"
    assert elapsed < DEADLINE_S, f"the demo did not finish within {DEADLINE_S:g} s:\n{output[-3000:]}"
    assert demo.returncode == 0, output[-3000:]

    assert "Crash groups" in output and PROCEDURE in output
    assert "asewatch caught all 5 crashes as one signature" in output
    no_personal_numbers(output, "the demo's output")

    assert scrapes, f"no scrape of the demo's /metrics succeeded:\n{output[-2000:]}"
    for text in scrapes:
        assert not PNR_SHAPE.findall(text), "a personal identity number in the demo's /metrics"
        no_personal_numbers(metric_labels(text), "the demo's /metrics")
    caught = max(sample(t, "ase_crashes_total", server="CLINIC1", kind="signal") or 0 for t in scrapes)
    assert caught >= 1, "no scrape saw a crash counted"
    if shutil.which("promtool"):
        r = subprocess.run(
            ["promtool", "check", "metrics"],
            input=scrapes[-1],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 0, r.stdout + r.stderr

    crashes = cli_json("crashes", "--json", "--state-dir", str(state))
    assert len(crashes) == 5, json.dumps(crashes, indent=1) + output[-300:]
    assert len({c["signature"] for c in crashes}) == 1 and crashes[0]["signature"]
    assert all(c["kind"] == "signal" and c["signal"] == 11 for c in crashes)
    assert all(c["state"] == "crashed" and c["exit_pid"] and c["server_terminated"] for c in crashes)
    assert {c["procedure"] for c in crashes} == {PROCEDURE}
    assert Counter(c["login"] for c in crashes) == LOGINS
    assert len({c["exit_pid"] for c in crashes}) == 5  # five different incarnations of the server
