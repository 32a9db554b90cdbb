"""Benchmark: `asewatch suspects` offline on 10 million statement rows, against DuckDB.

    .venv/bin/python bench/suspects.py [--rows 10000000] [--crashes 50]

Generates, in the same run: a Parquet file of ``monSysStatement`` rows (500 procedures
with a Zipf-like skew, 200 sessions, two days; a rarely called culprit that runs on the
crashing task before each crash), an errorlog with the crash blocks (bench/errorlog_gen.py)
and a changes CSV. Then times:

- ``asewatch suspects --errorlog … --statements … --changes … --json`` as a child process:
  wall time and peak RSS (wait4), and whether the culprit ranks first among procedures
  (the data are generated, and DuckDB runs, in a worker process: a child's peak RSS counts
  from its parent's, so this process stays small);
- DuckDB computing the same per-window counts from the same Parquet file: each row to its
  window (the 120-s window before a crash, else a 120-s background window), then the
  number of distinct windows per procedure;
- the agent's case, in process: recomputing after a crash (store read, ranking, JSON) from
  a store holding one day of per-minute aggregates (500 procedures x 1,440 minutes).

Targets (issue 9): at most 2x DuckDB, under 30 s, peak RSS under 2 GB; the agent's case
under 2 s. DuckDB is the `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from errorlog import run_timed
from errorlog_gen import builtin_block, prefix, render

from monitor.events_changes import FlagChanged
from monitor.store import Batch, Store
from monitor.store_types import CrashRow
from monitor.suspects_agent import compute
from monitor.suspects_store import store_inputs

ASEWATCH = Path(sys.executable).parent / "asewatch"
T0 = datetime(2026, 11, 24, 0, 0, 0)
CULPRIT = "p_brev_sok_central_utskrift"
SERVER = "CLINIC1"
WINDOW_S = 120


def generate(folder: Path, rows: int, n_crashes: int) -> tuple[Path, Path, Path, list[datetime]]:
    rng = np.random.default_rng(20261205)
    span = 2 * 86400
    procs = np.array([f"p_proc_{i:03d}" for i in range(500)] + [CULPRIT])
    weights = 1.0 / np.arange(1, 501) ** 1.1
    weights /= weights.sum()
    proc = rng.choice(500, size=rows, p=weights)
    spid = rng.integers(20, 220, size=rows)
    start = np.sort(rng.uniform(0, span, size=rows))
    crashes = sorted(T0 + timedelta(seconds=float(s)) for s in rng.uniform(3600, span - 3600, n_crashes))
    # The culprit: 3 statements on the crashing task before each crash, and a few calls without one.
    tasks = [(300 + i, 5_000_000 + i) for i in range(n_crashes)]
    extra_t = [((c - T0).total_seconds() - 4 + k) for c in crashes for k in range(3)]
    extra_t += list(rng.uniform(0, span, 20))
    extra_spid = [s for s, _ in tasks for _ in range(3)] + [250] * 20
    kpid = spid * 1000 + 7
    frame = pd.DataFrame(
        {
            "SPID": np.concatenate([spid, extra_spid]).astype("int32"),
            "KPID": np.concatenate([kpid, [k for _, k in tasks for _ in range(3)] + [250_007] * 20]),
            "DBID": np.int16(4),
            "DBName": pd.Categorical(["imx_prod"] * (rows + len(extra_t))),
            "ProcedureID": np.concatenate([proc, [500] * len(extra_t)]).astype("int32"),
            "ProcName": pd.Categorical.from_codes(np.concatenate([proc, [500] * len(extra_t)]), procs),
            "LineNumber": np.int32(1),
            "StartTime": pd.to_datetime(T0) + pd.to_timedelta(np.concatenate([start, extra_t]), unit="s"),
            "CpuTime": np.int32(1),
            "LogicalReads": np.int32(10),
            "ErrorStatus": np.int32(0),
        }
    )
    frame["EndTime"] = frame["StartTime"] + pd.to_timedelta(5, unit="ms")
    parquet = folder / "monSysStatement.parquet"
    frame.to_parquet(parquet, index=False)
    del frame
    log = folder / "CLINIC1.log"
    block = builtin_block()
    prng = random.Random(5)
    with log.open("w") as f:
        f.write(
            prefix(T0, 0, 0, 0, "kernel", "  ")
            + "Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64\n"
        )
        for (s, k), c in zip(tasks, crashes, strict=True):
            text = render(block, c, prng, sep="  ", registers=True)
            # The rendered block picks its own spid/kpid: put the crashing task's in.
            first = text.split("\n", 1)[0]
            old_spid = int(first.split(":")[3])
            text = text.replace(f":{old_spid:05d}:", f":{s:05d}:")
            text = text.replace(text[text.rindex("spid ") : text.rindex(", suid")], f"spid {s}, kpid {k}")
            f.write(text)
        f.write(
            prefix(T0 + timedelta(seconds=span), 2, 0, 12, "server", "  ")
            + "Checkpoint of database 'tempdb' complete.\n"
        )
    changes = folder / "changes.csv"
    changes.write_text(
        "time,kind,name,old,new\n"
        f"{T0 + timedelta(minutes=30)},flag,brevutskrift_central_search,false,true\n"
        f"{T0 + timedelta(minutes=40)},config,max parallel degree,1,4\n"
    )
    return parquet, log, changes, crashes


def duckdb_counts(parquet: Path, crashes: list[datetime]) -> tuple[float, int]:
    import duckdb  # noqa: PLC0415 - the bench extra only

    con = duckdb.connect()
    con.execute("CREATE TABLE crashes (id INTEGER, t DOUBLE)")
    con.executemany(
        "INSERT INTO crashes VALUES (?, ?)", [[i, (c - T0).total_seconds()] for i, c in enumerate(crashes)]
    )
    started = time.perf_counter()
    rows = con.execute(
        f"""
        WITH s AS (
            SELECT ProcName AS proc, epoch(StartTime) - epoch(TIMESTAMP '{T0}') AS t FROM read_parquet('{parquet}')
        ),
        hit AS (  -- rows in the window before a crash
            SELECT s.proc, -1 - c.id AS w
            FROM s JOIN crashes c ON s.t > c.t - {WINDOW_S} AND s.t <= c.t
        ),
        w AS (
            SELECT proc, floor(t / {WINDOW_S}) AS w FROM s
            UNION ALL SELECT proc, w FROM hit
        )
        SELECT proc, count(DISTINCT w) FROM w GROUP BY proc
        """
    ).fetchall()
    return time.perf_counter() - started, len(rows)


@dataclass(frozen=True, slots=True)
class _DayOfMinutes:
    """A store op writing one day of per-minute aggregates at once (the sampler's would take a day)."""

    rows: list[tuple[int, str, int]]

    def apply(self, conn: sqlite3.Connection, now: float) -> None:
        conn.executemany(
            "INSERT INTO activity_minute (server, minute, db, procedure, executions, statements, cpu_ms, "
            "logical_reads, errors, elapsed_ms, logins) VALUES (?, ?, 'imx', ?, ?, 1, 1, 1, 0, 1, 1)",
            [(SERVER, *row) for row in self.rows],
        )


def agent_case(folder: Path) -> tuple[float, float, int]:
    """The agent's recompute after a crash, from a store holding a day of per-minute aggregates
    (500 procedures x 1,440 minutes) and five crashes: (seconds to read the store, seconds in
    all as ``monitor.suspects_agent.compute`` does it, suspects of the group)."""
    rng = np.random.default_rng(7)
    start = int(T0.timestamp()) // 60 * 60
    rows = [(start + 60 * m, f"p_proc_{p:03d}", int(n))
            for m in range(1440) for p, n in enumerate(rng.integers(0, 50, 500))]  # fmt: skip
    with Store.open(folder / "agent") as store:
        store.append(Batch(ops=[_DayOfMinutes(rows)]))
        for i in range(5):
            t = T0 + timedelta(hours=3 * i + 2)
            store.upsert_crash(CrashRow(server=SERVER, key=f"{SERVER}|crash:{i}", time=t, signature="sig",
                                        spid=100 + i, kpid=9000 + i, family=0))  # fmt: skip
        flag = FlagChanged(T0.timestamp() + 600, "brevutskrift_central_search", "false", "true", "file")
        store.append(Batch(events=[(SERVER, flag)]))
        with store.reader() as r:  # the whole recompute first, on a fresh connection, as the agent's
            started = time.perf_counter()
            doc = compute(r, SERVER)
            total = time.perf_counter() - started
            started = time.perf_counter()
            store_inputs(r, SERVER)
            read = time.perf_counter() - started
    groups = doc["groups"]
    return read, total, len(groups[0]["suspects"]) if groups else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--crashes", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each side (best kept)")
    args = ap.parse_args()
    # Generating and DuckDB run in a worker process: a child's peak RSS (wait4) starts from
    # its parent's at fork/exec, so this process must stay small for asewatch's to be its own.
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="asewatch-suspects-") as d,
        ProcessPoolExecutor(1, spawn) as worker,
    ):
        folder = Path(d)
        t = time.perf_counter()
        with ProcessPoolExecutor(1, spawn) as gen:  # its own process: DuckDB's starts clean
            parquet, log, changes, crashes = gen.submit(generate, folder, args.rows, args.crashes).result()
        print(f"generated {args.rows:,} rows ({parquet.stat().st_size / 1e6:.0f} MB Parquet), "
              f"{len(crashes)} crashes in {time.perf_counter() - t:.0f} s")  # fmt: skip
        argv = [str(ASEWATCH), "suspects", "--errorlog", str(log), "--statements", str(parquet),
                "--changes", str(changes), "--json"]  # fmt: skip
        a_runs, d_runs, a_rss = [], [], 0
        for _ in range(args.rounds):  # alternating, so machine load hits both alike; best kept
            a_time, rss, out = run_timed(argv)
            a_runs.append(a_time)
            a_rss = max(a_rss, rss)
            d_time, n = worker.submit(duckdb_counts, parquet, crashes).result()
            d_runs.append(d_time)
        a_time, d_best = min(a_runs), min(d_runs)
        doc = json.loads(out)
        procs = [s["name"] for g in doc["groups"] for s in g["suspects"] if s["kind"] == "procedure"]
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        g_read, g_time, n_suspects = agent_case(folder)
    print(f"asewatch suspects --json: {a_time:6.2f} s, peak RSS {a_rss / 1e6:5.0f} MB "
          f"(this process {own / 1e6:.0f} MB); first procedure: {procs[0] if procs else '-'}")  # fmt: skip
    print(f"DuckDB per-window counts:  {d_best:6.2f} s ({n} procedures)")
    print(f"ratio asewatch / DuckDB:   {a_time / d_best:6.1f}x")
    print(f"agent case (a store with a day of per-minute aggregates, 720,000 rows): {g_time:.2f} s "
          f"(reading the store {g_read:.2f} s), {n_suspects} suspects")  # fmt: skip
    ok = {
        "<= 2x DuckDB": a_time <= 2 * d_best,
        "< 30 s": a_time < 30,
        "RSS < 2 GB": a_rss < 2e9,
        "agent < 2 s": g_time < 2,
        "culprit first": bool(procs) and procs[0] == CULPRIT,
    }
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in ok.items()))


if __name__ == "__main__":
    main()
