"""The Grafana dashboard: valid structure, only real metrics, every query parsed by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from monitor.metrics import METRICS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
METRIC_RE = re.compile(r"\b((?:ase|asewatch)_[a-z_]+)\b")


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def expressions(dash: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dash) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return exprs


def promql(expr: str) -> str:
    """Grafana macros and variables replaced so that Prometheus' own parser can read it."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    expr = expr.replace("$__from", "0").replace("$__to", "9999999999999")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_structure(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert 8 <= len(dash["uid"]) <= 40
    assert dash["schemaVersion"] >= 39
    assert "__inputs" not in dash
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels(dash):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[0] == "datasource"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_only_metrics_that_exist(path: Path) -> None:
    dash = json.loads(path.read_text())
    known = {m.name for m in METRICS}
    used = {m for e in expressions(dash) for m in METRIC_RE.findall(e)}
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            used |= set(METRIC_RE.findall(q["query"]))
    assert used
    assert used <= known, f"the dashboard queries metrics that do not exist: {sorted(used - known)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make system)")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_promtool_parses_every_query(path: Path, tmp_path: Path) -> None:
    dash = json.loads(path.read_text())
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(expressions(dash)):
        rules += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(promql(e))}"]
    f = tmp_path / "rules.yml"
    f.write_text("\n".join(rules) + "\n")
    r = subprocess.run(
        ["promtool", "check", "rules", str(f)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
