"""The folders are the architecture: hold the import rules with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.unit

FORBIDDEN_FOR_COLLECTORS = ("monitor.store", "monitor.metrics", "monitor.agent", "monitor.cli")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _family(module: str) -> str:
    """A collector and its private helper modules: ``dumps``, ``dumps_proc`` -> ``dumps``."""
    return module.removesuffix(".py").split("_")[0]


def test_no_collector_imports_another_collector_the_store_or_metrics() -> None:
    offenders = []
    for path in sorted((ROOT / "collectors").rglob("*.py")):
        rel = path.relative_to(ROOT / "collectors")
        own = _family(rel.parts[0])
        for name in _imports(path):
            if name.startswith("collectors.") and _family(name.split(".")[1]) != own:
                offenders.append(f"{path.name} imports {name}")
            if name.startswith(FORBIDDEN_FOR_COLLECTORS):
                offenders.append(f"{path.name} imports {name}")
    assert offenders == []


def test_modules_stay_small() -> None:
    big = []
    for path in sorted([*ROOT.glob("monitor/**/*.py"), *ROOT.glob("collectors/**/*.py")]):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > 600:
            big.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert big == [], "split these modules"
