"""Activity evidence: the crash and background windows and what ran in each (the crashing
task itself: monitor/suspects_tasks.py).

Every step is vectorised over statement rows (numpy); Python loops run only over crashes,
windows of interval arithmetic and candidates. Times are int64 nanoseconds (naive server
local time viewed as an integer).

- **Windows**: the window before each crash (``window`` long, cut at the previous crash:
  the server was down before it) is a failing run. The observed time outside every
  crash window (of any group), where raw rows or per-minute aggregates cover it, is cut
  into windows of the same length: the successful runs. A leftover shorter than half a
  window is dropped. Each window takes its activity from the raw rows when they cover
  it, else from the per-minute aggregates (a window then counts every minute it overlaps).
- **Coverage**: raw rows or aggregate minutes cover the minutes they fall in, merged
  across gaps of up to :data:`COVER_GAP_S`; a longer silence means nothing was captured.
- **Mapping rows to windows**: a lookup table over a fine time grid (one slot is at most
  a second) gives, per row, the first and last window its ``[start, end]`` overlaps; the
  few rows spanning several windows are expanded. Unique (window, name) pairs come from
  a boolean scatter, never a sort of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from monitor.suspects_stats import BoolArray, IntArray, Intervals, intersect, intervals, subtract

NS = 1_000_000_000
MINUTE = 60 * NS
COVER_GAP_S = 600.0
MAX_SLOTS = 8_000_000
MAX_CELLS = 200_000_000
RAW, MINUTES = 1, 2
CHUNK = 1 << 20  # rows per pass of the vectorised steps (8 MiB per int64 temporary)


def coverage(times: IntArray, gap_s: float = COVER_GAP_S) -> Intervals:
    """The minutes holding any of ``times``, merged across silences up to ``gap_s`` seconds."""
    # A stride keeps a million rows at most: a silence of COVER_GAP_S survives it on any busy
    # server, and a minute with as many rows as the stride is still seen (sparse captures are small).
    times = times[:: max(1, times.size // 1_000_000)]
    valid = times > np.iinfo(np.int64).min
    if not valid.all():
        times = times[valid]
    if times.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    origin = int(times.min()) // MINUTE * MINUTE
    minutes = np.flatnonzero(np.bincount((times - origin) // MINUTE)).astype(np.int64)
    starts = origin + minutes * MINUTE
    return intervals(starts, starts + MINUTE, gap=int(gap_s * NS))


def to_ns(values: pd.Series) -> IntArray:
    """Nanoseconds since the epoch of naive times; NaT (or unparsable) -> the smallest int64."""
    if values.dtype == np.dtype("datetime64[ns]"):  # no copy: the frame's own buffer, viewed
        fast: IntArray = values.to_numpy().view(np.int64)
        return fast
    out: IntArray = pd.to_datetime(values, errors="coerce").astype("datetime64[ns]").to_numpy().view(np.int64)
    return out


def ids_of(frame: pd.DataFrame, col: str) -> IntArray:
    """An integer id column (spid, kpid, family) as int64; missing column or value -> -1."""
    if col not in frame:
        return np.full(len(frame), -1, dtype=np.int64)
    out: IntArray = pd.to_numeric(frame[col], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    return out


def chunks(n: int, size: int = CHUNK) -> list[slice]:
    """Slices of at most ``size`` rows: temporaries stay small and reused, not fresh pages per pass.

    >>> chunks(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass(frozen=True, slots=True)
class Windows:
    """Disjoint windows in time order: ``slot`` is the crash-time index (or -1 in the background)."""

    start: IntArray
    end: IntArray
    slot: IntArray
    source: npt.NDArray[np.int8]  # RAW, MINUTES or 0 (nothing observed)

    @property
    def background(self) -> BoolArray:
        return self.slot < 0


def _cut(iv: Intervals, width: int) -> Intervals:
    """Pieces of ``width`` ns; a leftover of at least half a width is kept."""
    starts: list[IntArray] = []
    ends: list[IntArray] = []
    for s, e in zip(iv[0].tolist(), iv[1].tolist(), strict=True):
        n_full, rest = divmod(e - s, width)
        a = s + np.arange(n_full, dtype=np.int64) * width
        starts.append(a)
        ends.append(a + width)
        if rest * 2 >= width:
            starts.append(np.array([e - rest], dtype=np.int64))
            ends.append(np.array([e], dtype=np.int64))
    if not starts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(starts), np.concatenate(ends)


def _overlap(iv: Intervals, s: IntArray, e: IntArray) -> npt.NDArray[np.float64]:
    """Per window ``[s, e)``, the share of it that ``iv`` covers."""
    out = np.zeros(s.size, dtype=np.float64)
    for a, b in zip(iv[0].tolist(), iv[1].tolist(), strict=True):
        out += np.clip(np.minimum(e, b) - np.maximum(s, a), 0, None)
    share: npt.NDArray[np.float64] = out / np.maximum(e - s, 1)
    return share


def build_windows(
    crash_times: IntArray, observed: Intervals, raw_cov: Intervals, min_cov: Intervals, width: int
) -> Windows:
    """Crash windows (one per distinct crash time, sorted) and background windows, merged in order."""
    # A statement ending in the crash's own second belongs to it; the server was down
    # before the previous crash, so a window never reaches back past it (disjoint windows).
    ce = np.minimum(crash_times + NS, np.r_[crash_times[1:], np.iinfo(np.int64).max])
    cs = np.maximum(crash_times - width, np.r_[np.iinfo(np.int64).min, ce[:-1]])
    crash_iv = intervals(cs, ce)
    raw_share, min_share = _overlap(raw_cov, cs, ce), _overlap(min_cov, cs, ce)
    csrc = np.where(raw_share >= 0.5, RAW, np.where(min_share > 0, MINUTES, np.where(raw_share > 0, RAW, 0)))
    bg_raw = subtract(intersect(observed, raw_cov), crash_iv)
    bg_min = subtract(subtract(intersect(observed, min_cov), raw_cov), crash_iv)
    rs, re_ = _cut(bg_raw, width)
    ms, me = _cut(bg_min, width)
    start = np.concatenate([cs, rs, ms])
    end = np.concatenate([ce, re_, me])
    slot = np.concatenate([np.arange(cs.size), np.full(rs.size + ms.size, -1)]).astype(np.int64)
    source = np.concatenate([csrc, np.full(rs.size, RAW), np.full(ms.size, MINUTES)]).astype(np.int8)
    order = np.argsort(start, kind="stable")
    return Windows(start[order], end[order], slot[order], source[order])


@dataclass(frozen=True, slots=True)
class RowWindows:
    """Which windows each row overlaps: ``first[i]`` (-1 = none) plus pairs for rows spanning more."""

    first: IntArray
    extra_row: IntArray
    extra_win: IntArray

    def pairs(self, values: IntArray) -> list[tuple[IntArray, IntArray]]:
        """(window, value) arrays over all pairs (window -1 where a row is in none)."""
        return [(self.first, values), (self.extra_win, values[self.extra_row])]

    def select(self, window_ok: BoolArray) -> tuple[IntArray, IntArray]:
        """(row, window) of the pairs whose window is marked in ``window_ok`` (one flag per window)."""
        ok = np.r_[window_ok, False]  # index -1 (no window) reads the trailing False
        rows = np.flatnonzero(ok[self.first])
        extra = ok[self.extra_win]
        return np.r_[rows, self.extra_row[extra]], np.r_[self.first[rows], self.extra_win[extra]]

    def keep(self, window_ok: BoolArray) -> RowWindows:
        """Only the pairs whose window is marked (the others become -1 / are dropped)."""
        ok = np.r_[window_ok, False]
        first = np.where(ok[self.first], self.first, -1)
        extra = ok[self.extra_win]
        return RowWindows(first, self.extra_row[extra], self.extra_win[extra])


def overlapping(win: Windows, s: IntArray, e: IntArray) -> RowWindows:
    """The windows each row ``[s, e]`` overlaps (``s <= e``, ns).

    A lookup table over a slot grid (at most a second per slot, :data:`MAX_SLOTS` slots)
    replaces a binary search per row: window edges are exact to one slot. The grid has a
    slot before the first window and one after the last, so rows outside map to none.
    """
    if win.start.size == 0:
        return RowWindows(np.full(s.size, -1, np.int32), np.empty(0, np.int64), np.empty(0, np.int32))
    origin, stop = int(win.start[0]), int(win.end[-1])
    res = max(min(NS, max(int((win.end - win.start).min()) // 4, 1)), -(-(stop - origin) // MAX_SLOTS), 1)
    origin -= res
    nslots = (stop - origin) // res + 2
    grid = origin + np.arange(nslots, dtype=np.int64) * res
    first_lut = np.searchsorted(win.end, grid, side="right").astype(np.int32)
    last_lut = np.searchsorted(win.start, grid + (res - 1), side="right").astype(np.int32) - 1
    first = np.empty(s.size, dtype=np.int32)
    span = np.empty(s.size, dtype=np.int32)
    for part in chunks(s.size):
        slot = s[part] - origin
        slot //= res
        np.clip(slot, 0, nslots - 1, out=slot)
        first[part] = first_lut[slot]
        np.subtract(e[part], origin, out=slot)
        slot //= res
        np.clip(slot, 0, nslots - 1, out=slot)
        span[part] = last_lut[slot]
    span -= first  # windows overlapped beyond the first; -1 or less: none
    first[span < 0] = -1
    multi = np.flatnonzero(span > 0)
    if not multi.size:
        return RowWindows(first, np.empty(0, np.int64), np.empty(0, np.int32))
    reps = span[multi]
    offs = (np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps) + 1).astype(
        np.int32
    )
    return RowWindows(first, np.repeat(multi, reps), np.repeat(first[multi], reps) + offs)


def codes_of(values: pd.Series | None, n: int) -> tuple[IntArray, list[str]]:
    """Integer codes (-1 = missing or empty) and the names, without a Python loop over rows."""
    if values is None:
        return np.full(n, -1, dtype=np.int32), []
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()  # int8/int16/int32 as pandas keeps them: no copy
        names = [str(c) for c in values.cat.categories]
    else:
        raw, uniques = pd.factorize(values, use_na_sentinel=True)
        codes, names = raw.astype(np.int32), [str(u) for u in uniques]
    blank = np.array([nm.strip() in ("", "nan", "None", "<NA>") for nm in names], dtype=bool)
    if blank.any():
        codes = np.where((codes >= 0) & blank[np.maximum(codes, 0)], -1, codes)
    return codes, names


@dataclass(frozen=True, slots=True)
class Presence:
    """Which names ran in which window: ``ran[w, k]``; ``observed[w]`` is False where unknown.

    ``bg_ran[k]``: observed background windows where name ``k`` ran; ``num_s``: observed
    background windows.
    """

    names: tuple[str, ...]
    ran: npt.NDArray[np.bool_]
    observed: BoolArray
    bg_ran: IntArray
    num_s: int


def presence(
    win: Windows, names: list[str], pairs: list[tuple[IntArray, IntArray]], observed: BoolArray
) -> Presence:
    """A presence matrix from (window, code) pair arrays (codes index ``names``; -1 skipped)."""
    nwin, k = win.start.size, len(names) + 1
    # Window -1 and code -1 land in row 0 / column 0 of a (nwin + 1) x (names + 1) table,
    # so no mask pass is needed over the rows; the table drops them at the end.
    if (nwin + 1) * k <= MAX_CELLS:
        flat = np.zeros((nwin + 1) * k, dtype=bool)
        wide = (nwin + 1) * k > 2**31 - 1  # else int32 keys: half the memory traffic
        for w, c in pairs:
            for part in chunks(w.size):
                key: IntArray = w[part].astype(np.int64) if wide else w[part].astype(np.int32)
                key *= k
                key += c[part]
                key += k + 1
                flat[key] = True
        ran = flat.reshape(nwin + 1, k)[1:, 1:]
    else:  # too many cells for a dense scatter: unique keys instead (slower, never huge)
        ran = np.zeros((nwin, len(names)), dtype=bool)
        for w, c in pairs:
            m = (c >= 0) & (w >= 0)
            keys = pd.unique(w[m] * len(names) + c[m])
            ran[keys // len(names), keys % len(names)] = True
    bg = win.background & observed
    return Presence(tuple(names), ran, observed, ran[bg].sum(axis=0).astype(np.int64), int(bg.sum()))
