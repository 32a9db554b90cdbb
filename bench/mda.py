"""The MDA sampler under load, and the flight recorder's store growth.

Part 1 (live, real stack): the simulated dataserver runs RATE statements/s (default 2,000)
for SECONDS (default 60); its pipes are sized for the sample interval (rate x interval x 5,
as a DBA would set them). An MdaSampler (pyodbc + FreeTDS, TDS 5.0) samples it into a real
store through the real StoreWriter, as the agent does. Baseline in the same run: a bare
pyodbc connection of its own (pipe positions are per connection, so it sees the same rows)
fetching the same columns of the same pipe tables at the same interval, half an interval
apart, with nothing done to the rows. Prints:

- rows lost: gaps in each spid's batch ids (the sim numbers a spid's batches 1, 2, 3, ...)
  over what the sampler read, and the probable-overflow counter; target 0;
- sampler CPU: the sampler thread's CPU time / wall time; target <= 25 % of one core;
- time per sampled row: the sampler's time per pipe row (queries, conversion, redaction,
  names, snapshots) / the bare fetch's time per row; target <= 1.5.

Part 2 (store growth, synthetic): one simulated day at 1,000 statements/s through the
real store ops, over the sim's catalog (11 procedures, ~20 logins): the per-minute
aggregates' size for the day, and the raw ring's size when full (bounded by max_raw_rows).
The raw ring is written at full rate for RING_MINUTES simulated minutes (enough to fill
the cap); the aggregates for the rest of the day get the same (minute, procedure, login)
spread at a reduced row count (their size depends on the distinct keys per minute, not
on the rate).

Usage: .venv/bin/python bench/mda.py [--seconds 60] [--rate 2000] [--interval 5] [--skip-live] [--skip-growth]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pyodbc

from collectors.mda import queries
from collectors.mda.rows import MdaSample, SessionRow, SqlTextRow, StatementRow, TableRead
from collectors.mda.sampler import MdaSampler
from collectors.mda.shape import shape
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.events import Event
from monitor.flightrec import ops_for
from monitor.sim.control import SimServer
from monitor.sim.workload import CATALOG, CLINICAL_LOGINS, SERVICE_LOGINS
from monitor.store import Batch, Store, StoreWriter

PW_ENV = "ASEWATCH_BENCH_PW"


# --------------------------------------------------------------------------- part 1: live


class Bare(threading.Thread):
    """The baseline: fetch the sampler's pipe columns with plain pyodbc and do nothing else."""

    def __init__(self, cs: str, interval: float, stop: threading.Event) -> None:
        super().__init__(name="bare-fetch")
        self.cs, self.interval, self.stop_ev = cs, interval, stop
        self.rows = 0
        self.wall = 0.0
        self.cpu = 0.0
        self.seen: list[tuple[int, int, float]] = []  # (spid, batch, start) of every statement read
        plan, _ = queries.plan(None)
        self.sql = [plan["monSysStatement"].text, plan["monSysSQLText"].text]

    def run(self) -> None:
        conn = pyodbc.connect(self.cs, autocommit=True, timeout=5)
        conn.timeout = 10
        cur = conn.cursor()
        for sql in self.sql:  # the ring so far: not part of the steady state
            cur.execute(sql).fetchall()
        self.stop_ev.wait(self.interval / 2)
        while not self.stop_ev.is_set():
            began = time.monotonic()
            w0, c0 = time.perf_counter(), time.thread_time()
            got = [cur.execute(sql).fetchall() for sql in self.sql]
            self.wall += time.perf_counter() - w0
            self.cpu += time.thread_time() - c0
            self.rows += sum(map(len, got))
            self.seen += [(r[0], r[2], r[3].timestamp()) for r in got[0]]
            self.stop_ev.wait(max(0.0, began + self.interval - time.monotonic()))
        conn.close()


