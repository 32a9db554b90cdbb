"""One row of the metric table: name, type, labels, help. Feature modules declare theirs
with it; ``monitor/metrics.py`` joins them into the one table the README mirrors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

Family = GaugeMetricFamily | CounterMetricFamily


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    type: Literal["gauge", "counter"]
    labels: tuple[str, ...]
    help: str

    def family(self) -> Family:
        """A fresh, empty family for one scrape (counters drop ``_total``: the client adds it)."""
        if self.type == "counter":
            return CounterMetricFamily(self.name.removesuffix("_total"), self.help, labels=list(self.labels))
        return GaugeMetricFamily(self.name, self.help, labels=list(self.labels))
