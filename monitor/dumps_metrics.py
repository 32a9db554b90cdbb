"""The dump metrics, read from the store at scrape time (monitor/metrics.py adds them).

``METRICS_DUMPS`` joins the one metric table (``METRICS = (..., *METRICS_DUMPS)``);
:func:`add_dump_metrics` fills the families monitor/metrics.py built from that table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from monitor.dumps_read import PRESENT, suppressed_counts
from monitor.dumps_retention import free_bytes
from monitor.metricdef import Family, MetricDef
from monitor.store_reader import StoreReader

METRICS_DUMPS: tuple[MetricDef, ...] = (
    MetricDef("ase_dumps_total", "counter", ("server", "state"), "Dump and core files found, by final state (complete, truncated, unreadable) and refused (links, FIFOs, devices: never read)."),  # noqa: E501
    MetricDef("ase_dumps_writing", "gauge", ("server",), "Dump files being written now (growing or held open for writing)."),  # noqa: E501
    MetricDef("ase_dump_bytes_total", "counter", ("server",), "Bytes of the finished dumps found (evicting a file does not lower it)."),  # noqa: E501
    MetricDef("ase_dump_stored_bytes", "gauge", ("server",), "Bytes of the dump files asewatch keeps on disk now."),  # noqa: E501
    MetricDef("ase_dumps_suppressed_total", "counter", ("server", "signature"), "Dumps whose files flood control did not keep (not among the first/last K of their crash signature that day); their records are kept."),  # noqa: E501
    MetricDef("ase_dump_dir_free_bytes", "gauge", ("dir",), "Free bytes on the file system of each dump folder."),  # noqa: E501
)  # fmt: skip


def add_dump_metrics(
    reader: StoreReader,
    fams: Mapping[str, Family],
    *,
    dirs: Sequence[Path] = (),
    servers: Sequence[str] = (),
) -> None:
    """Add the dump series to ``fams`` (metric name -> family) from one store snapshot.

    ``dirs``: the watched folders (their free space is read now with ``statvfs``; a folder
    that cannot be read is left out). ``servers``: configured servers, given zero series so
    a first dump is an increase, not a new series. Raises StoreError when the store fails.
    """
    states = ("complete", "truncated", "unreadable", "refused")
    counts: dict[tuple[str, str], int] = {(s, st): 0 for s in servers for st in states}
    writing: dict[str, int] = dict.fromkeys(servers, 0)
    found: dict[str, int] = dict.fromkeys(servers, 0)
    stored: dict[str, int] = dict.fromkeys(servers, 0)
    present = ", ".join(f"'{p}'" for p in PRESENT)
    for server, state, n, size, kept in reader.query(
        "SELECT server, state, count(*), sum(size), "  # noqa: S608 - constants only
        f"sum(CASE WHEN retention IN ({present}) THEN size ELSE 0 END) FROM dumps GROUP BY server, state"
    ):
        if state == "writing":
            writing[server] = writing.get(server, 0) + int(n)
            continue
        counts[(server, state)] = int(n)
        found[server] = found.get(server, 0) + int(size or 0)
        stored[server] = stored.get(server, 0) + int(kept or 0)
    for server, n in reader.query(
        "SELECT server, count(*) FROM events WHERE kind = 'DumpRefused' GROUP BY server"
    ):
        counts[(server, "refused")] = int(n)
    for (server, state), n in sorted(counts.items()):
        fams["ase_dumps_total"].add_metric([server, state], n)
    for server in sorted(writing):
        fams["ase_dumps_writing"].add_metric([server], writing[server])
    for server in sorted(found):
        fams["ase_dump_bytes_total"].add_metric([server], found[server])
        fams["ase_dump_stored_bytes"].add_metric([server], stored.get(server, 0))
    for c in suppressed_counts(reader):
        fams["ase_dumps_suppressed_total"].add_metric([c.server, c.signature], c.count)
    for d in dirs:
        try:
            fams["ase_dump_dir_free_bytes"].add_metric([str(d)], free_bytes(d))
        except OSError:
            continue