def live(seconds: float, rate: float, interval: float) -> None:
    pipe = int(rate * interval * 5)
    with tempfile.TemporaryDirectory() as tmp, SimServer(Path(tmp) / "sim", rate=rate) as sim:
        with pyodbc.connect(sim.connection_string("sa"), autocommit=True, timeout=5) as admin:
            admin.execute(f"sp_configure 'statement pipe max messages', {pipe}")
            admin.execute(f"sp_configure 'sql text pipe max messages', {pipe}")
            tx0 = admin.execute("select Transactions from master..monState").fetchone()[0]
        os.environ[PW_ENV] = sim.tds_password
        host, port = sim.tds_address()
        db = DatabaseConfig(host=host, port=port, password_env=PW_ENV, query_timeout=10)
        mda = MdaConfig(sample_interval=interval)
        store = Store(Path(tmp) / "state" / "asewatch.db")
        writer = StoreWriter(store)
        writer.start()
        samples: list[tuple[MdaSample, float]] = []
        stop = threading.Event()

        def emit(events: Sequence[Event], sample: MdaSample | None) -> None:
            cpu = time.thread_time()  # the sampler thread's CPU so far (FreeTDS' C code included)
            if sample is not None:
                samples.append((sample, cpu))
                writer.submit(Batch(events=[(sim.name, e) for e in events if hasattr(e, "start_date")],
                                    ops=ops_for(sim.name, sample, mda)), timeout=10)  # fmt: skip

        sampler = MdaSampler(sim.name, db, mda)
        thread = threading.Thread(target=sampler.run, args=(emit, stop), name="mda-bench")
        bare = Bare(sim.connection_string(), interval, stop)
        thread.start()
        bare.start()
        time.sleep(seconds)
        stop.set()
        sampler.interrupt()
        thread.join(30)
        bare.join(30)
        writer.stop(timeout=30)
        with pyodbc.connect(sim.connection_string("sa"), autocommit=True, timeout=5) as admin:
            tx1 = admin.execute("select Transactions from master..monState").fetchone()[0]
        with store.reader() as r:
            overflow = r.query("SELECT coalesce(sum(overflow_total), 0) FROM mda_counters")[0][0]
            stored = r.query("SELECT count(*) FROM activity_statements")[0][0]
        store.close()

    steady = samples[1:]  # the first read is the ring since boot
    stmts = [st for s, _ in steady for st in s.statements]
    texts = [t for s, _ in steady for t in s.texts if t.source == "pipe"]
    # Lost by the sampler: rows the driver returned that did not become stored rows, and reads
    # that came back so full that the ring had probably wrapped (overflow).
    fetched = sum(r.rows for s, _ in samples for r in s.reads if r.table == "monSysStatement")
    converted = sum(len(s.statements) for s, _ in samples)
    unique = len({st.key for s, _ in samples for st in s.statements})
    fill = max(r.rows for s, _ in steady for r in s.reads if r.table == "monSysStatement") / pipe
    lost = fetched - converted + unique - stored
    # The source's own gaps: a spid's batch ids are consecutive in the sim, so a gap is a statement
    # the pipe never delivered -- to the sampler nor to the bare reader reading at other times.
    gaps = _gaps((st.spid, st.batch_id) for st in stmts) if stmts else 0
    bare_gaps = _gaps((spid, batch) for spid, batch, _ in bare.seen)
    text_gaps = _gaps((t.spid, t.batch_id) for t in texts) if texts else 0
    wall = steady[-1][0].time + steady[-1][0].duration - steady[0][0].time
    cpu = steady[-1][1] - samples[0][1]
    pipe_rows = sum(
        r.rows for s, _ in steady for r in s.reads if r.table in ("monSysStatement", "monSysSQLText")
    )
    sampler_time = sum(s.duration for s, _ in steady)
    per_row = sampler_time / max(1, pipe_rows)
    bare_row = bare.wall / max(1, bare.rows)
    print(f"live: {rate:.0f} statements/s for {seconds:.0f} s, interval {interval:g} s, pipes {pipe} rows")
    print(f"  sim produced {tx1 - tx0} statements ({(tx1 - tx0) / seconds:.0f}/s); sampler read "
          f"{len(stmts)} statements + {len(texts)} texts in {len(steady)} samples; store holds {stored}")  # fmt: skip
    print(f"  rows lost by the sampler: {lost} (fetched {fetched}, converted {converted}, stored {stored} "
          f"unique); probable overflows: {overflow}; fullest read {100 * fill:.0f} % of the pipe"
          f"   [target 0]  {'OK' if lost == overflow == 0 else 'FAIL'}")  # fmt: skip
    print(f"  source gaps (batch ids the pipe never delivered): sampler {gaps}, bare reader {bare_gaps}, "
          f"texts {text_gaps}")  # fmt: skip
    print(f"  sampler CPU: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f} % of one core"
          f"   [target <= 25 %]  {'OK' if cpu / wall <= 0.25 else 'FAIL'}")  # fmt: skip
    durations = [s.duration for s, _ in steady]
    print(
        f"  sample duration: median {statistics.median(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms"
    )
    print(f"  time per pipe row: sampler {per_row * 1e6:.1f} us, bare pyodbc fetch {bare_row * 1e6:.1f} us "
          f"({bare.rows} rows, CPU {bare.cpu / max(1, bare.rows) * 1e6:.1f} us/row) = {per_row / bare_row:.2f}x"
          f"   [target <= 1.5x]  {'OK' if per_row / bare_row <= 1.5 else 'FAIL'}")  # fmt: skip


def _gaps(keys: object) -> int:
    """Missing batch ids inside each spid's observed range."""
    seen: dict[int, set[int]] = defaultdict(set)
    for spid, batch in keys:  # type: ignore[attr-defined]
        seen[spid].add(batch)
    return sum(max(b) - min(b) + 1 - len(b) for b in seen.values())


# --------------------------------------------------------------------------- part 2: growth

RING_MINUTES = 10


