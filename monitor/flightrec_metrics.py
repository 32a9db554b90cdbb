"""The MDA sampler's metrics, read from the store at scrape time.

``METRICS_MDA`` are their rows for the one metric table in ``monitor/metrics.py``;
:func:`add_mda_metrics` fills their families from one store snapshot, like the rest of
``AseCollector``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from monitor.flightrec_read import mda_counters, mda_status
from monitor.metricdef import MetricDef
from monitor.store_reader import StoreReader

METRICS_MDA: tuple[MetricDef, ...] = (
    MetricDef("ase_mda_up", "gauge", ("server",), "Whether the last MDA sample of the server succeeded (0 also when it is older than 60 s)."),  # noqa: E501
    MetricDef("ase_mda_scrape_duration_seconds", "gauge", ("server",), "How long the last MDA sample took, seconds."),  # noqa: E501
    MetricDef("ase_mda_last_sample_timestamp_seconds", "gauge", ("server",), "When the last successful MDA sample started, POSIX seconds."),  # noqa: E501
    MetricDef("ase_mda_rows_total", "counter", ("server", "table"), "Rows read from each MDA table by the flight recorder's sampler."),  # noqa: E501
    MetricDef("ase_mda_pipe_overflow_total", "counter", ("server", "table"), "Reads of a pipe table (monSysStatement, monSysSQLText) that came back at least 95% full: rows were probably lost."),  # noqa: E501
    MetricDef("ase_user_connections", "gauge", ("server",), "User connections now (monState.Connections); absent while MDA sampling is down."),  # noqa: E501
    MetricDef("ase_user_connections_max", "gauge", ("server",), "The run value of 'number of user connections'; absent while MDA sampling is down."),  # noqa: E501
)  # fmt: skip


class _Family(Protocol):
    def add_metric(self, labels: list[str], value: float) -> object: ...


def add_mda_metrics(
    reader: StoreReader,
    fams: Mapping[str, _Family],
    *,
    now: float | None = None,
    stale_after: float = 60.0,
) -> None:
    """Add the MDA series to ``fams`` (metric name -> family) from one store snapshot.

    A server whose newest sample is older than ``stale_after`` seconds counts as down
    (a stuck sampler must not look healthy); its connection gauges are left out then,
    as they are while it is down. Raises StoreError when the store cannot be read.
    """
    t = time.time() if now is None else now
    for s in mda_status(reader):
        up = s.up and t - s.sampled_at <= stale_after
        fams["ase_mda_up"].add_metric([s.server], 1 if up else 0)
        if s.duration is not None:
            fams["ase_mda_scrape_duration_seconds"].add_metric([s.server], s.duration)
        if s.last_success is not None:
            fams["ase_mda_last_sample_timestamp_seconds"].add_metric([s.server], s.last_success)
        if up and s.connections is not None:
            fams["ase_user_connections"].add_metric([s.server], s.connections)
        if up and s.max_connections is not None:
            fams["ase_user_connections_max"].add_metric([s.server], s.max_connections)
    for c in mda_counters(reader):
        fams["ase_mda_rows_total"].add_metric([c.server, c.table], c.rows_total)
        fams["ase_mda_pipe_overflow_total"].add_metric([c.server, c.table], c.overflow_total)
