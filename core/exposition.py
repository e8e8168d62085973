"""What a scrape serves: the registries (every process's values added up in multiprocess
mode, see core.metrics), process metrics summed over a process tree, and the text format."""

import ipaddress
import logging
import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from .metrics import MULTIPROCESS_DIR

logger = logging.getLogger(__name__)


class ProcessTreeCollector:
    """process_* metrics (CPU, memory, open files) of a process and its children, summed by
    role: under gunicorn the master and its workers, in an RQ worker the worker and its horse.

    prometheus-client's own process collector reports only the process that answers the
    scrape, which in multiprocess mode is one worker picked at random.
    """

    SUMMED = ("cpu_seconds_total", "resident_memory_bytes", "virtual_memory_bytes", "open_fds")

    def __init__(self, root_pid, roles: tuple[str, str]):
        self._root_pid = root_pid  # a callable: the pid of the tree's root
        self._roles = roles  # (the root's role, its children's role)

    def _families(self, pid: int) -> dict[str, float]:
        collector = ProcessCollector(pid=lambda: pid, registry=None)
        return {
            family.name.removeprefix("process_"): family.samples[0].value
            for family in collector.collect()
        }

    def collect(self):
        root = self._root_pid()
        totals = {role: dict.fromkeys(self.SUMMED, 0.0) for role in self._roles}
        root_values = self._families(root)
        for pid in [root, *_children(root)]:
            role = self._roles[0] if pid == root else self._roles[1]
            found = root_values if pid == root else self._families(pid)
            for name in self.SUMMED:
                totals[role][name] += found.get(name.removesuffix("_total"), 0.0)
        for name in self.SUMMED:
            kind = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
            family = kind(
                f"process_{name.removesuffix('_total')}",
                f"process_{name} summed over the processes of each role.",
                labels=["role"],
            )
            for role in self._roles:
                family.add_metric([role], totals[role][name])
            yield family
        for name in ("start_time_seconds", "max_fds"):
            if name in root_values:
                yield GaugeMetricFamily(
                    f"process_{name}", f"process_{name} of the {self._roles[0]}.", root_values[name]
                )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


class _OursOnly:
    """The families of another collector that are ours: django-rq defines a summary at import
    (rq_request_processing_seconds_total) that promtool rejects and that we don't serve."""

    PREFIXES = ("modelport_", "process_", "python_")

    def __init__(self, collector):
        self._collector = collector

    def collect(self):
        return (f for f in self._collector.collect() if f.name.startswith(self.PREFIXES))


def registry(*extra_collectors) -> CollectorRegistry:
    """What a scrape of this process serves: every process's values, added up, in
    multiprocess mode; this process's own values (and process collectors) otherwise."""
    served = CollectorRegistry()
    if MULTIPROCESS_DIR:
        served.register(_OursOnly(multiprocess.MultiProcessCollector(None, path=MULTIPROCESS_DIR)))
        for collector in extra_collectors:
            served.register(collector)
    else:
        served.register(_OursOnly(REGISTRY))
    return served


def web_registry() -> CollectorRegistry:
    """/metrics of a gunicorn instance: all its workers, and the master's process tree."""
    return registry(ProcessTreeCollector(os.getppid, ("master", "worker")))


def serve_metrics(served: CollectorRegistry, *, port: int, address: str) -> None:
    """Serve a registry over HTTP from a thread of this process (an RQ worker's endpoint)."""
    start_http_server(port, addr=address, registry=served)
    logger.info("worker metrics on http://%s:%d/metrics", address, port)


def exposition(scraped: CollectorRegistry) -> tuple[bytes, str]:
    """The text format of a registry and its content type."""
    return generate_latest(scraped), CONTENT_TYPE_LATEST


def may_scrape(remote_addr: str | None) -> bool:
    """Whether a client address is in METRICS_ALLOWED_NETWORKS."""
    from django.conf import settings

    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network) for network in settings.METRICS_ALLOWED_NETWORKS
    )
