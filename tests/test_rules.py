"""Alert rules: valid for promtool, unit-tested with promtool, and naming only metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitor.metrics import METRICS

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parent.parent / "rules"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (make system)"
)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    r = subprocess.run(
        ["promtool", "check", "rules", str(RULES / "asewatch.rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    tests = sorted(str(p) for p in (RULES / "tests").glob("*.yml"))
    assert tests
    r = subprocess.run(
        ["promtool", "test", "rules", *tests], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_name_only_metrics_in_the_table() -> None:
    text = (RULES / "asewatch.rules.yml").read_text()
    exprs = re.findall(r"^\s*expr:\s*(.+)$", text, flags=re.M)
    used = {m for e in exprs for m in re.findall(r"\b((?:ase|asewatch)_[a-z_]+)\b", e)}
    known = {m.name for m in METRICS}
    assert used
    assert used <= known, f"rules use metrics that do not exist: {sorted(used - known)}"
