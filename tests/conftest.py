"""Shared fixtures: the corpus location and a guard against leaked threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "errorlogs"


@pytest.fixture
def corpus() -> Path:
    """The real public ASE errorlog samples. A user's fresh clone has no ../shared: skip there."""
    if not CORPUS.is_dir():
        pytest.skip(f"the errorlog corpus is not at {CORPUS} (it is in CI and developer checkouts only)")
    return CORPUS


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """Every thread a test starts must be stopped by the end of the test."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads leaked by this test: {[t.name for t in leaked]}"
