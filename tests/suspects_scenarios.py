"""A seeded generator of crash incidents for the suspect ranking, with the ground truth.

The shape of the incident behind asewatch, randomised: a day of background work (a few
frequent procedures, some moderate and rare ones, 40 sessions), a morning with a
deployment, a feature flag switched on (it makes a rare procedure reachable), a
parallelism setting raised and a decoy flag switched the same morning. The rare culprit
procedure crashes the server whenever it runs while the setting is raised; the crash hits
a parallel worker whose family parent ran the procedure; the crash block's SQL is mostly
a statement inside the procedure. Each crash restarts the server (a gap in activity).

Options add: a heavy nightly batch running across half of the crashes, a revert of the
setting after which the culprit runs without crashing, a second bug (another signature,
procedure and flag), a change made after the first crash, and the activity as raw rows,
per-minute aggregates only, a raw ring of the last hours beside aggregates, or nothing.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same
frames. Rows are generated vectorised (a day is ~100k procedure executions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from monitor.suspects import SuspectInputs

Mode = Literal["raw", "minutes", "ring", "none"]
T0 = pd.Timestamp("2024-03-13 18:00:00")
S = 1_000_000_000
H = 3600 * S
CULPRIT, CULPRIT_FLAG, SETTING = (
    "p_brev_sok_central_utskrift",
    "brevutskrift_central_search",
    "max parallel degree",
)
DECOY_FLAG, COMPANION = "journal_snabbsok_v2", "p_hamta_patient"
SECOND, SECOND_FLAG = "p_lab_svar_export", "lab_svar_push"
BATCH = "p_natt_batch_fakturering"
LATE_SETTING = "number of user connections"
HOSTS = np.array([f"ws{i:03d}" for i in range(40)], dtype=object)
USERS = ("sekr_karin", "usk_lena", "ssk_maria", "lak_anders", "adm_olle", "sekr_eva", "ssk_johan", "usk_sara")


@dataclass(frozen=True)
class Truth:
    """One bug: its crash signature, the procedure that crashes, and the states it needs."""

    signature: str
    procedure: str
    setting: str | None
    flag: str | None


@dataclass(frozen=True)
class Scenario:
    inputs: SuspectInputs
    truths: tuple[Truth, ...]
    decoy_flag: str | None
    late_change: str | None
    revert_at: pd.Timestamp | None
    seed: int


@dataclass
class _Exec:
    """Procedure executions (parallel lists; rows are expanded from them at the end)."""

    t: list[np.ndarray]
    proc: list[np.ndarray]
    session: list[np.ndarray]
    rows: list[np.ndarray]

    def add(self, t: np.ndarray, proc: str | np.ndarray, session: np.ndarray, rows: np.ndarray) -> None:
        self.t.append(np.asarray(t, dtype=np.int64))
        self.proc.append(np.broadcast_to(np.asarray(proc, dtype=object), t.shape).copy())
        self.session.append(np.asarray(session, dtype=np.int64))
        self.rows.append(np.asarray(rows, dtype=np.int64))


def make(
    seed: int,
    *,
    crashes: int = 5,
    mode: Mode = "raw",
    hours: float = 30.0,
    culprit_rate: float = 1.0,
    crash_rate: float = 1.2,
    frequent: tuple[float, ...] = (3000.0, 1000.0, 300.0),
    decoy: bool = True,
    batch: bool = False,
    revert: bool = True,
    two_bugs: bool = False,
    late: bool = False,
    uptime: bool = True,
    misses: float = 0.0,
) -> Scenario:
    """One incident; ``crashes`` by the culprit, spread over the hours after the morning changes.

    ``misses``: calls an hour of the culprit that do not crash while the setting is raised
    (a bug that fires on a few of its runs, not on every one)."""
    rng = np.random.default_rng(seed)
    t0, end = T0.value, T0.value + int(hours * H)
    morning = (T0 + pd.Timedelta(hours=12)).value  # 06:00 the next day
    deploy = morning + int(rng.uniform(0, 0.5) * H)
    flag_on = deploy + int(rng.uniform(0.1, 0.5) * H)
    set_on = flag_on + int(rng.uniform(0.4, 1.0) * H)
    decoy_at = (
        int(rng.uniform(morning - 1.0 * H, flag_on - 0.2 * H))
        if rng.random() < 0.5
        else int(rng.uniform(flag_on + 0.1 * H, set_on - 0.1 * H))
    )
    first = set_on + int(rng.uniform(0.3, 1.0) * H)
    span = max(crashes / crash_rate, 4.0) * H  # about one crash an hour, at least 4 h
    if not revert:
        span = max(min(span, end - first - int(0.5 * H)), H)
    ctimes = np.sort(first + np.r_[0, rng.uniform(0, span, crashes - 1)].astype(np.int64))
    last = int(ctimes[-1])
    revert_at = last + int(rng.uniform(0.3, 1.0) * H) if revert else None
    end = max(end, (revert_at or last) + int(6 * H))
    changes = [
        (deploy, "deployment", "IMX 7.1.0", "IMX 7.0.3", "IMX 7.1.0"),
        (flag_on, "flag", CULPRIT_FLAG, "off", "on"),
        (set_on, "setting", SETTING, "1", "4"),
    ]
    if decoy:
        changes.append((decoy_at, "flag", DECOY_FLAG, "off", "on"))
    if revert_at is not None:
        changes.append((revert_at, "setting", SETTING, "4", "1"))
    late_name = None
    if late:
        late_at = int(ctimes[0]) + int(rng.uniform(0.05, 0.9) * (int(ctimes[1]) - int(ctimes[0])))
        late_name = LATE_SETTING if rng.random() < 0.5 else "IMX 7.1.0 hotfix 1"
        if late_name == LATE_SETTING:
            changes.append((late_at, "setting", LATE_SETTING, "200", "300"))
        else:
            changes.append((late_at, "deployment", late_name, "IMX 7.1.0", late_name))
    culprit_ok = _poisson_times(rng, culprit_rate, flag_on, set_on)
    if decoy and decoy_at > flag_on and not ((culprit_ok > flag_on) & (culprit_ok < decoy_at)).any():
        # The decoy switched after the culprit flag is told apart only by a call in between.
        culprit_ok = np.r_[culprit_ok, rng.integers(flag_on, decoy_at)]
    if revert_at is not None:
        culprit_ok = np.r_[culprit_ok, _poisson_times(rng, culprit_rate, revert_at, end)]
    if misses > 0:
        culprit_ok = np.sort(np.r_[culprit_ok, _poisson_times(rng, misses, set_on, revert_at or end)])
    crash_list = [(t, "sig-A", CULPRIT) for t in ctimes.tolist()]
    truths = [Truth("sig-A", CULPRIT, SETTING, CULPRIT_FLAG)]
    second_ok = np.empty(0, np.int64)
    if two_bugs:
        g_on = t0 + int(rng.uniform(1.0, 4.0) * H)
        changes.append((g_on, "flag", SECOND_FLAG, "off", "on"))
        g_times = np.sort(rng.uniform(g_on + 0.5 * H, end - H, max(crashes - 1, 2)).astype(np.int64))
        crash_list += [(t, "sig-B", SECOND) for t in g_times.tolist()]
        second_ok = _poisson_times(rng, 1.0, t0, g_on)
        truths.append(Truth("sig-B", SECOND, None, SECOND_FLAG))
    crash_list.sort()
    return _assemble(rng, seed, crash_list, changes, culprit_ok, second_ok, (t0, end), mode, frequent, batch,
                     uptime, truths, DECOY_FLAG if decoy else None, late_name, revert_at)  # fmt: skip


def _poisson_times(rng: np.random.Generator, per_hour: float, a: int, b: int) -> np.ndarray:
    n = rng.poisson(per_hour * max(b - a, 0) / H)
    return np.sort(rng.integers(a, max(b, a + 1), n)).astype(np.int64)


def _assemble(rng, seed, crash_list, changes, culprit_ok, second_ok, span, mode, frequent, batch, uptime, truths,
              decoy, late_name, revert_at) -> Scenario:  # type: ignore[no-untyped-def]  # fmt: skip
    t0, end = span
    ctimes = np.array([c[0] for c in crash_list], dtype=np.int64)
    downs = rng.uniform(60, 240, ctimes.size).astype(np.int64) * S
    up_start = np.r_[t0, ctimes + downs]
    up_end = np.r_[ctimes, end]
    ex = _Exec([], [], [], [])
    n_sess = 40
    names = [f"p_frequent_{i}" for i in range(len(frequent))]
    rates = [*frequent, 120.0, 30.0, 6.0, 2.0, 1.0, 0.5]
    names += ["p_moderate_120", "p_moderate_30", "p_sometimes_6", "p_rare_2", "p_rare_1", "p_rare_half"]
    names[0] = COMPANION
    for name, rate in zip(names, rates, strict=True):
        for a, b in zip(up_start.tolist(), up_end.tolist(), strict=True):
            t = _poisson_times(rng, rate, a, b)
            ex.add(t, name, rng.integers(0, n_sess, t.size), rng.integers(1, 4, t.size))
    crash_rows = []
    for i, (t, sig, proc) in enumerate(crash_list):
        sess = int(rng.integers(0, n_sess))
        start = t - int(rng.uniform(1, 20) * S)
        k = 0 if rng.random() < 0.1 else int(rng.integers(1, 4))
        ex.add(np.array([start]), proc, np.array([sess]), np.array([k]))
        ex.add(np.array([start - int(rng.uniform(2, 30) * S)]), COMPANION, np.array([sess]), np.array([1]))
        inner = rng.random() < 0.8
        crash_rows.append({
            "key": f"crash-{seed}-{i}", "signature": sig, "time": pd.Timestamp(t), "spid": 200 + i,
            "kpid": 9_000_000 + int(rng.integers(0, 10**6)), "family": 11 + sess,
            "procedure": proc if rng.random() < 0.2 else None,
            "sql": "select b.id, b.text from brev b where b.status = ? and b.enhet = ?" if inner else f"exec {proc} ?",
            "login": USERS[sess % len(USERS)], "host": f"ws{sess:03d}", "application": "IMX Klient"})  # fmt: skip
    for calls, proc in ((culprit_ok, CULPRIT), (second_ok, SECOND)):
        times = calls[_inside(calls, up_start, up_end)]
        ex.add(times, proc, rng.integers(0, n_sess, times.size), rng.integers(1, 4, times.size))
        ex.add(
            times - rng.integers(2, 30, times.size) * S,
            COMPANION,
            ex.session[-1],
            np.ones(times.size, np.int64),
        )
    if batch:
        near = ctimes[rng.permutation(ctimes.size)[: max(ctimes.size // 2, 1)]]
        starts = np.r_[near - rng.integers(10, 40, near.size) * 60 * S, t0 + 8 * H, t0 + 32 * H]
        for a in starts.tolist():
            t = np.arange(a, a + 45 * 60 * S, 5 * S)
            t = t[_inside(t, up_start, up_end)]
            ex.add(t, BATCH, np.full(t.size, n_sess - 1), np.ones(t.size, np.int64))
    stm, minutes = _rows(rng, ex, up_start, up_end, n_sess, mode, ctimes)
    up = pd.DataFrame({"start": _ts(up_start), "end": _ts(up_end)}) if uptime else None
    ch = pd.DataFrame(changes, columns=["time", "kind", "name", "old", "new"])
    ch["time"] = _ts(ch["time"].to_numpy(dtype=np.int64))
    inputs = SuspectInputs(
        pd.DataFrame(crash_rows), stm, minutes, ch.sort_values("time", ignore_index=True), up
    )
    return Scenario(inputs, tuple(truths), decoy, late_name,
                    pd.Timestamp(revert_at) if revert_at is not None else None, seed)  # fmt: skip


def _ts(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]")


def _inside(t: np.ndarray, up_start: np.ndarray, up_end: np.ndarray) -> np.ndarray:
    k = np.searchsorted(up_start, t, side="right") - 1
    return (k >= 0) & (t < up_end[np.maximum(k, 0)])


def _rows(rng, ex, up_start, up_end, n_sess, mode, ctimes):  # type: ignore[no-untyped-def]
    t = np.concatenate(ex.t)
    proc = np.concatenate(ex.proc)
    sess = np.concatenate(ex.session)
    nrows = np.concatenate(ex.rows)
    keep = _inside(t, up_start, up_end)
    t, proc, sess, nrows = t[keep], proc[keep], sess[keep], nrows[keep]
    incarnation = np.searchsorted(up_start, t, side="right") - 1
    minutes = None
    if mode in ("minutes", "ring"):
        m = pd.DataFrame({"minute": _ts(t // (60 * S) * (60 * S)), "procedure": proc})
        minutes = m.groupby(["minute", "procedure"]).size().rename("executions").reset_index()
    if mode in ("minutes", "none"):
        return None, minutes
    idx = np.repeat(np.arange(t.size), nrows)
    step = np.arange(idx.size) - np.repeat(np.cumsum(nrows) - nrows, nrows)
    start = t[idx] + step * 200_000_000 + rng.integers(0, 50_000_000, idx.size)
    end = start + rng.integers(1_000_000, 150_000_000, idx.size)
    if mode == "ring":
        last_hours = start > up_end[-1] - 3 * H
        frozen = np.zeros(idx.size, dtype=bool)
        for c in ctimes.tolist():
            frozen |= (end > c - 120 * S) & (end <= c)
        sel = last_hours | frozen
        idx, start, end = idx[sel], start[sel], end[sel]
    spid = 11 + sess[idx]
    kpid = 1_000_000 + incarnation[idx] * 1000 + spid
    login = np.array(USERS, dtype=object)[sess[idx] % len(USERS)]
    is_batch = proc[idx] == BATCH
    return pd.DataFrame({
        "spid": pd.array(spid, dtype="Int64"), "kpid": pd.array(kpid, dtype="Int64"),
        "family": pd.array(np.zeros(idx.size, np.int64), dtype="Int64"),
        "procedure": pd.Categorical(proc[idx]),
        "login": np.where(is_batch, "batch_runner", login), "host": HOSTS[sess[idx]],
        "application": np.where(is_batch, "Batch", "IMX Klient"),
        "start_time": _ts(start), "end_time": _ts(end)}), minutes  # fmt: skip
