"""Metrics of shipping and readiness, read from one store snapshot at scrape time.

``METRICS_SHIP`` are their rows for the one metric table in ``monitor/metrics.py``;
``add_ship_metrics`` fills their families like the rest of ``AseCollector``. ``state``
in ``asewatch_ship_queue`` is the state machine's state, plus ``held`` for dumps queued
but waiting for the vendor's release (metadata-first); held dumps do not count as
pending in ``asewatch_ship_oldest_pending_age_seconds``, since they wait on purpose.
"""

from __future__ import annotations

import time

from monitor.metricdef import Family, MetricDef
from monitor.ship_state import CONTRACT_STATE_KEY
from monitor.store_reader import StoreReader

__all__ = ["METRICS_SHIP", "add_ship_metrics"]

_STATES = ("queued", "held", "uploading", "failed", "verified")

METRICS_SHIP: tuple[MetricDef, ...] = (
    MetricDef("asewatch_shipments_total", "counter", ("target", "result"), "Upload attempts per target by result (verified, failed)."),  # noqa: E501
    MetricDef("asewatch_ship_queue", "gauge", ("target", "state"), "Package files per target by shipping state (queued, held, uploading, failed, verified)."),  # noqa: E501
    MetricDef("asewatch_ship_oldest_pending_age_seconds", "gauge", ("target",), "Age of the oldest file not yet shipped to the target, held dumps left out (0: none pending)."),  # noqa: E501
    MetricDef("asewatch_vendor_target_up", "gauge", ("target",), "Whether the target answered the last upload or check (1) or not (0)."),  # noqa: E501
    MetricDef("asewatch_vendor_contract_expiry_timestamp_seconds", "gauge", (), "End of the vendor support contract ([vendor] contract_end), POSIX seconds."),  # noqa: E501
    MetricDef("ase_dump_capture_ready", "gauge", ("server",), "Doctor's verdict: 1 when none of the server's capture checks failed, else 0."),  # noqa: E501
)  # fmt: skip


def add_ship_metrics(r: StoreReader, fams: dict[str, Family], *, now: float | None = None) -> None:
    """Add the shipping and readiness metrics to ``fams`` (built from the metric table).
    ``now`` (POSIX s) is for the pending age. Raises StoreError when the store cannot be read."""
    now = time.time() if now is None else now
    targets: set[str] = set()
    for target, result, n in r.query("SELECT target, result, n FROM ship_counters ORDER BY target, result"):
        fams["asewatch_shipments_total"].add_metric([target, result], n)
        targets.add(target)
    counts: dict[tuple[str, str], int] = {}
    for target, state, held, n in r.query(
        "SELECT target, state, held, COUNT(*) FROM shipments GROUP BY target, state, held"
    ):
        key = (target, "held" if held and state == "queued" else state)
        counts[key] = counts.get(key, 0) + n
        targets.add(target)
    oldest = dict(
        r.query(
            "SELECT target, MIN(queued_at) FROM shipments WHERE state <> 'verified' AND held = 0"
            " GROUP BY target"
        )
    )
    up = dict(r.query("SELECT target, up FROM ship_targets"))
    targets.update(up)
    for target in sorted(targets):
        for state in _STATES:
            fams["asewatch_ship_queue"].add_metric([target, state], counts.get((target, state), 0))
        first = oldest.get(target)
        fams["asewatch_ship_oldest_pending_age_seconds"].add_metric(
            [target], max(0.0, now - first) if first is not None else 0.0
        )
        if target in up:
            fams["asewatch_vendor_target_up"].add_metric([target], up[target])
    end = r.get_state(CONTRACT_STATE_KEY)
    if end is not None:
        fams["asewatch_vendor_contract_expiry_timestamp_seconds"].add_metric([], float(end))
    verdicts: dict[str, int] = {}
    for server, verdict in r.query("SELECT server, verdict FROM doctor_checks WHERE server <> ''"):
        verdicts[server] = verdicts.get(server, 1) & int(verdict != "fail")
    for server, ok in sorted(verdicts.items()):
        fams["ase_dump_capture_ready"].add_metric([server], ok)
