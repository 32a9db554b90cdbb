"""The suspects metric: the top five suspects of each crash group, read at scrape time.

Values come from what the agent stored after the last crash (monitor/suspects_agent.py);
a scrape never ranks anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from monitor.metricdef import MetricDef
from monitor.store_reader import StoreReader
from monitor.suspects_agent import stored

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

TOP = 5

METRICS_SUSPECTS: tuple[MetricDef, ...] = (
    MetricDef("ase_crash_suspect_score", "gauge", ("server", "signature", "kind", "name"), "Score (0-1) of the top five suspects of each crash group: procedures, flags, settings, deployments, procedure changes, logins, applications, hosts."),  # noqa: E501
)  # fmt: skip


def add_suspect_metrics(
    r: StoreReader, fams: dict[str, GaugeMetricFamily | CounterMetricFamily], servers: Iterable[str]
) -> None:
    """Fill ``ase_crash_suspect_score`` from the stored suspects of ``servers``."""
    fam = fams["ase_crash_suspect_score"]
    for server in servers:
        doc = stored(r, server)
        for group in (doc or {}).get("groups", ()):
            for s in group.get("suspects", ())[:TOP]:
                fam.add_metric(
                    [server, str(group["signature"]), str(s["kind"]), str(s["name"])], float(s["score"])
                )
