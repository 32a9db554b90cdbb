"""Benchmark: packaging a 2 GiB dump against ``sha256sum`` + ``zstd -T0 -3`` on the same file.

The dump has realistic content: 65 % zero pages, the rest mixed random (compressed or
encrypted pages), pointer-table-like and text-like (SQL and names, as cache pages hold).
Each run is a fresh child process on a warm page cache; the figures are the best of
``--runs``. Printed: wall times, the ratio to the baseline (target at most 1.3; also against
``openssl dgst -sha256`` + zstd, since coreutils' sha256sum does not use the CPU's SHA
instructions), and the packager's peak RSS (target under 150 MB). With ``--age`` the sealed package is timed
against ``zstd -T0 -3 | age -r`` as well.

    .venv/bin/python bench/package.py [--size-gib 2] [--runs 2] [--dir /var/tmp] [--age]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import sys, time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from monitor.config_package import EncryptionConfig, PackageConfig
from monitor.package import build_package
from monitor.store import Store, CrashRow
state, out, dump, key = sys.argv[1:5]
enc = EncryptionConfig(recipients=(key,)) if key != "-" else EncryptionConfig()
cfg = SimpleNamespace(servers=(), package=PackageConfig(encryption=enc))
with Store.open(Path(state)) as store:
    crash = store.upsert_crash(CrashRow(server="BENCH", key="BENCH|bench", time=datetime.now(), kind="signal", signal=11))
    t = time.perf_counter()
    result = build_package(store, crash.id, Path(out), cfg, dumps=[Path(dump)], progress=False)
    print(time.perf_counter() - t, result.manifest["dumps"][0]["compressed_bytes"])
"""


def make_dump(path: Path, size: int, seed: int = 7) -> None:
    """``size`` bytes of dump-like content, written in 1 MiB pieces."""
    rng = random.Random(seed)
    words = [
        b"exec p_patient_get @pnr = '19121212-1212', @avd = 12 ",
        b"select b.brev_id, b.pnr, p.efternamn from brev b, patient p where b.pnr = p.pnr ",
        b"Tolvansson, Tolvan ",
        b"update lab_result set status = 2 where id = 1234567 ",
        b"p_brev_sok_central_utskrift ",
        b"2024-03-14 10:12:33.16 ",
    ]
    text = bytearray()
    while len(text) < 2 * MiB:
        text += rng.choice(words) + bytes(rng.randrange(0, 48))
    pointers = b"".join(
        struct.pack("<Q", 0x00002AAA00000000 + rng.randrange(0, 1 << 32, 8)) for _ in range(MiB // 8)
    )
    zero = bytes(MiB)
    with path.open("wb") as f:
        for _ in range(size // MiB):
            roll = rng.random()
            if roll < 0.65:
                f.write(zero)
            elif roll < 0.80:
                f.write(os.urandom(MiB))
            elif roll < 0.88:
                shift = rng.randrange(0, MiB // 8) * 8
                f.write(pointers[shift:] + pointers[:shift])
            else:
                start = rng.randrange(0, MiB)
                f.write(bytes(text[start : start + MiB]))


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(8 * MiB):
            pass


def timed(cmd: list[str], **kw: object) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed with {p.returncode}")
    return time.perf_counter() - t, usage.ru_maxrss * 1024


def baseline(dump: Path, work: Path, age_key: str | None) -> tuple[float, float]:
    """(``sha256sum`` + compress, ``openssl dgst -sha256`` + compress) wall seconds: coreutils'
    sha256sum does not use the CPU's SHA instructions, OpenSSL (like Python's hashlib) does."""
    warm(dump)
    t1, _ = timed(["sha256sum", str(dump)], stdout=subprocess.DEVNULL)
    t1_ssl, _ = timed(["openssl", "dgst", "-sha256", str(dump)], stdout=subprocess.DEVNULL)
    if age_key is None:
        t2, _ = timed(["zstd", "-T0", "-3", "-q", "-f", str(dump), "-o", str(work / "base.zst")])
    else:
        cmd = f"zstd -T0 -3 -q -c {dump} | age -r {age_key} > {work / 'base.zst.age'}"
        t2, _ = timed(["sh", "-c", cmd])
    for p in work.glob("base.zst*"):
        p.unlink()
    return t1 + t2, t1_ssl + t2


def ours(dump: Path, work: Path, age_key: str | None) -> tuple[float, int]:
    warm(dump)
    state, out = work / "state", work / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t, rss = timed([sys.executable, "-c", _CHILD, str(state), str(out), str(dump), age_key or "-"],
                   stdout=subprocess.DEVNULL, env=env)  # fmt: skip
    shutil.rmtree(state)
    shutil.rmtree(out)
    return t, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the dump (default: $TMPDIR)")
    ap.add_argument("--age", action="store_true", help="also time the sealed package against zstd | age")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="asewatch-bench-") as tmp:
        work = Path(tmp)
        dump = work / "CLINIC1_bench.dmp"
        t0 = time.perf_counter()
        make_dump(dump, int(args.size_gib * 1024) * MiB)
        size = dump.stat().st_size
        print(f"dump: {size / MiB:.0f} MiB of dump-like content, written in {time.perf_counter() - t0:.1f} s")
        keys: list[str | None] = [None]
        if args.age:
            keys.append(_age_key())
        ok = True
        for key in keys:
            label = "sealed (age)" if key else "plain"
            bases = [baseline(dump, work, key) for _ in range(args.runs)]
            base, base_ssl = min(b for b, _ in bases), min(b for _, b in bases)
            runs = [ours(dump, work, key) for _ in range(args.runs)]
            best = min(t for t, _ in runs)
            rss = max(r for _, r in runs)
            ratio = best / base
            ok &= ratio <= 1.3 and rss < 150e6
            pipe = " | age" if key else ""
            print(f"{label}: asewatch package {best:.2f} s ({size / MiB / best:.0f} MiB/s); "
                  f"baseline sha256sum + zstd -T0 -3{pipe} {base:.2f} s -> ratio {ratio:.2f} (target <= 1.30); "
                  f"stricter baseline openssl sha256 + zstd{pipe} {base_ssl:.2f} s -> ratio {best / base_ssl:.2f}; "
                  f"peak RSS {rss / 1e6:.0f} MB (target < 150 MB)")  # fmt: skip
        print("PASS" if ok else "MISS")
        return 0 if ok else 1


def _age_key() -> str:
    import pyrage  # noqa: PLC0415

    return str(pyrage.x25519.Identity.generate().to_public())


if __name__ == "__main__":
    raise SystemExit(main())
