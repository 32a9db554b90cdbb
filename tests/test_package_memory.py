"""Constant memory: a dump twice as large costs no more memory to package.

A 256 MiB dump of realistic content (mostly zero pages, the rest random and text) is
packaged in a fresh process, plain and sealed with age, and its peak RSS is compared
with packaging a 128 MiB dump the same way (zstd's worker buffers reach their steady
size within the first ~100 MiB); Python's own allocations are traced too.
Bounds, not timings: memory is what a host with a 64 GB dump cannot spare.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pyrage
import pytest

from monitor.package_stream import pack_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1 << 20
_MEASURE = """
import json, resource, sys
from pathlib import Path
import pyrage
from monitor.package_stream import pack_file
src, dest, key = sys.argv[1], sys.argv[2], sys.argv[3]
recipients = [pyrage.x25519.Recipient.from_str(key)] if key != "-" else []
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
packed = pack_file(Path(src), Path(dest), recipients=recipients)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": after, "bytes": packed.original_bytes}))
"""


def realistic_dump(path: Path, size: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    text = b"exec p_patient_get @pnr = '19121212-1212', @avd = 12; select * from journal where id = 4711 "
    with path.open("wb") as f:
        for _ in range(size // MiB):
            roll = rng.random()
            if roll < 0.65:
                f.write(bytes(MiB))
            elif roll < 0.85:
                f.write(os.urandom(MiB))
            else:
                f.write((text * (MiB // len(text) + 1))[:MiB])


def peak_rss_growth(src: Path, dest: Path, key: str) -> int:
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(src), str(dest), key],
                       capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["bytes"] == src.stat().st_size
    return int(doc["peak"]) - int(doc["before"])


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "age"])
def test_packaging_256_mib_takes_no_more_memory_than_128_mib(tmp_path: Path, sealed: bool) -> None:
    small, big = tmp_path / "small.dmp", tmp_path / "big.dmp"
    realistic_dump(small, 128 * MiB)
    realistic_dump(big, 256 * MiB)
    key = str(pyrage.x25519.Identity.generate().to_public()) if sealed else "-"
    grow_small = peak_rss_growth(small, tmp_path / "small.zst", key)
    grow_big = peak_rss_growth(big, tmp_path / "big.zst", key)
    assert grow_big < 100 * MiB, f"packaging 256 MiB grew RSS by {grow_big / MiB:.1f} MiB"
    assert grow_big - grow_small < 16 * MiB, (
        f"RSS grew {grow_small / MiB:.1f} MiB for 128 MiB and {grow_big / MiB:.1f} MiB for 256 MiB"
    )


def test_python_allocations_stay_at_a_few_blocks(tmp_path: Path) -> None:
    # The read buffer (one block) and what zstd hands back per block (a job's output, at
    # most about a block of incompressible data, twice while a job completes).
    big = tmp_path / "big.dmp"
    realistic_dump(big, 256 * MiB, seed=2)
    tracemalloc.start()
    try:
        pack_file(big, tmp_path / "big.zst", block_bytes=4 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 4 * MiB, f"Python allocations peaked at {peak / MiB:.1f} MiB for a 256 MiB dump"
