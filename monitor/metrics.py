"""The Prometheus metrics: one custom Collector that reads the store at scrape time.

``METRICS`` is the one table of every metric (name, type, labels, help); the README's
metrics table and ``rules/`` are held against it by tests. Nothing here is a global
counter mutated by threads: every scrape builds fresh families from the store and the
agent's health fold (see ../shared/research/prometheus-grafana.md, 1.6).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from monitor import __version__, metrics_changes, readmodel
from monitor.dumps_metrics import METRICS_DUMPS, add_dump_metrics
from monitor.flightrec_metrics import METRICS_MDA, add_mda_metrics
from monitor.health import Health
from monitor.metricdef import Family, MetricDef
from monitor.metrics_changes import METRICS_CHANGES
from monitor.ship_metrics import METRICS_SHIP, add_ship_metrics
from monitor.signature import SIGNATURE_VERSION
from monitor.store import Store
from monitor.suspects_metrics import METRICS_SUSPECTS, add_suspect_metrics

log = logging.getLogger("asewatch.metrics")


METRICS: tuple[MetricDef, ...] = (
    MetricDef("ase_up", "gauge", ("server",), "Whether the server's dataserver (engine 0) process is running (1) or not (0)."),
    MetricDef("ase_server_start_time_seconds", "gauge", ("server",), "Start time of the running dataserver process, POSIX seconds; restarts are changes() of it."),
    MetricDef("ase_process_resident_memory_bytes", "gauge", ("server",), "Resident memory of the dataserver process at the newest sample."),
    MetricDef("ase_process_cpu_seconds_total", "counter", ("server",), "User and system CPU time of the dataserver process."),
    MetricDef("ase_process_threads", "gauge", ("server",), "OS threads of the dataserver process."),
    MetricDef("ase_process_open_fds", "gauge", ("server",), "Open file descriptors of the dataserver process."),
    MetricDef("ase_crashes_total", "counter", ("server", "kind", "signature"), "Crashes by kind (signal, timeslice, other, unclean) and crash signature."),
    MetricDef("ase_crash_last_timestamp_seconds", "gauge", ("server",), "Time of the newest crash, POSIX seconds (0: none recorded)."),
    MetricDef("ase_errorlog_errors_total", "counter", ("server", "severity"), "Errors written to the errorlog, by severity."),
    MetricDef("ase_config_changes_total", "counter", ("server",), "Configuration option changes written to the errorlog."),
    MetricDef("ase_boots_total", "counter", ("server",), "Start-up sequences written to the errorlog."),
    MetricDef("asewatch_build_info", "gauge", ("version", "signature_version"), "asewatch build; the value is 1."),
    MetricDef("asewatch_collector_errors_total", "counter", ("collector",), "Failures of a collector since the agent started; it retries."),
    MetricDef("asewatch_collector_last_success_timestamp_seconds", "gauge", ("collector",), "Last time the collector read its source successfully, POSIX seconds."),
    MetricDef("asewatch_collector_up", "gauge", ("collector",), "Whether the collector's last attempt succeeded."),
    MetricDef("asewatch_events_dropped_total", "counter", (), "Events the agent had to drop because the store's write queue was full."),
    *METRICS_CHANGES,
    *METRICS_SHIP,
    *METRICS_MDA,
    *METRICS_DUMPS,
    *METRICS_SUSPECTS,
)  # fmt: skip

_BY_NAME = {m.name: m for m in METRICS}


class AseCollector(Collector):
    """Reads one store snapshot per scrape. A store failure yields no ase_* series for that
    scrape (logged), never an exception: crash forensics stay visible while ASE is down."""

    def __init__(
        self,
        store: Store,
        health: Health | None = None,
        servers: tuple[str, ...] = (),
        dropped: Iterable[int] | None = None,
        *,
        dump_dirs: tuple[Path, ...] = (),
    ) -> None:
        self._store = store
        self._dump_dirs = dump_dirs
        self._health = health or Health()
        self._servers = servers
        self._dropped = dropped

    def describe(self) -> Iterable[Metric]:
        return []  # never query the store at registration

    def collect(self) -> Iterator[Metric]:
        fams = {m.name: m.family() for m in METRICS}
        fams["asewatch_build_info"].add_metric([__version__, str(SIGNATURE_VERSION)], 1)
        for h in self._health.snapshot():
            fams["asewatch_collector_errors_total"].add_metric([h.collector], h.errors)
            fams["asewatch_collector_up"].add_metric([h.collector], 1 if h.up else 0)
            if h.last_success is not None:
                fams["asewatch_collector_last_success_timestamp_seconds"].add_metric(
                    [h.collector], h.last_success
                )
        fams["asewatch_events_dropped_total"].add_metric([], sum(self._dropped or ()))
        try:
            self._from_store(fams)
        except Exception:
            log.exception("metrics: reading the store failed; ase_* series left out of this scrape")
        yield from fams.values()

    def _from_store(self, fams: dict[str, Family]) -> None:
        with self._store.reader() as r:
            servers = readmodel.servers(r, self._servers)
            config = readmodel.count_by_server(r, "ConfigChanged")
            boots = readmodel.count_by_server(r, "ServerBooted")
            last_crash: dict[str, float] = {}
            for c in readmodel.crash_counts(r):
                fams["ase_crashes_total"].add_metric([c.server, c.kind, c.signature], c.count)
                last_crash[c.server] = max(last_crash.get(c.server, 0.0), c.last_timestamp)
            for server, severity, n in readmodel.errors_by_severity(r):
                fams["ase_errorlog_errors_total"].add_metric([server, str(severity)], n)
            for s in servers:
                v = readmodel.server_view(r, s)
                fams["ase_up"].add_metric([s], 1 if v.up else 0)
                fams["ase_crash_last_timestamp_seconds"].add_metric([s], last_crash.get(s, 0.0))
                fams["ase_config_changes_total"].add_metric([s], config.get(s, 0))
                fams["ase_boots_total"].add_metric([s], boots.get(s, 0))
                if v.up and v.start_time is not None:
                    fams["ase_server_start_time_seconds"].add_metric([s], v.start_time)
                if v.rss_bytes is not None:
                    fams["ase_process_resident_memory_bytes"].add_metric([s], v.rss_bytes)
                if v.cpu_seconds is not None:
                    fams["ase_process_cpu_seconds_total"].add_metric([s], v.cpu_seconds)
                if v.threads is not None:
                    fams["ase_process_threads"].add_metric([s], v.threads)
                if v.open_files is not None:
                    fams["ase_process_open_fds"].add_metric([s], v.open_files)
            metrics_changes.add_change_metrics(r, fams)
            add_ship_metrics(r, fams)
            add_mda_metrics(r, fams)
            add_dump_metrics(r, fams, dirs=self._dump_dirs, servers=tuple(servers))
            add_suspect_metrics(r, fams, servers)


class MetricsServer:
    """The /metrics endpoint on its own thread; 127.0.0.1 by default, TLS when configured."""

    def __init__(
        self,
        registry: CollectorRegistry,
        listen: str = "127.0.0.1",
        port: int = 9399,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        self._registry = registry
        self._listen = listen
        self._port = port
        self._certfile = certfile
        self._keyfile = keyfile
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0). Raises OSError if it cannot bind."""
        server, thread = start_http_server(
            self._port,
            addr=self._listen,
            registry=self._registry,
            certfile=str(self._certfile) if self._certfile else None,
            keyfile=str(self._keyfile) if self._keyfile else None,
            protocol=ssl.PROTOCOL_TLS_SERVER,
        )
        thread.name = "metrics-http"
        self._server, self._thread = server, thread
        return int(server.server_port)

    @property
    def scheme(self) -> str:
        return "https" if self._certfile else "http"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def make_registry(collector: AseCollector) -> CollectorRegistry:
    """A fresh registry holding only asewatch's collector (never the global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
