"""Metrics of the change ledger: configuration values, feature flags, procedure changes.

``METRICS_CHANGES`` are their rows for the one metric table in ``monitor/metrics.py``;
``add_change_metrics`` fills their families from one store snapshot at scrape time,
like the rest of ``AseCollector``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor import readmodel
from monitor.events import ConfigChanged
from monitor.ledger import known_flags, known_settings
from monitor.metricdef import MetricDef
from monitor.store_reader import StoreReader

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

METRICS_CHANGES: tuple[MetricDef, ...] = (
    MetricDef("ase_config_value", "gauge", ("server", "parameter"), "Run value of each numeric configuration parameter (sysconfigures; without a database connection, the errorlog's last change)."),  # noqa: E501
    MetricDef("ase_feature_flag_enabled", "gauge", ("server", "flag"), "Whether an application feature flag is on (1: true/1/on/yes/enabled, else 0)."),  # noqa: E501
    MetricDef("ase_procedure_definition_changes_total", "counter", ("server",), "Stored procedures found new, changed or dropped since tracking began."),  # noqa: E501
)  # fmt: skip

_ON = frozenset({"1", "true", "t", "on", "yes", "y", "enabled"})


def flag_enabled(value: str) -> bool:
    """Whether a flag's text means "on".

    >>> flag_enabled("true"), flag_enabled(" ON "), flag_enabled("0"), flag_enabled("off")
    (True, True, False, False)
    """
    return value.strip().lower() in _ON


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def config_values(r: StoreReader, server: str) -> dict[str, float]:
    """The numeric run value of each parameter of ``server``: sysconfigures when polled (the
    configured value where no run value is known), else the errorlog's newest change."""
    known = known_settings(r, server, "sysconfigures")
    if known is not None:
        texts = {n: v.run if v.run is not None else v.configured for n, v in known.items()}
    else:
        texts = {}
        for se in r.events(kinds=[ConfigChanged], server=server):
            if isinstance(se.event, ConfigChanged):
                texts[se.event.option] = se.event.new
    return {n: x for n, t in texts.items() if (x := _number(t)) is not None}


def add_change_metrics(r: StoreReader, fams: dict[str, GaugeMetricFamily | CounterMetricFamily]) -> None:
    """Add the change metrics of every server the store knows to ``fams`` (built from the
    metric table). Raises StoreError when the store cannot be read."""
    changes = readmodel.count_by_server(r, "ProcedureChanged")
    for server in readmodel.servers(r):
        for name, value in sorted(config_values(r, server).items()):
            fams["ase_config_value"].add_metric([server, name], value)
        for flag, text in sorted(known_flags(r, server).items()):
            fams["ase_feature_flag_enabled"].add_metric([server, flag], 1 if flag_enabled(text) else 0)
        fams["ase_procedure_definition_changes_total"].add_metric([server], changes.get(server, 0))