def _synthetic(rng: random.Random, t: float, n: int, batch: list[int]) -> MdaSample:
    """``n`` statements ending in the 5 s before ``t``, over the sim's catalog and logins."""
    logins = [*(c[0] for c in CLINICAL_LOGINS), *(s[0] for s in SERVICE_LOGINS)]
    procs = rng.choices(CATALOG, weights=[p.weight for p in CATALOG], k=n)
    stmts, texts = [], []
    for i, p in enumerate(procs):
        spid = 14 + i % 40
        batch[spid - 14] += 1
        start = t - 5 + 5 * i / n
        sql = shape(f"exec {p.name} @pnr = '19121212-1212', @avd = {i}")
        stmts.append(StatementRow(spid, 1000 + spid, batch[spid - 14], 1, 1 + i % 30, rng.randrange(1, p.lines), 1,
                                  0, logins[spid % len(logins)], f"ws-avd{spid:02d}-001", "IMX Klient", 4, p.db,
                                  p.proc_id, p.name, start, start + 0.004, rng.randint(*p.cpu_ms), 1,
                                  rng.randint(*p.reads), 0, 3, 0))  # fmt: skip
        texts.append(SqlTextRow(spid, 1000 + spid, batch[spid - 14], sql, "pipe", t))
    sessions = tuple(SessionRow(14 + k, 1014 + k, 0, logins[(14 + k) % len(logins)], "ws", "IMX Klient",
                                "imx_prod", "AWAITING COMMAND", 0, 0) for k in range(40))  # fmt: skip
    reads = (TableRead("monSysStatement", n, False), TableRead("monSysSQLText", n, False))
    return MdaSample(time=t, duration=0.05, up=True, own_spid=400, start_date=datetime(2024, 3, 14, 6),
                     connections=41, max_connections=200, statements=tuple(stmts), texts=tuple(texts),
                     sessions=sessions, reads=reads)  # fmt: skip


def growth(rate: float = 1000.0) -> None:
    rng = random.Random(7)
    mda = MdaConfig()
    with tempfile.TemporaryDirectory() as tmp:
        now = [1_710_400_000.0]
        store = Store(Path(tmp) / "asewatch.db", clock=lambda: now[0])
        batch = [0] * 40
        t_start = now[0]
        w0 = time.perf_counter()
        per_sample = int(rate * 5)
        for _ in range(RING_MINUTES * 12):  # the raw ring at full rate
            now[0] += 5
            store.append(Batch(ops=ops_for("CLINIC1", _synthetic(rng, now[0], per_sample, batch), mda)))
        insert_s = time.perf_counter() - w0
        rows = RING_MINUTES * 60 * rate
        with store.reader() as r:
            ring_rows = r.query("SELECT count(*) FROM activity_statements")[0][0]
        ring_bytes = _table_bytes(
            store, ("activity_statements", "activity_sql", "activity_sessions", "activity_stack")
        )
        # The rest of the day: every procedure and login in every minute, fewer rows per sample.
        while now[0] < t_start + 86400:
            now[0] += 60
            store.append(Batch(ops=ops_for("CLINIC1", _synthetic(rng, now[0], 600, batch), mda)))
        agg_bytes = _table_bytes(store, ("activity_minute", "activity_minute_logins"))
        with store.reader() as r:
            agg_rows = r.query("SELECT count(*) FROM activity_minute")[0][0]
        file_bytes = (Path(tmp) / "asewatch.db").stat().st_size
        store.close()
    full_ring = ring_bytes / max(1, ring_rows) * min(mda.max_raw_rows, mda.raw_minutes * 60 * rate)
    print(f"growth: one simulated day at {rate:.0f} statements/s (86.4 M statements)")
    print(f"  store ops: {rows / insert_s:,.0f} statements/s written ({rows:,.0f} in {insert_s:.1f} s)")
    print(f"  aggregates: {agg_rows:,} rows, {agg_bytes / 1e6:.1f} MB for the day "
          f"(kept {mda.aggregate_days} days: {agg_bytes * mda.aggregate_days / 1e6:.0f} MB)"
          f"   [target < 50 MB/day]  {'OK' if agg_bytes < 50e6 else 'FAIL'}")  # fmt: skip
    print(f"  raw ring: {ring_bytes / max(1, ring_rows):.0f} bytes per statement with its text and indexes; "
          f"bounded by max_raw_rows={mda.max_raw_rows:,} (= {mda.max_raw_rows / rate / 60:.1f} min at this rate; "
          f"raw_minutes={mda.raw_minutes}) -> {full_ring / 1e6:.0f} MB at most")  # fmt: skip
    print(f"  database file after the day: {file_bytes / 1e6:.0f} MB (freed ring pages are reused)")


def _table_bytes(store: Store, tables: Sequence[str]) -> int:
    """Bytes of the tables and their indexes (SQLite's dbstat)."""
    with store.reader() as r:
        names = list(tables)
        for t in tables:
            names += [
                row[0]
                for row in r.query(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (t,)
                )
            ]
        marks = ", ".join("?" * len(names))
        return int(
            r.query(f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})", tuple(names))[0][
                0
            ]
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-growth", action="store_true")
    args = ap.parse_args()
    if not args.skip_live:
        live(args.seconds, args.rate, args.interval)
    if not args.skip_growth:
        growth()


if __name__ == "__main__":
    main()
